package metatest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/stowage/stowage"
)

// The usage the databases keep by triggers (Totals, RepositoryUsage and
// their pages) checked against a brute-force reading of the facts through
// the Tx listings, after every step of seeded random operation sequences:
// pushes (re-pushes with other references), tags, moves, untags, manifest
// and repository deletes, blob rows that come after their references, go
// while referenced, change size or state, index children, and layers and
// manifests shared across repositories. A failure names its seed and step.

// usageBrute reads the facts through Tx and computes what UsageTx must say.
func usageBrute(tx stowage.Tx) (stowage.UsageTotals, []stowage.RepositoryUsage, error) {
	var tot stowage.UsageTotals
	live, err := tx.Blobs().BlobsInState(stowage.BlobLive, "", 0)
	if err != nil {
		return tot, nil, err
	}
	for _, b := range live {
		tot.Blobs++
		tot.PhysicalBytes += b.Size
	}
	repos, err := tx.Repositories().ListRepositories("", 0, true)
	if err != nil {
		return tot, nil, err
	}
	size := map[stowage.Digest]int64{}
	sizeOf := func(d stowage.Digest) (int64, error) {
		if s, ok := size[d]; ok {
			return s, nil
		}
		b, err := tx.Blobs().GetBlob(d)
		if errors.Is(err, stowage.ErrNotFound) {
			err = nil
		}
		size[d] = b.Size
		return b.Size, err
	}
	uses := map[string]map[stowage.Digest]bool{}
	var out []stowage.RepositoryUsage
	for _, r := range repos {
		u := stowage.RepositoryUsage{Name: r}
		uses[r] = map[stowage.Digest]bool{}
		ms, err := tx.Manifests().ListManifests(r)
		if err != nil {
			return tot, nil, err
		}
		held := map[stowage.Digest]bool{}
		tags, err := tx.Tags().TagRecords(r)
		if err != nil {
			return tot, nil, err
		}
		for _, t := range tags {
			held[t.Digest] = true
		}
		u.Tags = int64(len(tags))
		for _, m := range ms {
			uses[r][m.Digest] = true
			refs, err := tx.Manifests().ManifestRefs(r, m.Digest)
			if err != nil {
				return tot, nil, err
			}
			for _, ref := range refs {
				held[ref.Digest] = true
				if ref.Kind == stowage.RefBlob {
					uses[r][ref.Digest] = true
				}
			}
		}
		u.Manifests = int64(len(ms))
		for _, m := range ms {
			if !held[m.Digest] {
				u.UntaggedManifests++
			}
		}
		out = append(out, u)
	}
	for i := range out {
		u := &out[i]
		for d := range uses[u.Name] {
			s, err := sizeOf(d)
			if err != nil {
				return tot, nil, err
			}
			u.ReferencedBytes += s
			shared := false
			for o, ds := range uses {
				shared = shared || o != u.Name && ds[d]
			}
			if !shared {
				u.UniqueBytes += s
			}
		}
		tot.Repositories++
		tot.ReferencedBytes += u.ReferencedBytes
		tot.Manifests += u.Manifests
		tot.Tags += u.Tags
		tot.UntaggedManifests += u.UntaggedManifests
	}
	return tot, out, nil
}

