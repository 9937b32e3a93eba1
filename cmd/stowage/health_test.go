package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/config"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/storage/mem"
)

// hangingStore is a storage whose Stat hangs, ignoring its context, until
// released (a hung network file system), and counts the calls.
type hangingStore struct {
	stowage.Backend
	release chan struct{}
	calls   chan struct{}
}

func (h *hangingStore) Stat(ctx context.Context, key string) (stowage.ObjectInfo, error) {
	h.calls <- struct{}{}
	<-h.release
	return h.Backend.Stat(ctx, key)
}

// TestReadinessHungStorage: a storage that hangs makes /readyz answer 503
// within its timeout; probes while it still hangs answer at once without
// starting another check; once it answers, the registry is ready again.
func TestReadinessHungStorage(t *testing.T) {
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "stowage.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	store := &hangingStore{Backend: mem.New(), release: make(chan struct{}), calls: make(chan struct{}, 10)}
	rd := &readiness{db: db, store: store, log: slog.New(slog.NewTextHandler(io.Discard, nil)), timeout: time.Second}
	probe := func() (int, string) {
		rec := httptest.NewRecorder()
		start := time.Now()
		rd.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("probe took %v", d)
		}
		return rec.Code, rec.Body.String()
	}
	for i := range 3 {
		if code, body := probe(); code != http.StatusServiceUnavailable || body != `{"status":"not ready","failed":["storage"]}`+"\n" {
			t.Errorf("probe %d while the storage hangs: %d %s", i, code, body)
		}
	}
	if n := len(store.calls); n != 1 {
		t.Errorf("%d storage checks started while the first hung, want 1", n)
	}
	close(store.release)
	for i := 0; ; i++ { // the hung check returns, then probes run again
		code, _ := probe()
		if code == http.StatusOK {
			break
		}
		if i == 50 {
			t.Fatal("not ready after the storage answered")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReadinessMirror: with a mirror, one copy that fails leaves the
// registry ready (the other serves); when every copy fails, /readyz turns
// 503 once they count as down (three failures in a row).
func TestReadinessMirror(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := sqlite.Open(ctx, filepath.Join(dir, "stowage.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	yes := true
	east, west := filepath.Join(dir, "east"), filepath.Join(dir, "west")
	cfg := config.Storage{Mirror: &config.Mirror{Copies: []config.NamedStorage{
		{Name: "east", Storage: config.Storage{Filesystem: &config.Filesystem{Path: east, Fsync: &yes}}},
		{Name: "west", Storage: config.Storage{Filesystem: &config.Filesystem{Path: west, Fsync: &yes}}},
	}}}
	topo := &topology{}
	store, _, err := buildStorage(ctx, cfg, "storage", topo, storageEnv{log: slog.New(slog.DiscardHandler), db: db})
	if err != nil {
		t.Fatal(err)
	}
	rd := &readiness{db: db, store: store, topo: topo, log: slog.New(slog.DiscardHandler)}
	probe := func() int {
		rec := httptest.NewRecorder()
		rd.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		return rec.Code
	}
	// breakDir replaces a copy's directory by a file.
	breakDir := func(p string) {
		if err := os.RemoveAll(p); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if code := probe(); code != 200 {
		t.Fatalf("both copies up: %d", code)
	}
	breakDir(east)
	for i := range 5 {
		if code := probe(); code != 200 {
			t.Fatalf("probe %d with east failing, west up: %d, want 200", i, code)
		}
	}
	breakDir(west)
	codes := []int{}
	for range 4 {
		codes = append(codes, probe())
	}
	if codes[len(codes)-1] != http.StatusServiceUnavailable {
		t.Errorf("both copies failing: probes answered %v, want 503 by the last", codes)
	}
}
