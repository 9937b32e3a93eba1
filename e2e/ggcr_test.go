package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/stream"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// ---- request recording ----

// recorder is an http.RoundTripper that remembers every request ggcr sends
// and the status it got, so tests can tell a mount from an upload and catch
// 5xx answers that ggcr's retries would otherwise hide.
type recorder struct {
	base http.RoundTripper
	mu   sync.Mutex
	reqs []recorded
}

type recorded struct {
	Method, Path string
	Query        map[string][]string
	Length       int64 // request Content-Length, -1 when sent chunked
	Status       int
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.base.RoundTrip(req)
	rec := recorded{Method: req.Method, Path: req.URL.Path, Query: req.URL.Query(), Length: req.ContentLength}
	if rec.Length == 0 && req.Body != nil && req.Body != http.NoBody {
		rec.Length = -1 // net/http sends it chunked
	}
	if err == nil {
		rec.Status = resp.StatusCode
	}
	r.mu.Lock()
	r.reqs = append(r.reqs, rec)
	r.mu.Unlock()
	return resp, err
}

// take returns the requests recorded so far and forgets them.
func (r *recorder) take() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	reqs := r.reqs
	r.reqs = nil
	return reqs
}

// all returns the requests recorded so far.
func (r *recorder) all() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.reqs)
}

// uploadCounts classifies blob-writing requests: uploads are requests that
// carry blob bytes (PATCH, the finishing PUT, a monolithic POST ?digest=),
// mounts are POST ?mount= answered 201.
func uploadCounts(reqs []recorded) (uploads, mounts int) {
	for _, q := range reqs {
		isUpload := strings.Contains(q.Path, "/blobs/uploads")
		switch {
		case q.Method == http.MethodPatch && isUpload,
			q.Method == http.MethodPut && isUpload,
			q.Method == http.MethodPost && isUpload && len(q.Query["digest"]) > 0:
			uploads++
		case q.Method == http.MethodPost && isUpload && len(q.Query["mount"]) > 0 && q.Status == http.StatusCreated:
			mounts++
		}
	}
	return uploads, mounts
}

// ---- ggcr fixture ----

type ggcrEnv struct {
	srv  *server
	rec  *recorder
	opts []remote.Option
}

func newGGCR(t *testing.T) *ggcrEnv {
	s := startServer(t, t.TempDir())
	rec := &recorder{base: http.DefaultTransport.(*http.Transport).Clone()}
	e := &ggcrEnv{srv: s, rec: rec,
		opts: []remote.Option{remote.WithTransport(rec), remote.WithContext(context.Background())}}
	t.Cleanup(func() {
		// Idle (or dialed but unused) connections would hold up the
		// server's graceful shutdown for seconds.
		rec.base.(*http.Transport).CloseIdleConnections()
		httpClient.CloseIdleConnections()
		for _, q := range rec.all() {
			if q.Status >= 500 {
				t.Errorf("server answered %d to %s %s", q.Status, q.Method, q.Path)
			}
		}
	})
	return e
}

// repo names a repository on the test server (plain HTTP).
func (e *ggcrEnv) repo(n string) name.Repository {
	r, err := name.NewRepository(e.srv.Addr+"/"+n, name.Insecure)
	if err != nil {
		panic(err) // a bad name in the test itself
	}
	return r
}

func (e *ggcrEnv) with(extra ...remote.Option) []remote.Option {
	return append(slices.Clone(e.opts), extra...)
}

