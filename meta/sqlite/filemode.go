package sqlite

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// privateFiles makes the database at path readable and writable by its
// owner only, before SQLite opens it: its settings hold the token signing
// key and the password hashes, so a file other local users can read lets
// them forge an admin token. A missing database is created empty with mode
// 0600 (SQLite takes an empty file for a new database), so that the -wal and
// -shm files, which SQLite creates with the database file's mode, are 0600
// too; existing files with access for group or others lose it.
func privateFiles(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		return f.Close()
	}
	if !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create metadata database %s: %w", path, err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm", path + "-journal"} {
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("metadata database: %w", err)
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			if err := os.Chmod(p, perm&^0o077); err != nil {
				return fmt.Errorf("metadata database %s is readable by other users (mode %#o) and could not be made private: %w; run 'chmod go-rwx %s*' as its owner",
					p, perm, err, path)
			}
		}
	}
	return nil
}
