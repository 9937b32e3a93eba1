package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"

	"github.com/stowage/stowage/config"
)

// A start that fails (the database or the bucket cannot be reached, a
// storage directory is refused, the port is taken) removes what it created
// and nothing else: no new data directory, database file, key file or lock
// is left behind, and whatever existed before stays as it was.

// startFootprint is what existed, before a start, of the places it
// writes: the data directory, the filesystem storage directories and the
// SQLite file.
type startFootprint struct {
	dataDir  string   // the data directory
	dataNew  string   // the highest missing directory on the way to it ("" if it existed)
	dataHad  []string // if it existed: the names it held
	newDirs  []string // storage directories that did not exist (the highest missing ancestor of each)
	newFiles []string // the SQLite file (and its -wal, -shm, -journal), if it did not exist
	dbNew    bool     // the database is a SQLite file this start creates (undo removes it)

	// kept: the start wrote what the data directory must keep to a
	// database that outlives the undo (PostgreSQL, or a SQLite file that
	// existed): the encryption key's id, the first admin. Removing the key
	// file or the generated password then would lock the data out, so the
	// undo leaves everything.
	kept bool
}

// recording is called before the start writes settings to the database:
// from then on, unless the database is new (undone too), nothing is undone.
func (fp *startFootprint) recording() {
	if !fp.dbNew {
		fp.kept = true
	}
}

// snapshotStart records the footprint of cfg's places before a start.
func snapshotStart(cfg config.Config) *startFootprint {
	fp := &startFootprint{dataDir: filepath.Clean(cfg.DataDir)}
	if names, err := dirNames(fp.dataDir); err == nil {
		fp.dataHad = names
	} else {
		fp.dataNew = highestMissing(fp.dataDir)
	}
	for _, d := range fsRoots(cfg.Storage) {
		if top := highestMissing(filepath.Clean(d)); top != "" {
			fp.newDirs = append(fp.newDirs, top)
		}
	}
	if cfg.Database.Kind() == "sqlite" && cfg.Database.SQLite != "" && cfg.Database.SQLite != ":memory:" {
		for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
			p := filepath.Clean(cfg.Database.SQLite + suffix)
			if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
				fp.newFiles = append(fp.newFiles, p)
				fp.dbNew = fp.dbNew || suffix == ""
			}
		}
	}
	return fp
}

// dirNames lists the names in directory d.
func dirNames(d string) ([]string, error) {
	f, err := os.Open(d)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// highestMissing returns the highest missing directory on the way to d (d
// itself if only it is missing), or "" if d exists or cannot be looked at.
func highestMissing(d string) string {
	top := ""
	for p := d; ; p = filepath.Dir(p) {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			return top
		}
		top = p
		if filepath.Dir(p) == p {
			return top
		}
	}
}

// undo removes what the failed start created. locked says whether it held
// the data directory's lock: only then is everything new its own (without
// it, another server may be creating the same places, so only directories
// it made that are still empty go).
func (fp *startFootprint) undo(locked bool, log *slog.Logger) {
	if fp.kept {
		log.Warn("the start failed after it recorded its encryption key and first admin in the database; the data directory stays as it is (keep its key file)", "dir", fp.dataDir)
		return
	}
	var removed []string
	rm := func(p string) {
		if _, err := os.Lstat(p); err != nil {
			return
		}
		if err := os.RemoveAll(p); err != nil {
			log.Warn("a failed start could not remove what it created", "path", p, "err", err)
			return
		}
		removed = append(removed, p)
	}
	if !locked {
		// Empty directories made on the way (MkdirAll), deepest first.
		if fp.dataNew != "" {
			for p := fp.dataDir; ; p = filepath.Dir(p) {
				if os.Remove(p) != nil || p == fp.dataNew {
					break
				}
			}
		}
		return
	}
	if fp.dataNew != "" {
		rm(fp.dataNew)
	} else if now, err := dirNames(fp.dataDir); err == nil {
		had := map[string]bool{}
		for _, n := range fp.dataHad {
			had[n] = true
		}
		for _, n := range now {
			if !had[n] {
				rm(filepath.Join(fp.dataDir, n))
			}
		}
	}
	for _, d := range fp.newDirs {
		rm(d)
	}
	for _, f := range fp.newFiles {
		rm(f)
	}
	if len(removed) > 0 {
		log.Debug("a failed start removed what it had created", "paths", removed)
	}
}

// abortStart undoes a start that failed: it closes what Run opened (so
// the files can go), then removes what the start created.
func (m *Main) abortStart(fp *startFootprint) {
	if m.keys != nil {
		if c, ok := m.keys.Keys.(io.Closer); ok {
			c.Close()
		}
		m.keys = nil
	}
	if m.db != nil {
		m.db.Close()
		m.db = nil
	}
	locked := m.lock != nil
	if locked {
		m.lock.Close()
		m.lock = nil
	}
	fp.undo(locked, m.log)
}

// lockDenied explains a data directory whose LOCK file this user may not
// open: most often root ran stowage there first, so the files it created
// are root's. It names the file, its owner and the fix.
func lockDenied(dir, path string, err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	fi, serr := os.Stat(path)
	var sys *syscall.Stat_t
	if serr == nil {
		sys, _ = fi.Sys().(*syscall.Stat_t)
	}
	if sys == nil {
		return fmt.Errorf("data directory %s: cannot open %s: %w", dir, path, err)
	}
	uid := currentUID()
	owner, ownerLabel := userName(int(sys.Uid))
	me, meLabel := userName(uid)
	if int(sys.Uid) == uid {
		return fmt.Errorf("data directory %s: cannot open %s (mode %#o, yours): %w: give yourself access: chmod u+rw %s", dir, path, fi.Mode().Perm(), err, path)
	}
	return fmt.Errorf("data directory %s: cannot open %s: %w: it belongs to user %s, but stowage runs as %s (did %s run stowage here before?): give the directory and its files to %s: sudo chown -R %s %s (or run stowage as %s)",
		dir, path, err, ownerLabel, meLabel, owner, me, me, dir, owner)
}