// checkUsageKept compares what the database keeps with usageBrute, and the
// pages of RepositoryUsage with the whole list.
func checkUsageKept(t *testing.T, db stowage.DB, where string) bool {
	t.Helper()
	ok := true
	view(t, db, func(tx stowage.Tx) error {
		wantTot, want, err := usageBrute(tx)
		if err != nil {
			return err
		}
		tot, err := tx.Usage().Totals()
		if err != nil {
			return err
		}
		if tot != wantTot {
			t.Errorf("%s: Totals = %+v\nwant %+v", where, tot, wantTot)
			ok = false
		}
		count, bytes, err := tx.Usage().BlobTotals()
		if err != nil || count != wantTot.Blobs || bytes != wantTot.PhysicalBytes {
			t.Errorf("%s: BlobTotals = %d, %d, %v; want %d, %d", where, count, bytes, err, wantTot.Blobs, wantTot.PhysicalBytes)
			ok = false
		}
		got, err := tx.Usage().RepositoryUsage("", 0)
		if err != nil {
			return err
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: RepositoryUsage:\n got %+v\nwant %+v", where, got, want)
			ok = false
		}
		for _, w := range want {
			one, err := tx.Usage().RepositoryUsageOf(w.Name)
			if err != nil || one != w {
				t.Errorf("%s: RepositoryUsageOf(%s) = %+v, %v; want %+v", where, w.Name, one, err, w)
				ok = false
			}
			kept, err := tx.Usage().RepositoryKept(w.Name)
			if w.UniqueBytes = 0; err != nil || kept != w {
				t.Errorf("%s: RepositoryKept(%s) = %+v, %v; want %+v", where, w.Name, kept, err, w)
				ok = false
			}
		}
		// Pages of 2: every row exactly once, in order.
		var paged []stowage.RepositoryUsage
		for after := ""; ; {
			p, err := tx.Usage().RepositoryUsage(after, 2)
			if err != nil {
				return err
			}
			paged = append(paged, p...)
			if len(p) < 2 {
				break
			}
			after = p[len(p)-1].Name
		}
		if !reflect.DeepEqual(paged, got) {
			t.Errorf("%s: RepositoryUsage by pages of 2:\n got %+v\nwant %+v", where, paged, got)
			ok = false
		}
		largest, err := tx.Usage().LargestRepositories(3)
		if err != nil {
			return err
		}
		byLargest := slices.Clone(want)
		slices.SortStableFunc(byLargest, func(a, b stowage.RepositoryUsage) int {
			if a.ReferencedBytes != b.ReferencedBytes {
				if a.ReferencedBytes > b.ReferencedBytes {
					return -1
				}
				return 1
			}
			return 0 // want is in name order already
		})
		byLargest = byLargest[:min(3, len(byLargest))]
		if len(largest) != len(byLargest) || len(byLargest) > 0 && !reflect.DeepEqual(largest, byLargest) {
			t.Errorf("%s: LargestRepositories(3) = %+v\nwant %+v", where, largest, byLargest)
			ok = false
		}
		return nil
	})
	return ok
}

func testUsageKept(t *testing.T, db stowage.DB) {
	seeds := []uint64{1, 2, 3}
	steps := 120
	if testing.Short() {
		seeds, steps = seeds[:1], 60
	}
	for _, seed := range seeds {
		// Each seed in its own repositories and digests, so one database
		// serves every seed.
		runUsageOps(t, db, seed, steps)
		if t.Failed() {
			return
		}
	}
}

