package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stowage/stowage/config"
)

// TestDataDirIsPrivate: the data directory and everything the server
// creates in it (the SQLite database and its -wal and -shm files, which
// hold the token signing key and the password hashes; the blobs; the
// keys) are for the owner only, even with a umask of 0; and a data
// directory an older version left open (0755 and 0644) is made private at
// start.
func TestDataDirIsPrivate(t *testing.T) {
	old := syscall.Umask(0) // the worst case: nothing masked
	defer syscall.Umask(old)
	t.Setenv("STOWAGE_ADMIN_PASSWORD", "modes-test-password")

	start := func(dir string) *Main {
		t.Helper()
		cfg := config.Default()
		cfg.Addr, cfg.DataDir, cfg.Auth.Enabled = "127.0.0.1:0", dir, true
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		m := NewMain(cfg, testWriter{t})
		if err := m.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		return m
	}
	push := func(m *Main, data []byte) {
		t.Helper()
		sum := sha256.Sum256(data)
		req, _ := http.NewRequest(http.MethodPost, "http://"+m.Addr+"/v2/modes/app/blobs/uploads/?digest=sha256:"+hex.EncodeToString(sum[:]), bytes.NewReader(data))
		req.SetBasicAuth("admin", "modes-test-password")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("push: %d", resp.StatusCode)
		}
	}
	// check walks dir: no entry may be open to group or others.
	check := func(when, dir string) {
		t.Helper()
		seen := map[string]bool{}
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(dir, path)
			seen[rel] = true
			if perm := fi.Mode().Perm(); perm&0o077 != 0 {
				t.Errorf("%s: %s has mode %#o, want no access for group and others", when, rel, perm)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{".", "stowage.db", "stowage.db-wal", "stowage.db-shm", "LOCK", "node-id", "storage", "keys"} {
			if !seen[want] {
				t.Errorf("%s: %s not found in the data directory (the walk checked %d entries)", when, want, len(seen))
			}
		}
	}

	dir := filepath.Join(t.TempDir(), "data")
	m := start(dir)
	push(m, []byte("private blob one"))
	check("new data directory, running", dir)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	// What an older version left: everything open to all.
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.Chmod(path, 0o755)
		}
		return os.Chmod(path, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	m = start(dir)
	defer m.Close()
	push(m, []byte("private blob two"))
	check("data directory left 0755 by an older version, after a restart", dir)
}
