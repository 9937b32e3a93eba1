package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"
)

// Manifest reads over many distinct manifests (issue 18, item 4). One hot
// manifest (manifest-get) is the best case for any cache; a registry's real
// read load is spread over many manifests, and after a restart the first
// read of each finds nothing in the server's memory.
//
// manifests pushes cfg.manifests small images (a config and one 1 KiB
// layer each, one tag each) over cfg.manifestRepos repositories, reads
// every one once by each of the four ways below (untimed: "warm" means
// every manifest has been read since the server started), then times each
// way for cfg.duration at concurrency readConc, every request for a
// manifest picked at random among all of them.
//
// manifests-cold reads the set a previous bench process pushed (from
// --manifests-file) in a server restarted since: scripts/bench.sh stops the
// server after the run that pushed, starts it again on the same data dir
// and runs this scenario alone. The set is shuffled; the first coldPrimers
// manifests are read once, untimed, to open the client's connections and
// the server's database connections (the cost of a fresh process's first
// requests, whatever they read); then each of the others is read exactly
// once, the four ways dealt in turn over the shuffled order and run mixed at
// concurrency readConc, so every timed request is the first read of its
// manifest since the server started and no way runs on a server the others
// warmed. Latencies are per way; the request rate is the mixed pass's (a
// rate per way cannot be separated from the others in one pass).
// "Cold" is the process, not the machine: the OS page cache keeps the files
// the push wrote (dropping it needs root), so a cold read here costs what
// the server itself must redo (resolve, read, unwrap the data key and
// decrypt, with nothing in its caches) and not a disk seek.

const (
	manifestLayerSize = 1 << 10
	coldPrimers       = 2 * readConc
)

// manifestRef is one pushed image as a later process needs it.
type manifestRef struct {
	Repo   string `json:"repo"`
	Tag    string `json:"tag"`
	Digest string `json:"digest"`
	Size   int    `json:"size"`
}

// manifestOp is one way a client reads a manifest.
type manifestOp struct {
	name   string // metric infix
	method string
	byTag  bool
}

var manifestOps = []manifestOp{
	{"get_digest", http.MethodGet, false},
	{"get_tag", http.MethodGet, true},
	{"head_digest", http.MethodHead, false},
	{"head_tag", http.MethodHead, true},
}

var manifestReadHeader = http.Header{"Accept": {manifestAccept}}

// read does op on m and checks the answer is m: the body's (GET) or the
// announced (HEAD) length, and Docker-Content-Digest when present.
func (op manifestOp) read(ctx context.Context, c *client, m manifestRef) error {
	ref := m.Digest
	if op.byTag {
		ref = m.Tag
	}
	path := "/v2/" + m.Repo + "/manifests/" + ref
	h, n, err := c.doDrain(ctx, op.method, path, manifestReadHeader, nil, http.StatusOK)
	if err != nil {
		return err
	}
	if op.method == http.MethodHead {
		if cl := h.Get("Content-Length"); cl != strconv.Itoa(m.Size) {
			return fmt.Errorf("HEAD %s: Content-Length %q, want %d", path, cl, m.Size)
		}
	} else if n != int64(m.Size) {
		return fmt.Errorf("GET %s: %d bytes, want %d", path, n, m.Size)
	}
	if d := h.Get("Docker-Content-Digest"); d != "" && d != m.Digest {
		return fmt.Errorf("%s %s: Docker-Content-Digest %s, want %s", op.method, path, d, m.Digest)
	}
	return nil
}

