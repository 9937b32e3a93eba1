package stowage_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stowage/stowage"
)

// pushReferrer pushes an artifact manifest whose subject is subject.
func (e *env) pushReferrer(t *testing.T, repo string, subject blob, artifactType string) blob {
	t.Helper()
	cfg := newBlob(2)
	e.push(t, repo, cfg)
	layer := newBlob(300)
	e.push(t, repo, layer)
	body := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"artifactType":%q,"config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":%q,"size":2},"layers":[{"mediaType":"application/octet-stream","digest":%q,"size":300}],"subject":{"mediaType":%q,"digest":%q,"size":%d}}`,
		stowage.MediaTypeOCIManifest, artifactType, cfg.d, layer.d, stowage.MediaTypeOCIManifest, subject.d, len(subject.data))
	d := stowage.Digest("sha256:" + sha([]byte(body)))
	if _, err := e.reg.PutManifest(e.ctx, repo, stowage.Reference{Digest: d}, stowage.MediaTypeOCIManifest, []byte(body), nil); err != nil {
		t.Fatal(err)
	}
	return blob{d, []byte(body)}
}

// TestDeleteCascades: deleting a subject deletes its referrers (unless
// configured to keep them); deleting an index deletes the children nothing
// else uses, and keeps a tagged child and a child another index uses.
func TestDeleteCascades(t *testing.T) {
	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprintf("keepReferrers=%v", keep), func(t *testing.T) {
			e := newEnv(t, nil)
			if keep {
				db := e.reg.DB()
				e.reg = stowage.NewRegistry(db, e.store, stowage.Options{Now: e.clock.Now, KeepReferrers: true})
			}
			img := e.image(t, "app", "v1", newBlob(10), newBlob(100))
			sig := e.pushReferrer(t, "app", img, "application/vnd.example.signature")
			sbom := e.pushReferrer(t, "app", img, "application/spdx+json")
			rep, err := e.reg.DeleteImage(e.ctx, "app", stowage.Reference{Tag: "v1"}, false)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range []blob{sig, sbom} {
				if got := e.hasManifest("app", r.d); got != keep {
					t.Errorf("referrer present after deleting its subject = %v, want %v", got, keep)
				}
			}
			if want := map[bool]int{false: 3, true: 1}[keep]; len(rep.Manifests) != want {
				t.Errorf("report lists %d manifests, want %d", len(rep.Manifests), want)
			}
		})
	}

	e := newEnv(t, nil)
	a := e.image(t, "multi", "amd64-only", newBlob(20), newBlob(200)) // tagged child: stays
	b := e.image(t, "multi", "tmp-b", newBlob(21), newBlob(201))
	c := e.image(t, "multi", "tmp-c", newBlob(22), newBlob(202))
	for _, tag := range []string{"tmp-b", "tmp-c"} {
		if _, err := e.reg.Untag(e.ctx, "multi", tag, false); err != nil {
			t.Fatal(err)
		}
	}
	index := func(children ...blob) []byte {
		s := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"manifests":[`, stowage.MediaTypeOCIIndex)
		for i, ch := range children {
			if i > 0 {
				s += ","
			}
			s += fmt.Sprintf(`{"mediaType":%q,"digest":%q,"size":%d}`, stowage.MediaTypeOCIManifest, ch.d, len(ch.data))
		}
		return []byte(s + "]}")
	}
	for tag, body := range map[string][]byte{"all": index(a, b, c), "other": index(c)} {
		if _, err := e.reg.PutManifest(e.ctx, "multi", stowage.Reference{Tag: tag}, stowage.MediaTypeOCIIndex, body, nil); err != nil {
			t.Fatal(err)
		}
	}
	dry, err := e.reg.DeleteImage(e.ctx, "multi", stowage.Reference{Tag: "all"}, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.DeleteImage(e.ctx, "multi", stowage.Reference{Tag: "all"}, false); err != nil {
		t.Fatal(err)
	}
	for d, want := range map[stowage.Digest]bool{a.d: true, b.d: false, c.d: true} {
		if got := e.hasManifest("multi", d); got != want {
			t.Errorf("child %s present = %v, want %v", d, got, want)
		}
	}
	gc, err := collect(e.ctx, e.reg, gcOptions{MinAge: zero()})
	if err != nil || gc.BytesFreed != dry.BytesFreed || dry.BytesFreed == 0 {
		t.Errorf("GC freed %d, the dry run predicted %d (%v)", gc.BytesFreed, dry.BytesFreed, err)
	}
}

// TestDeleteRepoLockedManifest: a repository delete asks for every
// manifest, so a delete-locked one refuses it (DENIED, naming it), even
// when a cascade reaches it first (an untagged index child, a referrer of
// an image listed before it); nothing is deleted, and the dry run says the
// same. A write lock does not stop deletes.
func TestDeleteRepoLockedManifest(t *testing.T) {
	cases := []struct {
		name   string
		lock   stowage.Locks
		denied bool
		// setup pushes the repository "app" and returns the manifest to lock.
		setup func(t *testing.T, e *env) blob
	}{
		{"delete-locked index child", stowage.LockDelete, true, func(t *testing.T, e *env) blob {
			child := e.untaggedImage(t, "app", newBlob(10), newBlob(100))
			e.clock.Advance(time.Second) // the index is listed first: its cascade reaches the child
			e.putIndex(t, "app", "t0", indexOf(nil, 0, child))
			return child
		}},
		{"delete-locked referrer", stowage.LockDelete, true, func(t *testing.T, e *env) blob {
			cfg, layer := newBlob(11), newBlob(101)
			subject := blob{data: manifestOf(cfg, layer)}
			subject.d = stowage.Digest("sha256:" + sha(subject.data))
			r := e.pushReferrer(t, "app", subject, "application/vnd.in-toto+json") // before its subject
			e.clock.Advance(time.Second)
			if img := e.image(t, "app", "v1", cfg, layer); img.d != subject.d {
				t.Fatalf("subject digest %s, image %s", subject.d, img.d)
			}
			return r
		}},
		{"write-locked index child", stowage.LockWrite, false, func(t *testing.T, e *env) blob {
			child := e.untaggedImage(t, "app", newBlob(10), newBlob(100))
			e.clock.Advance(time.Second)
			e.putIndex(t, "app", "t0", indexOf(nil, 0, child))
			return child
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, nil)
			locked := c.setup(t, e)
			if _, err := e.reg.SetLocks(e.ctx, "app", stowage.Reference{Digest: locked.d}, c.lock, 0); err != nil {
				t.Fatal(err)
			}
			rep, err := deleteBoth(t, "delete-repo", func(dry bool) (stowage.DeleteReport, error) {
				return e.reg.DeleteRepository(e.ctx, "app", dry)
			})
			if !c.denied {
				if err != nil || e.hasManifest("app", locked.d) {
					t.Errorf("delete-repo: %+v %v; want it deleted, the write-locked manifest too", rep, err)
				}
				return
			}
			wantError(t, "delete-repo with a delete-locked manifest", err, stowage.CodeDenied, string(locked.d))
			if !e.hasManifest("app", locked.d) {
				t.Error("the delete-locked manifest is gone")
			}
			if len(e.tags(t, "app")) == 0 {
				t.Error("the refused delete removed the tags")
			}
		})
	}
}
