package metatest

import (
	"slices"
	"testing"
	"time"

	"github.com/stowage/stowage"
)

// testCollectQueue: the collector's queue follows every write that can
// leave a blob unreferenced (a new blob row; a manifest, a reference or a
// recycle bin reference removed; a blob back from 'deleting'), a deleted
// blob row leaves it, Dequeue removes exactly the entries that need no
// collecting (re-checked), and QueuedBlobs pages it with each entry's row
// and whether anything references it.
func testCollectQueue(t *testing.T, db stowage.DB) {
	queue := func() []stowage.Digest {
		t.Helper()
		var out []stowage.Digest
		view(t, db, func(tx stowage.Tx) error {
			qs, err := tx.CollectQueue().QueuedBlobs("", 0)
			out = nil
			for _, q := range qs {
				out = append(out, q.Digest)
			}
			return err
		})
		return out
	}
	ds := func(is ...int) []stowage.Digest {
		var out []stowage.Digest
		for _, i := range is {
			out = append(out, dg(i))
		}
		return out
	}
	dequeue := func(is []stowage.Digest) (n int64) {
		t.Helper()
		update(t, db, func(tx stowage.Tx) (err error) {
			n, err = tx.CollectQueue().Dequeue(is)
			return err
		})
		return n
	}
	image := stowage.ManifestRecord{Repo: "r", Digest: dg(10), MediaType: stowage.MediaTypeOCIManifest, Size: 5, Created: now}
	refs := []stowage.ManifestRef{{Digest: dg(1), Kind: stowage.RefBlob}, {Digest: dg(2), Kind: stowage.RefBlob}}
	var binID int64
	for _, step := range []struct {
		name    string
		do      func(tx stowage.Tx) error
		dequeue []int // then Dequeue these
		removed int64 // how many Dequeue removes
		want    []int // the queue after
	}{
		{"new blob rows enter", func(tx stowage.Tx) error {
			for i, st := range map[int]stowage.BlobState{1: stowage.BlobLive, 2: stowage.BlobLive, 3: stowage.BlobLive, 4: stowage.BlobPending, 10: stowage.BlobLive} {
				if err := tx.Blobs().PutBlob(stowage.BlobRecord{Digest: dg(i), Size: int64(i), Created: now, State: st, LastUsed: now, UnreferencedSince: now}); err != nil {
					return err
				}
			}
			return nil
		}, nil, 0, []int{1, 2, 3, 4, 10}},
		{"a manifest and its references: dequeued, the rest stays", func(tx stowage.Tx) error {
			return tx.Manifests().PutManifest(image, refs)
		}, []int{1, 2, 3, 4, 10, 99}, 3, []int{3, 4}},
		{"a recycle bin reference keeps a blob", func(tx stowage.Tx) (err error) {
			binID, err = tx.Recycle().PutRecycled(stowage.RecycledManifest{
				Manifest: stowage.ManifestRecord{Repo: "r", Digest: dg(20), MediaType: stowage.MediaTypeOCIManifest, Size: 9, Created: now},
				Refs:     []stowage.ManifestRef{{Digest: dg(3), Kind: stowage.RefBlob}}, Deleted: now, Expires: now.Add(time.Hour)})
			return err
		}, []int{3, 4}, 1, []int{4}},
		{"the entry's end enqueues what it held", func(tx stowage.Tx) error {
			return tx.Recycle().DeleteRecycled(binID)
		}, nil, 0, []int{3, 4, 20}},
		{"a manifest deleted: itself and its references", func(tx stowage.Tx) error {
			return tx.Manifests().DeleteManifest("r", dg(10))
		}, nil, 0, []int{1, 2, 3, 4, 10, 20}},
		{"no blob row, or one being deleted: dequeued", func(tx stowage.Tx) error {
			return tx.Blobs().SetBlobState(dg(4), stowage.BlobDeleting)
		}, []int{4, 20}, 2, []int{1, 2, 3, 10}},
		{"back from deleting", func(tx stowage.Tx) error {
			return tx.Blobs().SetBlobState(dg(4), stowage.BlobLive)
		}, nil, 0, []int{1, 2, 3, 4, 10}},
		{"a deleted blob row leaves", func(tx stowage.Tx) error {
			return tx.Blobs().DeleteBlob(dg(1))
		}, nil, 0, []int{2, 3, 4, 10}},
		{"unreferenced entries stay through any number of dequeues", func(tx stowage.Tx) error { return nil },
			[]int{2, 3, 4, 10}, 0, []int{2, 3, 4, 10}},
		{"a repository deleted: its manifests and references", func(tx stowage.Tx) error {
			if err := tx.Repositories().CreateRepository("gone", now); err != nil {
				return err
			}
			m := image
			m.Repo = "gone"
			if err := tx.Manifests().PutManifest(m, refs[1:]); err != nil {
				return err
			}
			if _, err := tx.CollectQueue().Dequeue(ds(2, 10)); err != nil {
				return err
			}
			return tx.Repositories().DeleteRepository("gone")
		}, nil, 0, []int{2, 3, 4, 10}},
		{"enqueue: new entries only", func(tx stowage.Tx) error {
			return tx.CollectQueue().Enqueue(ds(3, 30, 31))
		}, nil, 0, []int{2, 3, 4, 10, 30, 31}},
	} {
		update(t, db, step.do)
		if step.dequeue != nil {
			if n := dequeue(ds(step.dequeue...)); n != step.removed {
				t.Errorf("%s: Dequeue(%v) removed %d, want %d", step.name, step.dequeue, n, step.removed)
			}
		}
		if got := queue(); !slices.Equal(got, ds(step.want...)) {
			t.Fatalf("%s: queue = %v, want %v", step.name, got, ds(step.want...))
		}
	}

	// Pages, entries' rows and references, the count.
	update(t, db, func(tx stowage.Tx) error { return tx.Manifests().PutManifest(image, refs) })
	view(t, db, func(tx stowage.Tx) error {
		n, err := tx.CollectQueue().CountQueued()
		if err != nil || n != 6 {
			t.Errorf("CountQueued = %d, %v; want 6", n, err)
		}
		var got []stowage.QueuedBlob
		for after := stowage.Digest(""); ; {
			page, err := tx.CollectQueue().QueuedBlobs(after, 4)
			if err != nil {
				return err
			}
			if len(page) > 4 {
				t.Errorf("QueuedBlobs(limit 4) returned %d", len(page))
			}
			if len(page) == 0 {
				break
			}
			got = append(got, page...)
			after = page[len(page)-1].Digest
		}
		want := map[stowage.Digest]stowage.QueuedBlob{
			dg(2):  {BlobRecord: stowage.BlobRecord{Digest: dg(2), Size: 2, State: stowage.BlobLive}, Referenced: true},
			dg(3):  {BlobRecord: stowage.BlobRecord{Digest: dg(3), Size: 3, State: stowage.BlobLive}},
			dg(4):  {BlobRecord: stowage.BlobRecord{Digest: dg(4), Size: 4, State: stowage.BlobLive}},
			dg(10): {BlobRecord: stowage.BlobRecord{Digest: dg(10), Size: 10, State: stowage.BlobLive}, Referenced: true},
			dg(30): {BlobRecord: stowage.BlobRecord{Digest: dg(30)}},
			dg(31): {BlobRecord: stowage.BlobRecord{Digest: dg(31)}},
		}
		if len(got) != len(want) {
			t.Errorf("QueuedBlobs pages: %d entries, want %d", len(got), len(want))
		}
		for _, q := range got {
			w := want[q.Digest]
			if q.Digest != w.Digest || q.Size != w.Size || q.State != w.State || q.Referenced != w.Referenced {
				t.Errorf("QueuedBlobs: %s = %+v, want %+v", q.Digest, q, w)
			}
			if w.State != "" && (!q.LastUsed.Equal(now) || !q.UnreferencedSince.Equal(now)) {
				t.Errorf("QueuedBlobs: %s times %v %v, want %v", q.Digest, q.LastUsed, q.UnreferencedSince, now)
			}
		}
		return nil
	})
}
