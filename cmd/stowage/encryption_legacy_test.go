package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/config"
	"github.com/stowage/stowage/meta/sqlite"

	_ "modernc.org/sqlite"
)

// TestPlainRegistryRecordsItsSetting: a registry of plain data written
// before the encryption setting existed is recognised by its blob count
// once, and the setting is then recorded, so later starts do not count
// every blob again (seconds at a million blobs: the scale benchmark).
func TestPlainRegistryRecordsItsSetting(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Addr, cfg.DataDir = "127.0.0.1:0", dir
	cfg.Encryption.None = true
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	m := NewMain(cfg, testWriter{t})
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	data := []byte("plain, from before the setting")
	sum := sha256.Sum256(data)
	resp, err := http.Post("http://"+m.Addr+"/v2/legacy/blobs/uploads/?digest=sha256:"+hex.EncodeToString(sum[:]), "application/octet-stream", bytes.NewReader(data))
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("push: %v %v", resp, err)
	}
	resp.Body.Close()
	m.Close()
	// As an older Stowage left it: no setting row.
	raw, err := sql.Open("sqlite", filepath.Join(dir, "stowage.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(`DELETE FROM settings WHERE key = ?`, settingEncryption); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	m = NewMain(cfg, testWriter{t})
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	m.Close()
	db, err := sqlite.Open(context.Background(), filepath.Join(dir, "stowage.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.View(context.Background(), func(tx stowage.Tx) error {
		v, err := tx.Settings().GetSetting(settingEncryption)
		if err != nil || v != `{"encrypted":false}` {
			t.Errorf("after a start on plain data without the setting: %q %v, want it recorded", v, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
