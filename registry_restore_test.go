package stowage_test

import (
	"bytes"
	"testing"

	"github.com/stowage/stowage"
)

// Restore counts what the repository would hold again against its quota,
// in the restoring transaction: after a repository delete (every link gone)
// the whole image, after an image delete (the layers still linked) only the
// manifest (the repository's other image stays in the recycle bin). At the
// quota it is DENIED, saying it is a restore; with room it
// succeeds and usage is back where it was.
func TestRestoreChecksQuota(t *testing.T) {
	cases := []struct {
		name     string
		del      func(e *env) error
		needsAll bool // all of the image, not just its manifest
	}{
		{"after a repository delete", func(e *env) error {
			_, err := e.reg.DeleteRepository(e.ctx, "app", false)
			return err
		}, true},
		{"after an image delete", func(e *env) error {
			_, err := e.reg.DeleteImage(e.ctx, "app", stowage.Reference{Tag: "v1"}, false)
			return err
		}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, nil)
			if err := e.bin().SetSoftDelete(e.ctx, stowage.SoftDeletePolicy{Enabled: true, Days: 7}); err != nil {
				t.Fatal(err)
			}
			config, layer := newBlob(30), newBlob(5000)
			img := e.image(t, "app", "v1", config, layer)
			e.image(t, "app", "keep", newBlob(20)) // something the repository still holds
			if err := e.reg.SetQuota(e.ctx, "app", 1<<30); err != nil {
				t.Fatal(err)
			}
			before := usedBy(t, e, "app")
			if err := c.del(e); err != nil {
				t.Fatal(err)
			}
			after := usedBy(t, e, "app")
			need := int64(len(img.data))
			if c.needsAll {
				need += int64(len(config.data) + len(layer.data))
			}
			bin, err := e.bin().List(e.ctx, "app")
			if err != nil {
				t.Fatal(err)
			}
			var id int64
			for _, b := range bin {
				if b.Manifest.Digest == img.d {
					id = b.ID
				}
			}
			if err := e.reg.SetQuota(e.ctx, "app", after+need-1); err != nil {
				t.Fatal(err)
			}
			_, err = e.bin().Restore(e.ctx, id)
			wantError(t, "restore past the quota", err, stowage.CodeDenied, "restore of app@"+string(img.d)+" refused", "quota of repository app")
			if e.hasManifest("app", img.d) {
				t.Fatal("the refused restore brought the manifest back")
			}
			if got := usedBy(t, e, "app"); got != after {
				t.Errorf("the refused restore changed usage: %d, want %d", got, after)
			}
			if err := e.reg.SetQuota(e.ctx, "app", after+need); err != nil {
				t.Fatal(err)
			}
			if _, err := e.bin().Restore(e.ctx, id); err != nil {
				t.Fatalf("restore with exactly enough room: %v", err)
			}
			e.pullable(t, "app", "v1", config, layer)
			got := usedBy(t, e, "app")
			if got != after+need {
				t.Errorf("usage after the restore: %d, want %d + %d", got, after, need)
			}
			if !c.needsAll && got != before {
				t.Errorf("usage after the restore: %d, want %d, as before the delete", got, before)
			}
		})
	}
}

// The registry's storage limit counts what the recycle bin keeps (it is
// still stored), so a restore adds nothing to it and succeeds at the limit.
func TestRestoreAtRegistryLimit(t *testing.T) {
	e := newEnv(t, nil)
	config, layer := newBlob(30), newBlob(5000)
	img := e.image(t, "app", "v1", config, layer)
	q, err := e.reg.Quotas(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	e.reg = stowage.NewRegistry(e.reg.DB(), e.store, stowage.Options{Now: e.clock.Now, StorageLimit: q.Registry.UsedBytes})
	if err := e.bin().SetSoftDelete(e.ctx, stowage.SoftDeletePolicy{Enabled: true, Days: 7}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.DeleteRepository(e.ctx, "app", false); err != nil {
		t.Fatal(err)
	}
	extra := newBlob(10)
	_, err = e.reg.PutBlob(e.ctx, "other", extra.d, bytes.NewReader(extra.data), 10)
	wantError(t, "a new blob at the limit", err, stowage.CodeDenied, "storage limit")
	bin, err := e.bin().List(e.ctx, "app")
	if err != nil || len(bin) != 1 || bin[0].Manifest.Digest != img.d {
		t.Fatalf("recycle bin: %+v %v", bin, err)
	}
	if _, err := e.bin().Restore(e.ctx, bin[0].ID); err != nil {
		t.Fatalf("restore at the registry's limit: %v", err)
	}
	e.pullable(t, "app", "v1", config, layer)
}

// A recycled manifest whose blob is no longer stored is not restored (it
// could not be pulled): MANIFEST_BLOB_UNKNOWN naming the blob.
func TestRestoreNeedsStoredBlobs(t *testing.T) {
	e := newEnv(t, nil)
	if err := e.bin().SetSoftDelete(e.ctx, stowage.SoftDeletePolicy{Enabled: true, Days: 7}); err != nil {
		t.Fatal(err)
	}
	config, layer := newBlob(30), newBlob(5000)
	img := e.image(t, "app", "v1", config, layer)
	if _, err := e.reg.DeleteImage(e.ctx, "app", stowage.Reference{Tag: "v1"}, false); err != nil {
		t.Fatal(err)
	}
	// What a broken store or a manual intervention could leave.
	if err := e.reg.DB().Update(e.ctx, func(tx stowage.Tx) error { return tx.Blobs().SetBlobState(layer.d, stowage.BlobDeleting) }); err != nil {
		t.Fatal(err)
	}
	bin, err := e.bin().List(e.ctx, "app")
	if err != nil || len(bin) != 1 {
		t.Fatalf("recycle bin: %+v %v", bin, err)
	}
	_, err = e.bin().Restore(e.ctx, bin[0].ID)
	wantError(t, "restore without its layer", err, stowage.CodeManifestBlobUnknown, string(layer.d), "app@"+string(img.d))
	if e.hasManifest("app", img.d) {
		t.Error("restored a manifest whose layer is gone")
	}
}

func usedBy(t *testing.T, e *env, repo string) int64 {
	t.Helper()
	q, err := e.reg.Quotas(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range q.Repositories {
		if r.Repository == repo {
			return r.UsedBytes
		}
	}
	t.Fatalf("no quota on %s", repo)
	return 0
}
