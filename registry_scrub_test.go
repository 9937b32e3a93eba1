package stowage_test

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/scrub"
	"github.com/stowage/stowage/storage/crypt"
	"github.com/stowage/stowage/storage/mem"
	"github.com/stowage/stowage/storage/mirror"
	"github.com/stowage/stowage/storage/shard"
)

// TestScrub: scrub reads every blob back; a damaged or missing object is
// reported (lost, with one copy), and with a mirror the bad copy is
// rewritten from the good one.
func TestScrub(t *testing.T) {
	t.Run("one copy", func(t *testing.T) {
		e := newEnv(t, nil)
		cfg, l1, l2 := newBlob(100), newBlob(70_000), newBlob(5)
		e.image(t, "app", "v1", cfg, l1, l2)
		rep, err := scrub.New(e.reg.Parts()).Run(e.ctx, scrub.Options{})
		if err != nil || rep.Blobs != 4 || rep.OK != 4 || len(rep.Problems) != 0 {
			t.Fatalf("clean scrub: %+v, %v", rep, err)
		}
		bad := bytes.Clone(l1.data)
		bad[10] ^= 1
		e.store.Put(e.ctx, stowage.BlobKey(l1.d), bytes.NewReader(bad), -1)
		e.store.Delete(e.ctx, stowage.BlobKey(l2.d))
		var calls int64
		rep, err = scrub.New(e.reg.Parts()).Run(e.ctx, scrub.Options{Progress: func(done, total int64) { calls = done }})
		if err != nil || rep.Lost != 2 || rep.Corrupt != 1 || rep.Missing != 1 || rep.OK != 2 || calls != 4 {
			t.Fatalf("scrub of damaged storage: %+v, %v (progress %d)", rep, err, calls)
		}
		last, err := scrub.New(e.reg.Parts()).Last(e.ctx)
		if err != nil || last.Lost != 2 {
			t.Errorf("Last: %+v, %v", last, err)
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
		rep, err := scrub.New(e.reg.Parts()).Run(e.ctx, scrub.Options{})
		if err != nil || rep.Repaired != 2 || rep.Lost != 0 || rep.OK != 3 || rep.Copies != 6 {
			t.Fatalf("scrub of a mirror with one bad copy each: %+v, %v", rep, err)
		}
		rep, _ = scrub.New(e.reg.Parts()).Run(e.ctx, scrub.Options{})
		if rep.Repaired != 0 || len(rep.Problems) != 0 {
			t.Errorf("second scrub: %+v", rep)
		}
	})
}

// outageKeys is a keyring whose provider can become unreachable.
type outageKeys struct {
	crypt.Keys
	off atomic.Bool
}

func (k *outageKeys) Unwrap(ctx context.Context, kv stowage.KeyVersion, wrapped []byte) ([]byte, error) {
	if k.off.Load() {
		return nil, fmt.Errorf("%w: KMS unreachable (test)", crypt.ErrKeyUnavailable)
	}
	return k.Keys.Unwrap(ctx, kv, wrapped)
}

// TestScrubKeyOutage: during a key outage, scrub reports intact blobs as
// unreadable (not checked), never corrupt or lost, with one copy or with
// encryption over a mirror.
func TestScrubKeyOutage(t *testing.T) {
	for _, kind := range []string{"one copy", "mirror", "shards"} {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			db, err := sqlite.Open(ctx, ":memory:")
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			fk, err := crypt.OpenFileKeyring(filepath.Join(t.TempDir(), "k.json"), true)
			if err != nil {
				t.Fatal(err)
			}
			keys := &outageKeys{Keys: fk}
			mgr := crypt.NewManager(db, keys)
			mgr.CacheTTL = -1
			var store stowage.Backend = mem.New()
			switch kind {
			case "mirror":
				store, err = mirror.New([]mirror.Copy{{Name: "east", Backend: mem.New()}, {Name: "west", Backend: mem.New()}}, mirror.Options{})
			case "shards":
				store, err = shard.New([]shard.Shard{{Name: "s1", Backend: mem.New()}, {Name: "s2", Backend: mem.New()}}, shard.Options{})
			}
			if err != nil {
				t.Fatal(err)
			}
			e := &env{reg: stowage.NewRegistry(db, crypt.New(store, mgr), stowage.Options{}), ctx: ctx}
			e.image(t, "app", "v1", newBlob(100), newBlob(70_000))
			keys.off.Store(true)
			rep, err := scrub.New(e.reg.Parts()).Run(ctx, scrub.Options{})
			if err != nil || rep.Unreadable != 3 || rep.Lost != 0 || rep.Corrupt != 0 || rep.Repaired != 0 {
				t.Errorf("scrub during a key outage: unreadable %d, lost %d, corrupt copies %d, repaired %d, %v; want 3 unreadable and nothing else",
					rep.Unreadable, rep.Lost, rep.Corrupt, rep.Repaired, err)
			}
			keys.off.Store(false)
			if rep, err = scrub.New(e.reg.Parts()).Run(ctx, scrub.Options{}); err != nil || rep.OK != 3 {
				t.Errorf("scrub with the key back: %+v, %v", rep, err)
			}
		})
	}
}
