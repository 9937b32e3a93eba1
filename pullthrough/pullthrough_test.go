package pullthrough_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stowage/stowage"
	"github.com/stowage/stowage/auth"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/ociapi"
	"github.com/stowage/stowage/pullthrough"
	"github.com/stowage/stowage/remote"
	"github.com/stowage/stowage/storage/mem"
	"golang.org/x/crypto/bcrypt"
	_ "modernc.org/sqlite"
)

// keyring is a test keyring: AES-GCM with a fixed random key.
type keyring struct{ key []byte }

func newKeyring() *keyring { k := make([]byte, 32); rand.Read(k); return &keyring{k} }

func (k *keyring) Describe() string { return "test keyring" }
func (k *keyring) Current(context.Context) (stowage.KeyVersion, error) {
	return stowage.KeyVersion{ID: "test", Version: 1}, nil
}
func (k *keyring) gcm() cipher.AEAD { b, _ := aes.NewCipher(k.key); g, _ := cipher.NewGCM(b); return g }
func (k *keyring) Wrap(_ context.Context, _ stowage.KeyVersion, key []byte) ([]byte, error) {
	g := k.gcm()
	n := make([]byte, g.NonceSize())
	rand.Read(n)
	return g.Seal(n, n, key, nil), nil
}
func (k *keyring) Unwrap(_ context.Context, _ stowage.KeyVersion, w []byte) ([]byte, error) {
	g := k.gcm()
	return g.Open(nil, w[:g.NonceSize()], w[g.NonceSize():], nil)
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// upstream is an in-process Stowage with access control, counting the
// requests it answers; down makes it answer 503.
type upstream struct {
	reg    *stowage.Registry
	srv    *httptest.Server
	host   string
	mu     sync.Mutex
	counts map[string]int
	down   bool
	tamper bool
}

const upPass = "upstream-password-1"

func newUpstream(t *testing.T) *upstream {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{counts: map[string]int{}}
	u.reg = stowage.NewRegistry(db, mem.New(), stowage.Options{})
	a, err := auth.New(ctx, db, auth.Options{BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.EnsureAdmin(ctx, "admin", upPass); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/v2/", a.Middleware(ociapi.New(u.reg, nil)))
	mux.Handle(auth.TokenPath, a.TokenHandler())
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.counts[r.Method+" "+r.URL.Path]++
		down, tamper := u.down, u.tamper
		u.mu.Unlock()
		if down {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if tamper && strings.Contains(r.URL.Path, "/blobs/") && r.Method == http.MethodGet {
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, r)
			b := rec.Body.Bytes()
			if len(b) > 0 {
				b[len(b)-1] ^= 0xff
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			w.Write(b)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	u.host = strings.TrimPrefix(u.srv.URL, "http://")
	t.Cleanup(func() { u.srv.Close(); db.Close() })
	return u
}

func (u *upstream) count(key string) int  { u.mu.Lock(); defer u.mu.Unlock(); return u.counts[key] }
func (u *upstream) set(f func(*upstream)) { u.mu.Lock(); f(u); u.mu.Unlock() }

func (u *upstream) putBlob(t *testing.T, repo string, b []byte, mt string) v1.Descriptor {
	d := digest.FromBytes(b)
	if _, err := u.reg.PutBlob(context.Background(), repo, d, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
	return v1.Descriptor{MediaType: mt, Digest: d, Size: int64(len(b))}
}

func (u *upstream) putManifest(t *testing.T, repo string, ref stowage.Reference, v any) v1.Descriptor {
	body, _ := json.Marshal(v)
	var mt struct{ MediaType string }
	json.Unmarshal(body, &mt)
	if ref == (stowage.Reference{}) {
		ref.Digest = digest.FromBytes(body)
	}
	res, err := u.reg.PutManifest(context.Background(), repo, ref, mt.MediaType, body, nil)
	if err != nil {
		t.Fatal(err)
	}
	return v1.Descriptor{MediaType: mt.MediaType, Digest: res.Digest, Size: int64(len(body))}
}

// pushIndex pushes a two-platform index tagged tag; it returns the index
// and every blob.
func (u *upstream) pushIndex(t *testing.T, repo, tag string) (v1.Descriptor, []v1.Descriptor) {
	var blobs []v1.Descriptor
	var children []v1.Descriptor
	for _, arch := range []string{"amd64", "arm64"} {
		layer := make([]byte, 200<<10)
		rand.Read(layer)
		cfg := u.putBlob(t, repo, []byte(`{"architecture":"`+arch+`","os":"linux","tag":"`+tag+`"}`), v1.MediaTypeImageConfig)
		l := u.putBlob(t, repo, layer, v1.MediaTypeImageLayerGzip)
		blobs = append(blobs, cfg, l)
		m := u.putManifest(t, repo, stowage.Reference{}, v1.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageManifest, Config: cfg, Layers: []v1.Descriptor{l}})
		m.Platform = &v1.Platform{OS: "linux", Architecture: arch}
		children = append(children, m)
	}
	idx := u.putManifest(t, repo, stowage.Reference{Tag: tag}, v1.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageIndex, Manifests: children})
	return idx, blobs
}

// cache is a Stowage with the pull-through cache in front of its /v2/.
type cache struct {
	reg  *stowage.Registry
	db   *sqlite.DB
	svc  *pullthrough.Service
	srv  *httptest.Server
	host string
	clk  *clock
	path string
}

func newCache(t *testing.T, keys pullthrough.Keyring) *cache {
	ctx := context.Background()
	path := t.TempDir() + "/meta.db"
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	c := &cache{db: db, clk: &clock{t: time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)}, path: path}
	c.reg = stowage.NewRegistry(db, mem.New(), stowage.Options{})
	c.svc = pullthrough.New(c.reg, db, pullthrough.Options{Keys: keys, Now: c.clk.Now,
		Remote: func(o *remote.Options) { o.PlainHTTP = true; o.Retries = -1 },
		Self:   func() []string { return []string{c.host} }})
	c.srv = httptest.NewServer(ociapi.New(c.reg, nil).WithFiller(c.svc))
	c.host = strings.TrimPrefix(c.srv.URL, "http://")
	t.Cleanup(func() { c.srv.Close(); c.svc.Close(); db.Close() })
	return c
}

// pull reads repo:tag from the cache like a client: the index, each
// platform's manifest and every blob, verifying digests.
func (c *cache) pull(ctx context.Context, repo, tag string) (stowage.Digest, error) {
	cl := remote.New(c.host, remote.Options{PlainHTTP: true, Retries: -1})
	idx, err := cl.GetManifest(ctx, repo, stowage.Reference{Tag: tag})
	if err != nil {
		return "", err
	}
	var ix v1.Index
	json.Unmarshal(idx.Body, &ix)
	for _, d := range ix.Manifests {
		m, err := cl.GetManifest(ctx, repo, stowage.Reference{Digest: d.Digest})
		if err != nil {
			return "", err
		}
		var im v1.Manifest
		json.Unmarshal(m.Body, &im)
		for _, b := range append([]v1.Descriptor{im.Config}, im.Layers...) {
			rc, _, err := cl.OpenBlob(ctx, repo, b.Digest)
			if err != nil {
				return "", err
			}
			_, err = io.Copy(io.Discard, rc)
			rc.Close()
			if err != nil {
				return "", err
			}
		}
	}
	return idx.Digest, nil
}

// waitCached waits (bounded) until repo:tag is stored in the cache.
func (c *cache) waitCached(t *testing.T, repo, tag string, want stowage.Digest) {
	t.Helper()
	for i := 0; i < 200; i++ {
		if m, err := c.reg.ResolveManifest(context.Background(), repo, stowage.Reference{Tag: tag}); err == nil && m.Digest == want {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("%s:%s was not cached as %s within 5 s", repo, tag, want)
}

// TestPullThrough: a pull under a rule fetches from an upstream with the
// token flow (credentials sealed at rest), stores the image, and serves it
// again while the upstream is down; tags are re-checked after the TTL.
func TestPullThrough(t *testing.T) {
	ctx := context.Background()
	up := newUpstream(t)
	idx, blobs := up.pushIndex(t, "library/app", "v1")

	// Without a keyring, a password is refused.
	noKeys := newCache(t, nil)
	if _, err := noKeys.svc.CreateRule(ctx, pullthrough.Rule{Name: "hub", Source: "hub/*", Upstream: up.host + "/library/*", Username: "admin"}, upPass); stowage.ErrorCodeOf(err) != stowage.CodeUnsupported {
		t.Fatalf("rule with a password and no keyring: %v", err)
	}

	c := newCache(t, newKeyring())
	r, err := c.svc.CreateRule(ctx, pullthrough.Rule{Name: "hub", Source: "hub/*", Upstream: up.host + "/library/*", Username: "admin", TagTTL: pullthrough.Duration(time.Hour)}, upPass)
	if err != nil || !r.HasPassword {
		t.Fatalf("CreateRule: %+v, %v", r, err)
	}
	if _, err := c.svc.CreateRule(ctx, pullthrough.Rule{Name: "hub2", Source: "hub/*", Upstream: up.host + "/x/*"}, ""); err == nil {
		t.Error("a second rule for the same source was accepted")
	}
	// The password is nowhere in the database file in the clear.
	raw, _ := sql.Open("sqlite", c.path)
	var secret []byte
	if err := raw.QueryRow(`SELECT secret FROM cache_rules WHERE name = 'hub'`).Scan(&secret); err != nil || bytes.Contains(secret, []byte(upPass)) || len(secret) == 0 {
		t.Errorf("stored secret %q, %v: want it sealed", secret, err)
	}
	raw.Close()

	// A repository no rule covers is not filled.
	if _, err := c.pull(ctx, "other/app", "v1"); !remote.IsNotFound(err) {
		t.Errorf("pull outside any rule: %v, want 404", err)
	}
	got, err := c.pull(ctx, "hub/app", "v1")
	if err != nil || got != idx.Digest {
		t.Fatalf("first pull: %s, %v; want %s", got, err, idx.Digest)
	}
	c.waitCached(t, "hub/app", "v1", idx.Digest)
	for _, b := range blobs {
		if n := up.count("GET /v2/library/app/blobs/" + string(b.Digest)); n != 1 {
			t.Errorf("blob %s fetched %d times from the upstream, want 1", b.Digest, n)
		}
	}
	// The index: read once (for the client and the background copy), its
	// tag checked with a HEAD (no GET by tag: pull rate limits count GETs).
	if n, m := up.count("GET /v2/library/app/manifests/"+string(idx.Digest)), up.count("GET /v2/library/app/manifests/v1"); n != 1 || m != 0 {
		t.Errorf("the index was read %d times by digest and %d by tag, want 1 and 0", n, m)
	}
	if rep, err := c.reg.RepositoryInfo(ctx, "hub/app"); err != nil || rep.Manifests != 3 || rep.Tags != 1 {
		t.Errorf("cached repository: %+v, %v; want 3 manifests and the tag", rep, err)
	}

	// The upstream moves the tag: within the TTL the cached one is served.
	idx2, _ := up.pushIndex(t, "library/app", "v1")
	if got, err := c.pull(ctx, "hub/app", "v1"); err != nil || got != idx.Digest {
		t.Errorf("pull within the TTL: %s, %v; want the cached %s", got, err, idx.Digest)
	}
	c.clk.add(2 * time.Hour)
	if got, err := c.pull(ctx, "hub/app", "v1"); err != nil || got != idx2.Digest {
		t.Errorf("pull after the TTL: %s, %v; want the upstream's new %s", got, err, idx2.Digest)
	}
	c.waitCached(t, "hub/app", "v1", idx2.Digest)

	// The upstream goes down: the cached tag is still served, after its TTL too.
	up.set(func(u *upstream) { u.down = true })
	c.clk.add(2 * time.Hour)
	if got, err := c.pull(ctx, "hub/app", "v1"); err != nil || got != idx2.Digest {
		t.Errorf("pull with the upstream down: %s, %v; want the cached %s", got, err, idx2.Digest)
	}
	// Something never cached: 503 UNAVAILABLE, saying why.
	_, err = c.pull(ctx, "hub/app", "v9")
	var re *remote.Error
	if !errors.As(err, &re) || re.Status != http.StatusServiceUnavailable {
		t.Errorf("uncached tag with the upstream down: %v, want 503", err)
	}
	up.set(func(u *upstream) { u.down = false })

	// Rules: list, show, delete; what was cached stays.
	if rules, err := c.svc.Rules(ctx); err != nil || len(rules) != 1 || rules[0].Name != "hub" {
		t.Errorf("Rules = %+v, %v", rules, err)
	}
	if err := c.svc.DeleteRule(ctx, "hub"); err != nil {
		t.Fatal(err)
	}
	if err := c.svc.DeleteRule(ctx, "hub"); stowage.ErrorCodeOf(err) != stowage.CodeNameUnknown {
		t.Errorf("delete twice: %v", err)
	}
	if _, err := c.reg.ResolveManifest(ctx, "hub/app", stowage.Reference{Tag: "v1"}); err != nil {
		t.Errorf("cached image gone with its rule: %v", err)
	}
}

// TestPullThroughConcurrent: ten clients pulling one uncached image at
// once cause one upstream fetch per blob.
func TestPullThroughConcurrent(t *testing.T) {
	ctx := context.Background()
	up := newUpstream(t)
	idx, blobs := up.pushIndex(t, "library/busy", "v1")
	c := newCache(t, newKeyring())
	if _, err := c.svc.CreateRule(ctx, pullthrough.Rule{Name: "hub", Source: "hub/*", Upstream: up.host + "/library/*", Username: "admin"}, upPass); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 10)
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var got stowage.Digest
			if got, errs[i] = c.pull(ctx, "hub/busy", "v1"); errs[i] == nil && got != idx.Digest {
				errs[i] = errors.New("wrong digest " + string(got))
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("client %d: %v", i, err)
		}
	}
	c.waitCached(t, "hub/busy", "v1", idx.Digest)
	for _, b := range blobs {
		if n := up.count("GET /v2/library/busy/blobs/" + string(b.Digest)); n != 1 {
			t.Errorf("blob %s: %d upstream fetches for 10 concurrent pulls, want 1", b.Digest, n)
		}
	}
	// Each manifest read once from the upstream: the index and both
	// platforms, for the clients and the background copy together.
	for _, d := range append([]stowage.Digest{idx.Digest}, children(t, up, "library/busy", idx.Digest)...) {
		if n := up.count("GET /v2/library/busy/manifests/" + string(d)); n != 1 {
			t.Errorf("manifest %s: %d upstream GETs for 10 concurrent pulls, want 1", d, n)
		}
	}
	if n := c.svc.BlobFetches.Load(); n != int64(len(blobs)) {
		t.Errorf("BlobFetches = %d, want %d", n, len(blobs))
	}
}

// TestPullThroughTampered: a blob whose bytes do not match its digest is
// refused: the client's response is cut short and nothing is kept.
func TestPullThroughTampered(t *testing.T) {
	ctx := context.Background()
	up := newUpstream(t)
	_, blobs := up.pushIndex(t, "library/bad", "v1")
	c := newCache(t, newKeyring())
	if _, err := c.svc.CreateRule(ctx, pullthrough.Rule{Name: "bad", Source: "bad", Upstream: up.host + "/library/bad", Username: "admin"}, upPass); err != nil {
		t.Fatal(err)
	}
	up.set(func(u *upstream) { u.tamper = true })
	// A client that does not verify (curl) must not get the whole body either.
	resp, err := http.Get(c.srv.URL + "/v2/bad/blobs/" + string(blobs[1].Digest))
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil && int64(len(body)) == blobs[1].Size {
		t.Fatalf("a tampered blob reached the client whole (status %d)", resp.StatusCode)
	}
	// The requests that do not stream it (a HEAD, a range, the clients
	// that waited) get a 503 naming the upstream and the mismatch: not a
	// 400 about an upload the client never made.
	for _, req := range []*http.Request{
		httptest.NewRequest(http.MethodHead, c.srv.URL+"/v2/bad/blobs/"+string(blobs[1].Digest), nil),
		httptest.NewRequest(http.MethodGet, c.srv.URL+"/v2/bad/blobs/"+string(blobs[1].Digest), nil),
	} {
		req.RequestURI = ""
		if req.Method == http.MethodGet {
			req.Header.Set("Range", "bytes=0-")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || req.Method == http.MethodGet && (!strings.Contains(string(b), up.host) || !strings.Contains(string(b), "matching its digest")) {
			t.Errorf("%s of a blob the upstream altered: %d %s; want 503 naming the upstream and the digest", req.Method, resp.StatusCode, b)
		}
	}
	cl := remote.New(c.host, remote.Options{PlainHTTP: true, Retries: -1})
	if _, err := c.reg.StatBlob(ctx, "bad", blobs[1].Digest); stowage.ErrorCodeOf(err) != stowage.CodeBlobUnknown {
		t.Errorf("tampered blob kept: %v", err)
	}
	up.set(func(u *upstream) { u.tamper = false })
	rc, _, err := cl.OpenBlob(ctx, "bad", blobs[1].Digest)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, rc)
	rc.Close()
	if err != nil || n != blobs[1].Size {
		t.Errorf("after the upstream recovered: %d bytes, %v", n, err)
	}
}

// children returns the manifests of index idx in the upstream.
func children(t *testing.T, up *upstream, repo string, idx stowage.Digest) []stowage.Digest {
	t.Helper()
	_, body, err := up.reg.GetManifest(context.Background(), repo, stowage.Reference{Digest: idx})
	if err != nil {
		t.Fatal(err)
	}
	var ix v1.Index
	json.Unmarshal(body, &ix)
	var out []stowage.Digest
	for _, d := range ix.Manifests {
		out = append(out, d.Digest)
	}
	return out
}

// TestPullThroughWriteLocked: a tag the upstream has, for content held
// here, in a write-locked repository: the pull gets the lock's DENIED, not
// a 404 saying the manifest does not exist.
func TestPullThroughWriteLocked(t *testing.T) {
	ctx := context.Background()
	up := newUpstream(t)
	idx, _ := up.pushIndex(t, "library/wl", "v1")
	child := children(t, up, "library/wl", idx.Digest)[0]
	m, body, err := up.reg.GetManifest(ctx, "library/wl", stowage.Reference{Digest: child})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.reg.PutManifest(ctx, "library/wl", stowage.Reference{Tag: "amd"}, m.MediaType, body, nil); err != nil {
		t.Fatal(err)
	}
	c := newCache(t, newKeyring())
	if _, err := c.svc.CreateRule(ctx, pullthrough.Rule{Name: "hub", Source: "hub/*", Upstream: up.host + "/library/*", Username: "admin"}, upPass); err != nil {
		t.Fatal(err)
	}
	if _, err := c.pull(ctx, "hub/wl", "v1"); err != nil {
		t.Fatal(err)
	}
	c.waitCached(t, "hub/wl", "v1", idx.Digest)
	if _, err := c.reg.SetLocks(ctx, "hub/wl", stowage.Reference{}, stowage.LockWrite, 0); err != nil {
		t.Fatal(err)
	}
	cl := remote.New(c.host, remote.Options{PlainHTTP: true, Retries: -1})
	_, err = cl.GetManifest(ctx, "hub/wl", stowage.Reference{Tag: "amd"})
	var re *remote.Error
	if !errors.As(err, &re) || re.Status != http.StatusForbidden || re.Code != "DENIED" {
		t.Errorf("tag of held content in a write-locked repository: %v; want 403 DENIED", err)
	}
}

// TestPullThroughLoop: a rule whose upstream is this registry is refused
// at creation; two caches pointing at each other answer a pull at once
// with DENIED naming the loop, instead of calling each other for minutes.
func TestPullThroughLoop(t *testing.T) {
	ctx := context.Background()
	c1, c2 := newCache(t, newKeyring()), newCache(t, newKeyring())
	_, port, _ := strings.Cut(c1.host, ":")
	for _, upHost := range []string{c1.host, "localhost:" + port} {
		if _, err := c1.svc.CreateRule(ctx, pullthrough.Rule{Name: "self", Source: "self/*", Upstream: upHost + "/x/*", PlainHTTP: true}, ""); stowage.ErrorCodeOf(err) != stowage.CodeInvalidParameter || !strings.Contains(err.Error(), "is this registry") {
			t.Errorf("rule with upstream %s (this registry): %v; want it refused", upHost, err)
		}
	}
	if _, err := c1.svc.CreateRule(ctx, pullthrough.Rule{Name: "a", Source: "loop/*", Upstream: c2.host + "/back/*", PlainHTTP: true}, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.svc.CreateRule(ctx, pullthrough.Rule{Name: "b", Source: "back/*", Upstream: c1.host + "/loop/*", PlainHTTP: true}, ""); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ctx2, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err := c1.pull(ctx2, "loop/z", "v1")
	var re *remote.Error
	if !errors.As(err, &re) || re.Status != http.StatusForbidden || !strings.Contains(re.Message, "a pull-through loop") {
		t.Errorf("pull through a loop of two caches: %v; want 403 naming the loop", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("pull through a loop answered after %s", d)
	}
	req, _ := http.NewRequest(http.MethodGet, c1.srv.URL+"/v2/loop/z/blobs/sha256:"+strings.Repeat("a", 64), nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("blob through a loop: %v %v; want 403", resp, err)
	} else {
		resp.Body.Close()
	}
}
