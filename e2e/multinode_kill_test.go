package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestMultiNodeKill9MidPush: three nodes take pushes (monolithic and
// chunked blobs, manifests with tags; every request to a random node, as a
// load balancer without sticky sessions sends them) while one node is
// killed with SIGKILL. Requests that hit the dead node fail and the client
// retries the image on the others. Every push that was acknowledged (201 to
// the manifest PUT) must be pullable in full, digests checked, from both
// survivors, and from the killed node once it is restarted.
func TestMultiNodeKill9MidPush(t *testing.T) {
	c := newCluster(t, 3)
	urls := c.URLs()
	const victim = 1
	var dead atomic.Bool
	client := &http.Client{Timeout: 20 * time.Second}

	type acked struct {
		repo, tag, manifest string
		blobs               []string
	}
	var mu sync.Mutex
	var ledger []acked
	var attempts, failedAttempts, chunkedAcross atomic.Int64
	lb := &balancer{n: len(urls), down: map[int]bool{}}

	// pushImage pushes one image, each request to a random node; any
	// failure fails the attempt (the caller retries the whole image).
	pushImage := func(ctx context.Context, rng *rand.Rand, repo, tag string) (acked, error) {
		call := func(method, url string, hdr map[string]string, body any, want int) (response, error) {
			n := lb.pick(rng)
			r, err := doWith(ctx, client, method, urls[n], url, hdr, body)
			if err != nil {
				lb.markDown(n) // what a load balancer's health check does
				return r, err
			}
			if r.Status != want {
				return r, fmt.Errorf("%s %s: %s", method, url, r)
			}
			return r, nil
		}
		cfg := []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","tag":%q}`, tag))
		layer := make([]byte, 20_000+rng.IntN(200_000))
		for i := range layer {
			layer[i] = byte(rng.Uint32())
		}
		// The config: monolithic.
		if _, err := call(http.MethodPost, "/v2/"+repo+"/blobs/uploads/?digest="+sha256Digest(cfg), nil, cfg, http.StatusCreated); err != nil {
			return acked{}, err
		}
		// The layer: chunked, POST, PATCHes and PUT on random nodes.
		r, err := call(http.MethodPost, "/v2/"+repo+"/blobs/uploads/", nil, nil, http.StatusAccepted)
		if err != nil {
			return acked{}, err
		}
		loc := r.Header.Get("Location")
		step := len(layer)/3 + 1
		for off := 0; off < len(layer); off += step {
			end := min(off+step, len(layer))
			if r, err = call(http.MethodPatch, loc, contentRange(off, end-off), layer[off:end], http.StatusAccepted); err != nil {
				return acked{}, err
			}
			loc = r.Header.Get("Location")
		}
		if _, err := call(http.MethodPut, withDigest(loc, sha256Digest(layer)), nil, nil, http.StatusCreated); err != nil {
			return acked{}, err
		}
		chunkedAcross.Add(1)
		m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
			`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},`+
			`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`,
			sha256Digest(cfg), len(cfg), sha256Digest(layer), len(layer)))
		if _, err := call(http.MethodPut, "/v2/"+repo+"/manifests/"+tag, map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, m, http.StatusCreated); err != nil {
			return acked{}, err
		}
		return acked{repo, tag, sha256Digest(m), []string{sha256Digest(cfg), sha256Digest(layer)}}, nil
	}

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var gaveUp atomic.Int64
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := 0; ctx.Err() == nil && i < 10_000; i++ {
				repo, tag := fmt.Sprintf("kill/r%d", w%2), fmt.Sprintf("w%d-%d", w, i)
				for try := 0; try < 10; try++ {
					attempts.Add(1)
					img, err := pushImage(context.Background(), rng, repo, tag)
					if err == nil {
						mu.Lock()
						ledger = append(ledger, img)
						mu.Unlock()
						break
					}
					failedAttempts.Add(1)
					if !dead.Load() {
						t.Errorf("push %s:%s failed with every node up: %v", repo, tag, err)
						return
					}
					if try == 9 {
						gaveUp.Add(1)
					}
				}
			}
		}(w)
	}
	time.Sleep(2500 * time.Millisecond)
	dead.Store(true)
	c.Nodes[victim].Kill9()
	killedAt := len(snapshot(&mu, &ledger))
	wg.Wait()

	all := snapshot(&mu, &ledger)
	t.Logf("%d acknowledged pushes (%d before the kill), %d attempts, %d failed (hit the killed node before the balancer dropped it), %d images given up after 10 tries",
		len(all), killedAt, attempts.Load(), failedAttempts.Load(), gaveUp.Load())
	if killedAt == 0 || len(all) <= killedAt {
		t.Fatalf("the test did not push both before and after the kill (%d, %d)", killedAt, len(all))
	}
	if gaveUp.Load() > 0 {
		t.Errorf("%d images could not be pushed through the two surviving nodes", gaveUp.Load())
	}
	verify := func(node int) {
		base := c.Nodes[node].URL
		lost := 0
		for _, img := range all {
			r, err := doWith(context.Background(), client, http.MethodGet, base, "/v2/"+img.repo+"/manifests/"+img.tag,
				map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"}, nil)
			if err != nil || r.Status != http.StatusOK || sha256Digest(r.Body) != img.manifest {
				lost++
				t.Errorf("node %d: acknowledged %s:%s: manifest %v %v", node, img.repo, img.tag, err, r.Status)
				continue
			}
			for _, d := range img.blobs {
				r, err := doWith(context.Background(), client, http.MethodGet, base, "/v2/"+img.repo+"/blobs/"+d, nil, nil)
				if err != nil || r.Status != http.StatusOK || sha256Digest(r.Body) != d {
					lost++
					t.Errorf("node %d: acknowledged %s:%s: blob %s: %v %v", node, img.repo, img.tag, d, err, r.Status)
				}
			}
			if lost > 10 {
				t.Fatalf("node %d: giving up after %d losses", node, lost)
			}
		}
	}
	for i := range c.Nodes {
		if i != victim {
			verify(i)
		}
	}
	c.Start(victim)
	verify(victim)
	if err := ctx.Err(); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err)
	}
}

func snapshot[T any](mu *sync.Mutex, s *[]T) []T {
	mu.Lock()
	defer mu.Unlock()
	return append([]T(nil), *s...)
}

// balancer picks a random node among those not known to be down.
type balancer struct {
	mu   sync.Mutex
	n    int
	down map[int]bool
}

func (b *balancer) pick(rng *rand.Rand) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		if i := rng.IntN(b.n); !b.down[i] || len(b.down) == b.n {
			return i
		}
	}
}

func (b *balancer) markDown(i int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.down[i] = true
}
