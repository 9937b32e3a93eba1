package stowage_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/storage/mem"
)

// The fast paths of deletes at scale (a repository delete reads a snapshot
// of the repository; retention deletes in batches of transactions across
// repositories) checked against the one-by-one way they replaced, on
// random registries: same reports, same state after, same change feed.

var equivNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// randomGraph writes, through the database's own Tx, a registry drawn from
// seed: repositories of image manifests (a config and layers from a pool
// the repositories share), indexes of some of them, referrers, tags,
// manifests untagged for a while; with locks, some manifests, tags and
// repositories are delete-locked; sometimes soft delete is on.
func randomGraph(t testing.TB, db stowage.DB, seed uint64, repos int, locks bool) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 7))
	day := 24 * time.Hour
	pool := make([]stowage.Digest, 6)
	for i := range pool {
		pool[i] = stowage.Digest(fmt.Sprintf("sha256:%064x", 1000+i))
	}
	sizeOf := func(d stowage.Digest) int64 { return int64(len(d)*7 + int(d[len(d)-1])) }
	err := db.Update(context.Background(), func(tx stowage.Tx) error {
		if r.IntN(3) == 0 {
			if err := stowage.PutSetting(tx, stowage.SettingSoftDelete, stowage.SoftDeletePolicy{Enabled: true, Days: 7}, equivNow); err != nil {
				return err
			}
		}
		blob := func(repo string, d stowage.Digest) error {
			if err := tx.Blobs().PutBlob(stowage.BlobRecord{Digest: d, Size: sizeOf(d), State: stowage.BlobLive, Created: equivNow.Add(-90 * day), LastUsed: equivNow.Add(-90 * day)}); err != nil {
				return err
			}
			return tx.Blobs().LinkBlob(repo, d, equivNow.Add(-90*day))
		}
		for ri := 0; ri < repos; ri++ {
			repo := string(rune('a' + ri))
			if err := tx.Repositories().CreateRepository(repo, equivNow.Add(-90*day)); err != nil {
				return err
			}
			if locks && r.IntN(8) == 0 {
				if err := tx.Repositories().SetRepositoryLocks(repo, stowage.LockDelete); err != nil {
					return err
				}
			}
			var ms []stowage.Digest
			n := 3 + r.IntN(14)
			for i := 0; i < n; i++ {
				d := stowage.Digest(fmt.Sprintf("sha256:%064x", seed*1_000_000+uint64(ri*1000+i)))
				m := stowage.ManifestRecord{Repo: repo, Digest: d, MediaType: stowage.MediaTypeOCIManifest, Size: sizeOf(d), Created: equivNow.Add(-time.Duration(r.IntN(60*24)) * time.Hour)}
				var refs []stowage.ManifestRef
				switch k := r.IntN(10); {
				case k >= 6 && k < 8 && len(ms) > 0: // an index of some of them
					m.MediaType = stowage.MediaTypeOCIIndex
					for _, c := range r.Perm(len(ms))[:1+r.IntN(min(3, len(ms)))] {
						refs = append(refs, stowage.ManifestRef{Digest: ms[c], Kind: stowage.RefManifest})
					}
				case k >= 8 && len(ms) > 0: // a referrer
					m.Subject = ms[r.IntN(len(ms))]
					own := stowage.Digest(fmt.Sprintf("sha256:%064x", seed*1_000_000+uint64(500_000+ri*1000+i)))
					if err := blob(repo, own); err != nil {
						return err
					}
					refs = append(refs, stowage.ManifestRef{Digest: own, Kind: stowage.RefBlob})
				default: // an image: layers from the shared pool
					for _, p := range r.Perm(len(pool))[:1+r.IntN(3)] {
						if err := blob(repo, pool[p]); err != nil {
							return err
						}
						refs = append(refs, stowage.ManifestRef{Digest: pool[p], Kind: stowage.RefBlob})
					}
				}
				slices.SortFunc(refs, func(a, b stowage.ManifestRef) int { return strings.Compare(string(a.Digest), string(b.Digest)) })
				if locks && r.IntN(12) == 0 {
					m.Locks = stowage.LockDelete
				}
				if err := blob(repo, d); err != nil {
					return err
				}
				if err := tx.Manifests().PutManifest(m, refs); err != nil {
					return err
				}
				for j := 0; j < 2 && r.IntN(5) < 2; j++ {
					tag := fmt.Sprintf("t%d-%d", i, j)
					if err := tx.Tags().PutTag(repo, tag, d, m.Created); err != nil {
						return err
					}
					if locks && r.IntN(10) == 0 {
						if err := tx.Tags().SetTagLocks(repo, tag, stowage.LockDelete); err != nil {
							return err
						}
					}
				}
				if r.IntN(4) == 0 {
					if err := tx.Manifests().SetUntaggedSince(repo, d, equivNow.Add(-time.Duration(r.IntN(30*24))*time.Hour)); err != nil {
						return err
					}
				}
				ms = append(ms, d)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("seed %d: build: %v", seed, err)
	}
}

// changeLog records the changes (events) a registry makes, in order.
type changeLog struct {
	mu  sync.Mutex
	got []string
}

func (c *changeLog) Change(_ context.Context, _ stowage.Tx, e *stowage.Event) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, fmt.Sprintf("%s %s %s %s %s %s", e.Kind, e.Repo, e.Digest, e.Tag, e.Reason, e.Detail))
	return nil
}