func runUsageOps(t *testing.T, db stowage.DB, seed uint64, steps int) {
	r := rand.New(rand.NewPCG(seed, 99))
	base := int(seed) * 100000
	repos := []string{fmt.Sprintf("s%d/a", seed), fmt.Sprintf("s%d/b", seed), fmt.Sprintf("s%d/c", seed), fmt.Sprintf("s%d/d", seed)}
	blob := func() stowage.Digest { return dg(base + r.IntN(12)) }                 // layers and configs, shared
	manifestDigest := func() stowage.Digest { return dg(base + 100 + r.IntN(10)) } // some pushed to several repositories
	putBlob := func(tx stowage.Tx, d stowage.Digest, state stowage.BlobState) error {
		return tx.Blobs().PutBlob(stowage.BlobRecord{Digest: d, Size: int64(1 + r.IntN(1000)), Created: now, State: state, LastUsed: now, UnreferencedSince: now})
	}
	for step := range steps {
		repo := repos[r.IntN(len(repos))]
		var what string
		err := db.Update(ctx, func(tx stowage.Tx) error {
			switch op := r.IntN(100); {
			case op < 30: // push a manifest (or push one again with other references)
				d := manifestDigest()
				what = fmt.Sprintf("push %s@%s", repo, d[len(d)-4:])
				if err := tx.Repositories().CreateRepository(repo, now); err != nil {
					return err
				}
				if r.IntN(4) > 0 { // the manifest's own blob row, usually
					if err := putBlob(tx, d, stowage.BlobLive); err != nil {
						return err
					}
				}
				var refs []stowage.ManifestRef
				for range r.IntN(4) {
					b := blob()
					if !slices.ContainsFunc(refs, func(x stowage.ManifestRef) bool { return x.Digest == b }) {
						refs = append(refs, stowage.ManifestRef{Digest: b, Kind: stowage.RefBlob})
					}
				}
				if r.IntN(4) == 0 { // an index: children among the repository's manifests
					ms, err := tx.Manifests().ListManifests(repo)
					if err != nil {
						return err
					}
					for _, m := range ms {
						if m.Digest != d && r.IntN(2) == 0 && !slices.ContainsFunc(refs, func(x stowage.ManifestRef) bool { return x.Digest == m.Digest }) {
							refs = append(refs, stowage.ManifestRef{Digest: m.Digest, Kind: stowage.RefManifest})
						}
					}
				}
				if err := tx.Manifests().PutManifest(stowage.ManifestRecord{Repo: repo, Digest: d, MediaType: "application/vnd.oci.image.manifest.v1+json",
					Size: 10, Created: now}, refs); err != nil {
					return err
				}
				if r.IntN(2) == 0 {
					return tx.Tags().PutTag(repo, fmt.Sprintf("t%d", r.IntN(4)), d, now)
				}
			case op < 45: // tag or move a tag onto an existing manifest
				what = "tag " + repo
				ms, err := tx.Manifests().ListManifests(repo)
				if err != nil || len(ms) == 0 {
					return err
				}
				return tx.Tags().PutTag(repo, fmt.Sprintf("t%d", r.IntN(4)), ms[r.IntN(len(ms))].Digest, now)
			case op < 55: // untag
				what = "untag " + repo
				if err := tx.Tags().DeleteTag(repo, fmt.Sprintf("t%d", r.IntN(4))); err != nil && !errors.Is(err, stowage.ErrNotFound) {
					return err
				}
			case op < 67: // delete a manifest (its references go; tags stay, as Tx leaves them to the engine)
				what = "delete manifest " + repo
				ms, err := tx.Manifests().ListManifests(repo)
				if err != nil || len(ms) == 0 {
					return err
				}
				d := ms[r.IntN(len(ms))].Digest
				tags, err := tx.Tags().TagsOf(repo, d)
				if err != nil {
					return err
				}
				for _, tag := range tags {
					if err := tx.Tags().DeleteTag(repo, tag); err != nil {
						return err
					}
				}
				return tx.Manifests().DeleteManifest(repo, d)
			case op < 72: // delete a repository
				what = "delete repository " + repo
				if err := tx.Repositories().DeleteRepository(repo); err != nil && !errors.Is(err, stowage.ErrNotFound) {
					return err
				}
			case op < 80: // a blob row appears (perhaps after references to it), or is written again with another size
				what = "put blob"
				states := []stowage.BlobState{stowage.BlobLive, stowage.BlobLive, stowage.BlobPending, stowage.BlobDeleting}
				return putBlob(tx, blob(), states[r.IntN(len(states))])
			case op < 88: // a blob row goes, referenced or not
				what = "delete blob"
				d := blob()
				if r.IntN(3) == 0 {
					d = manifestDigest()
				}
				if err := tx.Blobs().DeleteBlob(d); err != nil && !errors.Is(err, stowage.ErrNotFound) {
					return err
				}
			case op < 94: // a blob changes state
				what = "blob state"
				states := []stowage.BlobState{stowage.BlobLive, stowage.BlobPending, stowage.BlobDeleting}
				if err := tx.Blobs().SetBlobState(blob(), states[r.IntN(len(states))]); err != nil && !errors.Is(err, stowage.ErrNotFound) {
					return err
				}
			default: // an empty repository
				what = "create " + repo
				return tx.Repositories().CreateRepository(repo, now)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("seed %d step %d (%s): %v", seed, step, what, err)
		}
		if !checkUsageKept(t, db, fmt.Sprintf("seed %d step %d (%s)", seed, step, what)) {
			return
		}
	}
}

// testUsageUniqueOwners walks one layer through every change of who uses
// it (none, one, two, three, and back by a manifest delete, a re-push
// without it, a repository delete), its blob's size changing, going and
// coming back meanwhile, and checks each repository's unique bytes after
// every step (and everything else against usageBrute).
func testUsageUniqueOwners(t *testing.T, db stowage.DB) {
	const a, b, c = "owners/a", "owners/b", "owners/c"
	layer, other := dg(900), dg(901)
	putBlob := func(d stowage.Digest, size int64) func(tx stowage.Tx) error {
		return func(tx stowage.Tx) error {
			return tx.Blobs().PutBlob(stowage.BlobRecord{Digest: d, Size: size, Created: now, State: stowage.BlobLive, LastUsed: now, UnreferencedSince: now})
		}
	}
	// push writes manifest m (size 0: no blob row) of repo with refs.
	push := func(repo string, m int, refs ...stowage.Digest) func(tx stowage.Tx) error {
		return func(tx stowage.Tx) error {
			if err := tx.Repositories().CreateRepository(repo, now); err != nil {
				return err
			}
			var rs []stowage.ManifestRef
			for _, d := range refs {
				rs = append(rs, stowage.ManifestRef{Digest: d, Kind: stowage.RefBlob})
			}
			return tx.Manifests().PutManifest(stowage.ManifestRecord{Repo: repo, Digest: dg(m), MediaType: "m", Size: 1, Created: now}, rs)
		}
	}
	for _, st := range []struct {
		name    string
		fn      func(tx stowage.Tx) error
		a, b, c int64 // unique bytes wanted (-1: no such repository)
	}{
		{"blobs", func(tx stowage.Tx) error {
			if err := putBlob(layer, 100)(tx); err != nil {
				return err
			}
			return putBlob(other, 7)(tx)
		}, -1, -1, -1},
		{"a uses the layer: a owns it", push(a, 910, layer), 100, -1, -1},
		{"b too: shared", push(b, 920, layer, other), 0, 7, -1},
		{"c too: three users", push(c, 930, layer), 0, 7, 0},
		{"the layer grows while shared", putBlob(layer, 150), 0, 7, 0},
		{"b's manifest goes: two users", func(tx stowage.Tx) error { return tx.Manifests().DeleteManifest(b, dg(920)) }, 0, 0, 0},
		{"c pushes again without it: a owns it (2 to 1)", push(c, 930, other), 150, 0, 7},
		{"the layer shrinks while owned", putBlob(layer, 40), 40, 0, 7},
		{"its blob row goes while referenced", func(tx stowage.Tx) error { return tx.Blobs().DeleteBlob(layer) }, 0, 0, 7},
		{"b uses the sizeless layer: shared", push(b, 921, layer), 0, 0, 7},
		{"the blob row comes back", putBlob(layer, 60), 0, 0, 7},
		{"a is deleted: b owns it (2 to 1)", func(tx stowage.Tx) error { return tx.Repositories().DeleteRepository(a) }, -1, 60, 7},
		{"c uses it as well: shared", push(c, 931, layer), -1, 0, 7},
		{"c is deleted: b owns it again", func(tx stowage.Tx) error { return tx.Repositories().DeleteRepository(c) }, -1, 60, -1},
		{"b stops using it: nobody", func(tx stowage.Tx) error { return tx.Manifests().DeleteManifest(b, dg(921)) }, -1, 0, -1},
		{"the blob resizes, used by nobody", putBlob(layer, 5), -1, 0, -1},
		{"a comes back with it: a owns it at its size", push(a, 911, layer), 5, 0, -1},
	} {
		update(t, db, st.fn)
		view(t, db, func(tx stowage.Tx) error {
			for _, w := range []struct {
				repo string
				want int64
			}{{a, st.a}, {b, st.b}, {c, st.c}} {
				got, err := tx.Usage().RepositoryUsageOf(w.repo)
				if w.want < 0 {
					if !errors.Is(err, stowage.ErrNotFound) {
						t.Errorf("%s: RepositoryUsageOf(%s) = %+v, %v; want ErrNotFound", st.name, w.repo, got, err)
					}
					continue
				}
				if err != nil || got.UniqueBytes != w.want {
					t.Errorf("%s: %s's unique bytes = %d, %v; want %d", st.name, w.repo, got.UniqueBytes, err, w.want)
				}
			}
			return nil
		})
		if !checkUsageKept(t, db, st.name) {
			return
		}
	}
}

// testUsagePages: ManifestUsage's pages, in every page size, are the whole
// list cut at the cursors: every manifest exactly once, in order, also when
// manifests share a creation time.
func testUsagePages(t *testing.T, db stowage.DB) {
	const repo = "pages/r"
	update(t, db, func(tx stowage.Tx) error {
		if err := tx.Repositories().CreateRepository(repo, now); err != nil {
			return err
		}
		for i := range 9 {
			d := dg(700 + i)
			if err := tx.Blobs().PutBlob(stowage.BlobRecord{Digest: d, Size: int64(10 + i), Created: now, State: stowage.BlobLive, LastUsed: now, UnreferencedSince: now}); err != nil {
				return err
			}
			created := now.Add(time.Duration(i/3) * time.Second) // three manifests per instant
			if err := tx.Manifests().PutManifest(stowage.ManifestRecord{Repo: repo, Digest: d, MediaType: "m", Size: 10, Created: created},
				[]stowage.ManifestRef{{Digest: dg(1), Kind: stowage.RefBlob}}); err != nil {
				return err
			}
		}
		return nil
	})
	view(t, db, func(tx stowage.Tx) error {
		all, err := tx.Usage().ManifestUsage(repo, stowage.ManifestCursor{}, 0)
		if err != nil {
			return err
		}
		if len(all) != 9 {
			t.Fatalf("ManifestUsage: %d rows, want 9", len(all))
		}
		for i := 1; i < len(all); i++ {
			a, b := all[i-1], all[i]
			if a.Created.Before(b.Created) || a.Created.Equal(b.Created) && a.Digest <= b.Digest {
				t.Errorf("ManifestUsage: rows %d, %d out of order (created descending, then digest descending)", i-1, i)
			}
		}
		for n := 1; n <= 10; n++ {
			var got []stowage.ManifestUsage
			var cur stowage.ManifestCursor
			for pages := 0; pages < 20; pages++ {
				p, err := tx.Usage().ManifestUsage(repo, cur, n)
				if err != nil {
					return err
				}
				got = append(got, p...)
				if len(p) < n {
					break
				}
				cur = stowage.ManifestCursor{Created: p[len(p)-1].Created, Digest: p[len(p)-1].Digest}
			}
			if !reflect.DeepEqual(got, all) {
				t.Errorf("ManifestUsage by pages of %d:\n got %v\nwant %v", n, digestsOf(got), digestsOf(all))
			}
		}
		return nil
	})
}

func digestsOf(ms []stowage.ManifestUsage) []stowage.Digest {
	var out []stowage.Digest
	for _, m := range ms {
		out = append(out, m.Digest)
	}
	return out
}
