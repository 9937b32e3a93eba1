package e2e

// Several `stowage serve` nodes sharing one PostgreSQL database and one
// storage directory (docs/scale-out.md), each with its own data directory:
// what a load balancer in front of them would see. These tests need a
// PostgreSQL server: scripts/postgres-test.sh starts one and sets
// STOWAGE_TEST_POSTGRES; without it they are skipped.

import (
	"context"
	"errors"
	"fmt"
	"github.com/stowage/stowage/meta/postgres/pgtest"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// pgSchema returns a connection string for a fresh schema of the test
// PostgreSQL server, dropped when the test ends, or skips the test.
func pgSchema(t testing.TB) string {
	t.Helper()
	needServer(t)
	return pgtest.Schema(t, "stowage_e2e")
}

// cluster is n nodes on one database and one storage directory, with one
// customer key file (every node needs the same key).
type cluster struct {
	t       *testing.T
	DB      string
	Storage string
	KeyFile string
	env     []string
	Nodes   []*server
	dirs    []string
}

func newCluster(t *testing.T, n int, env ...string) *cluster {
	t.Helper()
	c := &cluster{t: t, DB: pgSchema(t), Storage: t.TempDir()}
	c.KeyFile = filepath.Join(t.TempDir(), "key.json")
	writeKeyFile(t, c.KeyFile, "cluster-key")
	c.env = append([]string{"STOWAGE_DATABASE=" + c.DB, "STOWAGE_STORAGE_PATH=" + c.Storage,
		"STOWAGE_ENCRYPTION_KEY_FILE=" + c.KeyFile}, env...)
	c.Nodes = make([]*server, n)
	c.dirs = make([]string, n)
	for i := range c.Nodes {
		c.dirs[i] = t.TempDir()
		c.Start(i)
	}
	return c
}

// Start starts (or restarts) node i over its own data directory.
func (c *cluster) Start(i int) *server {
	c.t.Helper()
	c.Nodes[i] = startServer(c.t, c.dirs[i], c.env...)
	return c.Nodes[i]
}

// URLs lists the nodes' URLs.
func (c *cluster) URLs() []string {
	var us []string
	for _, s := range c.Nodes {
		us = append(us, s.URL)
	}
	return us
}

// rrProxy is a round-robin reverse proxy over backends on 127.0.0.1: each
// request goes to the next one, as a load balancer without sticky sessions
// does. It keeps the Host header, so Location headers name the proxy.
func rrProxy(t testing.TB, backends []string) *httptest.Server {
	t.Helper()
	var targets []*url.URL
	for _, b := range backends {
		u, err := url.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		targets = append(targets, u)
	}
	var next atomic.Uint64
	p := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(targets[next.Add(1)%uint64(len(targets))])
			r.Out.Host = r.In.Host
		},
		FlushInterval: -1,
	}
	s := httptest.NewServer(p)
	t.Cleanup(s.Close)
	return s
}

