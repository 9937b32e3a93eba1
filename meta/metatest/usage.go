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

// usageFixture is a registry small enough to answer usage questions by
// brute force: the model below states what UsageTx must return.
type usageFixture struct {
	repos     []string
	sizes     map[stowage.Digest]int64
	manifests map[string][]usageManifest // repo: its manifests
}

type usageManifest struct {
	d        stowage.Digest
	blobs    []stowage.Digest // kind blob
	children []stowage.Digest // kind manifest (manifests of the same repo)
	tags     []string
	created  time.Time
}

func (f *usageFixture) write(t *testing.T, db stowage.DB) {
	t.Helper()
	update(t, db, func(tx stowage.Tx) error {
		for _, r := range f.repos {
			if err := tx.Repositories().CreateRepository(r, now); err != nil {
				return err
			}
		}
		for d, size := range f.sizes {
			if err := tx.Blobs().PutBlob(stowage.BlobRecord{Digest: d, Size: size, Created: now, State: stowage.BlobLive, LastUsed: now, UnreferencedSince: now}); err != nil {
				return err
			}
		}
		for repo, ms := range f.manifests {
			for _, m := range ms {
				var refs []stowage.ManifestRef
				for _, b := range m.blobs {
					refs = append(refs, stowage.ManifestRef{Digest: b, Kind: stowage.RefBlob})
				}
				for _, c := range m.children {
					refs = append(refs, stowage.ManifestRef{Digest: c, Kind: stowage.RefManifest})
				}
				if err := tx.Manifests().PutManifest(stowage.ManifestRecord{Repo: repo, Digest: m.d, MediaType: "application/vnd.oci.image.manifest.v1+json",
					Size: f.sizes[m.d], Created: m.created}, refs); err != nil {
					return err
				}
				for _, tag := range m.tags {
					if err := tx.Tags().PutTag(repo, tag, m.d, now); err != nil {
						return err
					}
				}
			}
		}
		return nil
	})
}

// model answers RepositoryUsage and ManifestUsage as documented in db.go.
func (f *usageFixture) model() ([]stowage.RepositoryUsage, map[string]map[stowage.Digest]stowage.ManifestUsage) {
	uses := map[string]map[stowage.Digest]bool{} // repo: digests its manifests are or reference (blob kind)
	holders := map[stowage.Digest]int{}          // digest: manifests (anywhere) that are it or reference it
	for _, r := range f.repos {
		uses[r] = map[stowage.Digest]bool{}
		for _, m := range f.manifests[r] {
			uses[r][m.d] = true
			holders[m.d]++
			for _, b := range m.blobs {
				uses[r][b] = true
				holders[b]++
			}
		}
	}
	var repos []stowage.RepositoryUsage
	perManifest := map[string]map[stowage.Digest]stowage.ManifestUsage{}
	for _, r := range f.repos {
		u := stowage.RepositoryUsage{Name: r, Manifests: int64(len(f.manifests[r]))}
		for d := range uses[r] {
			u.ReferencedBytes += f.sizes[d]
			shared := false
			for _, o := range f.repos {
				shared = shared || o != r && uses[o][d]
			}
			if !shared {
				u.UniqueBytes += f.sizes[d]
			}
		}
		child := map[stowage.Digest]bool{}
		for _, m := range f.manifests[r] {
			for _, c := range m.children {
				child[c] = true
			}
		}
		perManifest[r] = map[stowage.Digest]stowage.ManifestUsage{}
		for _, m := range f.manifests[r] {
			u.Tags += int64(len(m.tags))
			if len(m.tags) == 0 && !child[m.d] {
				u.UntaggedManifests++
			}
			mu := stowage.ManifestUsage{Digest: m.d, MediaType: "application/vnd.oci.image.manifest.v1+json", Created: m.created}
			if len(m.tags) > 0 {
				mu.Tags = slices.Sorted(slices.Values(m.tags))
			}
			for _, d := range append([]stowage.Digest{m.d}, m.blobs...) {
				mu.Size += f.sizes[d]
				if holders[d] == 1 {
					mu.UniqueBytes += f.sizes[d]
				}
			}
			perManifest[r][m.d] = mu
		}
		repos = append(repos, u)
	}
	slices.SortFunc(repos, func(a, b stowage.RepositoryUsage) int {
		if a.Name < b.Name {
			return -1
		}
		return 1
	})
	return repos, perManifest
}

// handFixture: shared and unique blobs, one manifest digest in two
// repositories, an index with a child, untagged manifests and an empty
// repository.
func handFixture() *usageFixture {
	f := &usageFixture{repos: []string{"a", "b", "c"}, sizes: map[stowage.Digest]int64{}, manifests: map[string][]usageManifest{}}
	for i, s := range map[int]int64{1: 100, 2: 20, 3: 7, 4: 1000, 10: 10, 11: 11, 12: 12, 20: 5} {
		f.sizes[dg(i)] = s
	}
	f.manifests["a"] = []usageManifest{
		{d: dg(10), blobs: []stowage.Digest{dg(1), dg(2), dg(4)}, created: now},
		{d: dg(11), blobs: []stowage.Digest{dg(1), dg(4)}, created: now.Add(time.Second)},
		{d: dg(12), children: []stowage.Digest{dg(10)}, tags: []string{"latest"}, created: now.Add(2 * time.Second)},
	}
	f.manifests["b"] = []usageManifest{
		{d: dg(20), blobs: []stowage.Digest{dg(1), dg(3)}, tags: []string{"v2", "v1"}, created: now},
		{d: dg(11), blobs: []stowage.Digest{dg(1), dg(4)}, created: now.Add(time.Second)},
	}
	return f
}

