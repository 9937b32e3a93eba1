package gc_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/gc"
	"github.com/stowage/stowage/meta/postgres"
	"github.com/stowage/stowage/meta/postgres/pgtest"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/storage/fs"
)

// TestGCScale measures garbage collection on a built registry, at each
// size in STOWAGE_GC_SCALE (manifests, comma-separated, e.g.
// "10000,100000"; skipped without it): N manifests, each its own blob
// object, in N/10 repositories (each with its config and layer; one base
// layer every manifest shares), plus N/10 manifest blobs no manifest holds
// any more (what a retention pass leaves) and N/1000 orphan objects (no
// row). SQLite in a file, or PostgreSQL with STOWAGE_GC_SCALE_DB=postgres
// (and STOWAGE_TEST_POSTGRES, or STOWAGE_GC_SCALE_PG_URL: see below);
// objects in storage/fs without fsync.
//
// It runs `gc --min-age 0s` twice, the first with the 10% to collect, the
// second with nothing, and logs each one's time, database transactions,
// bytes allocated and peak heap (sampled every 10 ms), and checks what
// each collected. STOWAGE_GC_SCALE_CPUPROFILE=path writes a CPU profile
// of the collections of the last size.
func TestGCScale(t *testing.T) {
	sizes := os.Getenv("STOWAGE_GC_SCALE")
	if sizes == "" {
		t.Skip("STOWAGE_GC_SCALE is not set (a list of sizes, e.g. 10000,100000)")
	}
	for _, s := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 100 {
			t.Fatalf("STOWAGE_GC_SCALE: %q is not a size of at least 100", s)
		}
		t.Run(strconv.Itoa(n), func(t *testing.T) { gcScale(t, n) })
	}
}

// countingDB counts the transactions run through it.
type countingDB struct {
	stowage.DB
	views, updates atomic.Int64
}

func (c *countingDB) View(ctx context.Context, fn func(stowage.Tx) error) error {
	c.views.Add(1)
	return c.DB.View(ctx, fn)
}

func (c *countingDB) Update(ctx context.Context, fn func(stowage.Tx) error) error {
	c.updates.Add(1)
	return c.DB.Update(ctx, fn)
}

