package sqlite

import (
	"context"
	"path/filepath"
	"testing"
)

// TestSynchronousFull pins the durability of commits: on a database file,
// the writer connection runs with synchronous=FULL (2), so a commit returns
// only after the write-ahead log is on disk and an acknowledged write
// survives a power loss (NORMAL, 1, could lose the last commits).
func TestSynchronousFull(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "stowage.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, c := range []struct {
		pragma string
		want   string
	}{
		{"synchronous", "2"},
		{"journal_mode", "wal"},
	} {
		var got string
		if err := db.rw.QueryRowContext(ctx, "PRAGMA "+c.pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("PRAGMA %s on the writer = %s, want %s", c.pragma, got, c.want)
		}
	}
}