// equivRegistry opens an in-memory database with randomGraph(seed) and a
// registry over it that records its changes.
func equivRegistry(t *testing.T, seed uint64, repos int, locks bool) (*stowage.Registry, stowage.DB, *changeLog) {
	t.Helper()
	db, err := sqlite.Open(context.Background(), ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	randomGraph(t, db, seed, repos, locks)
	log := &changeLog{}
	return stowage.NewRegistry(db, mem.New(), stowage.Options{Now: func() time.Time { return equivNow }, Changes: log}), db, log
}

// dumpState is everything a delete may change, as text.
func dumpState(t *testing.T, db stowage.DB) string {
	t.Helper()
	var b strings.Builder
	err := db.View(context.Background(), func(tx stowage.Tx) error {
		names, err := tx.Repositories().ListRepositories("", 0, true)
		if err != nil {
			return err
		}
		for _, n := range names {
			rec, err := tx.Repositories().GetRepository(n)
			if err != nil {
				return err
			}
			ms, err := tx.Manifests().ListManifests(n)
			if err != nil {
				return err
			}
			refs, err := tx.Manifests().RepositoryRefs(n)
			if err != nil {
				return err
			}
			tags, err := tx.Tags().TagRecords(n)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, "repo %s locks %d\n", n, rec.Locks)
			for _, m := range ms {
				fmt.Fprintf(&b, "  manifest %+v refs %v\n", m, refs[m.Digest])
			}
			for _, tg := range tags {
				fmt.Fprintf(&b, "  tag %+v\n", tg)
			}
		}
		for _, st := range []stowage.BlobState{stowage.BlobLive, stowage.BlobPending} {
			bs, err := tx.Blobs().BlobsInState(st, "", 0)
			if err != nil {
				return err
			}
			for _, bl := range bs {
				fmt.Fprintf(&b, "blob %s %d unreferenced since %s\n", bl.Digest, bl.Size, bl.UnreferencedSince)
			}
		}
		rs, err := tx.Recycle().ListRecycled("")
		if err != nil {
			return err
		}
		for _, e := range rs {
			fmt.Fprintf(&b, "recycled %d %s %s %v %v %v\n", e.ID, e.Manifest.Repo, e.Manifest.Digest, e.Refs, e.Tags, e.TagLocks)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestDeleteRepositorySnapshot: a repository delete through its snapshot
// (three reads, one bulk delete) reports, leaves and records exactly what
// the manifest-by-manifest delete did, dry run or not, with referrers,
// index children, locks and the recycle bin.
func TestDeleteRepositorySnapshot(t *testing.T) {
	ctx := context.Background()
	denied := 0
	for seed := uint64(1); seed <= 50; seed++ {
		for _, dry := range []bool{true, false} {
			locks := seed%3 == 0
			fast, fastDB, fastLog := equivRegistry(t, seed, 3, locks)
			slow, slowDB, slowLog := equivRegistry(t, seed, 3, locks)
			stowage.SetPointDeletes(slow, true)
			got, gotErr := fast.DeleteRepository(ctx, "a", dry)
			want, wantErr := slow.DeleteRepository(ctx, "a", dry)
			if errText(gotErr) != errText(wantErr) {
				t.Fatalf("seed %d dry=%v: error %v, one by one %v", seed, dry, gotErr, wantErr)
			}
			if gotErr != nil {
				denied++
				continue
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("seed %d dry=%v: report\n%+v\none by one\n%+v", seed, dry, got, want)
			}
			if g, w := dumpState(t, fastDB), dumpState(t, slowDB); g != w {
				t.Fatalf("seed %d dry=%v: state after\n%s\none by one\n%s", seed, dry, g, w)
			}
			if !slices.Equal(fastLog.got, slowLog.got) {
				t.Fatalf("seed %d dry=%v: changes\n%v\none by one\n%v", seed, dry, fastLog.got, slowLog.got)
			}
			if !dry && len(got.Manifests) == 0 {
				t.Fatalf("seed %d: nothing deleted: %+v", seed, got)
			}
		}
	}
	if denied == 0 || denied == 100 {
		t.Errorf("%d of 100 deletes were refused: the seeds do not cover both cases", denied)
	}
}

// retentionOneByOne is the retention pass before batches: every repository
// in its own transaction, its candidates listed there.
func retentionOneByOne(t *testing.T, reg *stowage.Registry, db stowage.DB, cutoff time.Time) policy.Run {
	t.Helper()
	ctx := stowage.WithReason(context.Background(), stowage.ReasonRetention)
	var run policy.Run
	err := stowage.EachRepository(ctx, db, func(repo string) error {
		rep, err := reg.DeleteByPolicy(ctx, repo, false, func(del *stowage.Deletion) error {
			ms, err := del.Tx().Manifests().UntaggedManifests(repo, cutoff)
			if err != nil {
				return err
			}
			for _, m := range ms {
				if err := del.DeleteManifest(m.Digest, "retention"); err != nil {
					return err
				}
			}
			return nil
		})
		if len(rep.Manifests) > 0 || len(rep.Tags) > 0 {
			run.Manifests += len(rep.Manifests)
			run.Tags += len(rep.Tags)
			run.BlobsFreed += rep.BlobsFreed
			run.BytesFreed += rep.BytesFreed
			run.Repositories = append(run.Repositories, rep)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return run
}

// TestRetentionBatches: a retention pass in batches of transactions (of 1
// to 7 candidates, so repositories split between batches and batches span
// repositories) deletes, reports, frees and records exactly what the pass
// repository by repository did; locked manifests and repositories in the
// middle of a batch are passed over alone. Its dry run finds the same
// manifests.
func TestRetentionBatches(t *testing.T) {
	ctx := context.Background()
	for seed := uint64(1); seed <= 40; seed++ {
		locks := seed%2 == 0
		batch := 1 + int(seed%7)
		reg, db, log := equivRegistry(t, seed, 5, locks)
		ref, refDB, refLog := equivRegistry(t, seed, 5, locks)
		pol := policy.New(reg)
		pol.Batch = batch
		if err := pol.SetRetention(ctx, policy.Retention{Enabled: true, Days: 7}); err != nil {
			t.Fatal(err)
		}
		dry, err := pol.ApplyRetention(ctx, true)
		if err != nil {
			t.Fatal(err)
		}
		log.got = nil // the dry run's changes were rolled back
		got, err := pol.ApplyRetention(ctx, false)
		if err != nil {
			t.Fatal(err)
		}
		want := retentionOneByOne(t, ref, refDB, equivNow.Add(-7*24*time.Hour))
		if got.Manifests != want.Manifests || got.Tags != want.Tags || got.BlobsFreed != want.BlobsFreed || got.BytesFreed != want.BytesFreed {
			t.Fatalf("seed %d batch %d: %d manifests, %d tags, %d blobs / %d bytes freed; one by one %d, %d, %d / %d",
				seed, batch, got.Manifests, got.Tags, got.BlobsFreed, got.BytesFreed, want.Manifests, want.Tags, want.BlobsFreed, want.BytesFreed)
		}
		if !reflect.DeepEqual(got.Repositories, want.Repositories) {
			t.Fatalf("seed %d batch %d: reports\n%+v\none by one\n%+v", seed, batch, got.Repositories, want.Repositories)
		}
		if g, w := dumpState(t, db), dumpState(t, refDB); g != w {
			t.Fatalf("seed %d batch %d: state after\n%s\none by one\n%s", seed, batch, g, w)
		}
		if !slices.Equal(log.got, refLog.got) {
			t.Fatalf("seed %d batch %d: changes\n%v\none by one\n%v", seed, batch, log.got, refLog.got)
		}
		// The dry run finds the same manifests; its bytes may miss a blob
		// shared by repositories its rolled-back batches judged apart.
		if dry.Manifests != got.Manifests || dry.Tags != got.Tags || dry.BytesFreed > got.BytesFreed {
			t.Fatalf("seed %d batch %d: dry run %d manifests, %d tags, %d bytes; the run %d, %d, %d",
				seed, batch, dry.Manifests, dry.Tags, dry.BytesFreed, got.Manifests, got.Tags, got.BytesFreed)
		}
	}
}

// TestRetentionDryRunExactInOneBatch: when the candidates fit in one batch,
// the dry run's answer is the run's, bytes included.
func TestRetentionDryRunExactInOneBatch(t *testing.T) {
	ctx := context.Background()
	for seed := uint64(1); seed <= 30; seed++ {
		reg, _, _ := equivRegistry(t, seed, 5, seed%2 == 0)
		pol := policy.New(reg)
		pol.Batch = 1000
		if err := pol.SetRetention(ctx, policy.Retention{Enabled: true, Days: 7}); err != nil {
			t.Fatal(err)
		}
		dry, err := pol.ApplyRetention(ctx, true)
		if err != nil {
			t.Fatal(err)
		}
		run, err := pol.ApplyRetention(ctx, false)
		if err != nil {
			t.Fatal(err)
		}
		if dry.Manifests != run.Manifests || dry.Tags != run.Tags || dry.BlobsFreed != run.BlobsFreed || dry.BytesFreed != run.BytesFreed {
			t.Fatalf("seed %d: dry run %+v, run %+v", seed, dry, run)
		}
	}
}

// TestRetentionBatchPassesOverLocked: in one batch across repositories, a
// delete-locked manifest and a delete-locked repository stay, and only
// they: the manifests around them go.
func TestRetentionBatchPassesOverLocked(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	old := equivNow.Add(-30 * 24 * time.Hour)
	digest := func(repo string, i int) stowage.Digest {
		return stowage.Digest(fmt.Sprintf("sha256:%064x", int(repo[0])*100+i))
	}
	if err := db.Update(ctx, func(tx stowage.Tx) error {
		for _, repo := range []string{"a", "b", "c"} {
			if err := tx.Repositories().CreateRepository(repo, old); err != nil {
				return err
			}
			for i := 0; i < 5; i++ {
				m := stowage.ManifestRecord{Repo: repo, Digest: digest(repo, i), MediaType: stowage.MediaTypeOCIManifest, Size: 10, Created: old.Add(time.Duration(i) * time.Minute)}
				if repo == "a" && i == 2 {
					m.Locks = stowage.LockDelete
				}
				if err := tx.Blobs().PutBlob(stowage.BlobRecord{Digest: m.Digest, Size: 10, State: stowage.BlobLive, Created: old}); err != nil {
					return err
				}
				if err := tx.Manifests().PutManifest(m, nil); err != nil {
					return err
				}
			}
		}
		return tx.Repositories().SetRepositoryLocks("b", stowage.LockDelete)
	}); err != nil {
		t.Fatal(err)
	}
	reg := stowage.NewRegistry(db, mem.New(), stowage.Options{Now: func() time.Time { return equivNow }})
	pol := policy.New(reg)
	pol.Batch = 100
	if err := pol.SetRetention(ctx, policy.Retention{Enabled: true, Days: 7}); err != nil {
		t.Fatal(err)
	}
	run, err := pol.ApplyRetention(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if run.Manifests != 9 || run.BlobsFreed != 9 {
		t.Errorf("deleted %d manifests, %d blobs freed; want 9 and 9 (a's 4 unlocked, c's 5)", run.Manifests, run.BlobsFreed)
	}
	for _, repo := range []string{"a", "b", "c"} {
		for i := 0; i < 5; i++ {
			want := repo == "b" || (repo == "a" && i == 2)
			if got := (&env{reg: reg, ctx: ctx}).hasManifest(repo, digest(repo, i)); got != want {
				t.Errorf("%s manifest %d present = %v, want %v", repo, i, got, want)
			}
		}
	}
}

// TestRetentionRunListBounded: a pass deleting more than a Run lists keeps
// its totals exact, and says what it left out.
func TestRetentionRunListBounded(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	old := equivNow.Add(-30 * 24 * time.Hour)
	const repos, each = 30, 60 // 1,800 deletions
	if err := db.Update(ctx, func(tx stowage.Tx) error {
		for r := 0; r < repos; r++ {
			repo := fmt.Sprintf("r%02d", r)
			if err := tx.Repositories().CreateRepository(repo, old); err != nil {
				return err
			}
			for i := 0; i < each; i++ {
				m := stowage.ManifestRecord{Repo: repo, Digest: stowage.Digest(fmt.Sprintf("sha256:%064x", r*1000+i)), MediaType: stowage.MediaTypeOCIManifest, Size: 10, Created: old}
				if err := tx.Blobs().PutBlob(stowage.BlobRecord{Digest: m.Digest, Size: 10, State: stowage.BlobLive, Created: old}); err != nil {
					return err
				}
				if err := tx.Manifests().PutManifest(m, nil); err != nil {
					return err
				}
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	reg := stowage.NewRegistry(db, mem.New(), stowage.Options{Now: func() time.Time { return equivNow }})
	pol := policy.New(reg)
	pol.Batch = 7 // repositories split between batches
	if err := pol.SetRetention(ctx, policy.Retention{Enabled: true, Days: 7}); err != nil {
		t.Fatal(err)
	}
	run, err := pol.ApplyRetention(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if run.Manifests != repos*each || run.BytesFreed != repos*each*10 {
		t.Fatalf("totals %d manifests, %d bytes; want %d, %d", run.Manifests, run.BytesFreed, repos*each, repos*each*10)
	}
	listed, counted := 0, 0
	for _, rep := range run.Repositories {
		listed += len(rep.Manifests)
		counted += len(rep.Manifests)
		if rep.Truncated != nil {
			counted += rep.Truncated.Manifests - len(rep.Manifests)
		}
	}
	if listed > 1000 || listed < 900 {
		t.Errorf("listed %d manifests; want about 1000", listed)
	}
	if got := counted + run.RepositoriesNotListed*each; got != repos*each {
		t.Errorf("listed and counted %d manifests (%d repositories not listed); want %d", got, run.RepositoriesNotListed, repos*each)
	}
	if len(run.Repositories)+run.RepositoriesNotListed != repos {
		t.Errorf("%d repositories listed + %d not = %d; want %d", len(run.Repositories), run.RepositoriesNotListed, len(run.Repositories)+run.RepositoriesNotListed, repos)
	}
}