// TestMultiNodeSharedKey: a node whose data directory has no key, on a
// database whose data is encrypted with another node's service key, refuses
// to start (and creates no key of its own), saying what to do; with the
// first node's keys/service.json copied in, it starts and reads the data.
func TestMultiNodeSharedKey(t *testing.T) {
	db, storage := pgSchema(t), t.TempDir()
	env := []string{"STOWAGE_DATABASE=" + db, "STOWAGE_STORAGE_PATH=" + storage}
	dirA, dirB := t.TempDir(), t.TempDir()
	a := startServer(t, dirA, env...)
	data := randomBytes(t, 100_000)
	d := pushBlob(t, a.URL, "shared/key", data)

	serveRefused(t, dirB, "copy keys/service.json from the first node", env...)
	if _, err := os.Stat(filepath.Join(dirB, "keys", "service.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused node left a key file behind (err %v)", err)
	}
	key, err := os.ReadFile(filepath.Join(dirA, "keys", "service.json"))
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dirB, "keys"), 0o700)
	if err := os.WriteFile(filepath.Join(dirB, "keys", "service.json"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	b := startServer(t, dirB, env...)
	r := mustDo(t, http.MethodGet, b.URL, "/v2/shared/key/blobs/"+d, nil, nil)
	if r.Status != http.StatusOK || sha256Digest(r.Body) != d {
		t.Fatalf("pull through the second node: %d, digest %s, want %s", r.Status, sha256Digest(r.Body), d)
	}

	// A node with its own, different service key is refused too.
	dirC := t.TempDir()
	writeKeyFile(t, filepath.Join(dirC, "keys", "service.json"), "service-0badc0de")
	serveRefused(t, dirC, "is not the key this registry's data is encrypted with", env...)
}

// TestMultiNodeChunkedUpload: an upload's POST, PATCHes and PUT each land on
// another node, and the blob is right on every node. Two PATCHes racing for
// the same offset on two nodes never both count.
func TestMultiNodeChunkedUpload(t *testing.T) {
	c := newCluster(t, 3)
	urls := c.URLs()
	for _, tc := range []struct {
		name   string
		size   int
		chunks int
	}{
		{"three chunks", 300_000, 3},
		{"many small chunks", 64_000, 16},
		{"one byte chunks", 5, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := randomBytes(t, tc.size)
			d := sha256Digest(data)
			repo := "chunked/" + strings.ReplaceAll(tc.name, " ", "-")
			loc := startUpload(t, urls[0], repo)
			step := (tc.size + tc.chunks - 1) / tc.chunks
			n := 1
			for off := 0; off < tc.size; off += step {
				end := min(off+step, tc.size)
				r := mustDo(t, http.MethodPatch, urls[n%len(urls)], loc, contentRange(off, end-off), data[off:end])
				if r.Status != http.StatusAccepted {
					t.Fatalf("PATCH [%d,%d) on node %d: %s", off, end, n%len(urls), r)
				}
				loc = r.Header.Get("Location")
				// The next node sees the progress.
				n++
				st := mustDo(t, http.MethodGet, urls[n%len(urls)], loc, nil, nil)
				if st.Status != http.StatusNoContent || st.Header.Get("Range") != fmt.Sprintf("0-%d", end-1) {
					t.Fatalf("upload status on node %d after [%d,%d): %s Range %q", n%len(urls), off, end, st, st.Header.Get("Range"))
				}
			}
			r := mustDo(t, http.MethodPut, urls[n%len(urls)], withDigest(loc, d), nil, nil)
			if r.Status != http.StatusCreated {
				t.Fatalf("PUT on node %d: %s", n%len(urls), r)
			}
			for i, u := range urls {
				r := mustDo(t, http.MethodGet, u, "/v2/"+repo+"/blobs/"+d, nil, nil)
				if r.Status != http.StatusOK || sha256Digest(r.Body) != d {
					t.Errorf("GET on node %d: %d, digest %s", i, r.Status, sha256Digest(r.Body))
				}
			}
		})
	}

	t.Run("racing PATCHes", func(t *testing.T) {
		// Two nodes must not append to one session at once: the session's
		// writer lease (Registry.lockUpload) lets one in and refuses the
		// other, so what is stored is what the hash state describes.
		for round := 0; round < 10; round++ {
			repo := "chunked/race"
			first := randomBytes(t, 10_000)
			loc := startUpload(t, urls[0], repo)
			r := mustDo(t, http.MethodPatch, urls[1], loc, contentRange(0, len(first)), first)
			if r.Status != http.StatusAccepted {
				t.Fatalf("first PATCH: %s", r)
			}
			loc = r.Header.Get("Location")
			a, b := randomBytes(t, 200_000), randomBytes(t, 200_000)
			var ra, rb response
			var wg sync.WaitGroup
			wg.Add(2)
			go func() {
				defer wg.Done()
				ra, _ = do(context.Background(), http.MethodPatch, urls[1], loc, contentRange(len(first), len(a)), a)
			}()
			go func() {
				defer wg.Done()
				rb, _ = do(context.Background(), http.MethodPatch, urls[2], loc, contentRange(len(first), len(b)), b)
			}()
			wg.Wait()
			var won []byte
			switch {
			case ra.Status == http.StatusAccepted && rb.Status == http.StatusAccepted:
				t.Fatalf("round %d: both racing PATCHes were accepted", round)
			case ra.Status == http.StatusAccepted:
				won = a
			case rb.Status == http.StatusAccepted:
				won = b
			default:
				// Both lost (each saw the other's write): the session may be
				// unusable, which the client learns; nothing is corrupted.
				continue
			}
			full := append(append([]byte{}, first...), won...)
			d := sha256Digest(full)
			r = mustDo(t, http.MethodPut, urls[0], withDigest(loc, d), nil, nil)
			if r.Status != http.StatusCreated {
				// Refusing is safe; storing other bytes under d is not.
				t.Logf("round %d: finishing after the race: %s", round, r)
				continue
			}
			got := mustDo(t, http.MethodGet, urls[2], "/v2/"+repo+"/blobs/"+d, nil, nil)
			if got.Status != http.StatusOK || sha256Digest(got.Body) != d {
				t.Errorf("round %d: blob %s stored with other bytes (digest %s) after racing PATCHes on two nodes", round, d, sha256Digest(got.Body))
			}
		}
	})
}
