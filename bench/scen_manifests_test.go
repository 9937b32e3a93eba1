package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// memRegistry is the smallest OCI registry the manifest scenarios need:
// blob HEAD and monolithic upload, manifest PUT, GET and HEAD by tag or
// digest. It counts manifest reads per digest and method+tag/digest, so a
// test sees which manifests a scenario read and how.
type memRegistry struct {
	mu        sync.Mutex
	blobs     map[string]bool
	manifests map[string][]byte // digest → body
	tags      map[string]string // repo:tag → digest
	repoOf    map[string]string // digest → repo
	reads     map[string]int    // digest → reads
	readsBy   map[string]int    // "GET tag" etc. → reads
	uploads   int
	wrongHead bool // answer HEAD with another digest
}

func newMemRegistry() *memRegistry {
	return &memRegistry{blobs: map[string]bool{}, manifests: map[string][]byte{}, tags: map[string]string{},
		repoOf: map[string]string{}, reads: map[string]int{}, readsBy: map[string]int{}}
}

func (m *memRegistry) resetReads() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reads, m.readsBy = map[string]int{}, map[string]int{}
}

func (m *memRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := r.URL.Path
	switch {
	case p == "/v2/":
		w.WriteHeader(http.StatusOK)
	case strings.HasPrefix(p, "/upload/") && r.Method == http.MethodPut:
		io.Copy(io.Discard, r.Body)
		m.blobs[r.URL.Query().Get("digest")] = true
		w.WriteHeader(http.StatusCreated)
	case strings.HasSuffix(p, "/blobs/uploads/") && r.Method == http.MethodPost:
		m.uploads++
		w.Header().Set("Location", fmt.Sprintf("/upload/%d", m.uploads))
		w.WriteHeader(http.StatusAccepted)
	case strings.Contains(p, "/blobs/") && r.Method == http.MethodHead:
		d := p[strings.LastIndex(p, "/")+1:]
		if !m.blobs[d] {
			w.WriteHeader(http.StatusNotFound)
		}
	case strings.Contains(p, "/manifests/"):
		i := strings.LastIndex(p, "/manifests/")
		repo, ref := strings.TrimPrefix(p[:i], "/v2/"), p[i+len("/manifests/"):]
		m.manifest(w, r, repo, ref)
	default:
		http.Error(w, "not in memRegistry: "+r.Method+" "+p, http.StatusNotFound)
	}
}

func (m *memRegistry) manifest(w http.ResponseWriter, r *http.Request, repo, ref string) {
	if r.Method == http.MethodPut {
		body, _ := io.ReadAll(r.Body)
		sum := sha256.Sum256(body)
		d := "sha256:" + hex.EncodeToString(sum[:])
		m.manifests[d], m.repoOf[d] = body, repo
		if !strings.HasPrefix(ref, "sha256:") {
			m.tags[repo+":"+ref] = d
		}
		w.WriteHeader(http.StatusCreated)
		return
	}
	d, how := ref, "digest"
	if !strings.HasPrefix(ref, "sha256:") {
		d, how = m.tags[repo+":"+ref], "tag"
	}
	body, ok := m.manifests[d]
	if !ok || m.repoOf[d] != repo {
		http.Error(w, "manifest unknown", http.StatusNotFound)
		return
	}
	m.reads[d]++
	m.readsBy[r.Method+" "+how]++
	h := w.Header()
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Docker-Content-Digest", d)
	if r.Method == http.MethodHead && m.wrongHead {
		h.Set("Docker-Content-Digest", "sha256:"+strings.Repeat("0", 64))
	}
	if r.Method == http.MethodGet {
		w.Write(body)
	}
}

