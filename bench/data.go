package main

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
)

const (
	mediaOCIManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaOCIConfig   = "application/vnd.oci.image.config.v1+json"
	mediaOCILayer    = "application/vnd.oci.image.layer.v1.tar+gzip"
)

// blob is content plus its precomputed digest: hashing 64 MiB takes long
// enough that it must happen before the clock starts.
type blob struct {
	data   []byte
	digest string
	size   int // kept when data is dropped after a push
}

func newBlob(data []byte) blob {
	sum := sha256.Sum256(data)
	return blob{data: data, digest: "sha256:" + hex.EncodeToString(sum[:]), size: len(data)}
}

// randomSource hands out independent ChaCha8 streams. Every blob is fully
// random and distinct (not shifted copies of one buffer) so a registry
// that deduplicates or compresses gets no unfair help.
type randomSource struct {
	mu   sync.Mutex
	seed [32]byte
	n    uint64
}

func newRandomSource() *randomSource {
	var s randomSource
	for i := range 4 {
		binary.LittleEndian.PutUint64(s.seed[i*8:], rand.Uint64())
	}
	return &s
}

func (s *randomSource) bytes(size int) []byte {
	s.mu.Lock()
	seed := s.seed
	s.n++
	binary.LittleEndian.PutUint64(seed[:8], binary.LittleEndian.Uint64(seed[:8])^s.n)
	s.mu.Unlock()
	b := make([]byte, size)
	rand.NewChaCha8(seed).Read(b)
	return b
}

// randomBlobs generates n blobs of size bytes in parallel (generation and
// hashing of hundreds of MiB is setup, not measurement, so make it quick).
func (s *randomSource) randomBlobs(n, size int) []blob {
	out := make([]blob, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for i := range out {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			out[i] = newBlob(s.bytes(size))
			<-sem
		}()
	}
	wg.Wait()
	return out
}

// image is a config, its layers and the OCI manifest referencing them.
type image struct {
	config   blob
	layers   []blob
	manifest []byte
}

type descriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int    `json:"size"`
}

type ociManifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        descriptor   `json:"config"`
	Layers        []descriptor `json:"layers"`
}

// newImage builds a small but well-formed image. The label makes the
// config (and so the manifest) unique per image; registries do not parse
// configs, but a unique one keeps each image a genuinely new object.
func newImage(src *randomSource, label string, layers, layerSize int) image {
	img := image{}
	var diffIDs []string
	for range layers {
		l := newBlob(src.bytes(layerSize))
		img.layers = append(img.layers, l)
		diffIDs = append(diffIDs, l.digest)
	}
	cfg, _ := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"config":       map[string]any{"Labels": map[string]string{"bench": label}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
	img.config = newBlob(cfg)
	m := ociManifest{
		SchemaVersion: 2,
		MediaType:     mediaOCIManifest,
		Config:        descriptor{mediaOCIConfig, img.config.digest, len(img.config.data)},
	}
	for _, l := range img.layers {
		m.Layers = append(m.Layers, descriptor{mediaOCILayer, l.digest, len(l.data)})
	}
	img.manifest, _ = json.Marshal(m)
	return img
}

func (img image) blobs() []blob { return append([]blob{img.config}, img.layers...) }

// randomName is the default per-run repository prefix, so concurrent or
// repeated runs against one registry never collide.
func randomName() string {
	return fmt.Sprintf("bench-%08x", rand.Uint32())
}
