package stowage_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/policy"
)

// TestLocksOnEveryPath checks each lock on each path that must honour it:
// the operation is refused with DENIED and a message naming the lock, and
// succeeds again once the lock is lifted.
func TestLocksOnEveryPath(t *testing.T) {
	e := newEnv(t, nil)
	layer := newBlob(500)
	m1 := e.image(t, "app", "v1", newBlob(10), layer)
	m2 := e.image(t, "app", "v2", newBlob(11), layer)
	other := newBlob(600)
	e.push(t, "src", other)
	tag := func(s string) stowage.Reference { return stowage.Reference{Tag: s} }
	dig := func(b blob) stowage.Reference { return stowage.Reference{Digest: b.d} }
	repo := stowage.Reference{}
	newConfig := newBlob(12)
	e.push(t, "app", newConfig)
	junk := newBlob(13)
	e.push(t, "app", junk)
	// Tags of their own for the cases that move or delete them.
	for _, tg := range []string{"w", "d"} {
		if _, err := e.reg.PutManifest(e.ctx, "app", stowage.Reference{Tag: tg}, stowage.MediaTypeOCIManifest, m1.data, nil); err != nil {
			t.Fatal(err)
		}
	}

	cases := []struct {
		name   string
		target stowage.Reference
		lock   stowage.Locks
		op     func() error
		msg    string
	}{
		{"push a blob to a write-locked repository", repo, stowage.LockWrite, func() error {
			b := newBlob(10)
			_, err := e.reg.PutBlob(e.ctx, "app", b.d, bytes.NewReader(b.data), 10)
			return err
		}, "repository app is write-locked"},
		{"start an upload in a write-locked repository", repo, stowage.LockWrite, func() error {
			_, err := e.reg.StartUpload(e.ctx, "app")
			return err
		}, "write-locked"},
		{"mount into a write-locked repository", repo, stowage.LockWrite, func() error {
			_, _, err := e.reg.MountBlob(e.ctx, "app", "src", other.d)
			return err
		}, "write-locked"},
		{"push a manifest to a write-locked repository", repo, stowage.LockWrite, func() error {
			_, err := e.reg.PutManifest(e.ctx, "app", tag("v3"), stowage.MediaTypeOCIManifest, manifestOf(newConfig, layer), nil)
			return err
		}, "write-locked"},
		{"overwrite a write-locked tag", tag("w"), stowage.LockWrite, func() error {
			_, err := e.reg.PutManifest(e.ctx, "app", tag("w"), stowage.MediaTypeOCIManifest, m2.data, nil)
			return err
		}, "tag app:w is write-locked"},
		{"untag a delete-locked tag", tag("v1"), stowage.LockDelete, func() error {
			_, err := e.reg.Untag(e.ctx, "app", "v1", true)
			return err
		}, "tag app:v1 is delete-locked"},
		{"delete the image of a delete-locked tag", tag("d"), stowage.LockDelete, func() error {
			_, err := e.reg.DeleteImage(e.ctx, "app", dig(m1), true)
			return err
		}, "tag app:d is delete-locked"},
		{"delete a delete-locked manifest", dig(m2), stowage.LockDelete, func() error {
			_, err := e.reg.DeleteImage(e.ctx, "app", tag("v2"), true)
			return err
		}, "delete-locked"},
		{"delete a repository holding a delete-locked manifest", dig(m2), stowage.LockDelete, func() error {
			_, err := e.reg.DeleteRepository(e.ctx, "app", true)
			return err
		}, "delete-locked"},
		{"delete from a delete-locked repository", repo, stowage.LockDelete, func() error {
			_, err := e.reg.DeleteImage(e.ctx, "app", tag("v1"), true)
			return err
		}, "repository app is delete-locked"},
		{"delete a blob from a delete-locked repository", repo, stowage.LockDelete, func() error {
			return e.reg.DeleteBlob(e.ctx, "app", junk.d)
		}, "delete-locked"},
		{"pull from a read-locked repository", repo, stowage.LockRead, func() error {
			_, _, err := e.reg.GetManifest(e.ctx, "app", tag("v1"))
			return err
		}, "repository app is read-locked"},
		{"pull a blob from a read-locked repository", repo, stowage.LockRead, func() error {
			_, err := e.reg.StatBlob(e.ctx, "app", layer.d)
			return err
		}, "read-locked"},
		{"pull a read-locked tag", tag("v1"), stowage.LockRead, func() error {
			_, _, err := e.reg.GetManifest(e.ctx, "app", tag("v1"))
			return err
		}, "tag app:v1 is read-locked"},
		{"pull a read-locked manifest by digest", dig(m1), stowage.LockRead, func() error {
			_, _, err := e.reg.GetManifest(e.ctx, "app", dig(m1))
			return err
		}, "read-locked"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := e.reg.SetLocks(e.ctx, "app", tc.target, tc.lock, 0); err != nil {
				t.Fatal(err)
			}
			err := tc.op()
			if stowage.ErrorCodeOf(err) != stowage.CodeDenied || !strings.Contains(err.Error(), tc.msg) || !strings.Contains(err.Error(), "stowage lock") {
				t.Errorf("locked: err = %v, want DENIED naming %q and how to unlock", err, tc.msg)
			}
			if _, err := e.reg.SetLocks(e.ctx, "app", tc.target, 0, tc.lock); err != nil {
				t.Fatal(err)
			}
			if err := tc.op(); err != nil {
				t.Errorf("after unlocking: %v", err)
			}
		})
	}

	// List locks hide, and do not deny.
	if _, err := e.reg.SetLocks(e.ctx, "app", tag("v2"), stowage.LockList, 0); err != nil {
		t.Fatal(err)
	}
	if tags := e.tags(t, "app"); strings.Contains(strings.Join(tags, ","), "v2") {
		t.Errorf("list-locked tag listed: %v", tags)
	}
	if _, _, err := e.reg.GetManifest(e.ctx, "app", tag("v2")); err != nil {
		t.Errorf("a list-locked tag must still be pullable: %v", err)
	}
	e.reg.SetLocks(e.ctx, "src", repo, stowage.LockList, 0)
	if names, _ := e.reg.Catalog(e.ctx, "", 0); strings.Contains(strings.Join(names, ","), "src") {
		t.Errorf("list-locked repository in the catalog: %v", names)
	}

	// Tag immutability by policy.
	if err := e.reg.SetImmutabilityRules(e.ctx, []string{"app:v[0-9]+"}); err != nil {
		t.Fatal(err)
	}
	if err := e.reg.SetImmutabilityRules(e.ctx, []string{"bad(:x"}); err == nil {
		t.Error("an invalid rule was accepted")
	}
	_, err := e.reg.PutManifest(e.ctx, "app", tag("v1"), stowage.MediaTypeOCIManifest, m2.data, nil)
	if stowage.ErrorCodeOf(err) != stowage.CodeDenied || !strings.Contains(err.Error(), "immutable") {
		t.Errorf("overwriting an immutable tag: %v, want DENIED", err)
	}
	if _, err := e.reg.PutManifest(e.ctx, "app", tag("v1"), stowage.MediaTypeOCIManifest, m1.data, nil); err != nil {
		t.Errorf("re-pushing the same manifest under an immutable tag: %v", err)
	}
	if _, err := e.reg.PutManifest(e.ctx, "app", tag("latest"), stowage.MediaTypeOCIManifest, m2.data, nil); err != nil {
		t.Errorf("a tag outside the rule: %v", err)
	}

	// Policies pass over locked items instead of failing.
	e.reg.SetLocks(e.ctx, "app", dig(m1), stowage.LockDelete, 0)
	f, _ := stowage.ParsePurgeFilter("app:.*")
	run, err := e.policies().Purge(e.ctx, policy.PurgeOptions{Filters: []stowage.PurgeFilter{f}, Untagged: true})
	if err != nil {
		t.Fatalf("purge with locked items: %v", err)
	}
	if !e.hasManifest("app", m1.d) {
		t.Error("purge deleted a delete-locked manifest")
	}
	t.Logf("purge with locks: %d tags, %d manifests", run.Tags, run.Manifests)
}
