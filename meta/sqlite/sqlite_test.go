package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/meta/metatest"
	"github.com/stowage/stowage/meta/sqlite"
)

func TestConformanceMemory(t *testing.T) {
	metatest.Run(t, func(t *testing.T) stowage.DB {
		db, err := sqlite.Open(context.Background(), ":memory:")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	})
}

// TestConformanceFile runs the suite on a real file, where reads and writes
// use separate connection pools (WAL).
func TestConformanceFile(t *testing.T) {
	metatest.Run(t, func(t *testing.T) stowage.DB {
		db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "stowage.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	})
}

func TestReopenKeepsData(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "stowage.db")
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(ctx, func(tx stowage.Tx) error { return tx.CreateRepository("kept", stowage.BlobRecord{}.Created) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db, err = sqlite.Open(ctx, path) // migrations must not run twice
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.View(ctx, func(tx stowage.Tx) error {
		if _, err := tx.GetRepository("kept"); err != nil {
			t.Error("data lost across reopen")
		}
		return nil
	})
}
