package gc

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/meta/postgres"
	"github.com/stowage/stowage/meta/postgres/pgtest"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/storage/mem"
)

// hidingDB loses queue entries: its transactions' QueuedBlobs leave out
// the digests in hide (a queue that missed them, for the full pass to
// repair).
type hidingDB struct {
	stowage.DB
	hide map[stowage.Digest]bool
}

type hidingTx struct {
	stowage.Tx
	hide map[stowage.Digest]bool
}

type hidingQueue struct {
	stowage.CollectQueueTx
	hide map[stowage.Digest]bool
}

func (h *hidingDB) View(ctx context.Context, fn func(stowage.Tx) error) error {
	return h.DB.View(ctx, func(tx stowage.Tx) error { return fn(hidingTx{tx, h.hide}) })
}

func (h *hidingDB) Update(ctx context.Context, fn func(stowage.Tx) error) error {
	return h.DB.Update(ctx, func(tx stowage.Tx) error { return fn(hidingTx{tx, h.hide}) })
}

func (t hidingTx) CollectQueue() stowage.CollectQueueTx {
	return hidingQueue{t.Tx.CollectQueue(), t.hide}
}

func (q hidingQueue) QueuedBlobs(after stowage.Digest, limit int) ([]stowage.QueuedBlob, error) {
	page, err := q.CollectQueueTx.QueuedBlobs(after, limit)
	out := page[:0]
	for _, e := range page {
		if !q.hide[e.Digest] {
			out = append(out, e)
		}
	}
	return out, err
}

// TestCollectFromTheQueue: a collection without the full pass reads the
// queue only, so what it examines is what changed since the last one (the
// progress total is the queue's length: the new unreferenced blobs, not
// the registry's referenced ones), it collects everything the queue holds
// that is old enough, and the full pass collects what the queue lost.
func TestCollectFromTheQueue(t *testing.T) {
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			var db stowage.DB
			var err error
			if kind == "postgres" {
				db, err = postgres.Open(ctx, pgtest.Schema(t, "gcqueue"), postgres.Options{})
			} else {
				db, err = sqlite.Open(ctx, filepath.Join(t.TempDir(), "stowage.db"))
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			hdb := &hidingDB{DB: db, hide: map[stowage.Digest]bool{}}
			store := mem.New()
			reg := stowage.NewRegistry(hdb, store, stowage.Options{})
			old := time.Now().Add(-2 * time.Hour)
			blobs := func(from, to int) []stowage.Digest {
				var ds []stowage.Digest
				err := db.Update(ctx, func(tx stowage.Tx) error {
					ds = nil
					for i := from; i < to; i++ {
						body := []byte(fmt.Sprintf("blob %d", i))
						d := sha(body)
						ds = append(ds, d)
						if err := store.Put(ctx, stowage.BlobKey(d), bytes.NewReader(body), int64(len(body))); err != nil {
							return err
						}
						if err := tx.Blobs().PutBlob(stowage.BlobRecord{Digest: d, Size: int64(len(body)), Created: old,
							State: stowage.BlobLive, LastUsed: old, UnreferencedSince: old}); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				return ds
			}
			zero := time.Duration(0)
			collect := func(opts Options) (Report, int64) {
				t.Helper()
				opts.MinAge = &zero
				// The queue's length when the walk began is the total
				// progress reports (no other phase of these runs has one).
				var examined int64 = -1
				opts.Progress = func(phase string, done, total int64) {
					if phase == "blobs" {
						examined = max(examined, total)
					}
				}
				rep, err := New(reg).Collect(ctx, opts)
				if err != nil {
					t.Fatal(err)
				}
				return rep, examined
			}

			// A registry of 300 referenced blobs: the full pass collects
			// none and leaves the queue empty.
			kept := blobs(0, 300)
			refs := make([]stowage.ManifestRef, len(kept))
			for i, d := range kept {
				refs[i] = stowage.ManifestRef{Digest: d, Kind: stowage.RefBlob}
			}
			image := stowage.ManifestRecord{Repo: "r", Digest: sha([]byte("image")), MediaType: stowage.MediaTypeOCIManifest, Size: 5, Created: old}
			if err := db.Update(ctx, func(tx stowage.Tx) error {
				if err := tx.Repositories().CreateRepository("r", old); err != nil {
					return err
				}
				return tx.Manifests().PutManifest(image, refs)
			}); err != nil {
				t.Fatal(err)
			}
			if rep, _ := collect(Options{}); rep.BlobsDeleted != 0 || !rep.Swept {
				t.Fatalf("full pass over referenced blobs: %+v", rep)
			}

			// 40 unreferenced blobs: a run without the full pass examines
			// those 40 and collects them.
			blobs(1000, 1040)
			rep, examined := collect(Options{NoSweep: true})
			if examined != 40 || rep.BlobsDeleted != 40 || rep.Swept {
				t.Errorf("run without the full pass, 300 referenced and 40 unreferenced blobs: examined %d, collected %d (swept %v); want 40, 40",
					examined, rep.BlobsDeleted, rep.Swept)
			}
			// Nothing changed since: nothing to examine.
			if rep, examined := collect(Options{NoSweep: true}); examined != 0 || rep.BlobsDeleted != 0 {
				t.Errorf("run with nothing changed: examined %d, collected %d; want 0, 0", examined, rep.BlobsDeleted)
			}

			// The image deleted: its 300 blobs are queued; one the queue
			// lost is left by a run from the queue, and the full pass
			// collects it.
			if err := db.Update(ctx, func(tx stowage.Tx) error { return tx.Manifests().DeleteManifest("r", image.Digest) }); err != nil {
				t.Fatal(err)
			}
			hdb.hide[kept[7]] = true
			if rep, _ := collect(Options{NoSweep: true}); rep.BlobsDeleted != 299 {
				t.Errorf("after the image's delete, one entry lost: collected %d, want 299", rep.BlobsDeleted)
			}
			if rep, _ := collect(Options{}); rep.BlobsDeleted != 1 || len(rep.Digests) != 0 && rep.Digests[0] != kept[7] {
				t.Errorf("full pass after a lost entry: collected %d (%v), want 1 (%s)", rep.BlobsDeleted, rep.Digests, kept[7])
			}
			if _, err := store.Stat(ctx, stowage.BlobKey(kept[7])); !stowage.IsNotExist(err) {
				t.Errorf("the lost entry's object after the full pass: %v, want gone", err)
			}
		})
	}
}
