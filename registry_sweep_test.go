package stowage_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/gc"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/storage/mem"
)

// pausingBackend stops the first List or Delete call on key (as told) until
// release is closed, after telling paused: the test then acts in the window
// the pause opens.
type pausingBackend struct {
	stowage.Backend
	key     string
	inList  bool // pause List after reporting key, else Delete of key
	once    sync.Once
	paused  chan struct{}
	release chan struct{}
}

func (p *pausingBackend) pause() {
	p.once.Do(func() {
		close(p.paused)
		<-p.release
	})
}

func (p *pausingBackend) Delete(ctx context.Context, key string) error {
	if !p.inList && key == p.key {
		p.pause()
	}
	return p.Backend.Delete(ctx, key)
}

func (p *pausingBackend) List(ctx context.Context, prefix string, fn func(stowage.ObjectInfo) error) error {
	return p.Backend.List(ctx, prefix, func(oi stowage.ObjectInfo) error {
		err := fn(oi)
		if p.inList && oi.Key == p.key {
			p.pause()
		}
		return err
	})
}

// TestOrphanSweepFence: the orphan sweep (objects no row describes, left by
// a crash between writing an object and recording it) goes through the same
// fence as the collector. A push of the orphan's digest while the sweep is
// between its check and its delete must either wait for the sweep and then
// store its object, or be refused; it must never be acknowledged and then
// lose its object.
func TestOrphanSweepFence(t *testing.T) {
	for _, tc := range []struct {
		name   string
		inList bool
	}{
		{"push while the sweep deletes the orphan", false},
		{"push after the sweep listed the orphan", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			db, err := sqlite.Open(ctx, ":memory:")
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			b := newBlob(3000)
			key := stowage.BlobKey(b.d)
			store := &pausingBackend{Backend: mem.New(), key: key, inList: tc.inList,
				paused: make(chan struct{}), release: make(chan struct{})}
			// The orphan: the object of a push a crash interrupted before
			// it was recorded. mem stamps objects with the real time, so
			// the registry's clock runs 3h ahead to make it old enough.
			if err := store.Backend.Put(ctx, key, bytes.NewReader(b.data), int64(len(b.data))); err != nil {
				t.Fatal(err)
			}
			reg := stowage.NewRegistry(db, store, stowage.Options{Now: func() time.Time { return time.Now().Add(3 * time.Hour) }})

			gcDone := make(chan error, 1)
			var rep gc.Report
			go func() {
				var err error
				rep, err = collect(ctx, reg, gcOptions{})
				gcDone <- err
			}()
			select {
			case <-store.paused:
			case err := <-gcDone:
				t.Fatalf("the collection ended (%v, %+v) without reaching the orphan", err, rep)
			}

			// The push, in the window. A push the fence holds back waits
			// for the sweep; give it a bounded time, then let the sweep go.
			pctx, cancel := context.WithTimeout(ctx, time.Second)
			_, pushErr := reg.PutBlob(pctx, "app", b.d, bytes.NewReader(b.data), int64(len(b.data)))
			cancel()
			close(store.release)
			if err := <-gcDone; err != nil {
				t.Fatal(err)
			}

			if pushErr == nil {
				// Acknowledged: it must be there, whole.
				r, _, err := reg.OpenBlob(ctx, "app", b.d, 0)
				if err != nil {
					t.Fatalf("push acknowledged during the orphan sweep, then its blob is gone: %v (sweep report %+v)", err, rep)
				}
				got, err := io.ReadAll(r)
				r.Close()
				if err != nil || !bytes.Equal(got, b.data) {
					t.Fatalf("push acknowledged during the orphan sweep, then its blob reads %d bytes, %v", len(got), err)
				}
				return
			}
			if !errors.Is(pushErr, context.DeadlineExceeded) {
				t.Fatalf("push during the sweep: %v, want success or a wait for the sweep", pushErr)
			}
			// Held back by the fence: once the sweep is done, the push goes through.
			if rep.OrphansDeleted != 1 {
				t.Errorf("orphans deleted = %d, want 1", rep.OrphansDeleted)
			}
			e := &env{reg: reg, ctx: ctx}
			e.push(t, "app", b)
			if _, _, err := reg.OpenBlob(ctx, "app", b.d, 0); err != nil {
				t.Fatalf("push after the sweep: %v", err)
			}
		})
	}
}
