package main

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// Small-object scenarios: pushing many small images, and hammering one
// manifest and one blob with reads, which is what a busy CI fleet does.

const (
	smallLayers    = 3
	smallLayerSize = 16 << 10
	smallConc      = 16
	readConc       = 32
)

// pushImage pushes an image the way docker/containerd do: for each blob a
// HEAD, then POST+PUT when missing; then the manifest by tag.
func (b *bench) pushImage(ctx context.Context, repo, tag string, img image) error {
	for _, bl := range img.blobs() {
		if err := b.c.ensureBlob(ctx, repo, bl); err != nil {
			return err
		}
	}
	return b.c.putManifest(ctx, repo, tag, img.manifest)
}

func (b *bench) smallPush(ctx context.Context) error {
	repo := b.repo("small")
	imgs := make([]image, b.cfg.images)
	for i := range imgs {
		imgs[i] = newImage(b.src, fmt.Sprintf("%s-small-%d", b.cfg.prefix, i), smallLayers, smallLayerSize)
	}
	var next atomic.Int64
	start := time.Now()
	err := runWorkers(ctx, smallConc, func(ctx context.Context, _ int) error {
		for {
			i := int(next.Add(1) - 1)
			if i >= len(imgs) {
				return nil
			}
			if err := b.pushImage(ctx, repo, fmt.Sprintf("img-%05d", i), imgs[i]); err != nil {
				return err
			}
		}
	})
	if err != nil {
		return err
	}
	b.res.add("small_push_ips", float64(len(imgs))/time.Since(start).Seconds(), "images/s")
	return nil
}

// hotImage is the single image the read scenarios hammer; pushed once.
func (b *bench) hotImage(ctx context.Context) (string, image, error) {
	repo := b.repo("hot")
	if b.st.hot == nil {
		img := newImage(b.src, b.cfg.prefix+"-hot", smallLayers, smallLayerSize)
		if err := b.pushImage(ctx, repo, "latest", img); err != nil {
			return "", image{}, fmt.Errorf("setup: %w", err)
		}
		b.st.hot = &img
	}
	return repo, *b.st.hot, nil
}

func (b *bench) manifestGet(ctx context.Context) error {
	repo, img, err := b.hotImage(ctx)
	if err != nil {
		return err
	}
	path := "/v2/" + repo + "/manifests/latest"
	hdr := http.Header{"Accept": {manifestAccept}}
	rps, lat, err := latencyLoop(ctx, readConc, b.cfg.duration, func(ctx context.Context) error {
		_, n, err := b.c.doDrain(ctx, http.MethodGet, path, hdr, nil, http.StatusOK)
		if err == nil && n != int64(len(img.manifest)) {
			err = fmt.Errorf("GET %s: %d bytes, want %d", path, n, len(img.manifest))
		}
		return err
	})
	if err != nil {
		return err
	}
	b.res.add("manifest_get_rps", rps, "req/s")
	b.res.add("manifest_get_p50_ms", percentileMs(lat, 50), "ms")
	b.res.add("manifest_get_p99_ms", percentileMs(lat, 99), "ms")
	return nil
}

func (b *bench) blobHead(ctx context.Context) error {
	repo, img, err := b.hotImage(ctx)
	if err != nil {
		return err
	}
	layer := img.layers[0]
	path := "/v2/" + repo + "/blobs/" + layer.digest
	// The spec requires Content-Length on a blob HEAD (clients size
	// downloads from it); check it once, outside the timed loop.
	h, _, err := b.c.doDrain(ctx, http.MethodHead, path, nil, nil, http.StatusOK)
	if err != nil {
		return err
	}
	if cl := h.Get("Content-Length"); cl != strconv.Itoa(layer.size) {
		return fmt.Errorf("HEAD %s: Content-Length %q, want %d", path, cl, layer.size)
	}
	rps, lat, err := latencyLoop(ctx, readConc, b.cfg.duration, func(ctx context.Context) error {
		_, _, err := b.c.doDrain(ctx, http.MethodHead, path, nil, nil, http.StatusOK)
		return err
	})
	if err != nil {
		return err
	}
	b.res.add("blob_head_rps", rps, "req/s")
	b.res.add("blob_head_p50_ms", percentileMs(lat, 50), "ms")
	b.res.add("blob_head_p99_ms", percentileMs(lat, 99), "ms")
	return nil
}