func digestOf(t testing.TB, x interface{ Digest() (v1.Hash, error) }) v1.Hash {
	t.Helper()
	d, err := x.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func must[T any](t testing.TB) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func readAll(t testing.TB, open func() (io.ReadCloser, error)) []byte {
	t.Helper()
	rc, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// compareImage checks that got (pulled) has exactly want's manifest bytes,
// config bytes and every layer's compressed bytes.
func compareImage(t testing.TB, want, got v1.Image) {
	t.Helper()
	wm := must[[]byte](t)(want.RawManifest())
	gm := must[[]byte](t)(got.RawManifest())
	if !bytes.Equal(wm, gm) {
		t.Errorf("manifest bytes differ:\nwant %s\ngot  %s", wm, gm)
	}
	wc := must[[]byte](t)(want.RawConfigFile())
	gc := must[[]byte](t)(got.RawConfigFile())
	if !bytes.Equal(wc, gc) {
		t.Errorf("config bytes differ:\nwant %s\ngot  %s", wc, gc)
	}
	wl := must[[]v1.Layer](t)(want.Layers())
	gl := must[[]v1.Layer](t)(got.Layers())
	if len(wl) != len(gl) {
		t.Fatalf("pulled image has %d layers, want %d", len(gl), len(wl))
	}
	for i := range wl {
		wd, gd := digestOf(t, wl[i]), digestOf(t, gl[i])
		if wd != gd {
			t.Errorf("layer %d: digest %s, want %s", i, gd, wd)
			continue
		}
		if err := sameContent(wl[i].Compressed, gl[i].Compressed, wd.String()); err != nil {
			t.Errorf("layer %d: %v", i, err)
		}
	}
}

// compareIndex checks an index and, recursively, every child by digest.
func compareIndex(t testing.TB, e *ggcrEnv, repo name.Repository, want, got v1.ImageIndex) {
	t.Helper()
	wm := must[[]byte](t)(want.RawManifest())
	gm := must[[]byte](t)(got.RawManifest())
	if !bytes.Equal(wm, gm) {
		t.Fatalf("index bytes differ:\nwant %s\ngot  %s", wm, gm)
	}
	im := must[*v1.IndexManifest](t)(want.IndexManifest())
	for _, desc := range im.Manifests {
		ref := repo.Digest(desc.Digest.String())
		switch {
		case desc.MediaType.IsImage():
			compareImage(t, must[v1.Image](t)(want.Image(desc.Digest)), must[v1.Image](t)(remote.Image(ref, e.opts...)))
		case desc.MediaType.IsIndex():
			compareIndex(t, e, repo, must[v1.ImageIndex](t)(want.ImageIndex(desc.Digest)), must[v1.ImageIndex](t)(remote.Index(ref, e.opts...)))
		default:
			t.Errorf("unexpected child media type %s", desc.MediaType)
		}
	}
}

// transportCode returns the HTTP status and first OCI error code of a ggcr error.
func transportCode(err error) (int, transport.ErrorCode) {
	var te *transport.Error
	if !errors.As(err, &te) {
		return 0, ""
	}
	var code transport.ErrorCode
	if len(te.Errors) > 0 {
		code = te.Errors[0].Code
	}
	return te.StatusCode, code
}

// sameContent compares two byte streams chunk by chunk (no big buffers:
// they are slow under -race) and checks that the second hashes to digest.
func sameContent(want, got func() (io.ReadCloser, error), digest string) error {
	wr, err := want()
	if err != nil {
		return err
	}
	defer wr.Close()
	gr, err := got()
	if err != nil {
		return err
	}
	defer gr.Close()
	h := sha256.New()
	wb, gb := make([]byte, 256<<10), make([]byte, 256<<10)
	var n int64
	for {
		wn, werr := io.ReadFull(wr, wb)
		gn, gerr := io.ReadFull(gr, gb)
		h.Write(gb[:gn])
		if wn != gn || !bytes.Equal(wb[:wn], gb[:gn]) {
			return fmt.Errorf("%s: pulled bytes differ from the pushed ones in the 256 KiB after offset %d", digest, n)
		}
		n += int64(wn)
		if werr == io.EOF || werr == io.ErrUnexpectedEOF {
			if gerr != io.EOF && gerr != io.ErrUnexpectedEOF {
				return fmt.Errorf("%s: pulled blob is longer than the %d bytes pushed (%v)", digest, n, gerr)
			}
			break
		}
		if werr != nil {
			return werr
		}
		if gerr != nil {
			return fmt.Errorf("%s: reading the pulled blob at offset %d: %w", digest, n, gerr)
		}
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != digest {
		return fmt.Errorf("%s: pulled bytes hash to %s", digest, got)
	}
	return nil
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// ociImage is a random image with OCI media types throughout.
func ociImage(t testing.TB, layers int, size int64) v1.Image {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for i := 0; i < layers; i++ {
		l := must[v1.Layer](t)(random.Layer(size, types.OCILayer))
		img = must[v1.Image](t)(mutate.AppendLayers(img, l))
	}
	return img
}

// ---- go-containerregistry against the real server ----

func TestGGCRImages(t *testing.T) {
	e := newGGCR(t)
	cases := []struct {
		name string
		img  func(t *testing.T) v1.Image
	}{
		{"zero-layers", func(t *testing.T) v1.Image { return must[v1.Image](t)(random.Image(0, 0)) }},
		{"one-layer-1k", func(t *testing.T) v1.Image { return must[v1.Image](t)(random.Image(1024, 1)) }},
		{"three-layers-300k", func(t *testing.T) v1.Image { return must[v1.Image](t)(random.Image(300<<10, 3)) }},
		{"eight-tiny-layers", func(t *testing.T) v1.Image { return must[v1.Image](t)(random.Image(10, 8)) }},
		{"oci-two-layers", func(t *testing.T) v1.Image { return ociImage(t, 2, 64<<10) }},
		{"one-20mib-layer", func(t *testing.T) v1.Image {
			l := static.NewLayer(randomBytes(t, 20<<20), types.OCIUncompressedLayer)
			img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
			return must[v1.Image](t)(mutate.AppendLayers(img, l))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			img := tc.img(t)
			repo := e.repo("e2e/images/" + tc.name)
			tag := repo.Tag("v1")
			if err := remote.Write(tag, img, e.opts...); err != nil {
				t.Fatalf("push: %v", err)
			}
			d := digestOf(t, img)
			byTag := must[v1.Image](t)(remote.Image(tag, e.opts...))
			if got := digestOf(t, byTag); got != d {
				t.Fatalf("pulled by tag: digest %s, want %s", got, d)
			}
			compareImage(t, img, byTag)
			compareImage(t, img, must[v1.Image](t)(remote.Image(repo.Digest(d.String()), e.opts...)))

			desc := must[*v1.Descriptor](t)(remote.Head(tag, e.opts...))
			wantMT := must[types.MediaType](t)(img.MediaType())
			if desc.Digest != d || desc.MediaType != wantMT || desc.Size != must[int64](t)(img.Size()) {
				t.Errorf("HEAD by tag: %+v, want digest %s, media type %s", desc, d, wantMT)
			}
			// Pushing the same image again uploads nothing: every blob exists.
			e.rec.take()
			if err := remote.Write(repo.Tag("v1-again"), img, e.opts...); err != nil {
				t.Fatalf("second push: %v", err)
			}
			if up, _ := uploadCounts(e.rec.take()); up != 0 {
				t.Errorf("re-push of an existing image sent %d upload requests, want 0", up)
			}
		})
	}
}

func TestGGCRIndex(t *testing.T) {
	e := newGGCR(t)
	arm64 := v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
	cases := []struct {
		name     string
		idx      func(t *testing.T) v1.ImageIndex
		platform *v1.Platform // if set, pulling with it must select this child
	}{
		{name: "random-index", idx: func(t *testing.T) v1.ImageIndex {
			return must[v1.ImageIndex](t)(random.Index(2048, 2, 3))
		}},
		{name: "platforms-and-nested", platform: &arm64, idx: func(t *testing.T) v1.ImageIndex {
			base := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
			return mutate.AppendManifests(base,
				mutate.IndexAddendum{Add: ociImage(t, 2, 4096), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
				mutate.IndexAddendum{Add: ociImage(t, 1, 8192), Descriptor: v1.Descriptor{Platform: &arm64}},
				mutate.IndexAddendum{Add: ociImage(t, 0, 0), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "windows", Architecture: "amd64", OSVersion: "10.0.17763.1234"}}},
				mutate.IndexAddendum{Add: must[v1.ImageIndex](t)(random.Index(512, 1, 2))},
			)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			idx := tc.idx(t)
			repo := e.repo("e2e/index/" + tc.name)
			tag := repo.Tag("multi")
			if err := remote.WriteIndex(tag, idx, e.opts...); err != nil {
				t.Fatalf("push index: %v", err)
			}
			got := must[v1.ImageIndex](t)(remote.Index(tag, e.opts...))
			if gd, wd := digestOf(t, got), digestOf(t, idx); gd != wd {
				t.Fatalf("pulled index digest %s, want %s", gd, wd)
			}
			compareIndex(t, e, repo, idx, got)
			compareIndex(t, e, repo, idx, must[v1.ImageIndex](t)(remote.Index(repo.Digest(digestOf(t, idx).String()), e.opts...)))
			desc := must[*remote.Descriptor](t)(remote.Get(tag, e.opts...))
			if want := must[types.MediaType](t)(idx.MediaType()); desc.MediaType != want {
				t.Errorf("GET index: Content-Type %s, want %s", desc.MediaType, want)
			}
			if tc.platform != nil {
				img := must[v1.Image](t)(remote.Image(tag, e.with(remote.WithPlatform(*tc.platform))...))
				var want v1.Hash
				for _, m := range must[*v1.IndexManifest](t)(idx.IndexManifest()).Manifests {
					if m.Platform != nil && m.Platform.Equals(*tc.platform) {
						want = m.Digest
					}
				}
				if got := digestOf(t, img); got != want {
					t.Errorf("pull with platform %s selected %s, want %s", tc.platform, got, want)
				}
			}
		})
	}
}

func TestGGCRListAndCatalog(t *testing.T) {
	e := newGGCR(t)
	img := must[v1.Image](t)(random.Image(256, 1))
	repos := []string{"e2e/list/a", "e2e/list/b", "e2e/list/c/deep/name", "e2e/list/d-e_f.g"}
	tags := []string{"1.0", "1.1", "latest", "Z_upper", "a-b.c_d", "v2"}
	for _, r := range repos {
		repo := e.repo(r)
		if err := remote.Write(repo.Tag(tags[0]), img, e.opts...); err != nil {
			t.Fatalf("push %s: %v", r, err)
		}
		for _, tg := range tags[1:] {
			if err := remote.Tag(repo.Tag(tg), img, e.opts...); err != nil {
				t.Fatalf("tag %s:%s: %v", r, tg, err)
			}
		}
	}
	want := slices.Clone(tags)
	slices.Sort(want)
	for _, pageSize := range []int{0, 1, 2, 100} {
		t.Run(fmt.Sprintf("tags-page-%d", pageSize), func(t *testing.T) {
			for _, r := range repos {
				opts := e.opts
				if pageSize > 0 {
					opts = e.with(remote.WithPageSize(pageSize))
				}
				got, err := remote.List(e.repo(r), opts...)
				if err != nil {
					t.Fatalf("list %s: %v", r, err)
				}
				if !slices.Equal(got, want) {
					t.Errorf("tags of %s: %q, want %q", r, got, want)
				}
			}
		})
		t.Run(fmt.Sprintf("catalog-page-%d", pageSize), func(t *testing.T) {
			opts := e.opts
			if pageSize > 0 {
				opts = e.with(remote.WithPageSize(pageSize))
			}
			got, err := remote.Catalog(context.Background(), e.repo(repos[0]).Registry, opts...)
			if err != nil {
				t.Fatalf("catalog: %v", err)
			}
			if !slices.IsSorted(got) {
				t.Errorf("catalog is not sorted: %q", got)
			}
			if !slices.Equal(got, repos) {
				t.Errorf("catalog: %q, want %q", got, repos)
			}
		})
	}
	t.Run("unknown-repo", func(t *testing.T) {
		_, err := remote.List(e.repo("e2e/list/nope"), e.opts...)
		if st, code := transportCode(err); st != http.StatusNotFound || code != transport.NameUnknownErrorCode {
			t.Errorf("list of an unknown repository: %v, want 404 NAME_UNKNOWN", err)
		}
	})
}

func TestGGCRDelete(t *testing.T) {
	e := newGGCR(t)
	t.Run("by-digest", func(t *testing.T) {
		repo := e.repo("e2e/delete/digest")
		img := must[v1.Image](t)(random.Image(1024, 2))
		for _, tg := range []string{"doomed", "doomed-too"} {
			if err := remote.Write(repo.Tag(tg), img, e.opts...); err != nil {
				t.Fatal(err)
			}
		}
		keep := must[v1.Image](t)(random.Image(1024, 1))
		if err := remote.Write(repo.Tag("keep"), keep, e.opts...); err != nil {
			t.Fatal(err)
		}
		d := repo.Digest(digestOf(t, img).String())
		if err := remote.Delete(d, e.opts...); err != nil {
			t.Fatalf("delete by digest: %v", err)
		}
		for _, ref := range []name.Reference{d, repo.Tag("doomed"), repo.Tag("doomed-too")} {
			_, err := remote.Get(ref, e.opts...)
			if st, code := transportCode(err); st != http.StatusNotFound || code != transport.ManifestUnknownErrorCode {
				t.Errorf("GET %s after delete: %v, want 404 MANIFEST_UNKNOWN", ref, err)
			}
		}
		_, err := remote.Head(d, e.opts...)
		if st, _ := transportCode(err); st != http.StatusNotFound {
			t.Errorf("HEAD %s after delete: %v, want 404", d, err)
		}
		if tags := must[[]string](t)(remote.List(repo, e.opts...)); !slices.Equal(tags, []string{"keep"}) {
			t.Errorf("tags after delete: %q, want [keep]", tags)
		}
		compareImage(t, keep, must[v1.Image](t)(remote.Image(repo.Tag("keep"), e.opts...)))
		if err := remote.Delete(d, e.opts...); err == nil {
			t.Error("deleting an already deleted manifest succeeded")
		} else if st, code := transportCode(err); st != http.StatusNotFound || code != transport.ManifestUnknownErrorCode {
			t.Errorf("second delete: %v, want 404 MANIFEST_UNKNOWN", err)
		}
	})
	t.Run("by-tag", func(t *testing.T) {
		repo := e.repo("e2e/delete/tag")
		img := must[v1.Image](t)(random.Image(1024, 1))
		for _, tg := range []string{"a", "b"} {
			if err := remote.Write(repo.Tag(tg), img, e.opts...); err != nil {
				t.Fatal(err)
			}
		}
		if err := remote.Delete(repo.Tag("a"), e.opts...); err != nil {
			t.Fatalf("delete tag: %v", err)
		}
		_, err := remote.Get(repo.Tag("a"), e.opts...)
		if st, code := transportCode(err); st != http.StatusNotFound || code != transport.ManifestUnknownErrorCode {
			t.Errorf("GET deleted tag: %v, want 404 MANIFEST_UNKNOWN", err)
		}
		compareImage(t, img, must[v1.Image](t)(remote.Image(repo.Tag("b"), e.opts...)))
		compareImage(t, img, must[v1.Image](t)(remote.Image(repo.Digest(digestOf(t, img).String()), e.opts...)))
	})
}

func TestGGCRMount(t *testing.T) {
	e := newGGCR(t)
	img := must[v1.Image](t)(random.Image(200<<10, 3))
	srcRepo, dstRepo := e.repo("e2e/mount/src"), e.repo("e2e/mount/dst")
	if err := remote.Write(srcRepo.Tag("v1"), img, e.opts...); err != nil {
		t.Fatal(err)
	}
	src := must[v1.Image](t)(remote.Image(srcRepo.Tag("v1"), e.opts...))
	e.rec.take()
	if err := remote.Write(dstRepo.Tag("v1"), src, e.opts...); err != nil {
		t.Fatalf("push to the second repository: %v", err)
	}
	uploads, mounts := uploadCounts(e.rec.take())
	layers := must[[]v1.Layer](t)(img.Layers())
	if uploads != 0 {
		t.Errorf("cross-repository push sent %d upload requests, want 0 (all blobs mounted)", uploads)
	}
	if mounts < len(layers) {
		t.Errorf("cross-repository push mounted %d blobs, want at least the %d layers", mounts, len(layers))
	}
	compareImage(t, img, must[v1.Image](t)(remote.Image(dstRepo.Tag("v1"), e.opts...)))

	// A raw mount of a blob that is not in the source repository falls back
	// to an upload session (202), as the spec says.
	other := sha256Digest([]byte("never pushed anywhere"))
	r := mustDo(t, http.MethodPost, e.srv.URL, "/v2/e2e/mount/dst2/blobs/uploads/?mount="+other+"&from=e2e/mount/src", nil, nil)
	if expect(t, "mount of an unknown blob", r, http.StatusAccepted, "") && r.Header.Get("Location") == "" {
		t.Error("mount fallback: no Location for the upload session")
	}
	// A mount from a repository that holds the blob answers 201 with its Location.
	ld := digestOf(t, layers[0]).String()
	r = mustDo(t, http.MethodPost, e.srv.URL, "/v2/e2e/mount/dst3/blobs/uploads/?mount="+ld+"&from=e2e/mount/src", nil, nil)
	if expect(t, "raw mount", r, http.StatusCreated, "") {
		if loc := r.Header.Get("Location"); loc != "/v2/e2e/mount/dst3/blobs/"+ld {
			t.Errorf("mount Location %q", loc)
		}
		if got := r.Header.Get("Docker-Content-Digest"); got != ld {
			t.Errorf("mount Docker-Content-Digest %q, want %s", got, ld)
		}
	}
	g := mustDo(t, http.MethodGet, e.srv.URL, "/v2/e2e/mount/dst3/blobs/"+ld, nil, nil)
	if expect(t, "GET mounted blob", g, http.StatusOK, "") {
		want := readAll(t, layers[0].Compressed)
		if !bytes.Equal(g.Body, want) {
			t.Errorf("mounted blob: %d bytes that differ from the %d pushed", len(g.Body), len(want))
		}
	}
}

func TestGGCRReferrers(t *testing.T) {
	e := newGGCR(t)
	repo := e.repo("e2e/referrers")
	subject := ociImage(t, 1, 512)
	if err := remote.Write(repo.Tag("subject"), subject, e.opts...); err != nil {
		t.Fatal(err)
	}
	subDesc := must[*v1.Descriptor](t)(remote.Head(repo.Tag("subject"), e.opts...))
	subRef := repo.Digest(subDesc.Digest.String())

	artifact := func(artifactType string) v1.Image {
		img := mutate.ConfigMediaType(ociImage(t, 1, 128), types.MediaType(artifactType))
		img = mutate.Annotations(img, map[string]string{"org.example.kind": artifactType}).(v1.Image)
		return mutate.Subject(img, *subDesc).(v1.Image)
	}
	const sbomType, sigType = "application/vnd.example.sbom.v1+json", "application/vnd.example.signature.v1+json"
	arts := map[string]v1.Image{sbomType: artifact(sbomType), sigType: artifact(sigType)}
	for at, img := range arts {
		// With the tag fallback disabled, ggcr fails unless the Referrers API works.
		ref := repo.Digest(digestOf(t, img).String())
		if err := remote.Write(ref, img, e.with(remote.WithReferrersTagFallback(false))...); err != nil {
			t.Fatalf("push %s artifact: %v", at, err)
		}
	}
	idx := must[v1.ImageIndex](t)(remote.Referrers(subRef, e.with(remote.WithReferrersTagFallback(false))...))
	im := must[*v1.IndexManifest](t)(idx.IndexManifest())
	if len(im.Manifests) != len(arts) {
		t.Fatalf("referrers: %d descriptors, want %d: %+v", len(im.Manifests), len(arts), im.Manifests)
	}
	for _, d := range im.Manifests {
		img, ok := arts[d.ArtifactType]
		if !ok {
			t.Errorf("referrer with unexpected artifactType %q", d.ArtifactType)
			continue
		}
		if want := digestOf(t, img); d.Digest != want || d.MediaType != types.OCIManifestSchema1 || d.Size != must[int64](t)(img.Size()) {
			t.Errorf("referrer %+v, want digest %s media type %s", d, want, types.OCIManifestSchema1)
		}
		if d.Annotations["org.example.kind"] != d.ArtifactType {
			t.Errorf("referrer %s: annotations %v not carried into the descriptor", d.Digest, d.Annotations)
		}
	}
	// The server filters by artifactType and says so.
	r := mustDo(t, http.MethodGet, e.srv.URL, "/v2/e2e/referrers/referrers/"+subDesc.Digest.String()+"?artifactType="+url.QueryEscape(sigType), nil, nil)
	if expect(t, "filtered referrers", r, http.StatusOK, "") {
		if r.Header.Get("OCI-Filters-Applied") != "artifactType" {
			t.Errorf("filtered referrers: OCI-Filters-Applied %q", r.Header.Get("OCI-Filters-Applied"))
		}
		if ct := r.Header.Get("Content-Type"); ct != string(types.OCIImageIndex) {
			t.Errorf("referrers Content-Type %q", ct)
		}
		if n := strings.Count(string(r.Body), `"digest"`); n != 1 || !strings.Contains(string(r.Body), digestOf(t, arts[sigType]).String()) {
			t.Errorf("filtered referrers: %s, want only the signature", r.Body)
		}
	}
	// No referrers: an empty index, not an error.
	none := must[v1.ImageIndex](t)(remote.Referrers(repo.Digest(sha256Digest([]byte("nothing refers to me"))), e.opts...))
	if m := must[*v1.IndexManifest](t)(none.IndexManifest()); len(m.Manifests) != 0 {
		t.Errorf("referrers of an unreferenced digest: %+v", m.Manifests)
	}
	// The registry supports the API, so no fallback tag was made.
	tags := must[[]string](t)(remote.List(repo, e.opts...))
	if !slices.Equal(tags, []string{"subject"}) {
		t.Errorf("tags after pushing referrers: %q, want [subject] (no referrers fallback tag)", tags)
	}
	// Deleting a referrer removes it from the list.
	if err := remote.Delete(repo.Digest(digestOf(t, arts[sbomType]).String()), e.opts...); err != nil {
		t.Fatal(err)
	}
	idx = must[v1.ImageIndex](t)(remote.Referrers(subRef, e.opts...))
	if m := must[*v1.IndexManifest](t)(idx.IndexManifest()); len(m.Manifests) != 1 || m.Manifests[0].ArtifactType != sigType {
		t.Errorf("referrers after deleting the sbom: %+v", m.Manifests)
	}
}

func TestGGCRStreamingLayer(t *testing.T) {
	e := newGGCR(t)
	data := randomBytes(t, 3<<20+12345)
	sl := stream.NewLayer(io.NopCloser(bytes.NewReader(data)))
	img := must[v1.Image](t)(mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), sl))
	repo := e.repo("e2e/stream")
	e.rec.take()
	if err := remote.Write(repo.Tag("s"), img, e.opts...); err != nil {
		t.Fatalf("push streaming layer: %v", err)
	}
	chunked := 0
	for _, q := range e.rec.take() {
		if q.Method == http.MethodPatch && q.Length < 0 {
			chunked++
		}
	}
	if chunked == 0 {
		t.Error("ggcr sent no chunked PATCH for the streaming layer; the test does not test what it means to")
	}
	d, size := digestOf(t, sl), must[int64](t)(sl.Size())
	pulled := must[v1.Image](t)(remote.Image(repo.Tag("s"), e.opts...))
	if wm, gm := must[[]byte](t)(img.RawManifest()), must[[]byte](t)(pulled.RawManifest()); !bytes.Equal(wm, gm) {
		t.Errorf("manifest differs:\nwant %s\ngot  %s", wm, gm)
	}
	l := must[v1.Layer](t)(pulled.LayerByDigest(d))
	comp := readAll(t, l.Compressed)
	if int64(len(comp)) != size || sha256Digest(comp) != d.String() {
		t.Errorf("pulled streamed layer: %d bytes hashing to %s, want %d bytes %s", len(comp), sha256Digest(comp), size, d)
	}
	if unc := readAll(t, l.Uncompressed); !bytes.Equal(unc, data) {
		t.Errorf("streamed layer uncompresses to %d bytes that differ from the %d streamed", len(unc), len(data))
	}
}

// ---- raw HTTP: error paths and chunked uploads ----

// pushBlob pushes b to repo monolithically and fails the test unless it is created.
func pushBlob(t testing.TB, base, repo string, b []byte) string {
	t.Helper()
	d := sha256Digest(b)
	r := mustDo(t, http.MethodPost, base, "/v2/"+repo+"/blobs/uploads/?digest="+d, nil, b)
	if r.Status != http.StatusCreated || r.Header.Get("Docker-Content-Digest") != d {
		t.Fatalf("push blob %s to %s: %s (Docker-Content-Digest %q)", d, repo, r, r.Header.Get("Docker-Content-Digest"))
	}
	return d
}

// startUpload opens an upload session and returns its Location.
func startUpload(t testing.TB, base, repo string) string {
	t.Helper()
	r := mustDo(t, http.MethodPost, base, "/v2/"+repo+"/blobs/uploads/", nil, nil)
	loc := r.Header.Get("Location")
	if r.Status != http.StatusAccepted || loc == "" {
		t.Fatalf("start upload in %s: %s (Location %q)", repo, r, loc)
	}
	return loc
}

// withDigest appends ?digest= (or &digest=) to an upload Location.
func withDigest(loc, d string) string {
	if strings.Contains(loc, "?") {
		return loc + "&digest=" + d
	}
	return loc + "?digest=" + d
}

func contentRange(start, n int) map[string]string {
	return map[string]string{"Content-Range": fmt.Sprintf("%d-%d", start, start+n-1), "Content-Type": "application/octet-stream"}
}

type descriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
}

