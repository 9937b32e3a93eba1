package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/replication/replicationtest"
)

func TestReplicationClocks(t *testing.T) {
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "stowage.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	replicationtest.TestClockStore(t, db)
}
