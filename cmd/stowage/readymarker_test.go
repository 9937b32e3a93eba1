package main

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/config"
	"github.com/stowage/stowage/meta/sqlite"
)

// TestReadinessMarker: /readyz answers 503 naming the storage when the
// storage root moved away or is an empty directory (a volume that is not
// mounted), for a plain file system and for one shard of a shard set; a
// registry that never wrote the marker (first start, an upgrade) writes it
// and is ready (review r2/i16 F2).
func TestReadinessMarker(t *testing.T) {
	yes := true
	fsAt := func(p string) config.Storage {
		return config.Storage{Filesystem: &config.Filesystem{Path: p, Fsync: &yes}}
	}
	cases := []struct {
		name  string
		cfg   func(dir string) config.Storage
		root  string // the directory that goes away (under dir)
		empty bool   // replaced by an empty directory, else moved away
	}{
		{"moved away", func(d string) config.Storage { return fsAt(filepath.Join(d, "storage")) }, "storage", false},
		{"empty mount point", func(d string) config.Storage { return fsAt(filepath.Join(d, "storage")) }, "storage", true},
	}
	for _, sh := range []string{"a", "b", "c"} { // each shard's volume alone
		cases = append(cases, struct {
			name  string
			cfg   func(dir string) config.Storage
			root  string
			empty bool
		}{"shard " + sh + " empty", func(d string) config.Storage {
			return config.Storage{Shard: &config.ShardSet{Shards: []config.NamedStorage{
				{Name: "a", Storage: fsAt(filepath.Join(d, "a"))},
				{Name: "b", Storage: fsAt(filepath.Join(d, "b"))},
				{Name: "c", Storage: fsAt(filepath.Join(d, "c"))},
			}}}
		}, sh, true})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			rd, _ := readinessOn(t, dir, tc.cfg(dir))
			probe := func() (int, string) {
				rec := httptest.NewRecorder()
				rd.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
				return rec.Code, rec.Body.String()
			}
			if code, body := probe(); code != http.StatusOK {
				t.Fatalf("first start: %d %s", code, body)
			}
			root := filepath.Join(dir, tc.root)
			if err := os.Rename(root, root+".away"); err != nil {
				t.Fatal(err)
			}
			if tc.empty {
				if err := os.Mkdir(root, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			for i := range 2 { // the probe does not write the marker back
				if code, body := probe(); code != http.StatusServiceUnavailable || body != `{"status":"not ready","failed":["storage"]}`+"\n" {
					t.Fatalf("probe %d with %s gone: %d %s", i, tc.root, code, body)
				}
			}
			os.Remove(root)
			if err := os.Rename(root+".away", root); err != nil {
				t.Fatal(err)
			}
			if code, body := probe(); code != http.StatusOK {
				t.Fatalf("storage back: %d %s", code, body)
			}
		})
	}
	t.Run("upgrade without a marker", func(t *testing.T) {
		ctx := context.Background()
		dir := t.TempDir()
		rd, store := readinessOn(t, dir, fsAt(filepath.Join(dir, "storage")))
		if failed := rd.check(ctx); len(failed) != 0 {
			t.Fatalf("a registry without a recorded marker: %v", failed)
		}
		if _, err := store.Stat(ctx, readyMarkerKey); err != nil {
			t.Fatalf("the marker was not written: %v", err)
		}
		var _ stowage.Backend = store
	})
}

// TestReadinessBackToBack: probes one right after another never find the
// previous probe's check "still running" (CI saw a 503 after the storage
// came back: the check was marked finished only after its answer was sent).
func TestReadinessBackToBack(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	yes := true
	rd, _ := readinessOn(t, dir, config.Storage{Filesystem: &config.Filesystem{Path: filepath.Join(dir, "storage"), Fsync: &yes}})
	for i := range 2000 {
		if failed := rd.check(ctx); len(failed) != 0 {
			t.Fatalf("probe %d: %v", i, failed)
		}
	}
}

// readinessOn opens a SQLite database in dir and the storage cfg makes,
// and returns the readiness probe over them.
func readinessOn(t *testing.T, dir string, cfg config.Storage) (*readiness, stowage.Backend) {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(dir, "stowage.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	topo := &topology{}
	store, _, err := buildStorage(ctx, cfg, "storage", topo, storageEnv{log: slog.New(slog.DiscardHandler), db: db})
	if err != nil {
		t.Fatal(err)
	}
	return &readiness{db: db, store: store, topo: topo, log: slog.New(slog.DiscardHandler)}, store
}
