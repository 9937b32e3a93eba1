package stowage_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"testing"

	"github.com/stowage/stowage"
)

// The encryption benchmarks run each engine-level push and pull on a real
// SQLite file and directory, with and without encryption at rest (the
// "crypt" and "fs" stores of uploadNode), so a profile shows what the
// encrypted path spends that the plain one does not (issue 18).

func benchStores(b *testing.B, fn func(b *testing.B, reg *stowage.Registry)) {
	for _, kind := range []string{"fs", "crypt"} {
		b.Run(kind, func(b *testing.B) {
			fn(b, uploadNode(&testing.T{}, b.TempDir(), kind, stowage.Options{}))
		})
	}
}

func benchBlob(b *testing.B, i int, size int) ([]byte, stowage.Digest) {
	data := make([]byte, size)
	rand.Read(data[:4096])
	copy(data, fmt.Sprintf("blob %d", i))
	return data, stowage.Digest("sha256:" + sha(data))
}

// BenchmarkEncPushMono is the monolithic push of a 16 MiB blob.
func BenchmarkEncPushMono(b *testing.B) {
	benchStores(b, func(b *testing.B, reg *stowage.Registry) {
		ctx := context.Background()
		b.SetBytes(16 << 20)
		for i := 0; b.Loop(); i++ {
			data, d := benchBlob(b, i, 16<<20)
			if _, err := reg.PutBlob(ctx, "bench/mono", d, bytes.NewReader(data), int64(len(data))); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkEncPushChunked pushes a 16 MiB blob in 8 MiB chunks.
func BenchmarkEncPushChunked(b *testing.B) {
	benchStores(b, func(b *testing.B, reg *stowage.Registry) {
		ctx := context.Background()
		const size, chunk = 16 << 20, 8 << 20
		b.SetBytes(size)
		for i := 0; b.Loop(); i++ {
			data, d := benchBlob(b, i, size)
			u, err := reg.StartUpload(ctx, "bench/chunked")
			if err != nil {
				b.Fatal(err)
			}
			for off := 0; off < size; off += chunk {
				if _, err := reg.WriteUpload(ctx, "bench/chunked", u.ID, int64(off), chunk, bytes.NewReader(data[off:off+chunk])); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := reg.FinishUpload(ctx, "bench/chunked", u.ID, d, -1, 0, bytes.NewReader(nil)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkEncPull reads a 16 MiB blob.
func BenchmarkEncPull(b *testing.B) {
	benchStores(b, func(b *testing.B, reg *stowage.Registry) {
		ctx := context.Background()
		data, d := benchBlob(b, 0, 16<<20)
		if _, err := reg.PutBlob(ctx, "bench/pull", d, bytes.NewReader(data), int64(len(data))); err != nil {
			b.Fatal(err)
		}
		b.SetBytes(16 << 20)
		for b.Loop() {
			rc, _, err := reg.OpenBlob(ctx, "bench/pull", d, 0)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, rc)
			rc.Close()
		}
	})
}

// BenchmarkEncSmallPush pushes a small image (config, layer, manifest, tag).
func BenchmarkEncSmallPush(b *testing.B) {
	benchStores(b, func(b *testing.B, reg *stowage.Registry) {
		for i := 0; b.Loop(); i++ {
			pushImage(b, reg, fmt.Sprintf("bench/push%d", i), "latest")
		}
	})
}

// BenchmarkEncTagPush puts one manifest under a new tag per iteration.
func BenchmarkEncTagPush(b *testing.B) {
	benchStores(b, func(b *testing.B, reg *stowage.Registry) {
		ctx := context.Background()
		d := pushImage(b, reg, "bench/tags", "t0")
		_, body, err := reg.GetManifest(ctx, "bench/tags", stowage.Reference{Digest: d})
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; b.Loop(); i++ {
			if _, err := reg.PutManifest(ctx, "bench/tags", stowage.Reference{Tag: fmt.Sprintf("t%d", i+1)}, stowage.MediaTypeOCIManifest, body, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}