type imageManifest struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	Config        descriptor        `json:"config"`
	Layers        []descriptor      `json:"layers"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

const (
	mtManifest = "application/vnd.oci.image.manifest.v1+json"
	mtIndex    = "application/vnd.oci.image.index.v1+json"
	mtConfig   = "application/vnd.oci.image.config.v1+json"
	mtLayer    = "application/vnd.oci.image.layer.v1.tar"
)

func manifestJSON(t testing.TB, config descriptor, layers ...descriptor) []byte {
	t.Helper()
	if layers == nil {
		layers = []descriptor{}
	}
	b, err := json.Marshal(imageManifest{SchemaVersion: 2, MediaType: mtManifest, Config: config, Layers: layers})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRawErrors(t *testing.T) {
	s := startServer(t, t.TempDir())
	base := s.URL
	t.Cleanup(httpClient.CloseIdleConnections)

	t.Run("wrong-digest", func(t *testing.T) {
		cases := []struct {
			name string
			push func(t *testing.T, repo string, b []byte, claimed string) response
		}{
			{"monolithic-post", func(t *testing.T, repo string, b []byte, claimed string) response {
				return mustDo(t, http.MethodPost, base, "/v2/"+repo+"/blobs/uploads/?digest="+claimed, nil, b)
			}},
			{"post-then-put", func(t *testing.T, repo string, b []byte, claimed string) response {
				return mustDo(t, http.MethodPut, base, withDigest(startUpload(t, base, repo), claimed), nil, b)
			}},
			{"patch-then-empty-put", func(t *testing.T, repo string, b []byte, claimed string) response {
				loc := startUpload(t, base, repo)
				expect(t, "PATCH", mustDo(t, http.MethodPatch, base, loc, contentRange(0, len(b)), b), http.StatusAccepted, "")
				return mustDo(t, http.MethodPut, base, withDigest(loc, claimed), nil, nil)
			}},
			{"patch-then-put-last-chunk", func(t *testing.T, repo string, b []byte, claimed string) response {
				loc := startUpload(t, base, repo)
				half := len(b) / 2
				expect(t, "PATCH", mustDo(t, http.MethodPatch, base, loc, contentRange(0, half), b[:half]), http.StatusAccepted, "")
				return mustDo(t, http.MethodPut, base, withDigest(loc, claimed), contentRange(half, len(b)-half), b[half:])
			}},
			{"streamed-put", func(t *testing.T, repo string, b []byte, claimed string) response {
				return mustDo(t, http.MethodPut, base, withDigest(startUpload(t, base, repo), claimed), nil, bytes.NewBuffer(b))
			}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				repo := "neg/digest/" + tc.name
				b := randomBytes(t, 70<<10)
				actual := sha256Digest(b)
				claimed := sha256Digest(append([]byte("not "), b...))
				expect(t, "push with a wrong digest", tc.push(t, repo, b, claimed), http.StatusBadRequest, "DIGEST_INVALID")
				for _, d := range []string{claimed, actual} {
					expect(t, "GET "+d, mustDo(t, http.MethodGet, base, "/v2/"+repo+"/blobs/"+d, nil, nil), http.StatusNotFound, "BLOB_UNKNOWN")
					expect(t, "HEAD "+d, mustDo(t, http.MethodHead, base, "/v2/"+repo+"/blobs/"+d, nil, nil), http.StatusNotFound, "")
				}
				// The same bytes under their real digest still push fine.
				pushBlob(t, base, repo, b)
			})
		}
		expect(t, "malformed digest", mustDo(t, http.MethodPost, base, "/v2/neg/digest/x/blobs/uploads/?digest=sha256:xyz", nil, []byte("x")), http.StatusBadRequest, "DIGEST_INVALID")
		expect(t, "PUT without a digest", mustDo(t, http.MethodPut, base, startUpload(t, base, "neg/digest/x"), nil, []byte("x")), http.StatusBadRequest, "DIGEST_INVALID")
	})

	t.Run("manifest-blob-unknown", func(t *testing.T) {
		repo := "neg/manifest"
		cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
		cd := descriptor{mtConfig, pushBlob(t, base, repo, cfg), int64(len(cfg))}
		missing := descriptor{mtLayer, sha256Digest([]byte("layer that was never pushed")), 27}
		elsewhere := []byte("a layer pushed to another repository only")
		ed := descriptor{mtLayer, pushBlob(t, base, "neg/manifest-other", elsewhere), int64(len(elsewhere))}
		noCfg := descriptor{mtConfig, sha256Digest([]byte("config never pushed")), 19}
		index := []byte(`{"schemaVersion":2,"mediaType":"` + mtIndex + `","manifests":[{"mediaType":"` + mtManifest + `","digest":"` + sha256Digest([]byte("no such manifest")) + `","size":16}]}`)
		cases := []struct {
			name, tag, mediaType string
			body                 []byte
		}{
			{"missing-layer", "missing-layer", mtManifest, manifestJSON(t, cd, missing)},
			{"missing-config", "missing-config", mtManifest, manifestJSON(t, noCfg)},
			{"layer-in-other-repo", "other-repo", mtManifest, manifestJSON(t, cd, ed)},
			{"index-missing-child", "index", mtIndex, index},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				r := mustDo(t, http.MethodPut, base, "/v2/"+repo+"/manifests/"+tc.tag, map[string]string{"Content-Type": tc.mediaType}, tc.body)
				expect(t, "PUT manifest", r, http.StatusBadRequest, "MANIFEST_BLOB_UNKNOWN")
				expect(t, "GET by tag", mustDo(t, http.MethodGet, base, "/v2/"+repo+"/manifests/"+tc.tag, nil, nil), http.StatusNotFound, "MANIFEST_UNKNOWN")
				expect(t, "GET by digest", mustDo(t, http.MethodGet, base, "/v2/"+repo+"/manifests/"+sha256Digest(tc.body), nil, nil), http.StatusNotFound, "MANIFEST_UNKNOWN")
			})
		}
		// Control: with its blobs present the manifest is accepted.
		good := manifestJSON(t, cd)
		expect(t, "PUT good manifest", mustDo(t, http.MethodPut, base, "/v2/"+repo+"/manifests/good", map[string]string{"Content-Type": mtManifest}, good), http.StatusCreated, "")
	})

	t.Run("manifest-invalid", func(t *testing.T) {
		cfg := []byte(`{}`)
		cd := descriptor{mtConfig, pushBlob(t, base, "neg/invalid", cfg), 2}
		good := manifestJSON(t, cd)
		cases := []struct {
			name, ref string
			body      []byte
			status    int
			code      string
		}{
			{"not-json", "t1", []byte("{not json"), 400, "MANIFEST_INVALID"},
			{"schema-1", "t2", []byte(`{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}`), 400, "MANIFEST_INVALID"},
			{"digest-mismatch", sha256Digest([]byte("other")), good, 400, "DIGEST_INVALID"},
			{"invalid-tag", "-bad", good, 400, "TAG_INVALID"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				r := mustDo(t, http.MethodPut, base, "/v2/neg/invalid/manifests/"+tc.ref, map[string]string{"Content-Type": mtManifest}, tc.body)
				expect(t, "PUT manifest", r, tc.status, tc.code)
			})
		}
	})

	t.Run("name-invalid", func(t *testing.T) {
		d := sha256Digest([]byte("x"))
		long := strings.Repeat("a", 256)
		cases := []struct{ method, path string }{
			{http.MethodPost, "/v2/Upper/blobs/uploads/"},
			{http.MethodGet, "/v2/a..b/manifests/latest"},
			{http.MethodPut, "/v2/trailing-/manifests/latest"},
			{http.MethodGet, "/v2/-leading/tags/list"},
			{http.MethodGet, "/v2/a__-b/blobs/" + d},
			{http.MethodGet, "/v2/a/_b/referrers/" + d},
			{http.MethodPost, "/v2/" + long + "/blobs/uploads/"},
			{http.MethodGet, "/v2/sp%20ace/manifests/latest"},
		}
		for _, tc := range cases {
			t.Run(tc.method+tail(tc.path, 40), func(t *testing.T) {
				var body any
				if tc.method == http.MethodPut {
					body = []byte("{}")
				}
				expect(t, tc.method+" "+tc.path, mustDo(t, tc.method, base, tc.path, nil, body), http.StatusBadRequest, "NAME_INVALID")
			})
		}
	})

	t.Run("out-of-order-chunk", func(t *testing.T) {
		repo := "neg/chunks"
		data := randomBytes(t, 300)
		loc := startUpload(t, base, repo)
		r := mustDo(t, http.MethodPatch, base, loc, contentRange(0, 100), data[:100])
		expect(t, "first chunk", r, http.StatusAccepted, "")
		if got := r.Header.Get("Range"); got != "0-99" {
			t.Errorf("Range after the first chunk: %q, want 0-99", got)
		}
		for _, start := range []int{200, 50, 0, 101} {
			r := mustDo(t, http.MethodPatch, base, loc, contentRange(start, 100), data[start:start+100])
			if expect(t, fmt.Sprintf("chunk at %d with 100 bytes stored", start), r, http.StatusRequestedRangeNotSatisfiable, "") {
				if got := r.Header.Get("Range"); got != "0-99" {
					t.Errorf("416 for chunk at %d: Range %q, want 0-99 (where to resume)", start, got)
				}
				if r.Header.Get("Location") == "" {
					t.Errorf("416 for chunk at %d: no Location", start)
				}
			}
		}
		expect(t, "second chunk", mustDo(t, http.MethodPatch, base, loc, contentRange(100, 100), data[100:200]), http.StatusAccepted, "")
		d := sha256Digest(data)
		expect(t, "finish", mustDo(t, http.MethodPut, base, withDigest(loc, d), contentRange(200, 100), data[200:]), http.StatusCreated, "")
		g := mustDo(t, http.MethodGet, base, "/v2/"+repo+"/blobs/"+d, nil, nil)
		if expect(t, "GET", g, http.StatusOK, "") && !bytes.Equal(g.Body, data) {
			t.Errorf("blob after out-of-order attempts: %d bytes that differ from the %d sent", len(g.Body), len(data))
		}
	})

	t.Run("cancelled-upload", func(t *testing.T) {
		loc := startUpload(t, base, "neg/cancel")
		data := []byte("bytes of a cancelled upload")
		expect(t, "PATCH", mustDo(t, http.MethodPatch, base, loc, contentRange(0, len(data)), data), http.StatusAccepted, "")
		expect(t, "DELETE session", mustDo(t, http.MethodDelete, base, loc, nil, nil), http.StatusNoContent, "")
		expect(t, "GET cancelled session", mustDo(t, http.MethodGet, base, loc, nil, nil), http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN")
		expect(t, "PATCH cancelled session", mustDo(t, http.MethodPatch, base, loc, contentRange(len(data), 1), []byte("x")), http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN")
		expect(t, "PUT cancelled session", mustDo(t, http.MethodPut, base, withDigest(loc, sha256Digest(data)), nil, nil), http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN")
		expect(t, "GET blob", mustDo(t, http.MethodGet, base, "/v2/neg/cancel/blobs/"+sha256Digest(data), nil, nil), http.StatusNotFound, "BLOB_UNKNOWN")
	})

	t.Run("oversized-manifest", func(t *testing.T) {
		big := append([]byte(`{"schemaVersion":2,"mediaType":"`+mtIndex+`","manifests":[],"annotations":{"pad":"`), bytes.Repeat([]byte("p"), 4<<20)...)
		big = append(big, `"}}`...)
		r := mustDo(t, http.MethodPut, base, "/v2/neg/big/manifests/v1", map[string]string{"Content-Type": mtIndex}, big)
		if r.Status != http.StatusBadRequest && r.Status != http.StatusRequestEntityTooLarge {
			t.Errorf("PUT of a %d-byte manifest: %s, want 400 MANIFEST_INVALID or 413", len(big), r)
		}
		expect(t, "GET oversized manifest", mustDo(t, http.MethodGet, base, "/v2/neg/big/manifests/v1", nil, nil), http.StatusNotFound, "")
	})

	t.Run("repository-isolation", func(t *testing.T) {
		b := []byte("only in repository A " + t.Name())
		d := pushBlob(t, base, "neg/iso-a", b)
		cfg := descriptor{mtConfig, d, int64(len(b))}
		m := manifestJSON(t, cfg)
		expect(t, "PUT manifest in A", mustDo(t, http.MethodPut, base, "/v2/neg/iso-a/manifests/v1", map[string]string{"Content-Type": mtManifest}, m), http.StatusCreated, "")
		// B exists too (so a 404 is about the blob, not the repository).
		pushBlob(t, base, "neg/iso-b", []byte("something in B"))
		expect(t, "GET blob in A", mustDo(t, http.MethodGet, base, "/v2/neg/iso-a/blobs/"+d, nil, nil), http.StatusOK, "")
		expect(t, "GET blob in B", mustDo(t, http.MethodGet, base, "/v2/neg/iso-b/blobs/"+d, nil, nil), http.StatusNotFound, "BLOB_UNKNOWN")
		expect(t, "HEAD blob in B", mustDo(t, http.MethodHead, base, "/v2/neg/iso-b/blobs/"+d, nil, nil), http.StatusNotFound, "")
		expect(t, "GET blob in unknown repo", mustDo(t, http.MethodGet, base, "/v2/neg/iso-c/blobs/"+d, nil, nil), http.StatusNotFound, "BLOB_UNKNOWN")
		expect(t, "GET manifest in B", mustDo(t, http.MethodGet, base, "/v2/neg/iso-b/manifests/"+sha256Digest(m), nil, nil), http.StatusNotFound, "MANIFEST_UNKNOWN")
		expect(t, "GET tag in B", mustDo(t, http.MethodGet, base, "/v2/neg/iso-b/manifests/v1", nil, nil), http.StatusNotFound, "MANIFEST_UNKNOWN")
		// An upload session belongs to its repository.
		loc := startUpload(t, base, "neg/iso-a")
		other := strings.Replace(loc, "/neg/iso-a/", "/neg/iso-b/", 1)
		expect(t, "PATCH A's session through B", mustDo(t, http.MethodPatch, base, other, contentRange(0, 1), []byte("x")), http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN")
		expect(t, "GET A's session through B", mustDo(t, http.MethodGet, base, other, nil, nil), http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN")
		// Deleting A's link leaves B's copy of the same bytes alone.
		shared := []byte("shared bytes " + t.Name())
		sd := pushBlob(t, base, "neg/iso-a", shared)
		pushBlob(t, base, "neg/iso-b", shared)
		expect(t, "DELETE blob in A", mustDo(t, http.MethodDelete, base, "/v2/neg/iso-a/blobs/"+sd, nil, nil), http.StatusAccepted, "")
		expect(t, "GET deleted blob in A", mustDo(t, http.MethodGet, base, "/v2/neg/iso-a/blobs/"+sd, nil, nil), http.StatusNotFound, "BLOB_UNKNOWN")
		if g := mustDo(t, http.MethodGet, base, "/v2/neg/iso-b/blobs/"+sd, nil, nil); expect(t, "GET in B", g, http.StatusOK, "") && !bytes.Equal(g.Body, shared) {
			t.Errorf("B's blob changed after A's delete")
		}
	})
}

func TestRawChunkedUpload(t *testing.T) {
	s := startServer(t, t.TempDir())
	t.Cleanup(httpClient.CloseIdleConnections)
	cases := []struct {
		name   string
		size   int
		chunks []int // sizes of the PATCHes; the rest goes in the PUT
		ranged bool  // PATCHes carry Content-Range (else they are streamed, chunked encoding)
	}{
		{"empty-blob", 0, nil, true},
		{"put-only", 5000, nil, true},
		{"three-patches-empty-put", 700 << 10, []int{100 << 10, 300 << 10, 300 << 10}, true},
		{"patches-and-last-chunk-in-put", 500 << 10, []int{1, 1 << 10, 200 << 10}, true},
		{"one-byte-chunks", 6, []int{1, 1, 1, 1, 1}, true},
		{"streamed-patches", 1<<20 + 7, []int{300 << 10, 300 << 10, 424<<10 + 7}, false},
		{"streamed-patch-then-put-rest", 900 << 10, []int{400 << 10}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			repo := "chunked/" + tc.name
			data := randomBytes(t, tc.size)
			d := sha256Digest(data)
			loc := startUpload(t, s.URL, repo)
			off := 0
			for i, n := range tc.chunks {
				var r response
				if tc.ranged {
					r = mustDo(t, http.MethodPatch, s.URL, loc, contentRange(off, n), data[off:off+n])
				} else {
					r = mustDo(t, http.MethodPatch, s.URL, loc, nil, bytes.NewBuffer(data[off:off+n]))
				}
				off += n
				if !expect(t, fmt.Sprintf("PATCH %d", i), r, http.StatusAccepted, "") {
					return
				}
				if got, want := r.Header.Get("Range"), fmt.Sprintf("0-%d", off-1); got != want {
					t.Errorf("PATCH %d: Range %q, want %q", i, got, want)
				}
				if nl := r.Header.Get("Location"); nl == "" {
					t.Errorf("PATCH %d: no Location", i)
				} else {
					loc = nl
				}
				st := mustDo(t, http.MethodGet, s.URL, loc, nil, nil)
				if expect(t, "GET upload status", st, http.StatusNoContent, "") && st.Header.Get("Range") != fmt.Sprintf("0-%d", off-1) {
					t.Errorf("upload status after %d bytes: Range %q", off, st.Header.Get("Range"))
				}
			}
			var hdr map[string]string
			var body any
			if rest := data[off:]; len(rest) > 0 {
				hdr, body = contentRange(off, len(rest)), rest
			}
			r := mustDo(t, http.MethodPut, s.URL, withDigest(loc, d), hdr, body)
			if !expect(t, "PUT", r, http.StatusCreated, "") {
				return
			}
			if r.Header.Get("Docker-Content-Digest") != d || r.Header.Get("Location") != "/v2/"+repo+"/blobs/"+d {
				t.Errorf("PUT: Docker-Content-Digest %q Location %q", r.Header.Get("Docker-Content-Digest"), r.Header.Get("Location"))
			}
			g := mustDo(t, http.MethodGet, s.URL, "/v2/"+repo+"/blobs/"+d, nil, nil)
			if expect(t, "GET blob", g, http.StatusOK, "") && !bytes.Equal(g.Body, data) {
				t.Errorf("blob: %d bytes that differ from the %d sent", len(g.Body), len(data))
			}
			if len(data) >= 3 {
				rg := mustDo(t, http.MethodGet, s.URL, "/v2/"+repo+"/blobs/"+d, map[string]string{"Range": fmt.Sprintf("bytes=1-%d", len(data)-2)}, nil)
				if expect(t, "GET with Range", rg, http.StatusPartialContent, "") {
					if !bytes.Equal(rg.Body, data[1:len(data)-1]) {
						t.Errorf("ranged GET: %d bytes that differ from bytes 1..%d", len(rg.Body), len(data)-2)
					}
					if want := fmt.Sprintf("bytes 1-%d/%d", len(data)-2, len(data)); rg.Header.Get("Content-Range") != want {
						t.Errorf("ranged GET: Content-Range %q, want %q", rg.Header.Get("Content-Range"), want)
					}
				}
			}
			h := mustDo(t, http.MethodHead, s.URL, "/v2/"+repo+"/blobs/"+d, nil, nil)
			if h.Status != http.StatusOK || h.Header.Get("Content-Length") != fmt.Sprint(len(data)) {
				t.Errorf("HEAD blob: %d Content-Length %q, want 200 %d", h.Status, h.Header.Get("Content-Length"), len(data))
			}
			expect(t, "session after finish", mustDo(t, http.MethodGet, s.URL, loc, nil, nil), http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN")
		})
	}
}
