package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/storage/crypt"
	"github.com/stowage/stowage/storage/fs"
)

// ---- bookkeeping of what the server acknowledged ----

type blobRef struct {
	Repo   string
	Digest string
	Size   int64
}

// ackedPush is an image whose manifest PUT answered 201.
type ackedPush struct {
	Repo, Tag string
	Manifest  []byte
	Digest    string
	Blobs     []blobRef // config and layers
}

// ledger is everything acknowledged so far, across rounds.
type ledger struct {
	mu      sync.Mutex
	pushes  []ackedPush
	blobs   map[blobRef]bool // every blob push answered 201 (or mounted)
	resumed int              // upload sessions resumed across a restart
	pending []pendingFinish  // final PUTs cut by the kill, retried after the restart
	retried int              // of those, retried successfully
}

func (l *ledger) addPush(p ackedPush) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pushes = append(l.pushes, p)
}

func (l *ledger) addBlob(b blobRef) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.blobs[b] = true
}

func (l *ledger) snapshot() ([]ackedPush, []blobRef) {
	l.mu.Lock()
	defer l.mu.Unlock()
	blobs := make([]blobRef, 0, len(l.blobs))
	for b := range l.blobs {
		blobs = append(blobs, b)
	}
	return slices.Clone(l.pushes), blobs
}

// ---- streaming fetch ----

// fetched is a GET whose body was hashed as it streamed (blobs can be large,
// and big buffers are slow under -race).
type fetched struct {
	Status int
	Header http.Header
	N      int64
	Digest string
	Body   []byte // kept only when small (manifests, errors)
}

func fetch(ctx context.Context, client *http.Client, url string) (fetched, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fetched{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fetched{}, err
	}
	defer resp.Body.Close()
	h := sha256.New()
	var small bytes.Buffer
	w := io.MultiWriter(h, &limitedBuffer{&small, 4 << 20})
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return fetched{}, fmt.Errorf("GET %s: reading the body after %d bytes: %w", url, n, err)
	}
	f := fetched{Status: resp.StatusCode, Header: resp.Header, N: n, Digest: "sha256:" + hex.EncodeToString(h.Sum(nil))}
	if n <= 4<<20 {
		f.Body = small.Bytes()
	}
	return f, nil
}

