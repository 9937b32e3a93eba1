package metatest

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stowage/stowage"
)

// testExistingBlobs: the orphan sweep's page check finds exactly the
// digests that have a row, in every state, and nothing else, for an empty
// page, a page of one and a page bigger than one statement's usual
// parameter count.
func testExistingBlobs(t *testing.T, db stowage.DB) {
	states := []stowage.BlobState{stowage.BlobLive, stowage.BlobPending, stowage.BlobDeleting}
	update(t, db, func(tx stowage.Tx) error {
		for i := 1; i <= 30; i++ {
			if i%2 == 0 {
				continue
			}
			b := stowage.BlobRecord{Digest: dg(i), Size: int64(i), Created: now, State: states[i%3], LastUsed: now, UnreferencedSince: now}
			if err := tx.Blobs().PutBlob(b); err != nil {
				return err
			}
		}
		return nil
	})
	big := make([]stowage.Digest, 0, 5000)
	for i := 1; i <= 5000; i++ {
		big = append(big, dg(i))
	}
	var odd []stowage.Digest
	for i := 1; i <= 30; i += 2 {
		odd = append(odd, dg(i))
	}
	for _, tc := range []struct {
		name string
		in   []stowage.Digest
		want []stowage.Digest
	}{
		{"empty", nil, nil},
		{"one present", []stowage.Digest{dg(3)}, []stowage.Digest{dg(3)}},
		{"one absent", []stowage.Digest{dg(4)}, nil},
		{"not a digest any row has", []stowage.Digest{"sha256:zz", ""}, nil},
		{"mixed, out of order, repeated", []stowage.Digest{dg(9), dg(2), dg(1), dg(9), dg(30)}, []stowage.Digest{dg(1), dg(9)}},
		{"5000", big, odd},
	} {
		t.Run(tc.name, func(t *testing.T) {
			view(t, db, func(tx stowage.Tx) error {
				got, err := tx.Blobs().ExistingBlobs(tc.in)
				if err != nil {
					return err
				}
				slices.Sort(got)
				got = slices.Compact(got)
				if !slices.Equal(got, tc.want) {
					t.Errorf("ExistingBlobs = %v, want %v", got, tc.want)
				}
				return nil
			})
		})
	}
}

