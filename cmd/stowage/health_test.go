package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/stowage/stowage"
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
