package metatest

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stowage/stowage"
)

// testDeleteQueries: the reads that let deletes cost what they delete
// (UnreferencedBlobs, RepositoryRefs, UntaggedManifestsAfter) answer as
// the one-digest, one-manifest and one-repository reads they stand for.
func testDeleteQueries(t *testing.T, db stowage.DB) {
	day := 24 * time.Hour
	// d(1) a layer, d(2) a manifest, d(3) held by the recycle bin only,
	// d(4) and d(6) referenced by nothing, d(5) has no row.
	update(t, db, func(tx stowage.Tx) error {
		for _, i := range []int{1, 2, 3, 4, 6, 7} {
			if err := tx.Blobs().PutBlob(stowage.BlobRecord{Digest: dg(i), Size: int64(i * 10), State: stowage.BlobLive, Created: now}); err != nil {
				return err
			}
		}
		if err := tx.Repositories().CreateRepository("r", now); err != nil {
			return err
		}
		if err := tx.Manifests().PutManifest(stowage.ManifestRecord{Repo: "r", Digest: dg(2), MediaType: stowage.MediaTypeOCIManifest, Created: now},
			[]stowage.ManifestRef{{Digest: dg(1), Kind: stowage.RefBlob}}); err != nil {
			return err
		}
		_, err := tx.Recycle().PutRecycled(stowage.RecycledManifest{Manifest: stowage.ManifestRecord{Repo: "r", Digest: dg(7), Created: now},
			Refs: []stowage.ManifestRef{{Digest: dg(3), Kind: stowage.RefBlob}}, Deleted: now, Expires: now.Add(day)})
		return err
	})
	view(t, db, func(tx stowage.Tx) error {
		got, err := tx.Blobs().UnreferencedBlobs([]stowage.Digest{dg(6), dg(5), dg(4), dg(3), dg(2), dg(1)}, "")
		if err != nil {
			return err
		}
		var ds []stowage.Digest
		for _, b := range got {
			ds = append(ds, b.Digest)
			if b.Size != int64(int(b.Digest[len(b.Digest)-1]-'0')*10) {
				t.Errorf("UnreferencedBlobs: %s has size %d", b.Digest, b.Size)
			}
		}
		if want := []stowage.Digest{dg(4), dg(6)}; !slices.Equal(ds, want) {
			t.Errorf("UnreferencedBlobs = %v, want %v", ds, want)
		}
		for i := 1; i <= 7; i++ {
			ref, err := tx.Blobs().BlobReferenced(dg(i))
			if err != nil {
				return err
			}
			_, rowErr := tx.Blobs().GetBlob(dg(i))
			if in := slices.Contains(ds, dg(i)); in != (!ref && rowErr == nil) {
				t.Errorf("digest %d: in UnreferencedBlobs %v, BlobReferenced %v, row %v", i, in, ref, rowErr)
			}
		}
		if got, err := tx.Blobs().UnreferencedBlobs(nil, ""); err != nil || len(got) != 0 {
			t.Errorf("UnreferencedBlobs(nil) = %v, %v", got, err)
		}
		return nil
	})

	// A random registry: RepositoryRefs is ManifestRefs of each manifest,
	// and UntaggedManifestsAfter, page by page, is UntaggedManifests of
	// each repository in name order.
	r := rand.New(rand.NewPCG(3, 3))
	repos := []string{"x/a", "x", "x-b", "y"}
	update(t, db, func(tx stowage.Tx) error {
		for ri, repo := range repos {
			if err := tx.Repositories().CreateRepository(repo, now); err != nil {
				return err
			}
			var ms []stowage.Digest
			for i := 0; i < 12; i++ {
				d := dg(1000 + ri*100 + i)
				var refs []stowage.ManifestRef
				for _, c := range ms {
					if r.IntN(6) == 0 {
						refs = append(refs, stowage.ManifestRef{Digest: c, Kind: stowage.RefManifest})
					}
				}
				refs = append(refs, stowage.ManifestRef{Digest: dg(r.IntN(5)), Kind: stowage.RefBlob})
				slices.SortFunc(refs, func(a, b stowage.ManifestRef) int { return strings.Compare(string(a.Digest), string(b.Digest)) })
				refs = slices.CompactFunc(refs, func(a, b stowage.ManifestRef) bool { return a.Digest == b.Digest })
				created := now.Add(-time.Duration(r.IntN(20)) * day)
				if i == 5 {
					created = now.Add(-3 * day) // two with the same time: digest orders them
				}
				if i == 6 {
					created = now.Add(-3 * day)
				}
				if err := tx.Manifests().PutManifest(stowage.ManifestRecord{Repo: repo, Digest: d, MediaType: stowage.MediaTypeOCIManifest, Created: created}, refs); err != nil {
					return err
				}
				if r.IntN(3) == 0 {
					if err := tx.Tags().PutTag(repo, fmt.Sprintf("t%d", i), d, now); err != nil {
						return err
					}
				}
				if r.IntN(4) == 0 {
					if err := tx.Manifests().SetUntaggedSince(repo, d, now.Add(-time.Duration(r.IntN(20))*day)); err != nil {
						return err
					}
				}
				ms = append(ms, d)
			}
		}
		return nil
	})
	view(t, db, func(tx stowage.Tx) error {
		names, err := tx.Repositories().ListRepositories("", 0, true)
		if err != nil {
			return err
		}
		for _, before := range []time.Time{now.Add(-10 * day), now} {
			var want []stowage.ManifestRecord
			for _, repo := range names {
				ms, err := tx.Manifests().UntaggedManifests(repo, before)
				if err != nil {
					return err
				}
				want = append(want, ms...)
			}
			if len(want) < 5 {
				t.Fatalf("only %d untagged manifests: the fixture does not test paging", len(want))
			}
			for _, limit := range []int{1, 2, 5, 0} {
				var got []stowage.ManifestRecord
				var after stowage.ManifestRecord
				for pages := 0; pages < 200; pages++ {
					page, err := tx.Manifests().UntaggedManifestsAfter(before, after, limit)
					if err != nil {
						return err
					}
					if limit > 0 && len(page) > limit {
						t.Fatalf("a page of %d with limit %d", len(page), limit)
					}
					got = append(got, page...)
					if len(page) == 0 || limit <= 0 {
						break
					}
					after = page[len(page)-1]
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("UntaggedManifestsAfter(limit %d) pages = %v\nwant %v", limit, got, want)
				}
			}
		}
		for _, repo := range append(names, "none") {
			got, err := tx.Manifests().RepositoryRefs(repo)
			if err != nil {
				return err
			}
			ms, err := tx.Manifests().ListManifests(repo)
			if err != nil {
				return err
			}
			want := map[stowage.Digest][]stowage.ManifestRef{}
			for _, m := range ms {
				refs, err := tx.Manifests().ManifestRefs(repo, m.Digest)
				if err != nil {
					return err
				}
				if len(refs) > 0 {
					want[m.Digest] = refs
				}
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("RepositoryRefs(%s) = %v\nwant %v", repo, got, want)
			}
		}
		return nil
	})
}