func gcScale(t *testing.T, n int) {
	ctx := context.Background()
	dir := t.TempDir()
	var db stowage.DB
	if os.Getenv("STOWAGE_GC_SCALE_DB") == "postgres" {
		// STOWAGE_GC_SCALE_PG_URL: a connection string whose search_path is
		// an empty schema the registry is built in and left in (to look at
		// plans afterwards); else a schema of the test server, dropped.
		url := os.Getenv("STOWAGE_GC_SCALE_PG_URL")
		if url == "" {
			url = pgtest.Schema(t, "gcscale")
		}
		p, err := postgres.Open(ctx, url, postgres.Options{})
		if err != nil {
			t.Fatal(err)
		}
		db = p
	} else {
		s, err := sqlite.Open(ctx, filepath.Join(dir, "stowage.db"))
		if err != nil {
			t.Fatal(err)
		}
		db = s
	}
	defer db.Close()
	store, err := fs.New(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	store.NoSync = true

	start := time.Now()
	old := start.Add(-30 * 24 * time.Hour)
	repos := max(1, n/10)
	put := func(data []byte) stowage.Digest {
		d := sha(data)
		if err := store.Put(ctx, stowage.BlobKey(d), bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
		return d
	}
	live := func(tx stowage.Tx, d stowage.Digest, size int64) error {
		return tx.Blobs().PutBlob(stowage.BlobRecord{Digest: d, Size: size, Created: old, State: stowage.BlobLive, LastUsed: old, UnreferencedSince: old})
	}
	base := put(bytes.Repeat([]byte("base"), 1024))
	const perTx = 2000
	var garbage, garbageBytes int64
	for r0 := 0; r0 < repos; {
		var bodies [][]byte
		var cfgs [][]byte
		err := db.Update(ctx, func(tx stowage.Tx) error {
			bodies, cfgs = bodies[:0], cfgs[:0]
			r := r0
			for m := 0; r < repos && m < perTx; r++ {
				repo := fmt.Sprintf("r/%07d", r)
				if err := tx.Repositories().CreateRepository(repo, old); err != nil {
					return err
				}
				cfg := []byte(fmt.Sprintf(`{"config":%d}`, r))
				layer := []byte(fmt.Sprintf(`layer %d`, r))
				cfgs = append(cfgs, cfg, layer)
				for _, b := range []struct {
					d    stowage.Digest
					size int64
				}{{base, 4096}, {sha(cfg), int64(len(cfg))}, {sha(layer), int64(len(layer))}} {
					if err := live(tx, b.d, b.size); err != nil {
						return err
					}
					if err := tx.Blobs().LinkBlob(repo, b.d, old); err != nil {
						return err
					}
				}
				refs := []stowage.ManifestRef{{Digest: sha(cfg), Kind: stowage.RefBlob},
					{Digest: base, Kind: stowage.RefBlob}, {Digest: sha(layer), Kind: stowage.RefBlob}}
				// 10 manifests, and one manifest blob nothing holds.
				for j := 0; j <= 10; j++ {
					body := []byte(fmt.Sprintf(`{"schemaVersion":2,"repo":%d,"n":%d}`, r, j))
					d := sha(body)
					if err := live(tx, d, int64(len(body))); err != nil {
						return err
					}
					bodies = append(bodies, body)
					m++
					if j == 10 {
						continue
					}
					if err := tx.Manifests().PutManifest(stowage.ManifestRecord{Repo: repo, Digest: d, MediaType: stowage.MediaTypeOCIManifest,
						Size: int64(len(body)), Created: old}, refs); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range append(cfgs, bodies...) {
			put(b)
		}
		for r := r0; r < r0+len(cfgs)/2; r++ {
			body := []byte(fmt.Sprintf(`{"schemaVersion":2,"repo":%d,"n":%d}`, r, 10))
			garbage++
			garbageBytes += int64(len(body))
		}
		r0 += len(cfgs) / 2
	}
	orphans := max(1, n/1000)
	for i := range orphans {
		put([]byte(fmt.Sprintf("orphan %d", i)))
	}
	t.Logf("built %d manifests in %d repositories (+%d blobs to collect, %d orphans) in %s",
		repos*10, repos, garbage, orphans, time.Since(start).Round(time.Millisecond))

	cdb := &countingDB{DB: db}
	reg := stowage.NewRegistry(cdb, store, stowage.Options{})
	if path := os.Getenv("STOWAGE_GC_SCALE_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			t.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	zero := time.Duration(0)
	for _, run := range []struct {
		name           string
		blobs, orphans int64
	}{
		{"10% to collect", garbage, int64(orphans)},
		{"nothing to collect", 0, 0},
	} {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		views, updates := cdb.views.Load(), cdb.updates.Load()
		peak := peakHeap()
		t0 := time.Now()
		// When each phase was first reported: where the time goes.
		var phases []string
		last := ""
		progress := func(phase string, done, total int64) {
			if phase != last {
				phases = append(phases, fmt.Sprintf("%s from %s", phase, time.Since(t0).Round(time.Millisecond)))
				last = phase
			}
		}
		rep, err := gc.New(reg).Collect(ctx, gc.Options{MinAge: &zero, Progress: progress})
		took := time.Since(t0)
		t.Logf("phases: %s", strings.Join(phases, ", "))
		heap := peak()
		if err != nil {
			t.Fatal(err)
		}
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		t.Logf("n=%d gc, %s: %s; %d blobs, %d orphans collected; %d read and %d write transactions; %.1f MiB allocated, heap peak %.1f MiB (%.1f MiB before)",
			repos*10, run.name, took.Round(time.Millisecond), rep.BlobsDeleted, rep.OrphansDeleted,
			cdb.views.Load()-views, cdb.updates.Load()-updates,
			float64(after.TotalAlloc-before.TotalAlloc)/(1<<20), float64(heap)/(1<<20), float64(before.HeapAlloc)/(1<<20))
		if rep.BlobsDeleted != run.blobs || rep.OrphansDeleted != run.orphans {
			t.Errorf("%s: collected %d blobs and %d orphans, want %d and %d", run.name, rep.BlobsDeleted, rep.OrphansDeleted, run.blobs, run.orphans)
		}
		if run.blobs > 0 && rep.BytesFreed != garbageBytes {
			t.Errorf("%s: freed %d bytes, want %d", run.name, rep.BytesFreed, garbageBytes)
		}
	}
}

// peakHeap samples the heap every 10 ms until the returned function is
// called, which returns the highest HeapAlloc seen.
func peakHeap() func() uint64 {
	var mu sync.Mutex
	var peak uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	sample := func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		mu.Lock()
		peak = max(peak, ms.HeapAlloc)
		mu.Unlock()
	}
	go func() {
		defer close(done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				sample()
			}
		}
	}()
	return func() uint64 {
		close(stop)
		<-done
		sample()
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}

func sha(b []byte) stowage.Digest { return stowage.Digest(fmt.Sprintf("sha256:%x", sha256.Sum256(b))) }
