package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/meta/metatest"
	"github.com/stowage/stowage/meta/sqlite"
)

func TestUISessions(t *testing.T) {
	metatest.RunUISessions(t, func(t *testing.T) stowage.DB {
		db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "stowage.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	})
}