// randomFixture: many repositories sharing a few blobs and manifests.
func randomFixture(seed uint64) *usageFixture {
	r := rand.New(rand.NewPCG(seed, 11))
	f := &usageFixture{sizes: map[stowage.Digest]int64{}, manifests: map[string][]usageManifest{}}
	for i := range 40 {
		f.sizes[dg(1000+i)] = int64(1 + r.IntN(5000))
	}
	for i := range 12 {
		repo := fmt.Sprintf("r%02d", i)
		f.repos = append(f.repos, repo)
		for j := range r.IntN(6) {
			// Manifest digests: mostly the repository's own, sometimes one
			// other repositories hold too.
			md := dg(2000 + i*10 + j)
			if r.IntN(5) == 0 {
				md = dg(3000 + r.IntN(3))
			}
			if slices.ContainsFunc(f.manifests[repo], func(m usageManifest) bool { return m.d == md }) {
				continue
			}
			f.sizes[md] = int64(100 + r.IntN(900))
			m := usageManifest{d: md, created: now.Add(time.Duration(j) * time.Second)}
			for range 1 + r.IntN(4) {
				if b := dg(1000 + r.IntN(40)); !slices.Contains(m.blobs, b) {
					m.blobs = append(m.blobs, b)
				}
			}
			if r.IntN(2) == 0 {
				m.tags = append(m.tags, fmt.Sprintf("t%d", j))
			}
			f.manifests[repo] = append(f.manifests[repo], m)
		}
	}
	return f
}

// testUsageQueries checks UsageTx against the brute-force model, for the
// whole registry and for each repository on its own.
func testUsageQueries(t *testing.T, db stowage.DB) {
	hand := handFixture()
	hand.write(t, db)
	check(t, db, hand)
	// The hand fixture's numbers, stated once so the model is checked too:
	// a uses 1,2,4,10,11,12; b uses 1,3,4,11,20; 2,10,12 are a's alone.
	view(t, db, func(tx stowage.Tx) error {
		a, err := tx.Usage().RepositoryUsageOf("a")
		if want := (stowage.RepositoryUsage{Name: "a", ReferencedBytes: 1153, UniqueBytes: 42, Manifests: 3, Tags: 1, UntaggedManifests: 1}); err != nil || a != want {
			t.Errorf("RepositoryUsageOf(a) = %+v, %v; want %+v", a, err, want)
		}
		return nil
	})
}

func testUsageQueriesRandom(t *testing.T, db stowage.DB) {
	f := randomFixture(7)
	f.write(t, db)
	check(t, db, f)
}

func check(t *testing.T, db stowage.DB, f *usageFixture) {
	t.Helper()
	wantRepos, wantManifests := f.model()
	view(t, db, func(tx stowage.Tx) error {
		got, err := tx.Usage().RepositoryUsage("", 0)
		if err != nil {
			return err
		}
		if !reflect.DeepEqual(got, wantRepos) {
			t.Errorf("RepositoryUsage:\n got %+v\nwant %+v", got, wantRepos)
		}
		for _, want := range wantRepos {
			one, err := tx.Usage().RepositoryUsageOf(want.Name)
			if err != nil || one != want {
				t.Errorf("RepositoryUsageOf(%s) = %+v, %v; want %+v", want.Name, one, err, want)
			}
			ms, err := tx.Usage().ManifestUsage(want.Name, stowage.ManifestCursor{}, 0)
			if err != nil {
				return err
			}
			gotMs := map[stowage.Digest]stowage.ManifestUsage{}
			for i, m := range ms {
				m.Created = m.Created.UTC()
				gotMs[m.Digest] = m
				if i > 0 && ms[i-1].Created.Before(m.Created) {
					t.Errorf("ManifestUsage(%s): not newest first at %d", want.Name, i)
				}
			}
			for d, wm := range wantManifests[want.Name] {
				wm.Created = wm.Created.UTC()
				if gm := gotMs[d]; !reflect.DeepEqual(gm, wm) {
					t.Errorf("ManifestUsage(%s) %s:\n got %+v\nwant %+v", want.Name, d, gm, wm)
				}
			}
			if len(gotMs) != len(wantManifests[want.Name]) {
				t.Errorf("ManifestUsage(%s): %d manifests, want %d", want.Name, len(gotMs), len(wantManifests[want.Name]))
			}
		}
		if _, err := tx.Usage().RepositoryUsageOf("absent"); !errors.Is(err, stowage.ErrNotFound) {
			t.Errorf("RepositoryUsageOf(absent): %v, want ErrNotFound", err)
		}
		return nil
	})
}
