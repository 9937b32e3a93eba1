package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestGCStressRealServer runs the GC stress test against the real binary
// over HTTP: concurrent pushes of images that share layers (HEAD first, and
// skip what exists, as docker does), deletes, pulls, and garbage collection
// running continuously through the management API with a 2 s lease and no
// grace period, so collection really happens while pushes go on. Zero
// failed pushes, zero failed pulls of live images, and at the end the
// storage holds exactly the referenced set.
func TestGCStressRealServer(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir, "STOWAGE_GC_GRACE=0s", "STOWAGE_GC_LEASE=2s", "STOWAGE_GC_INTERVAL=0s")
	gcStress(t, []string{s.URL}, filepath.Join(dir, "storage"))
}

// TestGCStressMultiNode is the same stress over three nodes sharing
// PostgreSQL and one storage directory: every request of a push (the HEAD,
// the upload, the manifest PUT) and every pull picks a node at random, and
// collections are asked of every node in turn, so the HEAD that renews a
// lease and the manifest PUT that relies on it reach different nodes, and
// collections asked of different nodes queue on the job lock.
func TestGCStressMultiNode(t *testing.T) {
	c := newCluster(t, 3, "STOWAGE_GC_GRACE=0s", "STOWAGE_GC_LEASE=2s", "STOWAGE_GC_INTERVAL=0s")
	gcStress(t, c.URLs(), c.Storage)
}