func testBench(t *testing.T, url string, cfg config) *bench {
	t.Helper()
	c, err := newClient(url, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cfg.prefix = randomName()
	return &bench{cfg: cfg, c: c, src: newRandomSource(), res: newResults()}
}

func metricsWithPrefix(r *results, prefix string) []string {
	var out []string
	for _, n := range r.names {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	return out
}

// The warm scenario pushes the set over the repositories and reads every
// manifest; a later process reads each exactly once, a quarter per way.
func TestManifestsWarmThenCold(t *testing.T) {
	reg := newMemRegistry()
	srv := httptest.NewServer(reg)
	defer srv.Close()
	cfg := config{manifests: coldPrimers + 40, manifestRepos: 4, duration: 50 * time.Millisecond,
		manifestsFile: filepath.Join(t.TempDir(), "manifests.json")}

	b := testBench(t, srv.URL, cfg)
	ctx := context.Background()
	if err := b.manifestsWarm(ctx); err != nil {
		t.Fatalf("manifests: %v", err)
	}
	if got := metricsWithPrefix(b.res, "manifests_warm_"); len(got) != 3*len(manifestOps) {
		t.Errorf("warm metrics %v, want %d", got, 3*len(manifestOps))
	}
	repos := map[string]bool{}
	for _, r := range reg.repoOf {
		repos[r] = true
	}
	if len(reg.manifests) != cfg.manifests || len(repos) != 4 {
		t.Fatalf("pushed %d manifests in %d repositories, want %d in 4", len(reg.manifests), len(repos), cfg.manifests)
	}
	for d := range reg.manifests {
		if reg.reads[d] < len(manifestOps) {
			t.Errorf("warm: manifest %s read %d times, want at least %d", d, reg.reads[d], len(manifestOps))
		}
	}
	// The server has not restarted: a cold read now would be warm.
	if err := b.manifestsCold(ctx); err != nil {
		t.Fatal(err)
	}
	if got := metricsWithPrefix(b.res, "manifests_cold_"); len(got) != 0 {
		t.Errorf("cold metrics measured in the process that pushed: %v", got)
	}

	reg.resetReads() // the restart
	b2 := testBench(t, srv.URL, cfg)
	if err := b2.manifestsCold(ctx); err != nil {
		t.Fatalf("manifests-cold: %v", err)
	}
	if got := metricsWithPrefix(b2.res, "manifests_cold_"); len(got) != 1+2*len(manifestOps) {
		t.Errorf("cold metrics %v, want %d", got, 1+2*len(manifestOps))
	}
	for d := range reg.manifests {
		if reg.reads[d] != 1 {
			t.Errorf("cold: manifest %s read %d times, want exactly once", d, reg.reads[d])
		}
	}
	// Primers and timed reads alike read each manifest once, the four ways
	// in turn: a quarter of the set each.
	for _, k := range []string{"GET digest", "GET tag", "HEAD digest", "HEAD tag"} {
		if reg.readsBy[k] != cfg.manifests/4 {
			t.Errorf("cold: %d reads by %s, want %d (a quarter)", reg.readsBy[k], k, cfg.manifests/4)
		}
	}
}

func TestManifestsColdNeedsTheSet(t *testing.T) {
	srv := httptest.NewServer(newMemRegistry())
	defer srv.Close()
	b := testBench(t, srv.URL, config{manifestsFile: filepath.Join(t.TempDir(), "missing.json")})
	err := b.manifestsCold(context.Background())
	if err == nil || !strings.Contains(err.Error(), "--manifests-file") {
		t.Fatalf("manifests-cold without the set: %v, want an error naming --manifests-file", err)
	}
}

// A registry that answers with another manifest fails the scenario.
func TestManifestsChecksTheAnswer(t *testing.T) {
	reg := newMemRegistry()
	reg.wrongHead = true
	srv := httptest.NewServer(reg)
	defer srv.Close()
	b := testBench(t, srv.URL, config{manifests: 8, manifestRepos: 2, duration: 20 * time.Millisecond})
	err := b.manifestsWarm(context.Background())
	if err == nil || !strings.Contains(err.Error(), "Docker-Content-Digest") {
		t.Fatalf("manifests against a registry answering the wrong digest: %v, want a Docker-Content-Digest error", err)
	}
}

func TestMergeJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "round.json")
	if err := os.WriteFile(path, []byte(`{"push_mono_c1_MBps": 300, "manifests_cold_get_tag_rps": 1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	r := newResults()
	r.add("manifests_cold_get_tag_rps", 2000, "req/s")
	if err := r.mergeJSON(path); err != nil {
		t.Fatal(err)
	}
	if err := r.writeJSON(path); err != nil {
		t.Fatal(err)
	}
	s, err := loadSeries("x=" + path)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.median("push_mono_c1_MBps"); got != 300 {
		t.Errorf("kept metric = %v, want 300", got)
	}
	if got := s.median("manifests_cold_get_tag_rps"); got != 2000 {
		t.Errorf("metric of this run = %v, want 2000 (this run's value wins)", got)
	}
	if err := newResults().mergeJSON(filepath.Join(t.TempDir(), "none.json")); err != nil {
		t.Errorf("merging into a missing file: %v, want nil", err)
	}
}
