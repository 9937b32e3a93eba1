package remote_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stowage/stowage"
	"github.com/stowage/stowage/auth"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/ociapi"
	"github.com/stowage/stowage/remote"
	"github.com/stowage/stowage/storage/mem"
	"golang.org/x/crypto/bcrypt"
)

// registry is an in-process Stowage (the real engine, SQLite in memory,
// optionally with access control) behind a handler that counts requests
// and can inject faults.
type registry struct {
	reg  *stowage.Registry
	srv  *httptest.Server
	host string

	mu     sync.Mutex
	counts map[string]int                                    // "GET /v2/…" and "GET /oauth2/token" → requests
	fault  func(w http.ResponseWriter, r *http.Request) bool // true: answered
	tamper bool                                              // flip a byte of every blob body
}

const adminPass = "admin-password-1"

var specsV2 = specs.Versioned{SchemaVersion: 2}

func newRegistry(t *testing.T, accessControl bool) *registry {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	r := &registry{counts: map[string]int{}}
	r.reg = stowage.NewRegistry(db, mem.New(), stowage.Options{})
	mux := http.NewServeMux()
	var oci http.Handler = ociapi.New(r.reg, nil)
	if accessControl {
		a, err := auth.New(ctx, db, auth.Options{BcryptCost: bcrypt.MinCost})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.EnsureAdmin(ctx, "admin", adminPass); err != nil {
			t.Fatal(err)
		}
		oci = a.Middleware(oci)
		mux.Handle(auth.TokenPath, a.TokenHandler())
	}
	mux.Handle("/v2/", oci)
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.counts[req.Method+" "+req.URL.Path]++
		fault, tamper := r.fault, r.tamper
		r.mu.Unlock()
		if fault != nil && fault(w, req) {
			return
		}
		if tamper && strings.Contains(req.URL.Path, "/blobs/") {
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, req)
			b := rec.Body.Bytes()
			if len(b) > 0 {
				b[0] ^= 0xff
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			w.Write(b)
			return
		}
		mux.ServeHTTP(w, req)
	}))
	r.host = strings.TrimPrefix(r.srv.URL, "http://")
	t.Cleanup(func() { r.srv.Close(); db.Close() })
	return r
}

func (r *registry) count(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counts[key]
}

func (r *registry) client(user, pass string) *remote.Client {
	return remote.New(r.host, remote.Options{PlainHTTP: true, Username: user, Password: pass})
}

// image is what pushImage pushed.
type image struct {
	index     stowage.Digest
	platforms []stowage.Digest
	blobs     []stowage.Descriptor
	referrer  stowage.Digest // an SBOM-like artifact whose subject is the index
}

func randomBlob(t *testing.T, n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func (r *registry) putBlob(t *testing.T, repo string, b []byte, mt string) stowage.Descriptor {
	t.Helper()
	d := digest.FromBytes(b)
	if _, err := r.reg.PutBlob(context.Background(), repo, d, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
	return stowage.Descriptor{MediaType: mt, Digest: d, Size: int64(len(b))}
}

func (r *registry) putManifest(t *testing.T, repo, tag string, v any) stowage.Descriptor {
	t.Helper()
	body, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var mt struct{ MediaType string }
	json.Unmarshal(body, &mt)
	ref := stowage.Reference{Tag: tag}
	if tag == "" {
		ref = stowage.Reference{Digest: digest.FromBytes(body)}
	}
	res, err := r.reg.PutManifest(context.Background(), repo, ref, mt.MediaType, body, nil)
	if err != nil {
		t.Fatal(err)
	}
	return stowage.Descriptor{MediaType: mt.MediaType, Digest: res.Digest, Size: int64(len(body))}
}

// pushImage pushes a two-platform index tagged tag, with a referrer.
func (r *registry) pushImage(t *testing.T, repo, tag string) image {
	t.Helper()
	var img image
	var children []v1.Descriptor
	shared := r.putBlob(t, repo, randomBlob(t, 300<<10), v1.MediaTypeImageLayerGzip)
	img.blobs = append(img.blobs, shared)
	for _, arch := range []string{"amd64", "arm64"} {
		cfg := r.putBlob(t, repo, []byte(`{"architecture":"`+arch+`","os":"linux"}`), v1.MediaTypeImageConfig)
		layer := r.putBlob(t, repo, randomBlob(t, 100<<10), v1.MediaTypeImageLayerGzip)
		img.blobs = append(img.blobs, cfg, layer)
		m := r.putManifest(t, repo, "", v1.Manifest{Versioned: specsV2, MediaType: v1.MediaTypeImageManifest, Config: cfg, Layers: []v1.Descriptor{shared, layer}})
		img.platforms = append(img.platforms, m.Digest)
		m.Platform = &v1.Platform{OS: "linux", Architecture: arch}
		children = append(children, m)
	}
	idx := r.putManifest(t, repo, tag, v1.Index{Versioned: specsV2, MediaType: v1.MediaTypeImageIndex, Manifests: children})
	img.index = idx.Digest
	sbom := r.putBlob(t, repo, []byte(`{"spdxVersion":"SPDX-2.3"}`), "application/spdx+json")
	empty := r.putBlob(t, repo, []byte(`{}`), v1.MediaTypeEmptyJSON)
	img.blobs = append(img.blobs, sbom, empty)
	ref := r.putManifest(t, repo, "", v1.Manifest{Versioned: specsV2, MediaType: v1.MediaTypeImageManifest, ArtifactType: "application/spdx+json",
		Config: empty, Layers: []v1.Descriptor{sbom}, Subject: &idx})
	img.referrer = ref.Digest
	return img
}

// regSink puts a copy into an in-process registry, as the management API does.
type regSink struct{ reg *stowage.Registry }

func (s regSink) HasBlob(ctx context.Context, repo string, d stowage.Digest) (bool, error) {
	_, err := s.reg.StatBlob(ctx, repo, d)
	if stowage.ErrorCodeOf(err) == stowage.CodeBlobUnknown {
		return false, nil
	}
	return err == nil, err
}

func (s regSink) PutBlob(ctx context.Context, repo string, d stowage.Digest, r io.Reader, size int64) error {
	_, err := s.reg.PutBlob(ctx, repo, d, r, size)
	return err
}

func (s regSink) PutManifest(ctx context.Context, repo string, m remote.Manifest, tags []string) error {
	_, err := s.reg.PutManifest(ctx, repo, stowage.Reference{Digest: m.Digest}, m.MediaType, m.Body, tags)
	return err
}
