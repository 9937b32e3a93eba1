package replication_test

import (
	"context"
	"testing"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/recyclebin"
	"github.com/stowage/stowage/replication"
)

// withBin gives rg's applier its recycle bin (as stowage serve does), soft
// delete on or off, and returns the bin.
func withBin(t *testing.T, rg *region, soft bool) *recyclebin.Bin {
	t.Helper()
	bin := recyclebin.New(rg.reg)
	if soft {
		if err := bin.SetSoftDelete(ctx, stowage.SoftDeletePolicy{Enabled: true, Days: 7}); err != nil {
			t.Fatal(err)
		}
	}
	rg.app.Restore = func(ctx context.Context, repo string, d stowage.Digest) (bool, error) {
		es, err := bin.List(ctx, repo)
		if err != nil {
			return false, err
		}
		for _, e := range es {
			if e.Manifest.Digest == d {
				_, err := bin.Restore(ctx, e.ID)
				return err == nil, err
			}
		}
		return false, nil
	}
	return bin
}

// ship applies to each of dsts the changes src made after seq (blobs
// copied first, as the replicator does) and returns src's newest seq.
func ship(t *testing.T, src *region, after int64, dsts ...*region) (int64, []replication.Result) {
	t.Helper()
	var out []replication.Result
	for _, ch := range src.changes(t, after) {
		for _, dst := range dsts {
			if ch.Manifest != nil {
				copyBlobs(t, src, dst, ch.Repo, ch.Manifest)
			}
			res, err := dst.app.Apply(ctx, ch)
			if err != nil {
				t.Fatalf("apply %s %s@%s in %s: %v", ch.Kind, ch.Repo, ch.Digest, dst.name, err)
			}
			out = append(out, res)
		}
	}
	return src.newest(t), out
}

func binHas(t *testing.T, bin *recyclebin.Bin, repo string, d stowage.Digest) bool {
	t.Helper()
	es, err := bin.List(ctx, repo)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if e.Manifest.Digest == d {
			return true
		}
	}
	return false
}

func tagIs(t *testing.T, rg *region, repo, tag string) stowage.Digest {
	t.Helper()
	m, err := rg.reg.ResolveManifest(ctx, repo, stowage.Reference{Tag: tag})
	if err != nil {
		return ""
	}
	return m.Digest
}

// TestSoftDeleteAndRestoreReplicate: a delete in a region with soft delete
// on puts the image in the recycle bin of every region with soft delete on
// (and deletes it where it is off); a restore in one region restores it
// everywhere (from the bin, or as a push where the bin does not hold it);
// a restore older than a later delete does not bring the image back.
func TestSoftDeleteAndRestoreReplicate(t *testing.T) {
	east, west, north := newRegion(t, "east", 0), newRegion(t, "west", 0), newRegion(t, "north", 0)
	eb, wb, _ := withBin(t, east, true), withBin(t, west, true), withBin(t, north, false)
	d, _ := east.image(t, "app", "v1", "one")
	eSeq, _ := ship(t, east, 0, west, north)
	for _, rg := range []*region{west, north} {
		if got := tagIs(t, rg, "app", "v1"); got != d {
			t.Fatalf("%s: app:v1 = %q after the push, want %s", rg.name, got, d)
		}
	}

	// Deleted in east: in west's bin too; gone in north (soft delete off).
	if _, err := east.reg.DeleteImage(ctx, "app", stowage.Reference{Digest: d}, false); err != nil {
		t.Fatal(err)
	}
	eSeq, _ = ship(t, east, eSeq, west, north)
	if !binHas(t, eb, "app", d) || !binHas(t, wb, "app", d) {
		t.Fatalf("after the delete: in east's bin %v, west's %v; want both", binHas(t, eb, "app", d), binHas(t, wb, "app", d))
	}
	if tagIs(t, west, "app", "v1") != "" || tagIs(t, north, "app", "v1") != "" {
		t.Fatal("the deleted image still pulls in west or north")
	}

	// Restored in east: back everywhere, with its tag; out of west's bin.
	es, _ := eb.List(ctx, "app")
	if _, err := eb.Restore(ctx, es[0].ID); err != nil {
		t.Fatal(err)
	}
	restores := east.changes(t, eSeq) // kept for a late delivery
	_, res := ship(t, east, eSeq, west, north)
	for i, r := range res {
		if !r.Applied {
			t.Errorf("restore shipped (%d): %+v, want applied", i, r)
		}
	}
	for _, rg := range []*region{west, north} {
		if got := tagIs(t, rg, "app", "v1"); got != d {
			t.Errorf("%s: app:v1 = %q after the restore in east, want %s", rg.name, got, d)
		}
	}
	if binHas(t, wb, "app", d) {
		t.Error("west's bin still holds the image restored in east")
	}

	// Deleted later in west: a late (or repeated) delivery of east's
	// restore does not bring it back anywhere.
	wSeq := west.newest(t)
	if _, err := west.reg.DeleteImage(ctx, "app", stowage.Reference{Digest: d}, false); err != nil {
		t.Fatal(err)
	}
	ship(t, west, wSeq, east, north)
	for _, ch := range restores { // the restore again
		for _, rg := range []*region{west, north} {
			r, err := rg.app.Apply(ctx, ch)
			if err != nil || r.Applied {
				t.Errorf("%s: a restore older than a later delete: %+v, %v; want not applied", rg.name, r, err)
			}
		}
	}
	for _, rg := range []*region{east, west, north} {
		if got := tagIs(t, rg, "app", "v1"); got != "" {
			t.Errorf("%s: app:v1 = %s after the later delete, want gone", rg.name, got)
		}
	}
}
