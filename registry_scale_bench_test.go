package stowage_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/meta/postgres"
	"github.com/stowage/stowage/meta/postgres/pgtest"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/storage/mem"
)

// The cost of deletes at scale (docs/performance.md, "Cost at scale"):
//
//	go test -run XXX -bench 'DeleteRepoDryRun|RetentionPass|DeleteImageDryRun' -benchtime 1x .
//
// on a registry shaped as bench/scale builds it (rows written through the
// database's own Tx, a few thousand manifests per transaction; no objects:
// deletes never read them): repository "big" holds N manifests, each with
// its own tag; N small repositories (at most 10,000) hold 9 manifests
// each, one in nine never tagged and 30 days old (what a 7-day retention
// pass deletes). Every manifest references its repository's config and
// layer and one base layer all repositories share.
//
// Sizes: STOWAGE_BENCH_SCALE (default "1000,10000"); databases: SQLite (a
// file), and PostgreSQL when STOWAGE_TEST_POSTGRES is set. Each figure is
// also reported per manifest (per deletion), so the growth between sizes
// reads directly: constant = linear.

func scaleSizes(b *testing.B) []int {
	s := os.Getenv("STOWAGE_BENCH_SCALE")
	if s == "" {
		s = "1000,10000"
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			b.Fatalf("STOWAGE_BENCH_SCALE=%q: want sizes such as 1000,10000", s)
		}
		out = append(out, n)
	}
	return out
}

// scaleDBs opens a fresh database of each kind for one benchmark.
func scaleDBs(b *testing.B) map[string]func(*testing.B) stowage.DB {
	dbs := map[string]func(*testing.B) stowage.DB{
		"sqlite": func(b *testing.B) stowage.DB {
			db, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "stowage.db"))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { db.Close() })
			return db
		},
	}
	if os.Getenv(pgtest.Env) != "" {
		dbs["postgres"] = func(b *testing.B) stowage.DB {
			db, err := postgres.Open(context.Background(), pgtest.Schema(b, "scale"), postgres.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { db.Close() })
			return db
		}
	}
	return dbs
}

func forScale(b *testing.B, fn func(b *testing.B, open func(*testing.B) stowage.DB, n int)) {
	dbs := scaleDBs(b)
	names := make([]string, 0, len(dbs))
	for name := range dbs {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		for _, n := range scaleSizes(b) {
			b.Run(fmt.Sprintf("%s/%d", name, n), func(b *testing.B) { fn(b, dbs[name], n) })
		}
	}
}

var scaleNow = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

func scaleDigest(s string) stowage.Digest {
	return stowage.Digest(fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(s))))
}

func scaleRepo(i int) string {
	if i == 0 {
		return "big"
	}
	return fmt.Sprintf("r/%07d", i)
}

// scaleUntagged says whether manifest j of small repository i was never tagged.
func scaleUntagged(i, j int) bool { return i != 0 && (i+j)%9 == 0 }

// buildScale writes "big" with n manifests and min(n, 10000) small
// repositories; it returns big's manifest digests and the number of
// manifests a 7-day retention pass deletes.
func buildScale(b *testing.B, db stowage.DB, n int) (big []stowage.Digest, untagged int) {
	ctx := context.Background()
	old := scaleNow.Add(-30 * 24 * time.Hour)
	base := scaleDigest("base")
	live := func(tx stowage.Tx, d stowage.Digest, size int64, t time.Time) error {
		return tx.Blobs().PutBlob(stowage.BlobRecord{Digest: d, Size: size, Created: t, State: stowage.BlobLive, LastUsed: t, UnreferencedSince: t})
	}
	type job struct{ repo, from, to int }
	var jobs []job
	for from := 0; from < n; from += 4000 {
		jobs = append(jobs, job{0, from, min(n, from+4000)})
	}
	for i := 1; i <= min(n, 10000); i++ {
		jobs = append(jobs, job{i, 0, 9})
	}
	for len(jobs) > 0 {
		take, count := 0, 0
		for take < len(jobs) && count < 4000 {
			count += jobs[take].to - jobs[take].from
			take++
		}
		cur := jobs[:take]
		jobs = jobs[take:]
		err := db.Update(ctx, func(tx stowage.Tx) error {
			for _, jb := range cur {
				repo := scaleRepo(jb.repo)
				cfg, layer := scaleDigest("cfg/"+repo), scaleDigest("layer/"+repo)
				if jb.from == 0 {
					if err := tx.Repositories().CreateRepository(repo, old); err != nil {
						return err
					}
					for _, d := range []stowage.Digest{base, cfg, layer} {
						if err := live(tx, d, map[bool]int64{true: 64 << 10, false: 1 << 10}[d == base], old); err != nil {
							return err
						}
						if err := tx.Blobs().LinkBlob(repo, d, old); err != nil {
							return err
						}
					}
				}
				for j := jb.from; j < jb.to; j++ {
					d := scaleDigest(fmt.Sprintf("manifest %s %d", repo, j))
					t := scaleNow.Add(-time.Duration(n-j) * time.Millisecond)
					if scaleUntagged(jb.repo, j) {
						t = old
					}
					if err := live(tx, d, 500, t); err != nil {
						return err
					}
					refs := []stowage.ManifestRef{{Digest: cfg, Kind: stowage.RefBlob}, {Digest: base, Kind: stowage.RefBlob}, {Digest: layer, Kind: stowage.RefBlob}}
					if err := tx.Manifests().PutManifest(stowage.ManifestRecord{Repo: repo, Digest: d, MediaType: stowage.MediaTypeOCIManifest, Size: 500, Created: t}, refs); err != nil {
						return err
					}
					if !scaleUntagged(jb.repo, j) {
						if err := tx.Tags().PutTag(repo, fmt.Sprintf("v%06d", j), d, t); err != nil {
							return err
						}
					}
				}
			}
			return nil
		})
		if err != nil {
			b.Fatalf("build: %v", err)
		}
		for _, jb := range cur {
			for j := jb.from; j < jb.to; j++ {
				if jb.repo == 0 {
					big = append(big, scaleDigest(fmt.Sprintf("manifest big %d", j)))
				} else if scaleUntagged(jb.repo, j) {
					untagged++
				}
			}
		}
	}
	return big, untagged
}

