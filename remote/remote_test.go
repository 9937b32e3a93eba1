package remote_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stowage/stowage"
	"github.com/stowage/stowage/remote"
)

func TestParseImage(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"ghcr.io/org/app:v1", "ghcr.io/org/app:v1"},
		{"127.0.0.1:5000/app", "127.0.0.1:5000/app:latest"},
		{"localhost/a/b@sha256:" + strings.Repeat("a", 64), "localhost/a/b@sha256:" + strings.Repeat("a", 64)},
		{"reg.io:443/app:v1@sha256:" + strings.Repeat("b", 64), "reg.io:443/app@sha256:" + strings.Repeat("b", 64)},
		{"alpine", "registry-1.docker.io/library/alpine:latest"},
		{"docker.io/bitnami/redis:7", "registry-1.docker.io/bitnami/redis:7"},
		{"https://quay.io/x/y:z", "quay.io/x/y:z"},
	} {
		img, err := remote.ParseImage(tc.in)
		if err != nil || img.String() != tc.want {
			t.Errorf("ParseImage(%q) = %q, %v; want %q", tc.in, img.String(), err, tc.want)
		}
	}
	for _, bad := range []string{"", "ghcr.io/", "ghcr.io/App:v1", "ghcr.io/app:bad tag", "ghcr.io/app@sha256:short"} {
		if _, err := remote.ParseImage(bad); err == nil {
			t.Errorf("ParseImage(%q) accepted", bad)
		}
	}
}

// TestTokenFlow: against a Stowage with access control on, the client
// follows the Bearer challenge to the token endpoint, with credentials or
// anonymously, and keeps one token per scope.
func TestTokenFlow(t *testing.T) {
	src := newRegistry(t, true)
	img := src.pushImage(t, "team/app", "v1")
	src.pushImage(t, "team/other", "v1")
	ctx := context.Background()

	_, err := src.client("", "").GetManifest(ctx, "team/app", stowage.Reference{Tag: "v1"})
	var re *remote.Error
	if !errors.As(err, &re) || re.Status != http.StatusUnauthorized {
		t.Fatalf("anonymous GetManifest = %v, want a 401 (anonymous pull is off)", err)
	}
	if src.count("GET /oauth2/token") != 1 {
		t.Errorf("anonymous: %d token requests, want 1 (an anonymous token was asked for)", src.count("GET /oauth2/token"))
	}
	if _, err := src.client("admin", "wrong-password").GetManifest(ctx, "team/app", stowage.Reference{Tag: "v1"}); err == nil ||
		!strings.Contains(err.Error(), "check the username and password") {
		t.Fatalf("wrong password: %v", err)
	}

	c := src.client("admin", adminPass)
	before := src.count("GET /oauth2/token")
	for range 3 {
		m, err := c.GetManifest(ctx, "team/app", stowage.Reference{Tag: "v1"})
		if err != nil || m.Digest != img.index || m.MediaType != stowage.MediaTypeOCIIndex {
			t.Fatalf("GetManifest = %v, %v; want the index %s", m.Digest, err, img.index)
		}
	}
	if _, err := c.GetManifest(ctx, "team/other", stowage.Reference{Tag: "v1"}); err != nil {
		t.Fatal(err)
	}
	if got := src.count("GET /oauth2/token") - before; got != 2 {
		t.Errorf("%d token requests for 4 pulls from 2 repositories, want 2 (one per scope)", got)
	}
	rc, size, err := c.OpenBlob(ctx, "team/app", img.blobs[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, rc)
	rc.Close()
	if err != nil || n != size || n != img.blobs[0].Size {
		t.Fatalf("blob: %d bytes (header %d), %v", n, size, err)
	}
}

// TestRetry: 429 and 503 are retried, waiting what Retry-After says (capped
// by MaxBackoff); a 404 is not retried.
func TestRetry(t *testing.T) {
	src := newRegistry(t, false)
	src.pushImage(t, "app", "v1")
	left := 2
	src.fault = func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || left == 0 || !strings.Contains(r.URL.Path, "/manifests/") {
			return false
		}
		left--
		if left == 1 {
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusTooManyRequests)
		} else {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		return true
	}
	var waits []time.Duration
	c := remote.New(src.host, remote.Options{PlainHTTP: true, MaxBackoff: 1500 * time.Millisecond})
	remote.SetSleep(c, func(ctx context.Context, d time.Duration) error { waits = append(waits, d); return nil })
	if _, err := c.GetManifest(context.Background(), "app", stowage.Reference{Tag: "v1"}); err != nil {
		t.Fatalf("after a 429 and a 503: %v", err)
	}
	if len(waits) != 2 || waits[0] != 1500*time.Millisecond || waits[1] <= 0 || waits[1] > 1500*time.Millisecond {
		t.Errorf("waits = %v, want [1.5s (Retry-After 2 s capped), a backoff]", waits)
	}
	if got := src.count("GET /v2/app/manifests/v1"); got != 3 {
		t.Errorf("%d requests, want 3", got)
	}

	waits = nil
	_, err := c.GetManifest(context.Background(), "app", stowage.Reference{Tag: "nope"})
	if !remote.IsNotFound(err) || len(waits) != 0 {
		t.Errorf("missing tag: %v after %d retries; want a 404 at once", err, len(waits))
	}

	// A registry that stays down: Retries+1 attempts, then a Temporary error.
	src.fault = func(w http.ResponseWriter, r *http.Request) bool { w.WriteHeader(http.StatusBadGateway); return true }
	c2 := remote.New(src.host, remote.Options{PlainHTTP: true, Retries: 2})
	remote.SetSleep(c2, func(context.Context, time.Duration) error { return nil })
	before := src.count("GET /v2/app/manifests/v1")
	_, err = c2.GetManifest(context.Background(), "app", stowage.Reference{Tag: "v1"})
	if !remote.Temporary(err) || src.count("GET /v2/app/manifests/v1")-before != 3 {
		t.Errorf("down registry: %v after %d requests; want a temporary error after 3", err, src.count("GET /v2/app/manifests/v1")-before)
	}
}