// testMarkCollectable: the collector's batch fence marks 'deleting'
// exactly the digests of the batch CollectableBlobs would return (and not
// the others of the table), returns them, and leaves the rest alone;
// DeleteBlobRows then removes their rows and links.
func testMarkCollectable(t *testing.T, db stowage.DB) {
	old, mid := now.Add(-3*time.Hour), now.Add(-90*time.Minute)
	update(t, db, func(tx stowage.Tx) error {
		for i, b := range []stowage.BlobRecord{
			{Digest: dg(1), Size: 10, State: stowage.BlobLive, LastUsed: old, UnreferencedSince: old},     // referenced by m
			{Digest: dg(2), Size: 20, State: stowage.BlobLive, LastUsed: old, UnreferencedSince: old},     // garbage
			{Digest: dg(3), Size: 30, State: stowage.BlobLive, LastUsed: now, UnreferencedSince: old},     // leased
			{Digest: dg(4), Size: 40, State: stowage.BlobPending, LastUsed: old, UnreferencedSince: old},  // stale pending: garbage
			{Digest: dg(5), Size: 50, State: stowage.BlobDeleting, LastUsed: old, UnreferencedSince: old}, // already being deleted
			{Digest: dg(6), Size: 60, State: stowage.BlobLive, LastUsed: old, UnreferencedSince: mid},     // in grace for a 2h cutoff
			{Digest: dg(7), Size: 70, State: stowage.BlobLive, LastUsed: old, UnreferencedSince: old},     // held by the recycle bin
			{Digest: dg(8), Size: 80, State: stowage.BlobLive, LastUsed: old, UnreferencedSince: old},     // garbage, not in the batch
			{Digest: dg(9), Size: 90, State: stowage.BlobLive, LastUsed: old, UnreferencedSince: old},     // a recycled manifest
			{Digest: dg(10), Size: 5, State: stowage.BlobLive, LastUsed: old, UnreferencedSince: old},     // the manifest itself
		} {
			b.Created = old
			if err := tx.Blobs().PutBlob(b); err != nil {
				return fmt.Errorf("blob %d: %w", i, err)
			}
		}
		for _, d := range []stowage.Digest{dg(2), dg(4)} {
			if err := tx.Blobs().LinkBlob("r", d, old); err != nil {
				return err
			}
		}
		if _, err := tx.Recycle().PutRecycled(stowage.RecycledManifest{
			Manifest: stowage.ManifestRecord{Repo: "r", Digest: dg(9), MediaType: stowage.MediaTypeOCIManifest, Size: 90, Created: old},
			Refs:     []stowage.ManifestRef{{Digest: dg(7), Kind: stowage.RefBlob}}, Deleted: now, Expires: now.Add(time.Hour)}); err != nil {
			return err
		}
		return tx.Manifests().PutManifest(stowage.ManifestRecord{Repo: "r", Digest: dg(10), MediaType: stowage.MediaTypeOCIManifest, Size: 5, Created: now},
			[]stowage.ManifestRef{{Digest: dg(1), Kind: stowage.RefBlob}})
	})
	batch := []stowage.Digest{dg(10), dg(9), dg(7), dg(6), dg(5), dg(4), dg(3), dg(2), dg(1), dg(11)} // dg(11): no row
	var marked []stowage.Digest
	update(t, db, func(tx stowage.Tx) error {
		got, err := tx.Blobs().MarkCollectable(batch, now.Add(-2*time.Hour), now.Add(-time.Hour))
		if err != nil {
			return err
		}
		marked = nil
		for _, b := range got {
			if b.Size == 0 {
				t.Errorf("MarkCollectable returned %+v without its size", b)
			}
			marked = append(marked, b.Digest)
		}
		slices.Sort(marked)
		none, err := tx.Blobs().MarkCollectable(nil, now, now)
		if err != nil || len(none) != 0 {
			t.Errorf("MarkCollectable(nil) = %v, %v", none, err)
		}
		return nil
	})
	if want := []stowage.Digest{dg(2), dg(4)}; !slices.Equal(marked, want) {
		t.Errorf("MarkCollectable = %v, want %v", marked, want)
	}
	view(t, db, func(tx stowage.Tx) error {
		want := map[int]stowage.BlobState{1: stowage.BlobLive, 2: stowage.BlobDeleting, 3: stowage.BlobLive, 4: stowage.BlobDeleting,
			5: stowage.BlobDeleting, 6: stowage.BlobLive, 7: stowage.BlobLive, 8: stowage.BlobLive, 9: stowage.BlobLive, 10: stowage.BlobLive}
		for i, st := range want {
			b, err := tx.Blobs().GetBlob(dg(i))
			if err != nil || b.State != st {
				t.Errorf("blob %d after MarkCollectable: %+v, %v; want state %s", i, b, err, st)
			}
		}
		return nil
	})
	update(t, db, func(tx stowage.Tx) error {
		if err := tx.Blobs().DeleteBlobRows(nil); err != nil {
			return err
		}
		return tx.Blobs().DeleteBlobRows([]stowage.Digest{dg(2), dg(4), dg(11)})
	})
	view(t, db, func(tx stowage.Tx) error {
		got, err := tx.Blobs().ExistingBlobs([]stowage.Digest{dg(1), dg(2), dg(3), dg(4), dg(5)})
		if err != nil {
			return err
		}
		slices.Sort(got)
		if want := []stowage.Digest{dg(1), dg(3), dg(5)}; !slices.Equal(got, want) {
			t.Errorf("after DeleteBlobRows: rows %v, want %v", got, want)
		}
		return nil
	})
	// The links went with the rows: the same digests pushed again are not
	// in "r" until linked again.
	update(t, db, func(tx stowage.Tx) error {
		for _, d := range []stowage.Digest{dg(2), dg(4)} {
			if err := tx.Blobs().PutBlob(stowage.BlobRecord{Digest: d, Size: 1, Created: now, State: stowage.BlobLive, LastUsed: now, UnreferencedSince: now}); err != nil {
				return err
			}
			if _, err := tx.Blobs().RepositoryBlob("r", d); !errors.Is(err, stowage.ErrNotFound) {
				t.Errorf("link of %s after DeleteBlobRows: %v", d, err)
			}
		}
		return nil
	})
}