// cpuTime is the process's CPU time so far (user and system): on a shared
// machine it moves less with the load than the wall clock does (PostgreSQL's
// own work is not in it).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func scaleRegistry(db stowage.DB) *stowage.Registry {
	return stowage.NewRegistry(db, mem.New(), stowage.Options{Now: func() time.Time { return scaleNow }})
}

// BenchmarkDeleteRepoDryRun: DELETE /api/v1/repositories/big?dry_run=true.
func BenchmarkDeleteRepoDryRun(b *testing.B) {
	forScale(b, func(b *testing.B, open func(*testing.B) stowage.DB, n int) {
		db := open(b)
		buildScale(b, db, n)
		reg := scaleRegistry(db)
		ctx := context.Background()
		b.ResetTimer()
		cpu := cpuTime()
		for i := 0; i < b.N; i++ {
			rep, err := reg.DeleteRepository(ctx, "big", true)
			if err != nil {
				b.Fatal(err)
			}
			if len(rep.Manifests) != n || rep.BlobsFreed != int64(n+2) {
				b.Fatalf("dry run: %d manifests, %d blobs freed; want %d and %d", len(rep.Manifests), rep.BlobsFreed, n, n+2)
			}
		}
		b.ReportMetric(float64((cpuTime()-cpu).Milliseconds())/float64(b.N), "cpu-ms/op")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/manifest")
	})
}

// BenchmarkDeleteImageDryRun: DELETE /api/v1/images/big@DIGEST?dry_run=true
// for random manifests of big.
func BenchmarkDeleteImageDryRun(b *testing.B) {
	forScale(b, func(b *testing.B, open func(*testing.B) stowage.DB, n int) {
		db := open(b)
		big, _ := buildScale(b, db, n)
		reg := scaleRegistry(db)
		ctx := context.Background()
		times := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			d := big[(i*7919)%len(big)]
			start := time.Now()
			rep, err := reg.DeleteImage(ctx, "big", stowage.Reference{Digest: d}, true)
			times = append(times, time.Since(start))
			if err != nil || len(rep.Manifests) != 1 || rep.BlobsFreed != 1 {
				b.Fatalf("dry run of %s: %+v, %v", d, rep, err)
			}
		}
		slices.Sort(times)
		b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(times[len(times)*99/100].Microseconds())/1000, "p99-ms")
	})
}

// BenchmarkRetentionPass: stowage retention set --days 7, then stowage
// retention run, deleting the never-tagged manifests of the small
// repositories (one per repository); one pass per build (-benchtime 1x).
func BenchmarkRetentionPass(b *testing.B) {
	forScale(b, func(b *testing.B, open func(*testing.B) stowage.DB, n int) {
		ctx := context.Background()
		var total, cpuTotal time.Duration
		deleted := 0
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			db := open(b)
			_, untagged := buildScale(b, db, n)
			reg := scaleRegistry(db)
			pol := policy.New(reg)
			if err := pol.SetRetention(ctx, policy.Retention{Enabled: true, Days: 7}); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			start, cpu := time.Now(), cpuTime()
			run, err := pol.ApplyRetention(ctx, false)
			total += time.Since(start)
			cpuTotal += cpuTime() - cpu
			if err != nil || run.Manifests != untagged {
				b.Fatalf("retention deleted %d manifests (%v); want %d", run.Manifests, err, untagged)
			}
			deleted += run.Manifests
		}
		b.ReportMetric(float64(cpuTotal.Milliseconds())/float64(b.N), "cpu-ms/op")
		b.ReportMetric(float64(total.Nanoseconds())/float64(deleted), "ns/deletion")
	})
}