// gcStress runs the stress over nodes (one or several sharing a database)
// whose storage directory is storage.
func gcStress(t *testing.T, nodes []string, storage string) {
	client := &http.Client{Timeout: 30 * time.Second}
	sum := func(b []byte) string { h := sha256.Sum256(b); return "sha256:" + hex.EncodeToString(h[:]) }
	pool := make([][]byte, 8)
	for i := range pool {
		pool[i] = make([]byte, 8_000+i*3_000)
		rand.Read(pool[i])
	}
	var picks atomic.Uint64
	node := func() string { return nodes[mrand.IntN(len(nodes))] }
	req := func(method, url string, body []byte, hdr ...string) (*http.Response, []byte, error) {
		r, err := http.NewRequest(method, node()+url, bytes.NewReader(body))
		if err != nil {
			return nil, nil, err
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := client.Do(r)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp, b.Bytes(), nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var pushes, pulls, deletes, gcs, freed atomic.Int64
	var failures atomic.Int64
	fail := func(format string, args ...any) { failures.Add(1); t.Errorf(format, args...) }
	type image struct {
		repo, tag string
		blobs     []string // config and layers
		manifest  string
	}
	var mu sync.Mutex
	live := map[string]image{}
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := mrand.New(mrand.NewPCG(uint64(w), 42))
			for i := 0; ctx.Err() == nil && i < 5000; i++ {
				repo := fmt.Sprintf("stress/r%d", rng.IntN(3))
				config := []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","w":%d,"i":%d}`, w, i))
				blobs := [][]byte{config, pool[rng.IntN(len(pool))], pool[rng.IntN(len(pool))]}
				// A push that outlives the lease (2 s from the config's
				// upload to the manifest PUT) may lose its config to a
				// collection: a failure then says how long it took.
				began := time.Now()
				for _, b := range blobs {
					resp, _, err := req(http.MethodHead, "/v2/"+repo+"/blobs/"+sum(b), nil)
					if err != nil {
						fail("HEAD: %v", err)
						return
					}
					if resp.StatusCode == http.StatusOK {
						continue // the client skips the upload: the lease must protect it
					}
					resp, body, err := req(http.MethodPost, "/v2/"+repo+"/blobs/uploads/?digest="+sum(b), b)
					if err != nil || resp.StatusCode != http.StatusCreated {
						fail("push blob: %v %v %s", err, resp, body)
						return
					}
				}
				var layers []string
				for _, l := range blobs[1:] {
					layers = append(layers, fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}`, sum(l), len(l)))
				}
				m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[%s]}`,
					sum(config), len(config), strings.Join(layers, ",")))
				tag := fmt.Sprintf("w%d-%d", w, i)
				resp, body, err := req(http.MethodPut, "/v2/"+repo+"/manifests/"+tag, m, "Content-Type", "application/vnd.oci.image.manifest.v1+json")
				if err != nil || resp.StatusCode != http.StatusCreated {
					fail("push manifest %s:%s (%v after the first blob request): %v %v %s", repo, tag, time.Since(began).Round(time.Millisecond), err, resp, body)
					return
				}
				pushes.Add(1)
				img := image{repo, tag, []string{sum(blobs[0]), sum(blobs[1]), sum(blobs[2])}, sum(m)}
				mu.Lock()
				live[repo+":"+tag] = img
				var pick image
				for _, v := range live {
					pick = v
					if rng.IntN(3) == 0 {
						break
					}
				}
				mu.Unlock()
				// Pull a live image in full.
				if pick.repo != "" {
					ok := true
					for _, d := range append([]string{pick.manifest}, pick.blobs...) {
						kind := "blobs"
						if d == pick.manifest {
							kind = "manifests"
						}
						resp, body, err := req(http.MethodGet, "/v2/"+pick.repo+"/"+kind+"/"+d, nil)
						if err != nil || resp.StatusCode != http.StatusOK || sum(body) != d {
							mu.Lock()
							_, still := live[pick.repo+":"+pick.tag]
							mu.Unlock()
							if still {
								fail("pull %s:%s: %s: %v %v", pick.repo, pick.tag, d, err, resp)
							}
							ok = false
							break
						}
					}
					if ok {
						pulls.Add(1)
					}
				}
				// Delete some of its own images.
				if rng.IntN(3) == 0 {
					mu.Lock()
					delete(live, repo+":"+tag)
					mu.Unlock()
					resp, body, err := req(http.MethodDelete, "/v2/"+repo+"/manifests/"+img.manifest, nil)
					if err != nil || resp.StatusCode != http.StatusAccepted {
						fail("delete: %v %v %s", err, resp, body)
						return
					}
					deletes.Add(1)
				}
			}
		}(w)
	}
	gcRun := func(query string) {
		resp, err := client.Post(nodes[picks.Add(1)%uint64(len(nodes))]+"/api/v1/gc"+query, "", nil)
		if err != nil {
			fail("gc: %v", err)
			return
		}
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var line struct {
				Report *struct{ BytesFreed int64 }
				Error  string
			}
			json.Unmarshal(sc.Bytes(), &line)
			if line.Error != "" {
				fail("gc: %s", line.Error)
			}
			if line.Report != nil {
				freed.Add(line.Report.BytesFreed)
				gcs.Add(1)
			}
		}
	}
	// One collector per node, up to two: with several nodes, collections
	// asked of two nodes at once take turns (the job lock).
	for g := 0; g < min(len(nodes), 2); g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				gcRun("")
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	t.Logf("%d pushes, %d full pulls, %d deletes, %d collections freeing %d bytes; %d failures",
		pushes.Load(), pulls.Load(), deletes.Load(), gcs.Load(), freed.Load(), failures.Load())
	if pushes.Load() == 0 || gcs.Load() == 0 || freed.Load() == 0 {
		t.Fatal("the stress test did not exercise collection")
	}

	// Collect everything unreferenced; storage must hold exactly the live set.
	gcRun("?min_age=0s")
	want := map[string]bool{}
	for _, img := range live {
		want[img.manifest] = true
		for _, b := range img.blobs {
			want[b] = true
		}
	}
	got := map[string]bool{}
	filepath.Walk(filepath.Join(storage, "blobs"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			got["sha256:"+fi.Name()] = true
		}
		return nil
	})
	for d := range want {
		if !got[d] {
			t.Errorf("referenced %s is missing from storage", d)
		}
	}
	for d := range got {
		if !want[d] {
			t.Errorf("storage holds unreferenced %s", d)
		}
	}
	if len(got) != len(want) {
		t.Errorf("storage holds %d objects, %d are referenced", len(got), len(want))
	}
}
