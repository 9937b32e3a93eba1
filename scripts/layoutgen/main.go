// Command layoutgen writes an OCI image layout of many small images, for
// the transfer benchmark (scripts/transfer-bench.sh): -n images spread over
// -repos repositories, each with its own config and layer of -size bytes
// (pseudo-random, so they do not compress) on top of one shared base layer.
//
//	go run ./scripts/layoutgen -n 1000 -repos 10 -size 262144 -o DIR
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
)

type desc struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int               `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

func main() {
	n := flag.Int("n", 1000, "images")
	repos := flag.Int("repos", 10, "repositories")
	size := flag.Int("size", 256<<10, "bytes of each image's own layer")
	base := flag.Int("base", 4<<20, "bytes of the layer all images share")
	out := flag.String("o", "", "layout directory to write")
	names := flag.String("names", "bench/repo%02d:img%04d", "ref.name of image i: a format given i%repos and i")
	arch := flag.String("arch", "amd64", "architecture in each config")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "layoutgen: -o DIR is needed")
		os.Exit(2)
	}
	blobs := filepath.Join(*out, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		fatal(err)
	}
	put := func(mt string, b []byte) desc {
		sum := sha256.Sum256(b)
		h := hex.EncodeToString(sum[:])
		if err := os.WriteFile(filepath.Join(blobs, h), b, 0o644); err != nil {
			fatal(err)
		}
		return desc{MediaType: mt, Digest: "sha256:" + h, Size: len(b)}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(k int) []byte {
		b := make([]byte, k)
		for i := 0; i+8 <= k; i += 8 {
			v := rng.Uint64()
			for j := 0; j < 8; j++ {
				b[i+j] = byte(v >> (8 * j))
			}
		}
		return b
	}
	const layerType = "application/vnd.oci.image.layer.v1.tar"
	shared := put(layerType, random(*base))
	var index []desc
	for i := 0; i < *n; i++ {
		own := put(layerType, random(*size))
		cfg, _ := json.Marshal(map[string]any{"architecture": *arch, "os": "linux",
			"config": map[string]any{"Env": []string{fmt.Sprintf("IMAGE=%d", i)}},
			"rootfs": map[string]any{"type": "layers", "diff_ids": []string{shared.Digest, own.Digest}}})
		c := put("application/vnd.oci.image.config.v1+json", cfg)
		m, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
			"config": c, "layers": []desc{shared, own}})
		d := put("application/vnd.oci.image.manifest.v1+json", m)
		d.Annotations = map[string]string{"org.opencontainers.image.ref.name": fmt.Sprintf(*names, i%*repos, i)}
		index = append(index, d)
	}
	idx, _ := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": index})
	if err := os.WriteFile(filepath.Join(*out, "index.json"), idx, 0o644); err != nil {
		fatal(err)
	}
	if err := os.WriteFile(filepath.Join(*out, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "layoutgen:", err)
	os.Exit(1)
}
