package ociroute_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/stowage/stowage"
	"github.com/stowage/stowage/internal/ociroute"
)

var (
	rd    = digest.FromString("route")
	rd512 = digest.SHA512.FromString("route")
	upID  = "0123456789abcdef0123456789abcdef"
)

func codeOf(err error) stowage.ErrorCode {
	var e *stowage.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

func TestParseRoute(t *testing.T) {
	d := string(rd)
	tests := []struct {
		path string
		want ociroute.Route
		code stowage.ErrorCode
	}{
		// Base and catalog.
		{path: "/v2/", want: ociroute.Route{Kind: ociroute.KindBase}},
		{path: "/v2", want: ociroute.Route{Kind: ociroute.KindBase}},
		{path: "/v2/_catalog", want: ociroute.Route{Kind: ociroute.KindCatalog}},

		// Tags.
		{path: "/v2/foo/tags/list", want: ociroute.Route{Kind: ociroute.KindTags, Name: "foo"}},
		{path: "/v2/a/b/c/tags/list", want: ociroute.Route{Kind: ociroute.KindTags, Name: "a/b/c"}},
		{path: "/v2/foo/tags/list/tags/list", want: ociroute.Route{Kind: ociroute.KindTags, Name: "foo/tags/list"}},
		{path: "/v2/foo/blobs/uploads/tags/list", want: ociroute.Route{Kind: ociroute.KindTags, Name: "foo/blobs/uploads"}},
		{path: "/v2/manifests/tags/list", want: ociroute.Route{Kind: ociroute.KindTags, Name: "manifests"}},

		// Manifests.
		{path: "/v2/foo/manifests/latest", want: ociroute.Route{Kind: ociroute.KindManifest, Name: "foo", Ref: stowage.Reference{Tag: "latest"}}},
		{path: "/v2/foo/manifests/" + d, want: ociroute.Route{Kind: ociroute.KindManifest, Name: "foo", Ref: stowage.Reference{Digest: rd}}},
		{path: "/v2/foo/manifests/" + string(rd512), want: ociroute.Route{Kind: ociroute.KindManifest, Name: "foo", Ref: stowage.Reference{Digest: rd512}}},
		{path: "/v2/library/ubuntu/manifests/22.04", want: ociroute.Route{Kind: ociroute.KindManifest, Name: "library/ubuntu", Ref: stowage.Reference{Tag: "22.04"}}},
		{path: "/v2/foo/blobs/manifests/v1", want: ociroute.Route{Kind: ociroute.KindManifest, Name: "foo/blobs", Ref: stowage.Reference{Tag: "v1"}}},
		{path: "/v2/foo/blobs/uploads/manifests/v1", want: ociroute.Route{Kind: ociroute.KindManifest, Name: "foo/blobs/uploads", Ref: stowage.Reference{Tag: "v1"}}},
		{path: "/v2/manifests/manifests/manifests", want: ociroute.Route{Kind: ociroute.KindManifest, Name: "manifests", Ref: stowage.Reference{Tag: "manifests"}}},
		{path: "/v2/manifests/manifests/manifests/manifests", want: ociroute.Route{Kind: ociroute.KindManifest, Name: "manifests/manifests", Ref: stowage.Reference{Tag: "manifests"}}},
		{path: "/v2/foo/manifests/uploads", want: ociroute.Route{Kind: ociroute.KindManifest, Name: "foo", Ref: stowage.Reference{Tag: "uploads"}}},
		{path: "/v2/foo/manifests/blobs", want: ociroute.Route{Kind: ociroute.KindManifest, Name: "foo", Ref: stowage.Reference{Tag: "blobs"}}},
		{path: "/v2/uploads/manifests/list", want: ociroute.Route{Kind: ociroute.KindManifest, Name: "uploads", Ref: stowage.Reference{Tag: "list"}}},
		{path: "/v2/foo/manifests/", code: stowage.CodeTagInvalid},
		{path: "/v2/foo/manifests/.bad", code: stowage.CodeTagInvalid},
		{path: "/v2/foo/manifests/" + strings.Repeat("t", 129), code: stowage.CodeTagInvalid},
		{path: "/v2/foo/manifests/sha256:abc", code: stowage.CodeDigestInvalid},
		{path: "/v2/foo/manifests/md5:" + strings.Repeat("a", 32), code: stowage.CodeDigestInvalid},
		{path: "/v2/Foo/manifests/latest", code: stowage.CodeNameInvalid},
		{path: "/v2/Foo/manifests/.bad", code: stowage.CodeNameInvalid}, // the name is checked first

		// Blobs.
		{path: "/v2/foo/blobs/" + d, want: ociroute.Route{Kind: ociroute.KindBlob, Name: "foo", Digest: rd}},
		{path: "/v2/a/b/blobs/" + d, want: ociroute.Route{Kind: ociroute.KindBlob, Name: "a/b", Digest: rd}},
		{path: "/v2/foo/blobs/blobs/" + d, want: ociroute.Route{Kind: ociroute.KindBlob, Name: "foo/blobs", Digest: rd}},
		{path: "/v2/foo/manifests/blobs/" + d, want: ociroute.Route{Kind: ociroute.KindBlob, Name: "foo/manifests", Digest: rd}},
		{path: "/v2/foo/blobs/uploads/blobs/" + d, want: ociroute.Route{Kind: ociroute.KindBlob, Name: "foo/blobs/uploads", Digest: rd}},
		{path: "/v2/blobs/blobs/" + d, want: ociroute.Route{Kind: ociroute.KindBlob, Name: "blobs", Digest: rd}},
		{path: "/v2/foo/blobs/", code: stowage.CodeDigestInvalid},
		{path: "/v2/foo/blobs/latest", code: stowage.CodeDigestInvalid},
		{path: "/v2/foo/blobs/sha256:" + strings.Repeat("A", 64), code: stowage.CodeDigestInvalid},
		{path: "/v2/FOO/blobs/" + d, code: stowage.CodeNameInvalid},
		{path: "/v2/foo//blobs/" + d, code: stowage.CodeNameInvalid},

		// Upload start, with and without the trailing slash.
		{path: "/v2/foo/blobs/uploads/", want: ociroute.Route{Kind: ociroute.KindUploadStart, Name: "foo"}},
		{path: "/v2/foo/blobs/uploads", want: ociroute.Route{Kind: ociroute.KindUploadStart, Name: "foo"}},
		{path: "/v2/a/b/blobs/uploads/", want: ociroute.Route{Kind: ociroute.KindUploadStart, Name: "a/b"}},
		{path: "/v2/blobs/blobs/uploads/", want: ociroute.Route{Kind: ociroute.KindUploadStart, Name: "blobs"}},
		{path: "/v2/foo/blobs/uploads/blobs/uploads/", want: ociroute.Route{Kind: ociroute.KindUploadStart, Name: "foo/blobs/uploads"}},
		{path: "/v2/uploads/blobs/uploads/", want: ociroute.Route{Kind: ociroute.KindUploadStart, Name: "uploads"}},
		{path: "/v2//blobs/uploads/", code: stowage.CodeNameInvalid},
		{path: "/v2/Foo/blobs/uploads/", code: stowage.CodeNameInvalid},

		// Uploads.
		{path: "/v2/foo/blobs/uploads/" + upID, want: ociroute.Route{Kind: ociroute.KindUpload, Name: "foo", UploadID: upID}},
		{path: "/v2/a/b/blobs/uploads/" + upID, want: ociroute.Route{Kind: ociroute.KindUpload, Name: "a/b", UploadID: upID}},
		{path: "/v2/blobs/blobs/uploads/" + upID, want: ociroute.Route{Kind: ociroute.KindUpload, Name: "blobs", UploadID: upID}},
		{path: "/v2/foo/blobs/blobs/uploads/" + upID, want: ociroute.Route{Kind: ociroute.KindUpload, Name: "foo/blobs", UploadID: upID}},
		{path: "/v2/uploads/blobs/uploads/" + upID, want: ociroute.Route{Kind: ociroute.KindUpload, Name: "uploads", UploadID: upID}},
		{path: "/v2/foo/blobs/uploads/xyz", code: stowage.CodeBlobUploadUnknown},
		{path: "/v2/foo/blobs/uploads/" + strings.ToUpper(upID), code: stowage.CodeBlobUploadUnknown},
		{path: "/v2/foo/blobs/uploads/" + upID + "0", code: stowage.CodeBlobUploadUnknown},
		{path: "/v2/foo/blobs/uploads/" + upID[:31], code: stowage.CodeBlobUploadUnknown},
		{path: "/v2/foo/blobs/uploads/" + upID[:31] + "g", code: stowage.CodeBlobUploadUnknown},
		{path: "/v2/Foo/blobs/uploads/" + upID, code: stowage.CodeNameInvalid},
		{path: "/v2/foo/uploads/" + upID, code: stowage.CodeNameUnknown},
		{path: "/v2/blobs/uploads/" + upID, code: stowage.CodeNameUnknown},
		{path: "/v2//blobs/uploads/" + upID, code: stowage.CodeNameInvalid},

		// Referrers.
		{path: "/v2/foo/referrers/" + d, want: ociroute.Route{Kind: ociroute.KindReferrers, Name: "foo", Digest: rd}},
		{path: "/v2/a/referrers/referrers/" + d, want: ociroute.Route{Kind: ociroute.KindReferrers, Name: "a/referrers", Digest: rd}},
		{path: "/v2/foo/referrers/latest", code: stowage.CodeDigestInvalid},
		{path: "/v2/foo/referrers/", code: stowage.CodeDigestInvalid},

		// Trailing slashes and unknown endpoints.
		{path: "/v2/foo/manifests/latest/", code: stowage.CodeNameUnknown},
		{path: "/v2/foo/blobs/" + d + "/", code: stowage.CodeNameUnknown},
		{path: "/v2/foo/blobs/uploads/" + upID + "/", code: stowage.CodeNameUnknown},
		{path: "/v2/foo/tags/list/", code: stowage.CodeNameUnknown},
		{path: "/v2/_catalog/", code: stowage.CodeNameUnknown},
		{path: "/v2/foo/blobs/uploads//", code: stowage.CodeNameUnknown},
		{path: "/v2/foo/referrers/" + d + "/", code: stowage.CodeNameUnknown},

		// No endpoint at all.
		{path: "", code: stowage.CodeNameUnknown},
		{path: "/", code: stowage.CodeNameUnknown},
		{path: "/v1/", code: stowage.CodeNameUnknown},
		{path: "/v2x", code: stowage.CodeNameUnknown},
		{path: "v2/", code: stowage.CodeNameUnknown},
		{path: "/v2/foo", code: stowage.CodeNameUnknown},
		{path: "/v2/foo/", code: stowage.CodeNameUnknown},
		{path: "/v2/foo/bar", code: stowage.CodeNameUnknown},
		{path: "/v2/foo/bar/baz", code: stowage.CodeNameUnknown},
		{path: "/v2/tags/list", code: stowage.CodeNameUnknown},
		{path: "/v2/manifests/latest", code: stowage.CodeNameUnknown},
		{path: "/v2/blobs/" + d, code: stowage.CodeNameUnknown},
		{path: "/v2//manifests/latest", code: stowage.CodeNameUnknown},
		{path: "/v2/foo/tags/lists", code: stowage.CodeNameUnknown},
		{path: "/v2/foo/tag/list", code: stowage.CodeNameUnknown},
		{path: "/v2/foo/catalog/x", code: stowage.CodeNameUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			got, err := ociroute.ParseRoute(tt.path)
			if tt.code != "" {
				if err == nil {
					t.Fatalf("got %+v, want error %s", got, tt.code)
				}
				if c := codeOf(err); c != tt.code {
					t.Fatalf("error %v: code %q, want %s", err, c, tt.code)
				}
				if got != (ociroute.Route{}) {
					t.Errorf("route %+v returned with the error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("error %v, want %+v", err, tt.want)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			if rebuilt, ok := rebuildPath(got); ok && strings.TrimSuffix(rebuilt, "/") != strings.TrimSuffix(tt.path, "/") {
				t.Errorf("path rebuilt from the route is %q", rebuilt)
			}
		})
	}
}

// rebuildPath returns the canonical path of a route (KindUploadStart without
// its trailing slash).
func rebuildPath(rt ociroute.Route) (string, bool) {
	switch rt.Kind {
	case ociroute.KindBase:
		return "/v2/", true
	case ociroute.KindCatalog:
		return "/v2/_catalog", true
	case ociroute.KindTags:
		return "/v2/" + rt.Name + "/tags/list", true
	case ociroute.KindManifest:
		return "/v2/" + rt.Name + "/manifests/" + rt.Ref.String(), true
	case ociroute.KindBlob:
		return "/v2/" + rt.Name + "/blobs/" + string(rt.Digest), true
	case ociroute.KindUploadStart:
		return "/v2/" + rt.Name + "/blobs/uploads", true
	case ociroute.KindUpload:
		return "/v2/" + rt.Name + "/blobs/uploads/" + rt.UploadID, true
	case ociroute.KindReferrers:
		return "/v2/" + rt.Name + "/referrers/" + string(rt.Digest), true
	}
	return "", false
}
