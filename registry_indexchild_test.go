package stowage_test

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/stowage/stowage"
)

// indexOf returns an OCI index listing children, with subject if not nil
// and an annotation n (to vary the digest).
func indexOf(subject *blob, n int, children ...blob) []byte {
	var cs []string
	for _, c := range children {
		cs = append(cs, fmt.Sprintf(`{"mediaType":%q,"digest":%q,"size":%d}`, stowage.MediaTypeOCIManifest, c.d, len(c.data)))
	}
	s := ""
	if subject != nil {
		s = fmt.Sprintf(`,"subject":{"mediaType":%q,"digest":%q,"size":%d}`, stowage.MediaTypeOCIManifest, subject.d, len(subject.data))
	}
	return []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"manifests":[%s],"annotations":{"n":"%d"}%s}`,
		stowage.MediaTypeOCIIndex, strings.Join(cs, ","), n, s))
}

func (e *env) putIndex(t *testing.T, repo, tag string, body []byte) blob {
	t.Helper()
	ref := stowage.Reference{Tag: tag}
	if tag == "" {
		ref = stowage.Reference{Digest: stowage.Digest("sha256:" + sha(body))}
	}
	res, err := e.reg.PutManifest(e.ctx, repo, ref, stowage.MediaTypeOCIIndex, body, nil)
	if err != nil {
		t.Fatalf("push index %s:%s: %v", repo, tag, err)
	}
	return blob{res.Digest, body}
}

// untaggedImage pushes an image and removes its tag: a platform manifest
// as buildx pushes it, reachable only through its index.
func (e *env) untaggedImage(t *testing.T, repo string, config blob, layers ...blob) blob {
	t.Helper()
	img := e.image(t, repo, "tmp", config, layers...)
	if _, err := e.reg.Untag(e.ctx, repo, "tmp", false); err != nil {
		t.Fatal(err)
	}
	return img
}

// deleteBoth runs a delete as a dry run, then for real, and fails unless
// both give the same report and the same error.
func deleteBoth(t *testing.T, what string, del func(dryRun bool) (stowage.DeleteReport, error)) (stowage.DeleteReport, error) {
	t.Helper()
	dry, dryErr := del(true)
	rep, err := del(false)
	if fmt.Sprint(dryErr) != fmt.Sprint(err) {
		t.Errorf("%s: dry run error %v, real run error %v", what, dryErr, err)
	}
	dry.DryRun = false
	if err == nil && !reflect.DeepEqual(dry, rep) {
		t.Errorf("%s: dry run reported %+v, the real run %+v", what, dry, rep)
	}
	return rep, err
}

// A platform manifest an index of the repository lists cannot be deleted
// by itself (the index would no longer pull): DENIED, naming the index. A
// cascade that reaches it (it is also a referrer of a deleted image) passes
// it over; deleting the index, or the whole repository, takes it. Another
// repository holding the same manifest is independent. Dry runs agree.
func TestDeleteIndexChild(t *testing.T) {
	e := newEnv(t, nil)
	l1, l2 := newBlob(1000), newBlob(2000)
	cfg := newBlob(30)
	amd := e.untaggedImage(t, "multi", cfg, l1)
	arm := e.untaggedImage(t, "multi", newBlob(31), l2)
	idx := e.putIndex(t, "multi", "v1", indexOf(nil, 0, amd, arm))
	if same := e.image(t, "single", "amd", cfg, l1); same.d != amd.d { // the same manifest, no index
		t.Fatalf("the same image has digest %s in single, %s in multi", same.d, amd.d)
	}

	for _, ref := range []stowage.Reference{{Digest: amd.d}, {Digest: arm.d}} {
		_, err := deleteBoth(t, "delete a child", func(dry bool) (stowage.DeleteReport, error) {
			return e.reg.DeleteImage(e.ctx, "multi", ref, dry)
		})
		wantError(t, "delete "+ref.String(), err, stowage.CodeDenied, string(ref.Digest), "index multi@"+string(idx.d), "delete that index first")
		err = e.reg.DeleteManifest(e.ctx, "multi", ref)
		wantError(t, "DELETE /v2/multi/manifests/"+ref.String(), err, stowage.CodeDenied, "multi@"+string(idx.d))
	}
	e.pullable(t, "multi", "v1")
	for _, child := range []blob{amd, arm} {
		if !e.hasManifest("multi", child.d) {
			t.Errorf("child %s of the tagged index is gone", child.d)
		}
	}
	if _, err := e.reg.DeleteImage(e.ctx, "single", stowage.Reference{Digest: amd.d}, false); err != nil {
		t.Errorf("delete the same manifest in a repository without the index: %v", err)
	}

	// A cascade passes it over: an attestation that is a referrer of an
	// image and a child of an index stays while that index does.
	img := e.image(t, "multi", "app", newBlob(40), newBlob(400))
	att := e.pushReferrer(t, "multi", img, "application/vnd.in-toto+json")
	attIdx := e.putIndex(t, "multi", "attestations", indexOf(nil, 0, att))
	rep, err := deleteBoth(t, "delete the attested image", func(dry bool) (stowage.DeleteReport, error) {
		return e.reg.DeleteImage(e.ctx, "multi", stowage.Reference{Tag: "app"}, dry)
	})
	if err != nil || len(rep.Manifests) != 1 || rep.Manifests[0].Digest != img.d {
		t.Errorf("delete the image: %+v %v; want only the image deleted", rep, err)
	}
	if !e.hasManifest("multi", att.d) {
		t.Errorf("the cascade deleted %s, which index %s lists", att.d, attIdx.d)
	}
	e.pullable(t, "multi", "attestations")

	// Deleting the index takes its untagged children with it.
	rep, err = deleteBoth(t, "delete the index", func(dry bool) (stowage.DeleteReport, error) {
		return e.reg.DeleteImage(e.ctx, "multi", stowage.Reference{Digest: idx.d}, dry)
	})
	if err != nil || len(rep.Manifests) != 3 {
		t.Errorf("delete the index: %+v %v; want the index and its 2 children", rep, err)
	}
	for _, child := range []blob{amd, arm} {
		if e.hasManifest("multi", child.d) {
			t.Errorf("child %s survived its index", child.d)
		}
	}

	// The whole repository: everything, children included, in any order.
	c1 := e.untaggedImage(t, "multi", newBlob(50), newBlob(500))
	e.putIndex(t, "multi", "v2", indexOf(nil, 1, c1))
	rep, err = deleteBoth(t, "delete the repository", func(dry bool) (stowage.DeleteReport, error) {
		return e.reg.DeleteRepository(e.ctx, "multi", dry)
	})
	if err != nil || len(rep.Manifests) != 4 { // attestation index, attestation, index v2, c1
		t.Errorf("delete the repository: %+v %v; want its 4 manifests", rep, err)
	}
	if _, err := e.reg.ListTags(e.ctx, "multi", "", 0); stowage.ErrorCodeOf(err) != stowage.CodeNameUnknown {
		t.Errorf("repository after its delete: %v", err)
	}
}

// A manifest passed over in a cascade is not lost for the rest of it: when
// an index that lists it is deleted later in the same delete, the index's
// cascade takes it. Referrers are visited in digest order, so the
// attestation R must sort before the index J that lists it (both referrers
// of the deleted image).
func TestDeleteCascadeRevisitsPassedOverChild(t *testing.T) {
	e := newEnv(t, nil)
	img := e.image(t, "app", "v1", newBlob(10), newBlob(100))
	r := e.pushReferrer(t, "app", img, "application/vnd.in-toto+json")
	var body []byte
	for n := range 1000 {
		if body = indexOf(&img, n, r); "sha256:"+sha(body) > string(r.d) {
			break
		}
	}
	j := e.putIndex(t, "app", "", body)
	if j.d < r.d {
		t.Fatal("found no index digest sorting after the attestation's")
	}
	rep, err := deleteBoth(t, "delete the image", func(dry bool) (stowage.DeleteReport, error) {
		return e.reg.DeleteImage(e.ctx, "app", stowage.Reference{Tag: "v1"}, dry)
	})
	if err != nil || len(rep.Manifests) != 3 {
		t.Errorf("delete: %+v %v; want the image, the index and the attestation", rep, err)
	}
	for _, m := range []blob{img, r, j} {
		if e.hasManifest("app", m.d) {
			t.Errorf("%s survived the delete of its subject", m.d)
		}
	}
}
