package metatest

import (
	"fmt"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/usage"
)

// BuildUsageScale writes a registry shaped as bench/scale's (for the usage
// benchmarks of both databases): n manifests in n/10 repositories;
// repository "big" holds n/10 of them, each tagged; every other repository
// shares the rest, one in nine untagged; each manifest references its
// repository's config and layer and one base layer every repository
// shares. Rows go through Tx, in transactions of a few thousand manifests.
func BuildUsageScale(tb testing.TB, db stowage.DB, n int) {
	tb.Helper()
	repos, big := max(2, n/10), max(1, n/10)
	per := func(i int) int {
		if i == 0 {
			return big
		}
		rest, k := n-big, repos-1
		c := rest / k
		if i <= rest%k {
			c++
		}
		return c
	}
	name := func(i int) string {
		if i == 0 {
			return "big"
		}
		return fmt.Sprintf("r/%07d", i)
	}
	base := dg(1)
	blob := func(tx stowage.Tx, d stowage.Digest, size int64) error {
		return tx.Blobs().PutBlob(stowage.BlobRecord{Digest: d, Size: size, Created: now, State: stowage.BlobLive, LastUsed: now, UnreferencedSince: now})
	}
	seq := 0
	const batch = 4000
	type job struct{ repo, from, to int }
	var jobs []job
	for i := range repos {
		c := per(i)
		for from := 0; from < c; from += batch {
			jobs = append(jobs, job{i, from, min(c, from+batch)})
		}
	}
	for len(jobs) > 0 {
		var cur []job
		for k := 0; len(jobs) > 0 && k < batch; {
			k += jobs[0].to - jobs[0].from
			cur, jobs = append(cur, jobs[0]), jobs[1:]
		}
		err := db.Update(ctx, func(tx stowage.Tx) error {
			for _, j := range cur {
				repo := name(j.repo)
				cfg, layer := dg(1_000_000_000+j.repo), dg(2_000_000_000+j.repo)
				if j.from == 0 {
					if err := tx.Repositories().CreateRepository(repo, now); err != nil {
						return err
					}
					for _, b := range []struct {
						d    stowage.Digest
						size int64
					}{{base, 64 << 10}, {cfg, 200}, {layer, 1 << 10}} {
						if err := blob(tx, b.d, b.size); err != nil {
							return err
						}
						if err := tx.Blobs().LinkBlob(repo, b.d, now); err != nil {
							return err
						}
					}
				}
				for m := j.from; m < j.to; m++ {
					seq++
					d := dg(3_000_000_000 + j.repo*1_000_000 + m)
					if err := blob(tx, d, 600); err != nil {
						return err
					}
					refs := []stowage.ManifestRef{{Digest: cfg, Kind: stowage.RefBlob}, {Digest: base, Kind: stowage.RefBlob}, {Digest: layer, Kind: stowage.RefBlob}}
					if err := tx.Manifests().PutManifest(stowage.ManifestRecord{Repo: repo, Digest: d, MediaType: "application/vnd.oci.image.manifest.v1+json",
						Size: 600, Created: now.Add(time.Duration(seq) * time.Millisecond)}, refs); err != nil {
						return err
					}
					if j.repo == 0 || (j.repo+m)%9 != 0 {
						if err := tx.Tags().PutTag(repo, fmt.Sprintf("v%06d", m), d, now); err != nil {
							return err
						}
					}
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchUsage times the reads of package usage (what the API answers) on a
// registry BuildUsageScale wrote.
func BenchUsage(b *testing.B, db stowage.DB) {
	rep := usage.New(bareCore{db})
	run := func(name string, fn func() error) {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if err := fn(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	run("after/totals", func() error { _, err := rep.Totals(ctx); return err })
	run("after/registry-page-100", func() error { _, _, err := rep.UsagePage(ctx, "", 100); return err })
	run("after/registry-page-100-deep", func() error { _, _, err := rep.UsagePage(ctx, "r/0003000", 100); return err })
	run("after/registry-page-1000", func() error { _, _, err := rep.UsagePage(ctx, "", 1000); return err })
	run("after/largest-15", func() error { _, err := rep.Largest(ctx, 15); return err })
	run("after/repo-big-page-100", func() error { _, _, err := rep.RepositoryPage(ctx, "big", "", 100); return err })
	var mid string
	if _, next, err := rep.RepositoryPage(ctx, "big", "", 1000); err == nil {
		mid = next
	}
	run("after/repo-big-page-100-deep", func() error { _, _, err := rep.RepositoryPage(ctx, "big", mid, 100); return err })
	tx := func(fn func(stowage.UsageTx) error) func() error {
		return func() error { return db.View(ctx, func(tx stowage.Tx) error { return fn(tx.Usage()) }) }
	}
	run("after/repo-big-summary", tx(func(u stowage.UsageTx) error { _, err := u.RepositoryUsageOf("big"); return err }))
	run("after/repo-big-manifests-100", tx(func(u stowage.UsageTx) error {
		_, err := u.ManifestUsage("big", stowage.ManifestCursor{}, 101)
		return err
	}))
	run("after/repo-small-page-100", func() error { _, _, err := rep.RepositoryPage(ctx, "r/0000007", "", 100); return err })
	run("after/registry-all-rows", func() error { _, err := rep.Usage(ctx); return err })
}

// bareCore is what usage.Reporter needs, over a bare database.
type bareCore struct{ db stowage.DB }

func (c bareCore) Parts() stowage.Parts { return stowage.Parts{DB: c.db} }
func (c bareCore) StorageLimit() int64  { return 0 }
