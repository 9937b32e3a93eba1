package stowage_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/storage/mem"
	"github.com/stowage/stowage/storage/mirror"
)

// TestScrub: scrub reads every blob back; a damaged or missing object is
// reported (lost, with one copy), and with a mirror the bad copy is
// rewritten from the good one.
func TestScrub(t *testing.T) {
	t.Run("one copy", func(t *testing.T) {
		e := newEnv(t, nil)
		cfg, l1, l2 := newBlob(100), newBlob(70_000), newBlob(5)
		e.image(t, "app", "v1", cfg, l1, l2)
		rep, err := e.reg.Scrub(e.ctx, stowage.ScrubOptions{})
		if err != nil || rep.Blobs != 4 || rep.OK != 4 || len(rep.Problems) != 0 {
			t.Fatalf("clean scrub: %+v, %v", rep, err)
		}
		bad := bytes.Clone(l1.data)
		bad[10] ^= 1
		e.store.Put(e.ctx, stowage.BlobKey(l1.d), bytes.NewReader(bad), -1)
		e.store.Delete(e.ctx, stowage.BlobKey(l2.d))
		var calls int64
		rep, err = e.reg.Scrub(e.ctx, stowage.ScrubOptions{Progress: func(done, total int64) { calls = done }})
		if err != nil || rep.Lost != 2 || rep.Corrupt != 1 || rep.Missing != 1 || rep.OK != 2 || calls != 4 {
			t.Fatalf("scrub of damaged storage: %+v, %v (progress %d)", rep, err, calls)
		}
		last, err := e.reg.LastScrub(e.ctx)
		if err != nil || last.Lost != 2 {
			t.Errorf("LastScrub: %+v, %v", last, err)
		}
	})
	t.Run("mirror", func(t *testing.T) {
		db, err := sqlite.Open(context.Background(), ":memory:")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		a, b := mem.New(), mem.New()
		m, err := mirror.New([]mirror.Copy{{Name: "east", Backend: a}, {Name: "west", Backend: b}}, mirror.Options{})
		if err != nil {
			t.Fatal(err)
		}
		e := &env{reg: stowage.NewRegistry(db, m, stowage.Options{}), ctx: context.Background()}
		cfg, l1 := newBlob(100), newBlob(70_000)
		e.image(t, "app", "v1", cfg, l1)
		bad := bytes.Clone(l1.data)
		bad[0] ^= 1
		a.Put(e.ctx, stowage.BlobKey(l1.d), bytes.NewReader(bad), -1)
		b.Delete(e.ctx, stowage.BlobKey(cfg.d))
		rep, err := e.reg.Scrub(e.ctx, stowage.ScrubOptions{})
		if err != nil || rep.Repaired != 2 || rep.Lost != 0 || rep.OK != 3 || rep.Copies != 6 {
			t.Fatalf("scrub of a mirror with one bad copy each: %+v, %v", rep, err)
		}
		rep, _ = e.reg.Scrub(e.ctx, stowage.ScrubOptions{})
		if rep.Repaired != 0 || len(rep.Problems) != 0 {
			t.Errorf("second scrub: %+v", rep)
		}
	})
}
