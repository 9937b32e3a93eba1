package ociapi_test

import (
	"strings"
	"testing"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/ociapi"
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
		rt, err := ociapi.ParseRoute(path)
		if err != nil {
			if rt != (ociapi.Route{}) {
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
		case ociapi.KindBase, ociapi.KindCatalog:
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
		case ociapi.KindManifest:
			if _, err := stowage.ParseReference(rt.Ref.String()); err != nil {
				t.Fatalf("ParseRoute(%q): invalid reference %q", path, rt.Ref)
			}
			if rebuilt != path {
				t.Fatalf("ParseRoute(%q) = %+v, which rebuilds as %q", path, rt, rebuilt)
			}
		case ociapi.KindBlob, ociapi.KindReferrers:
			if _, err := stowage.ParseDigest(string(rt.Digest)); err != nil {
				t.Fatalf("ParseRoute(%q): invalid digest %q", path, rt.Digest)
			}
			if rebuilt != path {
				t.Fatalf("ParseRoute(%q) = %+v, which rebuilds as %q", path, rt, rebuilt)
			}
		case ociapi.KindUploadStart:
			if rebuilt != path && rebuilt+"/" != path {
				t.Fatalf("ParseRoute(%q) = %+v, which rebuilds as %q", path, rt, rebuilt)
			}
		default:
			if rebuilt != path {
				t.Fatalf("ParseRoute(%q) = %+v, which rebuilds as %q", path, rt, rebuilt)
			}
		}
		// The route of the rebuilt path is the same route.
		if rt2, err := ociapi.ParseRoute(rebuilt); err != nil || rt2 != rt {
			t.Fatalf("ParseRoute(%q) = %+v, %v; ParseRoute(%q) = %+v", rebuilt, rt2, err, path, rt)
		}
	})
}

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{
		"bytes=0-9", "bytes=5-", "bytes=-3", "bytes=-0", "bytes=0-", "bytes=9-0", "bytes=0-1,2-3", "bytes= 1-2 ",
		"bytes=-9223372036854775807", "bytes=0-9223372036854775807", "bytes=9223372036854775807-", "", "bytes=", "bytes=+1-2",
	} {
		for _, size := range []int64{0, 1, 10, 1 << 40} {
			f.Add(s, size)
		}
	}
	f.Fuzz(func(t *testing.T, header string, size int64) {
		if size < 0 {
			size = -(size + 1)
		}
		start, length, ok := ociapi.ParseRange(header, size)
		if !ok {
			return
		}
		if start < 0 || length < 1 || start > size-length {
			t.Fatalf("ParseRange(%q, %d) = %d, %d, ok: out of bounds", header, size, start, length)
		}
		if !strings.HasPrefix(header, "bytes=") || strings.Contains(header, ",") {
			t.Fatalf("ParseRange(%q, %d) accepted a header that is not one byte range", header, size)
		}
	})
}

func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{
		"0-9", "bytes 0-9", "bytes 0-9/10", "bytes 0-9/*", "bytes=0-9", " 0-9 ", "9-0", "-", "0-", "-9", "+0-9",
		"1-9223372036854775807", "0-99999999999999999999", "", "a-b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		start, length, ok := ociapi.ParseContentRange(header)
		if !ok {
			return
		}
		if start < 0 || length < 1 {
			t.Fatalf("ParseContentRange(%q) = %d, %d, ok: want start >= 0 and length >= 1", header, start, length)
		}
		// The end of the range is representable.
		if start-1 > (1<<63-1)-length {
			t.Fatalf("ParseContentRange(%q) = %d, %d, ok: end overflows", header, start, length)
		}
	})
}
