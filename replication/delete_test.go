package replication_test

import (
	"testing"
	"time"

	"github.com/stowage/stowage"
)

// TestDeleteAndConcurrentTagMove: a manifest delete and concurrent moves of
// a tag it held resolve the same way in every region, whatever each region
// had heard of when the delete arrived (cases the convergence model found).
func TestDeleteAndConcurrentTagMove(t *testing.T) {
	t.Run("the delete took the tag; a region where it points elsewhere, older", func(t *testing.T) {
		east, west, north := newRegion(t, "east", 0), newRegion(t, "west", 0), newRegion(t, "north", 0)
		north.image(t, "app", "v1", "north") // north's own, oldest move
		time.Sleep(3 * time.Millisecond)
		west.image(t, "app", "v1", "west")
		wPush := west.changes(t, 0)
		east.apply(t, west, wPush)
		e0 := east.newest(t)
		time.Sleep(3 * time.Millisecond)
		dW := east.tag(t, "app", "v1")
		deleteImage(t, east, "app", dW) // takes v1 (-> west's) in east
		north.apply(t, east, east.changes(t, e0))
		// Everything else, everywhere.
		east.apply(t, north, north.changes(t, 0))
		west.apply(t, north, north.changes(t, 0))
		west.apply(t, east, east.changes(t, e0))
		north.apply(t, west, wPush)
		for _, rg := range []*region{east, west, north} {
			if got := rg.tag(t, "app", "v1"); got != "" {
				t.Errorf("%s: app:v1 = %s, want removed (the delete is the last change of it)", rg.name, got)
			}
		}
	})
	t.Run("the delete did not take the tag (moved there first); a region where it still points at the manifest", func(t *testing.T) {
		east, west, north := newRegion(t, "east", 0), newRegion(t, "west", 0), newRegion(t, "north", 0)
		d1, _ := west.image(t, "app", "v1", "one")
		push1 := west.changes(t, 0)
		east.apply(t, west, push1)
		north.apply(t, west, push1)
		w0, e0 := west.newest(t), east.newest(t)
		time.Sleep(3 * time.Millisecond)
		d2, _ := west.image(t, "app", "v1", "two")
		move := west.changes(t, w0)
		east.apply(t, west, move)
		time.Sleep(3 * time.Millisecond)
		deleteImage(t, east, "app", d1) // v1 is on d2 in east: not taken
		del := east.changes(t, e0)
		north.apply(t, east, del) // north: v1 still on d1, removed with it
		north.apply(t, west, move)
		west.apply(t, east, del)
		for _, rg := range []*region{east, west, north} {
			if got := rg.tag(t, "app", "v1"); got != d2 {
				t.Errorf("%s: app:v1 = %q, want the move %s (later than the push the delete removed)", rg.name, got, d2)
			}
		}
	})
}

func deleteImage(t *testing.T, rg *region, repo string, d stowage.Digest) {
	t.Helper()
	if _, err := rg.reg.DeleteImage(ctx, repo, stowage.Reference{Digest: d}, false); err != nil {
		t.Fatal(err)
	}
}

// TestRepositoryDeleteAfterWhatItRemoves: west's clock is a minute behind;
// it deletes a repository holding a push from north. The delete is later
// than what it removed (west had seen it), so east, receiving both, removes
// the push too.
func TestRepositoryDeleteAfterWhatItRemoves(t *testing.T) {
	east, west, north := newRegion(t, "east", 0), newRegion(t, "west", -time.Minute), newRegion(t, "north", 0)
	north.image(t, "app", "v1", "north")
	push := north.changes(t, 0)
	west.apply(t, north, push)
	w0 := west.newest(t)
	if _, err := west.reg.DeleteRepository(ctx, "app", false); err != nil {
		t.Fatal(err)
	}
	east.apply(t, north, push)
	east.apply(t, west, west.changes(t, w0))
	for _, rg := range []*region{east, west} {
		if got := rg.tag(t, "app", "v1"); got != "" {
			t.Errorf("%s: app:v1 = %s after the repository delete made after it, want gone", rg.name, got)
		}
	}
}

// TestRestoreKeepsItsLocks: a write-locked tag whose image is
// deleted into the recycle bin and restored, comes back locked (the bin
// keeps its locks), though the delete reset its lock registers.
func TestRestoreKeepsItsLocks(t *testing.T) {
	east := newRegion(t, "east", 0)
	bin := withBin(t, east, true)
	d, _ := east.image(t, "app", "v1", "x")
	if _, err := east.reg.SetLocks(ctx, "app", stowage.Reference{Tag: "v1"}, stowage.LockWrite, 0); err != nil {
		t.Fatal(err)
	}
	deleteImage(t, east, "app", d)
	es, err := bin.List(ctx, "app")
	if err != nil || len(es) != 1 {
		t.Fatalf("bin: %v, %v", es, err)
	}
	if _, err := bin.Restore(ctx, es[0].ID); err != nil {
		t.Fatal(err)
	}
	if l, err := east.reg.Locks(ctx, "app", stowage.Reference{Tag: "v1"}); err != nil || l != stowage.LockWrite {
		t.Errorf("app:v1 after the restore: locks %v, %v; want write-locked, as before the delete", l, err)
	}
}
