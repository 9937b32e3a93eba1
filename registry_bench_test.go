package stowage_test

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/storage/fs"
)

// newBenchRegistry returns an engine on a real file database and directory.
func newBenchRegistry(b *testing.B) *stowage.Registry {
	dir := b.TempDir()
	db, err := sqlite.Open(context.Background(), filepath.Join(dir, "stowage.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	store, err := fs.New(filepath.Join(dir, "storage"))
	if err != nil {
		b.Fatal(err)
	}
	return stowage.NewRegistry(db, store, stowage.Options{})
}

func pushImage(b testing.TB, reg *stowage.Registry, repo, tag string) stowage.Digest {
	ctx := context.Background()
	config := []byte(`{"architecture":"amd64","os":"linux"}`)
	layer := []byte("layer-" + repo)
	cd := stowage.Digest("sha256:" + sha(config))
	ld := stowage.Digest("sha256:" + sha(layer))
	for _, blob := range []struct {
		d    stowage.Digest
		data []byte
	}{{cd, config}, {ld, layer}} {
		if _, err := reg.PutBlob(ctx, repo, blob.d, bytes.NewReader(blob.data), int64(len(blob.data))); err != nil {
			b.Fatal(err)
		}
	}
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`,
		stowage.MediaTypeOCIManifest, cd, len(config), ld, len(layer))
	res, err := reg.PutManifest(ctx, repo, stowage.Reference{Tag: tag}, stowage.MediaTypeOCIManifest, []byte(m), nil)
	if err != nil {
		b.Fatal(err)
	}
	return res.Digest
}

func BenchmarkGetManifestByTag(b *testing.B) {
	reg := newBenchRegistry(b)
	pushImage(b, reg, "bench/app", "latest")
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := reg.GetManifest(ctx, "bench/app", stowage.Reference{Tag: "latest"}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkListTags10k(b *testing.B) {
	reg := newBenchRegistry(b)
	ctx := context.Background()
	d := pushImage(b, reg, "bench/tags", "t0")
	for i := 1; i < 10000; i++ {
		if _, err := reg.PutManifest(ctx, "bench/tags", stowage.Reference{Tag: fmt.Sprintf("t%05d", i)}, "", mustManifest(b, reg, d), nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tags, err := reg.ListTags(ctx, "bench/tags", "", -1)
		if err != nil || len(tags) != 10000 {
			b.Fatal(len(tags), err)
		}
	}
}

func mustManifest(b *testing.B, reg *stowage.Registry, d stowage.Digest) []byte {
	_, body, err := reg.GetManifest(context.Background(), "bench/tags", stowage.Reference{Digest: d})
	if err != nil {
		b.Fatal(err)
	}
	return body
}

// BenchmarkPushImage pushes a small image (config, layer, manifest and tag)
// to a new repository per iteration on a real file database and directory:
// the commit-heavy path, where the cost of durable commits (fsync of the
// objects, SQLite synchronous=FULL) shows.
func BenchmarkPushImage(b *testing.B) {
	reg := newBenchRegistry(b)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		pushImage(b, reg, fmt.Sprintf("bench/push%d", i), "latest")
	}
}

// BenchmarkChunkedPush pushes a 1 MiB blob in four PATCH-sized chunks and a
// final PUT per iteration: each chunk is fsynced before its hash state is
// recorded.
func BenchmarkChunkedPush(b *testing.B) {
	reg := newBenchRegistry(b)
	ctx := context.Background()
	data := make([]byte, 1<<20)
	const chunk = 256 << 10
	b.SetBytes(int64(len(data)))
	for i := 0; b.Loop(); i++ {
		copy(data, fmt.Sprintf("blob %d", i))
		d := stowage.Digest("sha256:" + sha(data))
		u, err := reg.StartUpload(ctx, "bench/chunked")
		if err != nil {
			b.Fatal(err)
		}
		for off := 0; off < len(data); off += chunk {
			if _, err := reg.WriteUpload(ctx, "bench/chunked", u.ID, int64(off), chunk, bytes.NewReader(data[off:off+chunk])); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := reg.FinishUpload(ctx, "bench/chunked", u.ID, d, -1, 0, bytes.NewReader(nil)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPutManifestByTag pushes one small manifest by a new tag per
// iteration (its blobs are already there) on a real file database: the
// tag push, one transaction per PUT, where the change feed's append shows.
// Measure 2,000 PUTs with -benchtime=2000x.
func BenchmarkPutManifestByTag(b *testing.B) {
	reg := newBenchRegistry(b)
	ctx := context.Background()
	d := pushImage(b, reg, "bench/tags", "t0")
	body := string(mustManifest(b, reg, d))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		// A distinct manifest each time: same blobs, another annotation.
		m := body[:len(body)-1] + fmt.Sprintf(`,"annotations":{"n":"%d"}}`, i)
		if _, err := reg.PutManifest(ctx, "bench/tags", stowage.Reference{Tag: fmt.Sprintf("t%d", i+1)}, stowage.MediaTypeOCIManifest, []byte(m), nil); err != nil {
			b.Fatal(err)
		}
	}
}
