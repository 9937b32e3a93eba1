package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/meta/metatest"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/usage"
	"github.com/stowage/stowage/usage/rank"
)

func TestUsageUI(t *testing.T) {
	metatest.RunUsageUI(t, func(t *testing.T) stowage.DB {
		db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "stowage.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	})
}

// BenchmarkRepositoryPage pages through 100,000 repositories (one manifest
// of a shared and an own blob each) in each order: the first page and one
// deep in the list. go test -run NONE -bench RepositoryPage ./meta/sqlite
func BenchmarkRepositoryPage(b *testing.B) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "stowage.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	const n = 100_000
	now := time.Unix(1_700_000_000, 0)
	dg := func(i int) stowage.Digest { return stowage.Digest(fmt.Sprintf("sha256:%064x", i)) }
	for start := 0; start < n; start += 10_000 {
		err := db.Update(ctx, func(tx stowage.Tx) error {
			if err := tx.Blobs().PutBlob(stowage.BlobRecord{Digest: dg(0), Size: 1000, State: stowage.BlobLive, Created: now}); err != nil {
				return err
			}
			for i := start; i < start+10_000; i++ {
				name := fmt.Sprintf("team-%03d/app-%06d", i%1000, i)
				at := now.Add(time.Duration(i*7919%n) * time.Second)
				if err := tx.Repositories().CreateRepository(name, at); err != nil {
					return err
				}
				own, m := dg(1+2*i), dg(2+2*i)
				for _, bl := range []stowage.BlobRecord{{Digest: own, Size: int64(i % 5000), State: stowage.BlobLive, Created: now}, {Digest: m, Size: 500, State: stowage.BlobLive, Created: now}} {
					if err := tx.Blobs().PutBlob(bl); err != nil {
						return err
					}
				}
				rec := stowage.ManifestRecord{Repo: name, Digest: m, MediaType: stowage.MediaTypeOCIManifest, Size: 500, Created: at}
				if err := tx.Manifests().PutManifest(rec, []stowage.ManifestRef{{Digest: dg(0), Kind: stowage.RefBlob}, {Digest: own, Kind: stowage.RefBlob}}); err != nil {
					return err
				}
				if err := tx.Tags().PutTag(name, "v1", m, at); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	var sizes []usage.RepositorySpace
	for i := 0; i < n; i++ {
		sizes = append(sizes, usage.RepositorySpace{Name: fmt.Sprintf("team-%03d/app-%06d", i%1000, i), ReferencedBytes: int64(1500 + i%5000)})
	}
	t0 := time.Now()
	if err := db.UsageHistory().PutRepositorySizes(ctx, sizes); err != nil {
		b.Fatal(err)
	}
	b.Logf("recorded %d repository sizes in %v", n, time.Since(t0))
	s := db.Rank()
	for _, order := range []rank.Order{rank.ByName, rank.ByUpdated, rank.BySize} {
		for _, deep := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/deep=%t", order, deep), func(b *testing.B) {
				q := rank.Query{Order: order, Limit: 50}
				if deep {
					rows, err := s.RepositoryPage(ctx, rank.Query{Order: order, Limit: 500})
					if err != nil || len(rows) != 500 {
						b.Fatal(len(rows), err)
					}
					q.After = rows[499]
				}
				for b.Loop() {
					rows, err := s.RepositoryPage(ctx, q)
					if err != nil || len(rows) != 50 {
						b.Fatal(len(rows), err)
					}
				}
			})
		}
	}
	// For comparison: every repository's usage row (stowage usage without
	// paging), which reads every repository.
	b.Run("registry-usage", func(b *testing.B) {
		for b.Loop() {
			if err := db.View(ctx, func(tx stowage.Tx) error {
				_, err := tx.Usage().RepositoryUsage("", 0)
				return err
			}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("prefix", func(b *testing.B) {
		for b.Loop() {
			rows, err := s.RepositoryPage(ctx, rank.Query{Order: rank.ByName, Prefix: "team-042/", Limit: 50})
			if err != nil || len(rows) != 50 {
				b.Fatal(len(rows), err)
			}
		}
	})
}