// TestDigestVerified: altered bytes are refused, for blobs (at the end of
// the stream) and manifests.
func TestDigestVerified(t *testing.T) {
	src := newRegistry(t, false)
	img := src.pushImage(t, "app", "v1")
	ctx := context.Background()
	c := src.client("", "")
	src.tamper = true
	rc, _, err := c.OpenBlob(ctx, "app", img.blobs[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(io.Discard, rc)
	rc.Close()
	var mm *remote.DigestMismatchError
	if !errors.As(err, &mm) || mm.Want != img.blobs[0].Digest {
		t.Fatalf("tampered blob read: %v, want a digest mismatch", err)
	}
	src.tamper = false
	src.fault = func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.Contains(r.URL.Path, "/manifests/") {
			return false
		}
		w.Header().Set("Content-Type", stowage.MediaTypeOCIIndex)
		w.Write([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`))
		return true
	}
	if _, err := c.GetManifest(ctx, "app", stowage.Reference{Digest: img.index}); !errors.As(err, &mm) {
		t.Fatalf("substituted manifest: %v, want a digest mismatch", err)
	}
}

// TestCopy copies a two-platform index with a referrer between two
// registries, then again (nothing to copy), then one platform.
func TestCopy(t *testing.T) {
	src, dst := newRegistry(t, true), newRegistry(t, false)
	img := src.pushImage(t, "team/app", "v1")
	ctx := context.Background()
	c := src.client("admin", adminPass)
	var last remote.Progress
	rep, err := remote.Copy(ctx, c, "team/app", stowage.Reference{Tag: "v1"}, regSink{dst.reg}, "mirror/app", []string{"v1"},
		remote.CopyOptions{Referrers: true, Progress: func(p remote.Progress) { last = p }})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Digest != img.index || rep.Manifests != 4 || rep.Referrers != 1 || rep.Blobs != len(img.blobs) || rep.BlobsPresent != 0 {
		t.Errorf("report %+v; want the index, 4 manifests, 1 referrer, %d blobs", rep, len(img.blobs))
	}
	if last.Bytes != last.BytesTotal || last.Manifests != 4 || last.BytesTotal != rep.BytesCopied {
		t.Errorf("last progress %+v, report %+v", last, rep)
	}
	for _, d := range append([]stowage.Digest{img.index, img.referrer}, img.platforms...) {
		if _, err := dst.reg.ResolveManifest(ctx, "mirror/app", stowage.Reference{Digest: d}); err != nil {
			t.Errorf("manifest %s not copied: %v", d, err)
		}
	}
	if m, err := dst.reg.ResolveManifest(ctx, "mirror/app", stowage.Reference{Tag: "v1"}); err != nil || m.Digest != img.index {
		t.Errorf("tag v1 = %v, %v", m.Digest, err)
	}
	refs, err := dst.reg.Referrers(ctx, "mirror/app", img.index, "")
	if err != nil || len(refs) != 1 || refs[0].Digest != img.referrer {
		t.Errorf("referrers in the copy: %v, %v", refs, err)
	}

	// Again: every blob is there; nothing is read from the source.
	before := src.count("GET /v2/team/app/blobs/" + string(img.blobs[0].Digest))
	rep, err = remote.Copy(ctx, c, "team/app", stowage.Reference{Digest: img.index}, regSink{dst.reg}, "mirror/app", nil, remote.CopyOptions{Referrers: true})
	if err != nil || rep.Blobs != 0 || rep.BlobsPresent != len(img.blobs) {
		t.Errorf("second copy: %+v, %v; want every blob present", rep, err)
	}
	if src.count("GET /v2/team/app/blobs/"+string(img.blobs[0].Digest)) != before {
		t.Error("the second copy read a blob the target holds")
	}

	// One platform: its image, tagged, not the index.
	rep, err = remote.Copy(ctx, c, "team/app", stowage.Reference{Tag: "v1"}, regSink{dst.reg}, "arm/app", []string{"arm"}, remote.CopyOptions{Platform: "linux/arm64"})
	if err != nil || rep.Digest != img.platforms[1] || rep.Manifests != 1 {
		t.Errorf("linux/arm64: %+v, %v; want %s alone", rep, err, img.platforms[1])
	}
	if _, err = remote.Copy(ctx, c, "team/app", stowage.Reference{Tag: "v1"}, regSink{dst.reg}, "x/app", nil, remote.CopyOptions{Platform: "windows/amd64"}); err == nil ||
		!strings.Contains(err.Error(), "linux/amd64, linux/arm64") {
		t.Errorf("unknown platform: %v", err)
	}

	// A blob altered on the way is refused and leaves nothing in the target.
	img2 := src.pushImage(t, "team/app", "v2")
	src.tamper = true
	_, err = remote.Copy(ctx, c, "team/app", stowage.Reference{Tag: "v2"}, regSink{dst.reg}, "bad/app", []string{"v2"}, remote.CopyOptions{})
	if err == nil {
		t.Fatal("copy of altered blobs succeeded")
	}
	for _, b := range img2.blobs[:1] {
		if _, err := dst.reg.StatBlob(ctx, "bad/app", b.Digest); stowage.ErrorCodeOf(err) != stowage.CodeBlobUnknown {
			t.Errorf("altered blob %s kept: %v", b.Digest, err)
		}
	}
}

// TestCopyNoManifestLimit: an index of 60 images (ACR's import stops at
// 50 manifests) is copied whole.
func TestCopyNoManifestLimit(t *testing.T) {
	src, dst := newRegistry(t, false), newRegistry(t, false)
	cfg := src.putBlob(t, "big", []byte(`{"os":"linux"}`), v1.MediaTypeImageConfig)
	layer := src.putBlob(t, "big", randomBlob(t, 1024), v1.MediaTypeImageLayerGzip)
	var children []v1.Descriptor
	for i := range 60 {
		m := src.putManifest(t, "big", "", v1.Manifest{Versioned: specsV2, MediaType: v1.MediaTypeImageManifest, Config: cfg, Layers: []v1.Descriptor{layer},
			Annotations: map[string]string{"n": strconv.Itoa(i)}})
		children = append(children, m)
	}
	idx := src.putManifest(t, "big", "all", v1.Index{Versioned: specsV2, MediaType: v1.MediaTypeImageIndex, Manifests: children})
	rep, err := remote.Copy(context.Background(), src.client("", ""), "big", stowage.Reference{Tag: "all"}, regSink{dst.reg}, "big", []string{"all"}, remote.CopyOptions{})
	if err != nil || rep.Manifests != 61 || rep.Digest != idx.Digest || rep.Blobs != 2 {
		t.Fatalf("copy: %+v, %v; want 61 manifests and 2 blobs", rep, err)
	}
	info, err := dst.reg.RepositoryInfo(context.Background(), "big")
	if err != nil || info.Manifests != 61 {
		t.Errorf("target holds %d manifests, %v", info.Manifests, err)
	}
}
