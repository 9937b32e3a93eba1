package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime/debug"
	"time"
)

// Big-blob scenarios: monolithic push, chunked push and pull of
// --blob-mib blobs at concurrency 1 and 4.

var bigConcurrency = []int{1, 4}

// pushAll pushes blobs from conc workers, worker w taking its own slice
// of distinct blobs, and returns aggregate MB/s over the wall time.
func pushAll(ctx context.Context, conc int, blobs []blob, push func(ctx context.Context, b blob) error) (float64, error) {
	per := len(blobs) / conc
	start := time.Now()
	err := runWorkers(ctx, conc, func(ctx context.Context, w int) error {
		for _, bl := range blobs[w*per : (w+1)*per] {
			if err := push(ctx, bl); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return mbps(int64(per*conc)*int64(blobs[0].size), time.Since(start)), nil
}

func mbps(bytes int64, d time.Duration) float64 { return float64(bytes) / 1e6 / d.Seconds() }

// genBlobs makes fresh random blobs for one measurement, outside the clock.
func (b *bench) genBlobs(n int) []blob {
	t0 := time.Now()
	bl := b.src.randomBlobs(n, b.cfg.blobSize)
	fmt.Fprintf(os.Stderr, "  (generated %d × %d MiB in %.1fs)\n", n, b.cfg.blobSize>>20, time.Since(t0).Seconds())
	return bl
}

// forget drops blob bytes we no longer need so the bench's own memory
// (hundreds of MiB) does not squeeze the registry's page cache.
func forget(blobs []blob) []blob {
	out := make([]blob, len(blobs))
	for i, bl := range blobs {
		out[i] = blob{digest: bl.digest, size: bl.size}
	}
	debug.FreeOSMemory()
	return out
}

func (b *bench) pushMono(ctx context.Context) error {
	repo := b.repo("big")
	for _, conc := range bigConcurrency {
		blobs := b.genBlobs(conc * b.cfg.iters)
		v, err := pushAll(ctx, conc, blobs, func(ctx context.Context, bl blob) error {
			return b.c.pushMono(ctx, repo, bl)
		})
		if err != nil {
			return err
		}
		b.res.add(fmt.Sprintf("push_mono_c%d_MBps", conc), v, "MB/s")
		b.st.bigBlobs = append(b.st.bigBlobs, forget(blobs)...)
	}
	return nil
}

func (b *bench) pushChunked(ctx context.Context) error {
	repo := b.repo("chunked")
	for _, conc := range bigConcurrency {
		blobs := b.genBlobs(conc * b.cfg.iters)
		v, err := pushAll(ctx, conc, blobs, func(ctx context.Context, bl blob) error {
			return b.c.pushChunked(ctx, repo, bl, b.cfg.chunkSize)
		})
		if err != nil {
			return err
		}
		b.res.add(fmt.Sprintf("push_chunked_c%d_MBps", conc), v, "MB/s")
		forget(blobs)
	}
	return nil
}

// pull GETs big blobs: at concurrency 1 the first --iters blobs in turn,
// at concurrency 4 each worker its own --iters blobs. Lengths are checked;
// digests are not, since hashing would spend the CPU the server shares.
func (b *bench) pull(ctx context.Context) error {
	repo := b.repo("big")
	need := 4 * b.cfg.iters
	if missing := need - len(b.st.bigBlobs); missing > 0 {
		fmt.Fprintf(os.Stderr, "  (setup: pushing %d blobs to pull)\n", missing)
		blobs := b.genBlobs(missing)
		if _, err := pushAll(ctx, 1, blobs, func(ctx context.Context, bl blob) error {
			return b.c.pushMono(ctx, repo, bl)
		}); err != nil {
			return fmt.Errorf("setup: %w", err)
		}
		b.st.bigBlobs = append(b.st.bigBlobs, forget(blobs)...)
	}
	for _, conc := range bigConcurrency {
		per := b.cfg.iters
		start := time.Now()
		err := runWorkers(ctx, conc, func(ctx context.Context, w int) error {
			for _, bl := range b.st.bigBlobs[w*per : (w+1)*per] {
				_, n, err := b.c.doDrain(ctx, http.MethodGet, "/v2/"+repo+"/blobs/"+bl.digest, nil, nil, http.StatusOK)
				if err != nil {
					return err
				}
				if n != int64(bl.size) {
					return fmt.Errorf("GET blob %s: got %d bytes, want %d", bl.digest, n, bl.size)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		b.res.add(fmt.Sprintf("pull_c%d_MBps", conc), mbps(int64(conc*per*b.cfg.blobSize), time.Since(start)), "MB/s")
	}
	return nil
}
