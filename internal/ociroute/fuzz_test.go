package ociroute_test

import (
	"testing"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/internal/ociroute"
)

func FuzzParseRoute(f *testing.F) {
	d := string(rd)
	for _, s := range []string{
		"/v2/", "/v2", "/v2/_catalog", "/v2/foo/tags/list", "/v2/a/b/manifests/latest", "/v2/foo/manifests/" + d,
		"/v2/foo/blobs/" + d, "/v2/foo/blobs/uploads/", "/v2/foo/blobs/uploads", "/v2/foo/blobs/uploads/" + upID,
		"/v2/foo/referrers/" + d, "/v2/blobs/blobs/uploads/" + upID, "/v2/foo/blobs/blobs/" + d,
		"/v2/foo/blobs/uploads/manifests/v1", "/v2/foo/manifests/latest/", "/v2//blobs/uploads/", "/v2/blobs/uploads/" + upID,
		"/v2/foo/uploads/" + upID, "/v2/Foo/tags/list", "/v2/foo/manifests/sha256:x", "", "/", "/v2//", "/v2/a/b/c/d/e/blobs/uploads/",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		rt, err := ociroute.ParseRoute(path)
		if err != nil {
			if rt != (ociroute.Route{}) {
				t.Fatalf("ParseRoute(%q): route %+v returned with error %v", path, rt, err)
			}
			switch codeOf(err) {
			case stowage.CodeNameUnknown, stowage.CodeNameInvalid, stowage.CodeTagInvalid,
				stowage.CodeDigestInvalid, stowage.CodeBlobUploadUnknown:
			default:
				t.Fatalf("ParseRoute(%q): unexpected error %v", path, err)
			}
			return
		}
		switch rt.Kind {
		case ociroute.KindBase, ociroute.KindCatalog:
			if rt.Name != "" {
				t.Fatalf("ParseRoute(%q) = %+v: name on a global endpoint", path, rt)
			}
			return
		}
		if err := stowage.ValidateName(rt.Name); err != nil {
			t.Fatalf("ParseRoute(%q) = %+v: name is invalid: %v", path, rt, err)
		}
		rebuilt, ok := rebuildPath(rt)
		if !ok {
			t.Fatalf("ParseRoute(%q) = %+v: unknown kind", path, rt)
		}
		switch rt.Kind {
		case ociroute.KindManifest:
			if _, err := stowage.ParseReference(rt.Ref.String()); err != nil {
				t.Fatalf("ParseRoute(%q): invalid reference %q", path, rt.Ref)
			}
			if rebuilt != path {
				t.Fatalf("ParseRoute(%q) = %+v, which rebuilds as %q", path, rt, rebuilt)
			}
		case ociroute.KindBlob, ociroute.KindReferrers:
			if _, err := stowage.ParseDigest(string(rt.Digest)); err != nil {
				t.Fatalf("ParseRoute(%q): invalid digest %q", path, rt.Digest)
			}
			if rebuilt != path {
				t.Fatalf("ParseRoute(%q) = %+v, which rebuilds as %q", path, rt, rebuilt)
			}
		case ociroute.KindUploadStart:
			if rebuilt != path && rebuilt+"/" != path {
				t.Fatalf("ParseRoute(%q) = %+v, which rebuilds as %q", path, rt, rebuilt)
			}
		default:
			if rebuilt != path {
				t.Fatalf("ParseRoute(%q) = %+v, which rebuilds as %q", path, rt, rebuilt)
			}
		}
		// The route of the rebuilt path is the same route.
		if rt2, err := ociroute.ParseRoute(rebuilt); err != nil || rt2 != rt {
			t.Fatalf("ParseRoute(%q) = %+v, %v; ParseRoute(%q) = %+v", rebuilt, rt2, err, path, rt)
		}
	})
}