func (b *bench) manifestsWarm(ctx context.Context) error {
	refs, err := b.pushManifests(ctx)
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	t0 := time.Now()
	err = forEach(ctx, readConc, len(refs), func(ctx context.Context, i int) error {
		for _, op := range manifestOps {
			if err := op.read(ctx, b.c, refs[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	fmt.Fprintf(os.Stderr, "  (warm-up: each manifest read %d ways in %.1fs)\n", len(manifestOps), time.Since(t0).Seconds())
	for _, op := range manifestOps {
		rps, lat, err := latencyLoop(ctx, readConc, b.cfg.duration, func(ctx context.Context) error {
			return op.read(ctx, b.c, refs[rand.IntN(len(refs))])
		})
		if err != nil {
			return err
		}
		b.addLatency("manifests_warm_"+op.name, rps, lat)
	}
	return nil
}

func (b *bench) manifestsCold(ctx context.Context) error {
	switch {
	case b.st.manifests != nil:
		fmt.Fprintln(os.Stderr, "  (skipped: this process pushed the manifests, so the server has not restarted since; scripts/bench.sh restarts it and runs manifests-cold alone)")
		return nil
	case b.cfg.manifestsFile == "":
		fmt.Fprintln(os.Stderr, "  (skipped: no --manifests-file)")
		return nil
	}
	refs, err := readManifestRefs(b.cfg.manifestsFile)
	if err != nil {
		return err
	}
	if len(refs) < coldPrimers+len(manifestOps) {
		return fmt.Errorf("%s: %d manifests, need at least %d", b.cfg.manifestsFile, len(refs), coldPrimers+len(manifestOps))
	}
	rand.Shuffle(len(refs), func(i, j int) { refs[i], refs[j] = refs[j], refs[i] })
	primers, refs := refs[:coldPrimers], refs[coldPrimers:]
	err = forEach(ctx, readConc, len(primers), func(ctx context.Context, i int) error {
		return manifestOps[i%len(manifestOps)].read(ctx, b.c, primers[i])
	})
	if err != nil {
		return fmt.Errorf("priming: %w", err)
	}
	lat := make([]time.Duration, len(refs))
	start := time.Now()
	err = forEach(ctx, readConc, len(refs), func(ctx context.Context, i int) error {
		t0 := time.Now()
		err := manifestOps[i%len(manifestOps)].read(ctx, b.c, refs[i])
		lat[i] = time.Since(t0)
		return err
	})
	elapsed := time.Since(start)
	if err != nil {
		return err
	}
	b.res.add("manifests_cold_rps", float64(len(refs))/elapsed.Seconds(), "req/s")
	for k, op := range manifestOps {
		var mine []time.Duration
		for i := k; i < len(lat); i += len(manifestOps) {
			mine = append(mine, lat[i])
		}
		slices.Sort(mine)
		b.res.add("manifests_cold_"+op.name+"_p50_ms", percentileMs(mine, 50), "ms")
		b.res.add("manifests_cold_"+op.name+"_p99_ms", percentileMs(mine, 99), "ms")
	}
	return nil
}

func (b *bench) addLatency(prefix string, rps float64, sorted []time.Duration) {
	b.res.add(prefix+"_rps", rps, "req/s")
	b.res.add(prefix+"_p50_ms", percentileMs(sorted, 50), "ms")
	b.res.add(prefix+"_p99_ms", percentileMs(sorted, 99), "ms")
}

// pushManifests pushes the set once per process and writes it to
// --manifests-file for manifests-cold.
func (b *bench) pushManifests(ctx context.Context) ([]manifestRef, error) {
	if b.st.manifests != nil {
		return b.st.manifests, nil
	}
	n, repos := b.cfg.manifests, b.cfg.manifestRepos
	imgs := make([]image, n)
	refs := make([]manifestRef, n)
	for i := range imgs {
		imgs[i] = newImage(b.src, fmt.Sprintf("%s-many-%d", b.cfg.prefix, i), 1, manifestLayerSize)
		sum := sha256.Sum256(imgs[i].manifest)
		refs[i] = manifestRef{
			Repo:   b.repo(fmt.Sprintf("many/r%04d", i%repos)),
			Tag:    fmt.Sprintf("v%06d", i),
			Digest: "sha256:" + hex.EncodeToString(sum[:]),
			Size:   len(imgs[i].manifest),
		}
	}
	t0 := time.Now()
	err := forEach(ctx, smallConc, n, func(ctx context.Context, i int) error {
		return b.pushImage(ctx, refs[i].Repo, refs[i].Tag, imgs[i])
	})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "  (setup: %d images in %d repositories in %.1fs)\n", n, repos, time.Since(t0).Seconds())
	b.st.manifests = refs
	if b.cfg.manifestsFile != "" {
		if err := writeManifestRefs(b.cfg.manifestsFile, refs); err != nil {
			return nil, err
		}
	}
	return refs, nil
}

func writeManifestRefs(path string, refs []manifestRef) error {
	data, err := json.Marshal(refs)
	if err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func readManifestRefs(path string) ([]manifestRef, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--manifests-file: %w (a run of scenario manifests writes it)", err)
	}
	var refs []manifestRef
	if err := json.Unmarshal(data, &refs); err != nil {
		return nil, fmt.Errorf("--manifests-file %s: %w", path, err)
	}
	return refs, nil
}

// mergeJSON adds to r the metrics already in path that r does not have
// (--json-merge: a second bench process adds its metrics to the first's
// file, as the cold read after a restart does). They are written with
// --json but not printed: this run did not measure them.
func (r *results) mergeJSON(path string) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var old map[string]float64
	if err := json.Unmarshal(data, &old); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for k, v := range old {
		if _, ok := r.values[k]; !ok {
			r.values[k] = v
		}
	}
	return nil
}