// limitedBuffer stops keeping bytes beyond max (but accepts them).
type limitedBuffer struct {
	b   *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.b.Len(); room > 0 {
		l.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// ---- verification after a restart ----

type verifyStats struct {
	manifests, blobs, scannedTags, scannedBlobs atomic.Int64
	liveReads, interrupted                      atomic.Int64
}

// verifyAcked checks that every acknowledged manifest is served by tag and by
// digest with identical bytes, and every acknowledged blob with bytes that
// hash to its digest.
func verifyAcked(t *testing.T, s *server, l *ledger, st *verifyStats) {
	t.Helper()
	pushes, blobs := l.snapshot()
	seen := map[blobRef]bool{}
	for _, b := range blobs {
		seen[b] = true
	}
	for _, p := range pushes {
		for _, b := range p.Blobs {
			if !seen[b] {
				seen[b] = true
				blobs = append(blobs, b)
			}
		}
	}
	ctx := context.Background()
	parallel(8, len(pushes), func(i int) {
		p := pushes[i]
		for _, ref := range []string{p.Tag, p.Digest} {
			f, err := fetch(ctx, httpClient, s.URL+"/v2/"+p.Repo+"/manifests/"+ref)
			switch {
			case err != nil:
				t.Errorf("acknowledged manifest %s:%s: %v", p.Repo, ref, err)
			case f.Status != http.StatusOK:
				t.Errorf("acknowledged manifest %s:%s (%s) is gone after the restart: %d %s", p.Repo, ref, p.Digest, f.Status, f.Body)
			case !bytes.Equal(f.Body, p.Manifest):
				t.Errorf("acknowledged manifest %s:%s: served %d bytes (%s) that differ from the %d pushed (%s)", p.Repo, ref, f.N, f.Digest, len(p.Manifest), p.Digest)
			case f.Header.Get("Docker-Content-Digest") != p.Digest:
				t.Errorf("acknowledged manifest %s:%s: Docker-Content-Digest %q, want %s", p.Repo, ref, f.Header.Get("Docker-Content-Digest"), p.Digest)
			}
			st.manifests.Add(1)
		}
	})
	parallel(8, len(blobs), func(i int) {
		checkBlob(t, s, blobs[i], "acknowledged")
		st.blobs.Add(1)
	})
}

// checkBlob GETs a blob and checks its size and digest, and HEAD's length.
func checkBlob(t *testing.T, s *server, b blobRef, what string) {
	f, err := fetch(context.Background(), httpClient, s.URL+"/v2/"+b.Repo+"/blobs/"+b.Digest)
	switch {
	case err != nil:
		t.Errorf("%s blob %s in %s: %v", what, b.Digest, b.Repo, err)
		return
	case f.Status != http.StatusOK:
		t.Errorf("%s blob %s in %s is not served: %d %s", what, b.Digest, b.Repo, f.Status, f.Body)
		return
	case f.Digest != b.Digest || f.N != b.Size:
		t.Errorf("%s blob %s in %s: served %d bytes hashing to %s, want %d bytes (a partial or wrong blob was served)", what, b.Digest, b.Repo, f.N, f.Digest, b.Size)
	case f.Header.Get("Docker-Content-Digest") != b.Digest:
		t.Errorf("%s blob %s in %s: Docker-Content-Digest %q", what, b.Digest, b.Repo, f.Header.Get("Docker-Content-Digest"))
	}
	h, err := do(context.Background(), http.MethodHead, s.URL, "/v2/"+b.Repo+"/blobs/"+b.Digest, nil, nil)
	if err != nil || h.Status != http.StatusOK || h.Header.Get("Content-Length") != strconv.FormatInt(b.Size, 10) {
		t.Errorf("%s blob %s in %s: HEAD %v %d Content-Length %q, want 200 %d", what, b.Digest, b.Repo, err, h.Status, h.Header.Get("Content-Length"), b.Size)
	}
}

// scanAll walks the catalog, every tag of every repository, every manifest
// and every blob it references: whatever the server serves must be whole and
// match its digest, acknowledged or not (a manifest whose 201 was lost in
// the crash is fine, a manifest whose blobs are missing or torn is not).
func scanAll(t *testing.T, s *server, l *ledger, st *verifyStats) {
	t.Helper()
	var cat struct {
		Repositories []string `json:"repositories"`
	}
	if !getJSON(t, s.URL+"/v2/_catalog", &cat) {
		return
	}
	pushes, blobs := l.snapshot()
	wantTags := map[string][]string{}
	for _, p := range pushes {
		wantTags[p.Repo] = append(wantTags[p.Repo], p.Tag)
	}
	for _, b := range blobs {
		if _, ok := wantTags[b.Repo]; !ok {
			wantTags[b.Repo] = nil
		}
	}
	for repo := range wantTags {
		if !slices.Contains(cat.Repositories, repo) {
			t.Errorf("catalog misses repository %s, which holds acknowledged content", repo)
		}
	}
	type blobCheck struct {
		b    blobRef
		from string
	}
	var mu sync.Mutex
	checks := map[blobRef]string{}
	for _, repo := range cat.Repositories {
		var tl struct {
			Name string   `json:"name"`
			Tags []string `json:"tags"`
		}
		if !getJSON(t, s.URL+"/v2/"+repo+"/tags/list", &tl) {
			continue
		}
		for _, want := range wantTags[repo] {
			if !slices.Contains(tl.Tags, want) {
				t.Errorf("tags of %s miss acknowledged tag %s", repo, want)
			}
		}
		parallel(8, len(tl.Tags), func(i int) {
			tag := tl.Tags[i]
			f, err := fetch(context.Background(), httpClient, s.URL+"/v2/"+repo+"/manifests/"+tag)
			st.scannedTags.Add(1)
			if err != nil || f.Status != http.StatusOK {
				t.Errorf("scan: tag %s:%s is listed but its manifest is not served: %v %d %s", repo, tag, err, f.Status, f.Body)
				return
			}
			if dcd := f.Header.Get("Docker-Content-Digest"); dcd != f.Digest {
				t.Errorf("scan: manifest %s:%s has digest %s but is served as %s", repo, tag, f.Digest, dcd)
			}
			var m imageManifest
			if err := json.Unmarshal(f.Body, &m); err != nil {
				t.Errorf("scan: manifest %s:%s is not JSON: %v", repo, tag, err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, d := range append([]descriptor{m.Config}, m.Layers...) {
				checks[blobRef{repo, d.Digest, d.Size}] = repo + ":" + tag
			}
		})
	}
	list := make([]blobCheck, 0, len(checks))
	for b, from := range checks {
		list = append(list, blobCheck{b, from})
	}
	parallel(8, len(list), func(i int) {
		checkBlob(t, s, list[i].b, "scan: referenced by "+list[i].from+",")
		st.scannedBlobs.Add(1)
	})
}

func getJSON(t *testing.T, url string, v any) bool {
	t.Helper()
	r, err := do(context.Background(), http.MethodGet, "", url, nil, nil)
	if err != nil || r.Status != http.StatusOK {
		t.Errorf("GET %s: %v %v", url, err, r)
		return false
	}
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Errorf("GET %s: %v: %s", url, err, r.Body)
		return false
	}
	return true
}

// parallel runs fn(0..n-1) on up to workers goroutines.
func parallel(workers, n int, fn func(i int)) {
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for w := 0; w < min(workers, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(i)
			}
		}()
	}
	wg.Wait()
}

// ---- pushers ----

// round is one server lifetime under load; killed is set just before the
// SIGKILL, so an error after it is the crash and an error before it is a bug.
type round struct {
	t      *testing.T
	n      int
	base   string
	client *http.Client
	ctx    context.Context
	killed atomic.Bool
	ledger *ledger
	pool   [][]byte // shared base layers
	stats  *verifyStats
}

// ok reports whether a request got one of the wanted statuses. A transport
// error after the kill just ends the pusher; anything else is a failure.
func (r *round) ok(what string, resp response, err error, want ...int) bool {
	if err != nil {
		if !r.killed.Load() && r.ctx.Err() == nil {
			r.t.Errorf("round %d: %s: transport error while the server was up: %v", r.n, what, err)
		} else {
			r.stats.interrupted.Add(1)
		}
		return false
	}
	if !slices.Contains(want, resp.Status) {
		r.t.Errorf("round %d: %s: %s, want %v", r.n, what, resp, want)
		return false
	}
	return true
}

func (r *round) do(method, url string, hdr map[string]string, body any) (response, error) {
	return doWith(r.ctx, r.client, method, r.base, url, hdr, body)
}

var crashRepos = []string{"crash/alpha", "crash/beta", "crash/gamma/nested", "crash/delta"}

// pushBlob pushes one blob to repo in one of several ways; it returns false
// when the push did not complete (the server died, or a failure was reported).
func (r *round) pushBlob(rng *rand.Rand, repo string, b []byte) bool {
	d := sha256Digest(b)
	what := fmt.Sprintf("push blob %s (%d bytes) to %s", d[:19], len(b), repo)
	created := func(resp response) bool {
		if got := resp.Header.Get("Docker-Content-Digest"); got != d {
			r.t.Errorf("round %d: %s: Docker-Content-Digest %q", r.n, what, got)
			return false
		}
		r.ledger.addBlob(blobRef{repo, d, int64(len(b))})
		return true
	}
	// Shared layers: existence check, then a cross-repository mount.
	resp, err := r.do(http.MethodHead, "/v2/"+repo+"/blobs/"+d, nil, nil)
	if !r.ok(what+": HEAD", resp, err, http.StatusOK, http.StatusNotFound) {
		return false
	}
	if resp.Status == http.StatusOK {
		return true
	}
	var loc string
	if rng.IntN(2) == 0 {
		from := crashRepos[rng.IntN(len(crashRepos))]
		resp, err := r.do(http.MethodPost, "/v2/"+repo+"/blobs/uploads/?mount="+d+"&from="+from, nil, nil)
		if !r.ok(what+": mount", resp, err, http.StatusCreated, http.StatusAccepted) {
			return false
		}
		if resp.Status == http.StatusCreated {
			return created(resp)
		}
		loc = resp.Header.Get("Location")
	}
	mode := rng.IntN(4)
	if mode == 0 && loc == "" { // monolithic POST
		resp, err := r.do(http.MethodPost, "/v2/"+repo+"/blobs/uploads/?digest="+d, nil, b)
		return r.ok(what+": monolithic POST", resp, err, http.StatusCreated) && created(resp)
	}
	if loc == "" {
		resp, err := r.do(http.MethodPost, "/v2/"+repo+"/blobs/uploads/", nil, nil)
		if !r.ok(what+": POST", resp, err, http.StatusAccepted) {
			return false
		}
		loc = resp.Header.Get("Location")
	}
	off := 0
	if mode >= 2 { // chunked: several PATCHes
		k := 1 + rng.IntN(4)
		for i := 0; i < k && off < len(b); i++ {
			n := 1 + rng.IntN(max(1, (len(b)-off)*2/(k-i)))
			n = min(n, len(b)-off)
			var resp response
			var err error
			if mode == 2 {
				resp, err = r.do(http.MethodPatch, loc, contentRange(off, n), b[off:off+n])
			} else {
				resp, err = r.do(http.MethodPatch, loc, nil, bytes.NewBuffer(b[off:off+n]))
			}
			if !r.ok(fmt.Sprintf("%s: PATCH %d-%d", what, off, off+n-1), resp, err, http.StatusAccepted) {
				return false
			}
			off += n
			if got := resp.Header.Get("Range"); got != fmt.Sprintf("0-%d", off-1) {
				r.t.Errorf("round %d: %s: PATCH answered Range %q after %d bytes", r.n, what, got, off)
				return false
			}
			loc = resp.Header.Get("Location")
		}
	}
	var hdr map[string]string
	var body any
	if off < len(b) {
		hdr, body = contentRange(off, len(b)-off), b[off:]
	}
	resp, err = r.do(http.MethodPut, withDigest(loc, d), hdr, body)
	if err != nil && r.killed.Load() {
		// Cut by the kill: a client would retry it after the restart.
		r.ledger.mu.Lock()
		r.ledger.pending = append(r.ledger.pending, pendingFinish{repo: repo, loc: loc, data: b, sent: off})
		r.ledger.mu.Unlock()
	}
	return r.ok(what+": PUT", resp, err, http.StatusCreated) && created(resp)
}

// pendingFinish is an upload whose finishing PUT was cut by the kill.
type pendingFinish struct {
	repo, loc string
	data      []byte
	sent      int // bytes acknowledged before the PUT
}

// retryFinish retries a cut PUT as a client would: look at the session; if
// it is gone the PUT landed and the blob must be there, else finish it.
func retryFinish(t *testing.T, s *server, p pendingFinish, l *ledger, st *verifyStats) {
	t.Helper()
	d := sha256Digest(p.data)
	b := blobRef{p.repo, d, int64(len(p.data))}
	sr, err := do(context.Background(), http.MethodGet, s.URL, p.loc, nil, nil)
	if err != nil {
		t.Errorf("status of the upload whose PUT was cut: %v", err)
		return
	}
	if sr.Status == http.StatusNotFound {
		checkBlob(t, s, b, "finished just before the crash (its session is gone),")
		l.addBlob(b)
		return
	}
	if sr.Status != http.StatusNoContent {
		t.Errorf("status of the upload whose PUT was cut: %s", sr)
		return
	}
	var end int
	fmt.Sscanf(sr.Header.Get("Range"), "0-%d", &end)
	cur := end + 1
	if end == 0 && p.sent == 0 {
		cur = 0
	}
	if cur != p.sent && cur != len(p.data) {
		t.Errorf("upload whose PUT was cut holds %d bytes (Range %q); %d were acknowledged, %d sent", cur, sr.Header.Get("Range"), p.sent, len(p.data))
		return
	}
	var hdr map[string]string
	var body any
	if cur < len(p.data) {
		hdr, body = contentRange(cur, len(p.data)-cur), p.data[cur:]
	}
	r, err := do(context.Background(), http.MethodPut, s.URL, withDigest(p.loc, d), hdr, body)
	switch {
	case err != nil:
		t.Errorf("retrying the cut PUT: %v", err)
	case r.Status == http.StatusCreated:
		checkBlob(t, s, b, "finished by a retried PUT,")
		l.addBlob(b)
		l.mu.Lock()
		l.retried++
		l.mu.Unlock()
	default:
		t.Errorf("retrying the cut PUT (session at %d of %d bytes): %s", cur, len(p.data), r)
	}
}

// reader GETs acknowledged blobs and manifests while the pushers run: what
// is served while the server is up must be whole too.
func (r *round) reader(seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	var pushes []ackedPush
	var blobs []blobRef
	for i := 0; r.ctx.Err() == nil; i++ {
		if i%16 == 0 {
			pushes, blobs = r.ledger.snapshot()
		}
		if len(blobs) == 0 {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		url, wantDigest, wantSize := "", "", int64(0)
		if len(pushes) > 0 && rng.IntN(3) == 0 {
			p := pushes[rng.IntN(len(pushes))]
			url, wantDigest, wantSize = "/v2/"+p.Repo+"/manifests/"+p.Tag, p.Digest, int64(len(p.Manifest))
		} else {
			b := blobs[rng.IntN(len(blobs))]
			url, wantDigest, wantSize = "/v2/"+b.Repo+"/blobs/"+b.Digest, b.Digest, b.Size
		}
		f, err := fetch(r.ctx, r.client, r.base+url)
		if err != nil {
			if !r.killed.Load() && r.ctx.Err() == nil {
				r.t.Errorf("round %d: live GET %s: %v", r.n, url, err)
			}
			return
		}
		r.stats.liveReads.Add(1)
		if f.Status != http.StatusOK || f.Digest != wantDigest || f.N != wantSize {
			r.t.Errorf("round %d: live GET %s: %d, %d bytes hashing to %s, want 200 and %d bytes %s", r.n, url, f.Status, f.N, f.Digest, wantSize, wantDigest)
		}
	}
}

// pusher pushes small random images until the server dies.
func (r *round) pusher(g int, seed uint64) {
	src := rand.NewChaCha8(seedBytes(seed))
	rng := rand.New(src)
	for i := 0; r.ctx.Err() == nil; i++ {
		repo := crashRepos[rng.IntN(len(crashRepos))]
		var layers []descriptor
		var refs []blobRef
		nl := rng.IntN(4)
		for j := 0; j < nl; j++ {
			var b []byte
			if rng.IntN(4) == 0 {
				b = r.pool[rng.IntN(len(r.pool))]
			} else {
				// 1 KiB to 2 MiB, log-uniform: mostly small, some large.
				b = make([]byte, int(1024*math.Exp2(rng.Float64()*11)))
				src.Read(b)
			}
			if !r.pushBlob(rng, repo, b) {
				return
			}
			d := descriptor{mtLayer, sha256Digest(b), int64(len(b))}
			layers = append(layers, d)
			refs = append(refs, blobRef{repo, d.Digest, d.Size})
		}
		cfg := fmt.Appendf(nil, `{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"comment":"round %d pusher %d image %d %x"}`, r.n, g, i, rng.Uint64())
		if !r.pushBlob(rng, repo, cfg) {
			return
		}
		cd := descriptor{mtConfig, sha256Digest(cfg), int64(len(cfg))}
		m, err := json.Marshal(imageManifest{SchemaVersion: 2, MediaType: mtManifest, Config: cd, Layers: append([]descriptor{}, layers...)})
		if err != nil {
			panic(err)
		}
		tag := fmt.Sprintf("r%d-g%d-%d", r.n, g, i)
		md := sha256Digest(m)
		resp, err := r.do(http.MethodPut, "/v2/"+repo+"/manifests/"+tag, map[string]string{"Content-Type": mtManifest}, m)
		if !r.ok("PUT manifest "+repo+":"+tag, resp, err, http.StatusCreated) {
			return
		}
		if got := resp.Header.Get("Docker-Content-Digest"); got != md {
			r.t.Errorf("round %d: PUT manifest %s:%s: Docker-Content-Digest %q, want %s", r.n, repo, tag, got, md)
			return
		}
		r.ledger.addPush(ackedPush{Repo: repo, Tag: tag, Manifest: m, Digest: md, Blobs: append(refs, blobRef{repo, cd.Digest, cd.Size})})
	}
}

func seedBytes(seed uint64) [32]byte {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	return s
}

// openSession is an upload session with acknowledged bytes, left open
// across a crash to be resumed after the restart.
type openSession struct {
	repo, loc string
	data      []byte
	acked     int // bytes acknowledged by a 202
	tried     int // bytes sent, acknowledged or not (a PATCH may be cut by the kill)
}

// sessionStarter opens an upload session, sends part of a blob, then sends
// the rest without waiting for the kill: after the restart the session must
// be at the acknowledged size (or at the full size if the last PATCH landed).
// It delivers the session, once its first PATCH was acknowledged, when done.
func (r *round) sessionStarter(seed uint64, out chan<- *openSession) {
	defer close(out)
	var s *openSession
	defer func() {
		if s != nil && s.acked > 0 {
			out <- s
		}
	}()
	src := rand.NewChaCha8(seedBytes(seed))
	rng := rand.New(src)
	data := make([]byte, 256<<10+rng.IntN(768<<10))
	src.Read(data)
	s = &openSession{repo: "crash/resume", data: data}
	resp, err := r.do(http.MethodPost, "/v2/"+s.repo+"/blobs/uploads/", nil, nil)
	if !r.ok("resume: POST", resp, err, http.StatusAccepted) {
		return
	}
	s.loc = resp.Header.Get("Location")
	half := len(data) / 3
	resp, err = r.do(http.MethodPatch, s.loc, contentRange(0, half), data[:half])
	if !r.ok("resume: first PATCH", resp, err, http.StatusAccepted) {
		return
	}
	s.acked, s.tried = half, half // acknowledged: from here on it must survive
	time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
	s.tried = len(data) // written before the request: the PATCH may land even if its 202 is lost
	resp, err = r.do(http.MethodPatch, s.loc, contentRange(half, len(data)-half), data[half:])
	if r.ok("resume: second PATCH", resp, err, http.StatusAccepted) {
		s.acked = len(data)
	}
}

// resume finishes a session after the restart and checks the blob.
func resumeSession(t *testing.T, s *server, sess *openSession, l *ledger) {
	t.Helper()
	st, err := do(context.Background(), http.MethodGet, s.URL, sess.loc, nil, nil)
	if err != nil || st.Status != http.StatusNoContent {
		t.Errorf("upload session %s (%d bytes acknowledged) did not survive the crash: %v %v", sess.loc, sess.acked, err, st)
		return
	}
	var end int
	if _, err := fmt.Sscanf(st.Header.Get("Range"), "0-%d", &end); err != nil {
		t.Errorf("upload session status: Range %q", st.Header.Get("Range"))
		return
	}
	cur := end + 1
	if cur != sess.acked && cur != sess.tried {
		t.Errorf("upload session after the crash holds %d bytes; %d were acknowledged (%d sent)", cur, sess.acked, sess.tried)
		return
	}
	d := sha256Digest(sess.data)
	var hdr map[string]string
	var body any
	if cur < len(sess.data) {
		hdr, body = contentRange(cur, len(sess.data)-cur), sess.data[cur:]
	}
	r, err := do(context.Background(), http.MethodPut, s.URL, withDigest(sess.loc, d), hdr, body)
	if err != nil || r.Status != http.StatusCreated {
		t.Errorf("finishing the resumed upload: %v %v", err, r)
		return
	}
	b := blobRef{sess.repo, d, int64(len(sess.data))}
	checkBlob(t, s, b, "resumed")
	l.addBlob(b)
	l.mu.Lock()
	l.resumed++
	l.mu.Unlock()
}

// TestCrash pushes concurrently, kills the server with SIGKILL at a random
// moment, restarts it on the same data, and checks that nothing acknowledged
// was lost and nothing served is torn or wrong.
func TestCrash(t *testing.T) {
	needServer(t)
	const (
		maxRounds = 8
		pushers   = 6
		budget    = 60 * time.Second
	)
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("STOWAGE_E2E_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	t.Logf("seed %d (STOWAGE_E2E_SEED=%d reproduces the choices, not the timing)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	dataDir := filepath.Join(t.TempDir(), "data")
	l := &ledger{blobs: map[blobRef]bool{}}
	var st verifyStats
	pool := make([][]byte, 4)
	for i := range pool {
		pool[i] = make([]byte, 16<<10+rng.IntN(512<<10))
		rand.NewChaCha8(seedBytes(seed + uint64(i) + 1)).Read(pool[i])
	}
	start := time.Now()
	var open []*openSession
	rounds := 0
	// Past maxRounds only while no manifest push was acknowledged yet (durable
	// commits are slow on a loaded machine), within the budget.
	noPushYet := func() bool { l.mu.Lock(); defer l.mu.Unlock(); return len(l.pushes) == 0 }
	for (rounds < maxRounds || noPushYet()) && (rounds < 2 || time.Since(start) < budget) && !t.Failed() {
		s := startServer(t, dataDir)
		if rounds > 0 {
			verifyAcked(t, s, l, &st)
			scanAll(t, s, l, &st)
			for _, sess := range open {
				resumeSession(t, s, sess, l)
			}
			open = nil
			l.mu.Lock()
			pending := l.pending
			l.pending = nil
			l.mu.Unlock()
			for _, p := range pending {
				retryFinish(t, s, p, l, &st)
			}
		}
		transport := http.DefaultTransport.(*http.Transport).Clone()
		ctx, cancel := context.WithCancel(context.Background())
		r := &round{t: t, n: rounds, base: s.URL, client: &http.Client{Transport: transport, Timeout: 60 * time.Second},
			ctx: ctx, ledger: l, pool: pool, stats: &st}
		var wg sync.WaitGroup
		for g := 0; g < pushers; g++ {
			wg.Add(1)
			go func(seed uint64) {
				defer wg.Done()
				r.pusher(g, seed)
			}(rng.Uint64())
		}
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			r.reader(seed)
		}(rng.Uint64())
		sessions := make(chan *openSession, 1)
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			r.sessionStarter(seed, sessions)
		}(rng.Uint64())
		time.Sleep(time.Duration(100+rng.IntN(700)) * time.Millisecond)
		r.killed.Store(true)
		s.Kill9()
		cancel()
		wg.Wait()
		if sess, ok := <-sessions; ok {
			open = append(open, sess)
		}
		transport.CloseIdleConnections()
		rounds++
		pushes, blobs := l.snapshot()
		t.Logf("round %d: killed after %v; %d manifests and %d blobs acknowledged so far", rounds, time.Since(start).Round(time.Millisecond), len(pushes), len(blobs))
	}
	// Final restart: everything checked once more, then a graceful stop.
	s := startServer(t, dataDir)
	verifyAcked(t, s, l, &st)
	scanAll(t, s, l, &st)
	for _, sess := range open {
		resumeSession(t, s, sess, l)
	}
	for _, p := range l.pending {
		retryFinish(t, s, p, l, &st)
	}
	verifyAcked(t, s, l, &st)
	httpClient.CloseIdleConnections()
	s.Stop()
	pushes, blobs := l.snapshot()
	t.Logf("%d rounds of kill -9 in %v: %d acknowledged manifest pushes, %d acknowledged blobs, %d requests cut by the kills",
		rounds, time.Since(start).Round(time.Millisecond), len(pushes), len(blobs), st.interrupted.Load())
	t.Logf("upload sessions: %d resumed after a crash, %d cut final PUTs retried successfully",
		l.resumed, l.retried)
	t.Logf("checks: %d live GETs during the pushes, %d acknowledged-manifest GETs and %d acknowledged-blob GETs after restarts, %d tags and %d blobs scanned from the catalog",
		st.liveReads.Load(), st.manifests.Load(), st.blobs.Load(), st.scannedTags.Load(), st.scannedBlobs.Load())
	if len(pushes) == 0 {
		t.Error("no push was ever acknowledged: the crash test tested nothing")
	}
}

// TestUploadSessionSurvivesRestart starts an upload, sends part of it, stops
// the server (gracefully or with SIGKILL after the 202), restarts it, and
// finishes the upload.
func TestUploadSessionSurvivesRestart(t *testing.T) {
	needServer(t)
	cases := []struct {
		name  string
		stops []string // one stop after the POST and after each PATCH: "term", "kill" or ""
	}{
		{"sigterm-after-patch", []string{"", "term"}},
		{"sigterm-after-post", []string{"term"}},
		{"sigkill-after-patch", []string{"", "kill"}},
		{"restart-after-every-request", []string{"term", "kill", "term"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := startServer(t, dir)
			data := randomBytes(t, 900<<10+17)
			d := sha256Digest(data)
			repo := "resume/" + tc.name
			loc := startUpload(t, s.URL, repo)
			chunk := len(data) / (len(tc.stops) + 1)
			off := 0
			for i, stop := range tc.stops {
				if i > 0 {
					r := mustDo(t, http.MethodPatch, s.URL, loc, contentRange(off, chunk), data[off:off+chunk])
					if !expect(t, fmt.Sprintf("PATCH %d", i), r, http.StatusAccepted, "") {
						return
					}
					off += chunk
				}
				httpClient.CloseIdleConnections()
				switch stop {
				case "term":
					s.Stop()
				case "kill":
					s.Kill9()
				default:
					continue
				}
				s = startServer(t, dir)
				st := mustDo(t, http.MethodGet, s.URL, loc, nil, nil)
				if !expect(t, "upload status after the restart", st, http.StatusNoContent, "") {
					return
				}
				want := fmt.Sprintf("0-%d", max(off-1, 0))
				if got := st.Header.Get("Range"); got != want {
					t.Fatalf("upload status after the restart: Range %q, want %q", got, want)
				}
			}
			r := mustDo(t, http.MethodPatch, s.URL, loc, contentRange(off, chunk), data[off:off+chunk])
			expect(t, "PATCH after the restart", r, http.StatusAccepted, "")
			off += chunk
			r = mustDo(t, http.MethodPut, s.URL, withDigest(loc, d), contentRange(off, len(data)-off), data[off:])
			if !expect(t, "PUT after the restart", r, http.StatusCreated, "") {
				return
			}
			checkBlob(t, s, blobRef{repo, d, int64(len(data))}, "resumed")
			httpClient.CloseIdleConnections()
		})
	}
}

// TestTornChunkIsNotCommitted: a PATCH that fails part-way (the client sent
// fewer bytes than it announced, hung up, or the server was killed) must
// leave the session at its last acknowledged size, and finishing the upload
// with a PUT that carries no body must store exactly the acknowledged bytes.
//
// The acknowledged bytes are a valid manifest, so that the stored object's
// full content is observable: after a restart (no in-memory cache) a
// manifest PUT of the same bytes is served from the stored blob.
func TestTornChunkIsNotCommitted(t *testing.T) {
	needServer(t)
	cases := []struct {
		name string
		tear func(t *testing.T, s **server, dir, loc string, off int)
	}{
		{"short-chunked-body", func(t *testing.T, s **server, dir, loc string, off int) {
			// Content-Range promises 4096 bytes, the chunked body has 1000.
			hdr := map[string]string{"Content-Range": fmt.Sprintf("%d-%d", off, off+4095)}
			r := mustDo(t, http.MethodPatch, (*s).URL, loc, hdr, bytes.NewBuffer(bytes.Repeat([]byte("X"), 1000)))
			expect(t, "short PATCH", r, http.StatusBadRequest, "SIZE_INVALID")
		}},
		{"client-hangs-up", func(t *testing.T, s **server, dir, loc string, off int) {
			tearPatch(t, (*s).URL, loc, off, func() {})
		}},
		{"server-killed", func(t *testing.T, s **server, dir, loc string, off int) {
			srv := *s
			tearPatch(t, srv.URL, loc, off, srv.Kill9)
			*s = startServer(t, dir)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := startServer(t, dir)
			repo := "torn/" + tc.name
			good := []byte(`{"schemaVersion":2,"mediaType":"` + mtIndex + `","manifests":[],"annotations":{"case":"` + tc.name + `"}}`)
			d := sha256Digest(good)
			loc := startUpload(t, s.URL, repo)
			expect(t, "PATCH", mustDo(t, http.MethodPatch, s.URL, loc, contentRange(0, len(good)), good), http.StatusAccepted, "")
			tc.tear(t, &s, dir, loc, len(good))
			st := mustDo(t, http.MethodGet, s.URL, loc, nil, nil)
			if !expect(t, "upload status after the torn chunk", st, http.StatusNoContent, "") {
				return
			}
			if got, want := st.Header.Get("Range"), fmt.Sprintf("0-%d", len(good)-1); got != want {
				t.Fatalf("after the torn chunk: Range %q, want %q (only acknowledged bytes count)", got, want)
			}
			// Finish with an empty PUT: the blob is the acknowledged bytes.
			expect(t, "PUT", mustDo(t, http.MethodPut, s.URL, withDigest(loc, d), nil, nil), http.StatusCreated, "")
			checkBlob(t, s, blobRef{repo, d, int64(len(good))}, "finished")
			r := mustDo(t, http.MethodPut, s.URL, "/v2/"+repo+"/manifests/v1", map[string]string{"Content-Type": mtIndex}, good)
			expect(t, "PUT the same bytes as a manifest", r, http.StatusCreated, "")
			httpClient.CloseIdleConnections()
			s.Stop()
			s = startServer(t, dir)
			g := mustDo(t, http.MethodGet, s.URL, "/v2/"+repo+"/manifests/v1", nil, nil)
			if g.Status == http.StatusOK && bytes.Equal(g.Body, good) {
				return
			}
			size := "unknown"
			if fi, err := os.Stat(filepath.Join(dir, "storage", "blobs", "sha256", d[7:9], d[7:])); err == nil {
				size = fmt.Sprint(fi.Size())
			}
			t.Errorf("after a torn PATCH (%s) and an empty-bodied PUT ?digest=, the stored object for %s holds the torn bytes "+
				"(file size %s, want %d): the blob API hides it (it sends only the recorded size) but GET of a manifest with "+
				"the same digest after a restart answers %s", tc.name, d, size, len(good), g)
		})
	}
}

// tearPatch sends a PATCH that announces 1 MiB, sends 256 KiB, waits until
// the server has had time to write them, then calls cut (kill the server, or
// nothing) and abandons the request.
func tearPatch(t *testing.T, base, loc string, off int, cut func()) {
	t.Helper()
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, base+loc, pr)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = 1 << 20
	req.Header.Set("Content-Range", fmt.Sprintf("%d-%d", off, off+1<<20-1))
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	done := make(chan error, 1)
	go func() {
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			err = fmt.Errorf("PATCH answered %s before its body was complete", resp.Status)
		}
		done <- err
	}()
	if _, err := pw.Write(bytes.Repeat([]byte("T"), 256<<10)); err != nil {
		t.Fatalf("write the partial chunk: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	cut()
	cancel()
	pw.CloseWithError(io.ErrClosedPipe)
	if err := <-done; err != nil && strings.Contains(err.Error(), "answered") {
		t.Fatal(err)
	}
	// Let the server notice the hang-up and finish the failed request.
	time.Sleep(200 * time.Millisecond)
}

// TestFinishAfterCommitCrash reproduces, deterministically, the state a
// kill -9 leaves when it falls inside FinishUpload between moving the upload
// data to its blob key and committing the blob record: the session still
// exists with all its bytes recorded, its data object is gone, and the
// verified blob object is in place. A client that retries its PUT must get
// its blob. The state is made with the
// server stopped, by the very step FinishUpload takes: the Appender's
// Commit of the storage stack the server runs (encryption on, the default,
// so the data key record moves with the object), over its data directory.
func TestFinishAfterCommitCrash(t *testing.T) {
	needServer(t)
	dir := t.TempDir()
	s := startServer(t, dir)
	repo := "commit/window"
	data := randomBytes(t, 300<<10)
	d := sha256Digest(data)
	loc := startUpload(t, s.URL, repo)
	expect(t, "PATCH", mustDo(t, http.MethodPatch, s.URL, loc, contentRange(0, len(data)), data), http.StatusAccepted, "")
	httpClient.CloseIdleConnections()
	s.Stop()
	id := loc[strings.LastIndexByte(loc, '/')+1:]
	commitOffline(t, dir, "uploads/"+id+"/data", "blobs/sha256/"+d[7:9]+"/"+d[7:], int64(len(data)))
	s = startServer(t, dir)
	st := mustDo(t, http.MethodGet, s.URL, loc, nil, nil)
	if !expect(t, "upload status", st, http.StatusNoContent, "") {
		return
	}
	r := mustDo(t, http.MethodPut, s.URL, withDigest(loc, d), nil, nil)
	if r.Status != http.StatusCreated {
		t.Fatalf("kill -9 between the move of the upload data to %s and the DB commit: the retried PUT ?digest= answered %s, want 201", d, r)
	}
	checkBlob(t, s, blobRef{repo, d, int64(len(data))}, "committed")
}

// commitOffline does, on a stopped server's data directory (SQLite, a
// storage directory, the service key), what FinishUpload does just before
// it records a blob: the storage stack's Appender Commit of src to dst.
func commitOffline(t *testing.T, dataDir, src, dst string, size int64) {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(dataDir, "stowage.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	disk, err := fs.New(filepath.Join(dataDir, "storage"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := crypt.OpenFileKeyring(filepath.Join(dataDir, "keys", "service.json"), false)
	if err != nil {
		t.Fatalf("the server's service key (encryption is on by default): %v", err)
	}
	app, ok := crypt.New(disk, crypt.NewManager(db, keys)).(stowage.Appender)
	if !ok {
		t.Fatal("the encrypting storage over a directory has no Appender")
	}
	if err := app.Commit(ctx, src, dst, size); err != nil {
		t.Fatalf("commit %s to %s: %v", src, dst, err)
	}
}

// TestSecondServerRefused: a second server on a data directory in use must
// refuse to start (two processes must never share the embedded database),
// and the first must keep serving.
func TestSecondServerRefused(t *testing.T) {
	needServer(t)
	dir := t.TempDir()
	s := startServer(t, dir)
	blob := []byte("written by the first server")
	d := pushBlob(t, s.URL, "lock/test", blob)
	var out syncBuffer
	cmd := exec.Command(binPath, "serve", "--addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "--data-dir", dir)
	cmd.Env, cmd.Stdout, cmd.Stderr = serverEnv(), &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Errorf("second server on %s exited 0; want a failure: %s", dir, out.String())
		} else if !strings.Contains(out.String(), "in use") {
			t.Errorf("second server failed (%v) without saying the directory is in use: %s", err, out.String())
		}
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
		t.Fatalf("second server on a data directory in use kept running: %s", out.String())
	}
	checkBlob(t, s, blobRef{"lock/test", d, int64(len(blob))}, "first server's")
	httpClient.CloseIdleConnections()
}
