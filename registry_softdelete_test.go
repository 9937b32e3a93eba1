package stowage_test

import (
	"testing"
	"time"

	"github.com/stowage/stowage"
)

// TestSoftDelete: with soft delete on, a deleted image goes to the recycle
// bin: its space stays (GC frees nothing), it can be restored with its
// tags, and once it expires GC frees exactly what the delete would have.
func TestSoftDelete(t *testing.T) {
	e := newEnv(t, nil)
	shared := newBlob(4000)
	m1 := e.image(t, "app", "v1", newBlob(21), shared, newBlob(3000))
	e.image(t, "app", "v2", newBlob(22), shared)
	if err := e.bin().SetSoftDelete(e.ctx, stowage.SoftDeletePolicy{Enabled: true, Days: 0}); err == nil {
		t.Error("0 days accepted; want 1 to 90")
	}
	if err := e.bin().SetSoftDelete(e.ctx, stowage.SoftDeletePolicy{Enabled: true, Days: 7}); err != nil {
		t.Fatal(err)
	}
	// What a hard delete would free, measured with the policy off.
	e.bin().SetSoftDelete(e.ctx, stowage.SoftDeletePolicy{})
	hard, err := e.reg.DeleteImage(e.ctx, "app", stowage.Reference{Tag: "v1"}, true)
	if err != nil || hard.BytesFreed == 0 {
		t.Fatalf("hard dry run: %+v %v", hard, err)
	}
	e.bin().SetSoftDelete(e.ctx, stowage.SoftDeletePolicy{Enabled: true, Days: 7})

	rep, err := e.reg.DeleteImage(e.ctx, "app", stowage.Reference{Tag: "v1"}, false)
	if err != nil || rep.RecycledUntil == "" || rep.BytesFreed != 0 {
		t.Fatalf("soft delete: %+v %v; want it recycled, nothing freed yet", rep, err)
	}
	if e.hasManifest("app", m1.d) {
		t.Fatal("a soft-deleted manifest is still pullable")
	}
	gc, _ := collect(e.ctx, e.reg, gcOptions{MinAge: zero()})
	if gc.BytesFreed != 0 {
		t.Fatalf("GC freed %d bytes of a manifest in the recycle bin", gc.BytesFreed)
	}
	bin, err := e.bin().List(e.ctx, "app")
	if err != nil || len(bin) != 1 || bin[0].Manifest.Digest != m1.d || len(bin[0].Tags) != 1 {
		t.Fatalf("recycle bin: %+v %v", bin, err)
	}
	restored, err := e.bin().Restore(e.ctx, bin[0].ID)
	if err != nil || len(restored.Tags) != 1 || restored.Tags[0] != "v1" {
		t.Fatalf("restore: %+v %v", restored, err)
	}
	if _, body, err := e.reg.GetManifest(e.ctx, "app", stowage.Reference{Tag: "v1"}); err != nil || string(body) != string(m1.data) {
		t.Fatalf("after restore: %v", err)
	}
	if _, err := e.bin().Restore(e.ctx, bin[0].ID); stowage.ErrorCodeOf(err) != stowage.CodeManifestUnknown {
		t.Errorf("restoring twice: %v", err)
	}

	// Delete again and let it expire: GC then frees what a hard delete would.
	if _, err := e.reg.DeleteImage(e.ctx, "app", stowage.Reference{Tag: "v1"}, false); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(6 * 24 * time.Hour)
	if gc, _ := collect(e.ctx, e.reg, gcOptions{MinAge: zero()}); gc.BytesFreed != 0 {
		t.Errorf("GC freed %d bytes before the entry expired", gc.BytesFreed)
	}
	e.clock.Advance(2 * 24 * time.Hour)
	gc, err = collect(e.ctx, e.reg, gcOptions{MinAge: zero()})
	if err != nil || gc.BytesFreed != hard.BytesFreed {
		t.Errorf("after expiry GC freed %d bytes, a hard delete frees %d (%v)", gc.BytesFreed, hard.BytesFreed, err)
	}
	if bin, _ := e.bin().List(e.ctx, ""); len(bin) != 0 {
		t.Errorf("expired entries remain: %+v", bin)
	}
}

// TestRestoreKeepsLocks: a restore brings a manifest back with the locks
// it had, and its tags with theirs: a read-locked manifest is not served
// again after a delete and a restore. Both ways of deleting (the image, the
// repository) keep them.
func TestRestoreKeepsLocks(t *testing.T) {
	cases := []struct {
		name                string
		manifest, tag, tag2 stowage.Locks // locks before the delete (none may be delete)
		byRepo              bool
	}{
		{"read-locked manifest", stowage.LockRead, 0, 0, false},
		{"write- and list-locked manifest", stowage.LockWrite | stowage.LockList, 0, 0, false},
		{"locked tags", 0, stowage.LockWrite, stowage.LockRead | stowage.LockList, false},
		{"all, repository deleted", stowage.LockRead | stowage.LockWrite, stowage.LockWrite, stowage.LockList, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, nil)
			if err := e.bin().SetSoftDelete(e.ctx, stowage.SoftDeletePolicy{Enabled: true, Days: 7}); err != nil {
				t.Fatal(err)
			}
			img := e.image(t, "app", "v1", newBlob(30), newBlob(300))
			if _, err := e.reg.PutManifest(e.ctx, "app", stowage.Reference{Tag: "v2"}, stowage.MediaTypeOCIManifest, img.data, nil); err != nil {
				t.Fatal(err)
			}
			targets := []struct {
				ref   stowage.Reference
				locks stowage.Locks
			}{{stowage.Reference{Digest: img.d}, c.manifest}, {stowage.Reference{Tag: "v1"}, c.tag}, {stowage.Reference{Tag: "v2"}, c.tag2}}
			for _, tg := range targets {
				if _, err := e.reg.SetLocks(e.ctx, "app", tg.ref, tg.locks, 0); err != nil {
					t.Fatal(err)
				}
			}
			var err error
			if c.byRepo {
				_, err = e.reg.DeleteRepository(e.ctx, "app", false)
			} else {
				_, err = e.reg.DeleteImage(e.ctx, "app", stowage.Reference{Digest: img.d}, false)
			}
			if err != nil {
				t.Fatal(err)
			}
			bin, err := e.bin().List(e.ctx, "app")
			if err != nil || len(bin) != 1 {
				t.Fatalf("recycle bin: %+v %v", bin, err)
			}
			if rep, err := e.bin().Restore(e.ctx, bin[0].ID); err != nil || len(rep.Tags) != 2 {
				t.Fatalf("restore: %+v %v", rep, err)
			}
			for _, tg := range targets {
				if got, err := e.reg.Locks(e.ctx, "app", tg.ref); err != nil || got != tg.locks {
					t.Errorf("locks of %v after the restore: %v (%v), want %v", tg.ref, got, err, tg.locks)
				}
			}
			_, _, err = e.reg.GetManifest(e.ctx, "app", stowage.Reference{Digest: img.d})
			if c.manifest&stowage.LockRead != 0 {
				wantError(t, "pull of the restored read-locked manifest", err, stowage.CodeDenied, "read")
			} else if err != nil {
				t.Errorf("pull of the restored manifest: %v", err)
			}
		})
	}
}
