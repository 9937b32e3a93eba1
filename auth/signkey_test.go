package auth

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/meta/postgres"
	"github.com/stowage/stowage/meta/postgres/pgtest"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/storage/crypt"
)

func openKeyTestDB(t *testing.T, path string) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func rawSetting(t *testing.T, db stowage.DB) storedKey {
	t.Helper()
	var s storedKey
	if err := db.View(context.Background(), func(tx stowage.Tx) error {
		raw, err := tx.Settings().GetSetting(SettingKey)
		if err != nil {
			return err
		}
		return json.Unmarshal([]byte(raw), &s)
	}); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSigningKeySealing covers the key's life with a keyring: stored
// sealed, the same key at every start, a clear one sealed once, its
// sealing key rewrapped by a rotation, and clear errors when the keyring is
// missing or wrong.
func TestSigningKeySealing(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := openKeyTestDB(t, filepath.Join(dir, "stowage.db"))
	ring, err := crypt.OpenFileKeyring(filepath.Join(dir, "keys.json"), true)
	if err != nil {
		t.Fatal(err)
	}
	mgr := crypt.NewManager(db, ring) // shares the key file's versions through db
	log := slog.New(slog.DiscardHandler)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

	// Without a keyring (encryption: none): in the clear, as before.
	clear, err := loadKey(ctx, db, nil, now, log)
	if err != nil {
		t.Fatal(err)
	}
	if s := rawSetting(t, db); s.Sealed != nil || string(s.Key) != string(clear.Key) {
		t.Fatalf("without a keyring: %+v", s)
	}
	// With one: the same key, now sealed, its sealing key a data key.
	k, err := loadKey(ctx, db, ring, now, log)
	if err != nil {
		t.Fatal(err)
	}
	if k.ID != clear.ID || string(k.Key) != string(clear.Key) {
		t.Fatal("sealing changed the key: tokens issued before would fail")
	}
	s := rawSetting(t, db)
	if s.Sealed == nil || len(s.Key) != 0 {
		t.Fatalf("with a keyring the setting is %+v, want it sealed", s)
	}
	var dk stowage.DataKey
	if err := db.View(ctx, func(tx stowage.Tx) (err error) { dk, err = tx.DataKeys().GetDataKey(s.Sealed.DataKey); return err }); err != nil || dk.Object != DataKeyObject {
		t.Fatalf("the sealing key's record: %+v %v", dk, err)
	}
	// Every later start opens the same key, and does not seal again.
	for i := 0; i < 2; i++ {
		if again, err := loadKey(ctx, db, ring, now, log); err != nil || string(again.Key) != string(k.Key) || again.ID != k.ID {
			t.Fatalf("start %d: %v, or another key", i, err)
		}
	}
	if s2 := rawSetting(t, db); s2.Sealed.DataKey != s.Sealed.DataKey {
		t.Fatal("a later start sealed the key again")
	}
	// A rotation rewraps the sealing key with the blobs' keys.
	if _, err := mgr.Rotate(ctx, crypt.RotateOptions{NewVersion: true}); err != nil {
		t.Fatal(err)
	}
	cur, _ := ring.Current(ctx)
	if err := db.View(ctx, func(tx stowage.Tx) (err error) { dk, err = tx.DataKeys().GetDataKey(s.Sealed.DataKey); return err }); err != nil || dk.Wrapped != cur {
		t.Fatalf("after a rotation the sealing key is wrapped by %v (%v), want %v", dk.Wrapped, err, cur)
	}
	if again, err := loadKey(ctx, db, ring, now, log); err != nil || string(again.Key) != string(k.Key) {
		t.Fatalf("after a rotation: %v, or another key", err)
	}
	// Without the keyring, or with another one, the node refuses to start.
	if _, err := loadKey(ctx, db, nil, now, log); err == nil || !strings.Contains(err.Error(), "sealed") {
		t.Errorf("a sealed key without a keyring: %v", err)
	}
	other, err := crypt.OpenFileKeyring(filepath.Join(t.TempDir(), "other.json"), true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := loadKey(ctx, db, other, now, log); err == nil {
		t.Error("a sealed key opened with another keyring")
	}
}

// TestSigningKeyFirstStartsTogether: nodes starting together on one empty
// database, or sealing one clear key together, end with one key and one
// sealing key between them.
func TestSigningKeyFirstStartsTogether(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	ring, err := crypt.OpenFileKeyring(filepath.Join(t.TempDir(), "keys.json"), true)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		clear bool // a clear key is there already
		keys  Keyring
	}{
		{"empty, no keyring", false, nil},
		{"empty, keyring", false, ring},
		{"clear key, keyring", true, ring},
	} {
		for _, backend := range []string{"sqlite", "postgres"} {
			t.Run(tc.name+"/"+backend, func(t *testing.T) {
				dbs := openNodes(t, backend, 4)
				if tc.clear {
					if _, err := loadKey(ctx, dbs[0], nil, now, log); err != nil {
						t.Fatal(err)
					}
				}
				keys := make([]signingKey, len(dbs))
				errs := make([]error, len(dbs))
				var wg sync.WaitGroup
				start := make(chan struct{})
				for i := range dbs {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						keys[i], errs[i] = loadKey(ctx, dbs[i], tc.keys, now, log)
					}()
				}
				close(start)
				wg.Wait()
				for i := range keys {
					if errs[i] != nil {
						t.Fatalf("node %d: %v", i, errs[i])
					}
					if keys[i].ID != keys[0].ID || string(keys[i].Key) != string(keys[0].Key) {
						t.Fatalf("node %d has key %s, node 0 %s", i, keys[i].ID, keys[0].ID)
					}
				}
				counts, err := dbs[0].(crypt.KeyStore).CountDataKeys(ctx)
				if err != nil {
					t.Fatal(err)
				}
				n := int64(0)
				for _, c := range counts {
					n += c.Count
				}
				if want := int64(map[bool]int{false: 0, true: 1}[tc.keys != nil]); n != want {
					t.Errorf("%d data keys recorded, want %d", n, want)
				}
			})
		}
	}
}

// openNodes opens one database for n nodes, each through its own
// connection: a SQLite file, or a PostgreSQL schema (skipped without the
// test server).
func openNodes(t *testing.T, backend string, n int) []stowage.DB {
	t.Helper()
	ctx := context.Background()
	var dbs []stowage.DB
	switch backend {
	case "sqlite":
		path := filepath.Join(t.TempDir(), "stowage.db")
		for range n {
			dbs = append(dbs, openKeyTestDB(t, path))
		}
	case "postgres":
		cs := pgtest.Schema(t, "stowage_auth_sealing")
		for range n {
			db, err := postgres.Open(ctx, cs, postgres.Options{MaxConns: 2})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			dbs = append(dbs, db)
		}
	}
	return dbs
}