// testRecycleOnlyBlobs: the blobs only recycle bin entries hold are those
// the bin references that have a row and that no manifest is or
// references, each with its last entry's expiry, in digest order, paged.
func testRecycleOnlyBlobs(t *testing.T, db stowage.DB) {
	h1, h2 := now.Add(time.Hour), now.Add(2*time.Hour)
	update(t, db, func(tx stowage.Tx) error {
		// dg(4) and dg(21) have no row.
		for _, i := range []int{1, 2, 3, 5, 10, 20} {
			if err := tx.Blobs().PutBlob(stowage.BlobRecord{Digest: dg(i), Size: int64(10 * i), Created: now, State: stowage.BlobLive, LastUsed: now, UnreferencedSince: now}); err != nil {
				return err
			}
		}
		mt := stowage.MediaTypeOCIManifest
		if err := tx.Manifests().PutManifest(stowage.ManifestRecord{Repo: "r", Digest: dg(10), MediaType: mt, Size: 100, Created: now},
			[]stowage.ManifestRef{{Digest: dg(1), Kind: stowage.RefBlob}}); err != nil {
			return err
		}
		if err := tx.Manifests().PutManifest(stowage.ManifestRecord{Repo: "s", Digest: dg(5), MediaType: mt, Size: 50, Created: now}, nil); err != nil {
			return err
		}
		refs := func(is ...int) (out []stowage.ManifestRef) {
			for _, i := range is {
				out = append(out, stowage.ManifestRef{Digest: dg(i), Kind: stowage.RefBlob})
			}
			return out
		}
		if _, err := tx.Recycle().PutRecycled(stowage.RecycledManifest{Manifest: stowage.ManifestRecord{Repo: "r", Digest: dg(20), MediaType: mt, Size: 200, Created: now},
			Refs: refs(1, 2, 3), Deleted: now, Expires: h1}); err != nil {
			return err
		}
		_, err := tx.Recycle().PutRecycled(stowage.RecycledManifest{Manifest: stowage.ManifestRecord{Repo: "q", Digest: dg(21), MediaType: mt, Size: 210, Created: now},
			Refs: refs(3, 4, 5), Deleted: now, Expires: h2})
		return err
	})
	want := []stowage.RecycleHeld{{Digest: dg(2), Size: 20, Expires: h1}, {Digest: dg(3), Size: 30, Expires: h2}, {Digest: dg(20), Size: 200, Expires: h1}}
	same := func(got, want []stowage.RecycleHeld) bool {
		return slices.EqualFunc(got, want, func(a, b stowage.RecycleHeld) bool {
			return a.Digest == b.Digest && a.Size == b.Size && a.Expires.Equal(b.Expires)
		})
	}
	view(t, db, func(tx stowage.Tx) error {
		n, err := tx.Recycle().CountRecycled()
		if err != nil || n != 2 {
			t.Errorf("CountRecycled = %d, %v; want 2", n, err)
		}
		got, err := tx.Recycle().RecycleOnlyBlobs("", 0)
		if err != nil {
			return err
		}
		if !same(got, want) {
			t.Errorf("RecycleOnlyBlobs = %+v, want %+v", got, want)
		}
		got, err = tx.Recycle().RecycleOnlyBlobs(dg(2), 1)
		if err != nil {
			return err
		}
		if !same(got, want[1:2]) {
			t.Errorf("RecycleOnlyBlobs after dg(2), limit 1 = %+v, want %+v", got, want[1:2])
		}
		return nil
	})
}
