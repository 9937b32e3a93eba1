// Package metatest is the one conformance suite every stowage.DB passes.
// An implementation's test is one line: metatest.Run(t, openDB).
package metatest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/storage/mirror"
)

// Run runs the suite. open returns a fresh, empty database per subtest.
func Run(t *testing.T, open func(t *testing.T) stowage.DB) {
	tests := []struct {
		name string
		fn   func(t *testing.T, db stowage.DB)
	}{
		{"Repositories", testRepositories},
		{"BlobsAndLinks", testBlobs},
		{"LinkedBlob", testLinkedBlob},
		{"Manifests", testManifests},
		{"Referrers", testReferrers},
		{"Tags", testTags},
		{"TagsVersion", testTagsVersion},
		{"Uploads", testUploads},
		{"GarbageCollectionQueries", testGCQueries},
		{"ExistingBlobs", testExistingBlobs}, {"MarkCollectable", testMarkCollectable}, {"RecycleOnlyBlobs", testRecycleOnlyBlobs},
		{"CollectQueue", testCollectQueue},
		{"Locks", testLocks},
		{"DeleteRepository", testDeleteRepository},
		{"DeleteQueries", testDeleteQueries},
		{"StaleUploads", testStaleUploads},
		{"DataKeys", testDataKeys},
		{"DataKeysInTx", testDataKeysInTx},
		{"KeySettings", testKeySettings},
		{"HeldBytes", testHeldBytes},
		{"UploadWriters", testUploadWriters},
		{"RollbackOnError", testRollback},
		{"ConcurrentUpdates", testConcurrent},
		{"ViewSeesCommitted", testViewSeesCommitted},
		{"RepositoryUpdated", testRepositoryUpdated},
		{"JobLocks", testJobLocks},
		{"MirrorRepairQueue", testRepairQueue},
		{"RecycleKeepsLocks", testRecycleKeepsLocks},
		{"CacheRules", testCacheRules},
		{"UsageQueries", testUsageQueries}, {"UsageQueriesRandom", testUsageQueriesRandom},
		{"UsageKeptRandomOps", testUsageKept}, {"UsagePages", testUsagePages},
		{"UsageUniqueOwners", testUsageUniqueOwners},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
}

var (
	ctx = context.Background()
	now = time.Unix(1_700_000_000, 123).UTC()
)

func dg(i int) stowage.Digest { return stowage.Digest(fmt.Sprintf("sha256:%064x", i)) }

func update(t *testing.T, db stowage.DB, fn func(tx stowage.Tx) error) {
	t.Helper()
	if err := db.Update(ctx, fn); err != nil {
		t.Fatal(err)
	}
}

func view(t *testing.T, db stowage.DB, fn func(tx stowage.Tx) error) {
	t.Helper()
	if err := db.View(ctx, fn); err != nil {
		t.Fatal(err)
	}
}

func wantNotFound(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, stowage.ErrNotFound) {
		t.Errorf("%s: err = %v, want ErrNotFound", what, err)
	}
}

func testRepositories(t *testing.T, db stowage.DB) {
	names := []string{"b", "a/x", "a", "c/d/e", "a-b"}
	update(t, db, func(tx stowage.Tx) error {
		for _, n := range names {
			if err := tx.Repositories().CreateRepository(n, now); err != nil {
				return err
			}
		}
		return tx.Repositories().CreateRepository("a", now) // idempotent
	})
	view(t, db, func(tx stowage.Tx) error {
		for _, tc := range []struct {
			after string
			limit int
			want  []string
		}{
			{"", 0, []string{"a", "a-b", "a/x", "b", "c/d/e"}},
			{"", 2, []string{"a", "a-b"}},
			{"a-b", 2, []string{"a/x", "b"}},
			{"c/d/e", 0, nil},
		} {
			got, err := tx.Repositories().ListRepositories(tc.after, tc.limit, false)
			if err != nil {
				return err
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ListRepositories(%q, %d) = %v, want %v", tc.after, tc.limit, got, tc.want)
			}
		}
		r, err := tx.Repositories().GetRepository("a/x")
		if err != nil || r.Name != "a/x" || !r.Created.Equal(now) {
			t.Errorf("GetRepository(a/x) = %+v, %v", r, err)
		}
		_, err = tx.Repositories().GetRepository("nope")
		wantNotFound(t, "GetRepository(nope)", err)
		return nil
	})
}

func testBlobs(t *testing.T, db stowage.DB) {
	update(t, db, func(tx stowage.Tx) error {
		if err := tx.Blobs().PutBlob(stowage.BlobRecord{Digest: dg(1), Size: 10, Created: now}); err != nil {
			return err
		}
		// A second PutBlob keeps the first row.
		if err := tx.Blobs().PutBlob(stowage.BlobRecord{Digest: dg(1), Size: 10, Created: now.Add(time.Hour)}); err != nil {
			return err
		}
		if err := tx.Blobs().LinkBlob("r1", dg(1), now); err != nil {
			return err
		}
		return tx.Blobs().LinkBlob("r1", dg(1), now) // idempotent
	})
	view(t, db, func(tx stowage.Tx) error {
		b, err := tx.Blobs().GetBlob(dg(1))
		if err != nil || b.Size != 10 || !b.Created.Equal(now) {
			t.Errorf("GetBlob = %+v, %v", b, err)
		}
		_, err = tx.Blobs().GetBlob(dg(2))
		wantNotFound(t, "GetBlob(missing)", err)
		b, err = tx.Blobs().RepositoryBlob("r1", dg(1))
		if err != nil || b.Size != 10 {
			t.Errorf("RepositoryBlob(r1) = %+v, %v", b, err)
		}
		_, err = tx.Blobs().RepositoryBlob("r2", dg(1))
		wantNotFound(t, "RepositoryBlob of a blob not linked there", err)
		return nil
	})
	update(t, db, func(tx stowage.Tx) error {
		if err := tx.Blobs().UnlinkBlob("r1", dg(1)); err != nil {
			return err
		}
		wantNotFound(t, "UnlinkBlob twice", tx.Blobs().UnlinkBlob("r1", dg(1)))
		_, err := tx.Blobs().RepositoryBlob("r1", dg(1))
		wantNotFound(t, "RepositoryBlob after unlink", err)
		return nil
	})
}

// LinkedBlob finds a live blob through any repository that has none of
// the given locks; an unlinked, pending or only locked-held blob is not found.
func testLinkedBlob(t *testing.T, db stowage.DB) {
	update(t, db, func(tx stowage.Tx) error {
		for i, state := range []stowage.BlobState{stowage.BlobLive, stowage.BlobLive, stowage.BlobPending, stowage.BlobLive} {
			if err := tx.Blobs().PutBlob(stowage.BlobRecord{Digest: dg(i + 1), Size: int64(i + 1), Created: now, State: state}); err != nil {
				return err
			}
		}
		for _, name := range []string{"open", "locked", "hidden"} {
			if err := tx.Repositories().CreateRepository(name, now); err != nil {
				return err
			}
		}
		if err := tx.Repositories().SetRepositoryLocks("locked", stowage.LockRead|stowage.LockDelete); err != nil {
			return err
		}
		if err := tx.Repositories().SetRepositoryLocks("hidden", stowage.LockList); err != nil {
			return err
		}
		// dg(1): locked and open; dg(2): locked only; dg(3): pending, open;
		// dg(4): no link; dg(5): hidden (list-locked) only.
		links := map[string][]int{"open": {1, 3}, "locked": {1, 2}, "hidden": {5}}
		if err := tx.Blobs().PutBlob(stowage.BlobRecord{Digest: dg(5), Size: 5, Created: now}); err != nil {
			return err
		}
		for repo, ds := range links {
			for _, i := range ds {
				if err := tx.Blobs().LinkBlob(repo, dg(i), now); err != nil {
					return err
				}
			}
		}
		return nil
	})
	view(t, db, func(tx stowage.Tx) error {
		for i, want := range map[int]bool{1: true, 2: false, 3: false, 4: false, 5: true, 6: false} {
			b, err := tx.Blobs().LinkedBlob(dg(i), stowage.LockRead)
			switch {
			case want && (err != nil || b.Digest != dg(i) || b.Size != int64(i)):
				t.Errorf("LinkedBlob(%d, LockRead) = %+v, %v; want the blob", i, b, err)
			case !want:
				wantNotFound(t, fmt.Sprintf("LinkedBlob(%d, LockRead)", i), err)
			}
		}
		if b, err := tx.Blobs().LinkedBlob(dg(2), 0); err != nil || b.Digest != dg(2) {
			t.Errorf("LinkedBlob(2, no locks) = %+v, %v; want the blob", b, err)
		}
		_, err := tx.Blobs().LinkedBlob(dg(5), stowage.LockRead|stowage.LockList)
		wantNotFound(t, "LinkedBlob(5, LockRead|LockList)", err)
		return nil
	})
}

func testManifests(t *testing.T, db stowage.DB) {
	m := stowage.ManifestRecord{Repo: "r", Digest: dg(10), MediaType: stowage.MediaTypeOCIManifest,
		Size: 123, Subject: dg(9), Created: now}
	refs := []stowage.ManifestRef{{Digest: dg(1), Kind: stowage.RefBlob}, {Digest: dg(2), Kind: stowage.RefBlob}}
	update(t, db, func(tx stowage.Tx) error { return tx.Manifests().PutManifest(m, refs) })
	view(t, db, func(tx stowage.Tx) error {
		got, err := tx.Manifests().GetManifest("r", dg(10))
		if err != nil {
			return err
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("GetManifest = %+v, want %+v", got, m)
		}
		_, err = tx.Manifests().GetManifest("other", dg(10))
		wantNotFound(t, "GetManifest in another repository", err)
		return nil
	})
	// Replacing keeps one row.
	m.Size = 124
	update(t, db, func(tx stowage.Tx) error { return tx.Manifests().PutManifest(m, refs[:1]) })
	update(t, db, func(tx stowage.Tx) error {
		got, err := tx.Manifests().GetManifest("r", dg(10))
		if err != nil || got.Size != 124 {
			t.Errorf("after replace: %+v, %v", got, err)
		}
		if err := tx.Manifests().DeleteManifest("r", dg(10)); err != nil {
			return err
		}
		wantNotFound(t, "DeleteManifest twice", tx.Manifests().DeleteManifest("r", dg(10)))
		_, err = tx.Manifests().GetManifest("r", dg(10))
		wantNotFound(t, "GetManifest after delete", err)
		return nil
	})
}

func testReferrers(t *testing.T, db stowage.DB) {
	subject := dg(100)
	update(t, db, func(tx stowage.Tx) error {
		for i := range 3 {
			m := stowage.ManifestRecord{Repo: "r", Digest: dg(200 + i), MediaType: stowage.MediaTypeOCIManifest,
				Size: 10, Subject: subject, Created: now}
			if err := tx.Manifests().PutManifest(m, nil); err != nil {
				return err
			}
		}
		// Same subject in another repository: not a referrer in "r".
		return tx.Manifests().PutManifest(stowage.ManifestRecord{Repo: "other", Digest: dg(300), MediaType: stowage.MediaTypeOCIManifest,
			Subject: subject, Created: now}, nil)
	})
	view(t, db, func(tx stowage.Tx) error {
		got, err := tx.Manifests().Referrers("r", subject)
		if err != nil {
			return err
		}
		if len(got) != 3 {
			t.Fatalf("Referrers = %d manifests, want 3", len(got))
		}
		for i, m := range got {
			if m.Digest != dg(200+i) || m.Subject != subject {
				t.Errorf("referrer %d = %+v", i, m)
			}
		}
		none, err := tx.Manifests().Referrers("r", dg(999))
		if err != nil || len(none) != 0 {
			t.Errorf("Referrers of an unknown subject = %v, %v", none, err)
		}
		return nil
	})
	view(t, db, func(tx stowage.Tx) error {
		p, ok := tx.(stowage.ReferrersPageTx)
		if !ok {
			return nil // an optional capability
		}
		for _, tc := range []struct {
			after stowage.Digest
			limit int
			want  []stowage.Digest
		}{
			{"", 0, []stowage.Digest{dg(200), dg(201), dg(202)}},
			{"", 2, []stowage.Digest{dg(200), dg(201)}},
			{dg(201), 2, []stowage.Digest{dg(202)}},
			{dg(202), 2, nil},
		} {
			got, err := p.ReferrersPage("r", subject, tc.after, tc.limit)
			if err != nil {
				return err
			}
			var ds []stowage.Digest
			for _, m := range got {
				ds = append(ds, m.Digest)
			}
			if !reflect.DeepEqual(ds, tc.want) {
				t.Errorf("ReferrersPage(after %s, %d) = %v, want %v", tc.after, tc.limit, ds, tc.want)
			}
		}
		return nil
	})
}

func testTags(t *testing.T, db stowage.DB) {
	update(t, db, func(tx stowage.Tx) error {
		for i, tag := range []string{"v2", "latest", "v1", "v10"} {
			if err := tx.Tags().PutTag("r", tag, dg(i%2), now); err != nil {
				return err
			}
		}
		return tx.Tags().PutTag("other", "latest", dg(5), now)
	})
	view(t, db, func(tx stowage.Tx) error {
		all, err := tx.Tags().ListTags("r", "", 0)
		if err != nil {
			return err
		}
		if want := []string{"latest", "v1", "v10", "v2"}; !reflect.DeepEqual(all, want) {
			t.Errorf("ListTags = %v, want %v", all, want)
		}
		page, _ := tx.Tags().ListTags("r", "v1", 1)
		if !reflect.DeepEqual(page, []string{"v10"}) {
			t.Errorf("ListTags after v1, 1 = %v", page)
		}
		d, err := tx.Tags().GetTag("r", "latest")
		if err != nil || d != dg(1) {
			t.Errorf("GetTag(latest) = %s, %v", d, err)
		}
		_, err = tx.Tags().GetTag("r", "nope")
		wantNotFound(t, "GetTag(nope)", err)
		of, _ := tx.Tags().TagsOf("r", dg(0))
		if !reflect.DeepEqual(of, []string{"v1", "v2"}) {
			t.Errorf("TagsOf = %v", of)
		}
		return nil
	})
	update(t, db, func(tx stowage.Tx) error {
		if err := tx.Tags().PutTag("r", "latest", dg(7), now); err != nil { // move
			return err
		}
		if d, _ := tx.Tags().GetTag("r", "latest"); d != dg(7) {
			t.Errorf("moved tag points at %s", d)
		}
		if err := tx.Tags().DeleteTag("r", "latest"); err != nil {
			return err
		}
		wantNotFound(t, "DeleteTag twice", tx.Tags().DeleteTag("r", "latest"))
		return nil
	})
}

// testTagsVersion: every tag change moves the repository's TagsVersion, so
// readers can cache tag data safely; other writes leave it alone.
func testTagsVersion(t *testing.T, db stowage.DB) {
	version := func() int64 {
		var v int64
		view(t, db, func(tx stowage.Tx) error {
			r, err := tx.Repositories().GetRepository("r")
			v = r.TagsVersion
			return err
		})
		return v
	}
	update(t, db, func(tx stowage.Tx) error { return tx.Repositories().CreateRepository("r", now) })
	steps := []struct {
		name    string
		fn      func(tx stowage.Tx) error
		changes bool
	}{
		{"create tag", func(tx stowage.Tx) error { return tx.Tags().PutTag("r", "a", dg(1), now) }, true},
		{"move tag", func(tx stowage.Tx) error { return tx.Tags().PutTag("r", "a", dg(2), now) }, true},
		{"other repository", func(tx stowage.Tx) error { return tx.Tags().PutTag("other", "a", dg(2), now) }, false},
		{"link a blob", func(tx stowage.Tx) error { return tx.Blobs().LinkBlob("r", dg(3), now) }, false},
		{"delete tag", func(tx stowage.Tx) error { return tx.Tags().DeleteTag("r", "a") }, true},
	}
	for _, s := range steps {
		before := version()
		update(t, db, s.fn)
		if changed := version() != before; changed != s.changes {
			t.Errorf("%s: TagsVersion changed = %v, want %v", s.name, changed, s.changes)
		}
	}
	// A repository deleted and created again does not start where the old
	// one was (a cache keyed by the version would take it for the old one).
	seen := map[int64]bool{}
	for i := range 5 {
		update(t, db, func(tx stowage.Tx) error { return tx.Repositories().DeleteRepository("r") })
		update(t, db, func(tx stowage.Tx) error { return tx.Repositories().CreateRepository("r", now) })
		v := version()
		if seen[v] || v == 0 {
			t.Errorf("re-created repository %d starts at TagsVersion %d, as an earlier one did (or 0)", i, v)
		}
		seen[v], seen[v+1], seen[v+2] = true, true, true
	}
}

func testUploads(t *testing.T, db stowage.DB) {
	u := stowage.UploadRecord{ID: "u1", Repo: "r", Started: now, Updated: now}
	update(t, db, func(tx stowage.Tx) error { return tx.Uploads().PutUpload(u) })
	next := u
	next.Size, next.HashState, next.Chunks, next.DataGen, next.Verified = 100, []byte{1, 2, 3}, 1, 3, "sha512:ab"
	update(t, db, func(tx stowage.Tx) error { return tx.Uploads().AdvanceUpload(next, 0) })
	update(t, db, func(tx stowage.Tx) error {
		// A second writer that still thinks the upload is at 0 must lose.
		wantNotFound(t, "AdvanceUpload from a stale size", tx.Uploads().AdvanceUpload(next, 0))
		// So must a writer of another generation (one whose lease was taken over).
		stale := next
		stale.Gen, stale.Size = 1, 200
		wantNotFound(t, "AdvanceUpload from a stale generation", tx.Uploads().AdvanceUpload(stale, 100))
		got, err := tx.Uploads().GetUpload("u1")
		if err != nil || got.Size != 100 || string(got.HashState) != "\x01\x02\x03" || got.Chunks != 1 || got.Repo != "r" ||
			got.Gen != 0 || got.DataGen != 3 || got.Verified != "sha512:ab" {
			t.Errorf("GetUpload = %+v, %v", got, err)
		}
		if err := tx.Uploads().DeleteUpload("u1"); err != nil {
			return err
		}
		_, err = tx.Uploads().GetUpload("u1")
		wantNotFound(t, "GetUpload after delete", err)
		return nil
	})
}

// testLocks: locks are stored per repository, tag and manifest; list locks
// hide names from the listings; every lock change moves TagsVersion.
func testLocks(t *testing.T, db stowage.DB) {
	update(t, db, func(tx stowage.Tx) error {
		for _, r := range []string{"a", "b"} {
			if err := tx.Repositories().CreateRepository(r, now); err != nil {
				return err
			}
		}
		if err := tx.Manifests().PutManifest(stowage.ManifestRecord{Repo: "a", Digest: dg(1), MediaType: stowage.MediaTypeOCIManifest, Created: now}, nil); err != nil {
			return err
		}
		for _, tag := range []string{"t1", "t2"} {
			if err := tx.Tags().PutTag("a", tag, dg(1), now); err != nil {
				return err
			}
		}
		return nil
	})
	version := func() (v int64) {
		view(t, db, func(tx stowage.Tx) error {
			r, err := tx.Repositories().GetRepository("a")
			v = r.TagsVersion
			return err
		})
		return v
	}
	v0 := version()
	update(t, db, func(tx stowage.Tx) error {
		if err := tx.Repositories().SetRepositoryLocks("b", stowage.LockList|stowage.LockDelete); err != nil {
			return err
		}
		if err := tx.Tags().SetTagLocks("a", "t2", stowage.LockList); err != nil {
			return err
		}
		if err := tx.Manifests().SetManifestLocks("a", dg(1), stowage.LockRead); err != nil {
			return err
		}
		wantNotFound(t, "SetTagLocks of a missing tag", tx.Tags().SetTagLocks("a", "nope", stowage.LockList))
		return nil
	})
	if version() == v0 {
		t.Error("lock changes did not move TagsVersion")
	}
	view(t, db, func(tx stowage.Tx) error {
		if got, _ := tx.Repositories().ListRepositories("", 0, false); !reflect.DeepEqual(got, []string{"a"}) {
			t.Errorf("visible repositories = %v, want [a]", got)
		}
		if got, _ := tx.Repositories().ListRepositories("", 0, true); !reflect.DeepEqual(got, []string{"a", "b"}) {
			t.Errorf("all repositories = %v, want [a b]", got)
		}
		if got, _ := tx.Tags().ListTags("a", "", 0); !reflect.DeepEqual(got, []string{"t1"}) {
			t.Errorf("visible tags = %v, want [t1]", got)
		}
		if r, _ := tx.Repositories().GetRepository("b"); r.Locks != stowage.LockList|stowage.LockDelete {
			t.Errorf("repository locks = %v", r.Locks)
		}
		if tr, _ := tx.Tags().GetTagRecord("a", "t2"); tr.Locks != stowage.LockList || tr.Digest != dg(1) {
			t.Errorf("tag record = %+v", tr)
		}
		if m, _ := tx.Manifests().GetManifest("a", dg(1)); m.Locks != stowage.LockRead {
			t.Errorf("manifest locks = %v", m.Locks)
		}
		return nil
	})
}

// testGCQueries: references, leases, grace periods and states decide what
// CollectableBlobs returns.
func testGCQueries(t *testing.T, db stowage.DB) {
	old, mid := now.Add(-3*time.Hour), now.Add(-90*time.Minute)
	update(t, db, func(tx stowage.Tx) error {
		for i, b := range []stowage.BlobRecord{
			{Digest: dg(1), Size: 10, State: stowage.BlobLive, LastUsed: old, UnreferencedSince: old},     // referenced by m
			{Digest: dg(2), Size: 20, State: stowage.BlobLive, LastUsed: old, UnreferencedSince: old},     // garbage
			{Digest: dg(3), Size: 30, State: stowage.BlobLive, LastUsed: now, UnreferencedSince: old},     // leased
			{Digest: dg(4), Size: 40, State: stowage.BlobPending, LastUsed: old, UnreferencedSince: old},  // stale pending: garbage
			{Digest: dg(5), Size: 50, State: stowage.BlobDeleting, LastUsed: old, UnreferencedSince: old}, // already being deleted
			{Digest: dg(6), Size: 60, State: stowage.BlobLive, LastUsed: old, UnreferencedSince: mid},     // in grace for a 2h cutoff
			{Digest: dg(10), Size: 5, State: stowage.BlobLive, LastUsed: old, UnreferencedSince: old},     // the manifest itself
		} {
			b.Created = old
			if err := tx.Blobs().PutBlob(b); err != nil {
				return fmt.Errorf("blob %d: %w", i, err)
			}
		}
		return tx.Manifests().PutManifest(stowage.ManifestRecord{Repo: "r", Digest: dg(10), MediaType: stowage.MediaTypeOCIManifest, Size: 5, Created: now},
			[]stowage.ManifestRef{{Digest: dg(1), Kind: stowage.RefBlob}})
	})
	view(t, db, func(tx stowage.Tx) error {
		for d, want := range map[stowage.Digest]bool{dg(1): true, dg(2): false, dg(10): true} {
			if got, err := tx.Blobs().BlobReferenced(d); err != nil || got != want {
				t.Errorf("BlobReferenced(%s) = %v, %v; want %v", d, got, err, want)
			}
		}
		got, err := tx.Blobs().CollectableBlobs(now.Add(-2*time.Hour), now.Add(-time.Hour), "", 0)
		if err != nil {
			return err
		}
		var ds []stowage.Digest
		for _, b := range got {
			ds = append(ds, b.Digest)
		}
		if want := []stowage.Digest{dg(2), dg(4)}; !reflect.DeepEqual(ds, want) {
			t.Errorf("CollectableBlobs = %v, want %v", ds, want)
		}
		page, _ := tx.Blobs().CollectableBlobs(now.Add(-2*time.Hour), now.Add(-time.Hour), dg(2), 1)
		if len(page) != 1 || page[0].Digest != dg(4) {
			t.Errorf("CollectableBlobs after dg(2), limit 1 = %v", page)
		}
		deleting, _ := tx.Blobs().BlobsInState(stowage.BlobDeleting, "", 0)
		if len(deleting) != 1 || deleting[0].Digest != dg(5) {
			t.Errorf("BlobsInState(deleting) = %v", deleting)
		}
		count, bytes, err := tx.Usage().BlobTotals()
		if err != nil || count != 5 || bytes != 10+20+30+60+5 {
			t.Errorf("BlobTotals = %d, %d, %v; want 5 live blobs, 125 bytes", count, bytes, err)
		}
		return nil
	})
	update(t, db, func(tx stowage.Tx) error {
		if err := tx.Blobs().TouchBlob(dg(2), now); err != nil {
			return err
		}
		if err := tx.Blobs().TouchBlob(dg(2), old); err != nil { // never moves a lease back
			return err
		}
		if err := tx.Blobs().MarkUnreferenced([]stowage.Digest{dg(4)}, now); err != nil {
			return err
		}
		got, _ := tx.Blobs().CollectableBlobs(now.Add(-2*time.Hour), now.Add(-time.Hour), "", 0)
		if len(got) != 0 {
			t.Errorf("after touching and marking: CollectableBlobs = %v, want none", got)
		}
		if err := tx.Blobs().SetBlobState(dg(2), stowage.BlobDeleting); err != nil {
			return err
		}
		if b, _ := tx.Blobs().GetBlob(dg(2)); b.State != stowage.BlobDeleting || !b.LastUsed.Equal(now) {
			t.Errorf("GetBlob after SetBlobState = %+v", b)
		}
		if err := tx.Blobs().LinkBlob("r", dg(2), now); err != nil {
			return err
		}
		if _, err := tx.Blobs().RepositoryBlob("r", dg(2)); !errors.Is(err, stowage.ErrNotFound) {
			t.Errorf("a blob being deleted is visible: %v", err)
		}
		if err := tx.Blobs().DeleteBlob(dg(2)); err != nil {
			return err
		}
		_, err := tx.Blobs().GetBlob(dg(2))
		wantNotFound(t, "GetBlob after DeleteBlob", err)
		return nil
	})
}

func testDeleteRepository(t *testing.T, db stowage.DB) {
	update(t, db, func(tx stowage.Tx) error {
		for _, repo := range []string{"gone", "kept"} {
			if err := tx.Repositories().CreateRepository(repo, now); err != nil {
				return err
			}
			if err := tx.Blobs().PutBlob(stowage.BlobRecord{Digest: dg(1), Size: 1, State: stowage.BlobLive, Created: now}); err != nil {
				return err
			}
			if err := tx.Blobs().LinkBlob(repo, dg(1), now); err != nil {
				return err
			}
			if err := tx.Manifests().PutManifest(stowage.ManifestRecord{Repo: repo, Digest: dg(2), MediaType: stowage.MediaTypeOCIIndex, Created: now},
				[]stowage.ManifestRef{{Digest: dg(3), Kind: stowage.RefManifest}}); err != nil {
				return err
			}
			if err := tx.Tags().PutTag(repo, "t", dg(2), now); err != nil {
				return err
			}
		}
		return tx.Repositories().DeleteRepository("gone")
	})
	view(t, db, func(tx stowage.Tx) error {
		_, err := tx.Repositories().GetRepository("gone")
		wantNotFound(t, "deleted repository", err)
		_, err = tx.Blobs().RepositoryBlob("gone", dg(1))
		wantNotFound(t, "link of a deleted repository", err)
		_, err = tx.Tags().GetTag("gone", "t")
		wantNotFound(t, "tag of a deleted repository", err)
		if ms, _ := tx.Manifests().ListManifests("gone"); len(ms) != 0 {
			t.Errorf("manifests of a deleted repository: %v", ms)
		}
		if ps, _ := tx.Manifests().ManifestParents("gone", dg(3)); len(ps) != 0 {
			t.Errorf("references of a deleted repository: %v", ps)
		}
		if ps, _ := tx.Manifests().ManifestParents("kept", dg(3)); len(ps) != 1 || ps[0] != dg(2) {
			t.Errorf("ManifestParents(kept) = %v", ps)
		}
		if refs, _ := tx.Manifests().ManifestRefs("kept", dg(2)); len(refs) != 1 || refs[0].Kind != stowage.RefManifest {
			t.Errorf("ManifestRefs(kept) = %v", refs)
		}
		if _, err := tx.Blobs().GetBlob(dg(1)); err != nil {
			t.Errorf("deleting a repository deleted a blob row: %v", err)
		}
		return nil
	})
	wantNotFound(t, "DeleteRepository of a missing repository", db.Update(ctx, func(tx stowage.Tx) error { return tx.Repositories().DeleteRepository("never") }))
}

func testStaleUploads(t *testing.T, db stowage.DB) {
	update(t, db, func(tx stowage.Tx) error {
		for i, at := range []time.Time{now.Add(-48 * time.Hour), now.Add(-time.Hour), now} {
			if err := tx.Uploads().PutUpload(stowage.UploadRecord{ID: fmt.Sprintf("u%d", i), Repo: "r", Started: at, Updated: at}); err != nil {
				return err
			}
		}
		return nil
	})
	view(t, db, func(tx stowage.Tx) error {
		got, err := tx.Uploads().StaleUploads(now.Add(-24*time.Hour), 10)
		if err != nil || len(got) != 1 || got[0].ID != "u0" {
			t.Errorf("StaleUploads = %v, %v; want u0", got, err)
		}
		return nil
	})
}

func testRollback(t *testing.T, db stowage.DB) {
	boom := errors.New("boom")
	err := db.Update(ctx, func(tx stowage.Tx) error {
		if err := tx.Tags().PutTag("r", "t", dg(1), now); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update returned %v, want the function's error", err)
	}
	view(t, db, func(tx stowage.Tx) error {
		_, err := tx.Tags().GetTag("r", "t")
		wantNotFound(t, "a write from a failed Update", err)
		return nil
	})
}

// testConcurrent: concurrent read-modify-write transactions never lose an update.
func testConcurrent(t *testing.T, db stowage.DB) {
	const workers, each = 8, 25
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				err := db.Update(ctx, func(tx stowage.Tx) error {
					tags, err := tx.Tags().ListTags("counter", "", 0)
					if err != nil {
						return err
					}
					return tx.Tags().PutTag("counter", fmt.Sprintf("t%04d", len(tags)), dg(w), now)
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	view(t, db, func(tx stowage.Tx) error {
		tags, err := tx.Tags().ListTags("counter", "", 0)
		if err == nil && len(tags) != workers*each {
			t.Errorf("%d tags after %d serialized increments: updates were lost", len(tags), workers*each)
		}
		return err
	})
}

func testViewSeesCommitted(t *testing.T, db stowage.DB) {
	update(t, db, func(tx stowage.Tx) error { return tx.Repositories().CreateRepository("seen", now) })
	view(t, db, func(tx stowage.Tx) error {
		if _, err := tx.Repositories().GetRepository("seen"); err != nil {
			t.Errorf("a committed write is not visible to a later View: %v", err)
		}
		return nil
	})
}

// testHeldBytes: the storage limit counts pending and live blobs once each;
// a repository's quota counts the live blobs linked into it and its
// manifests, each digest once.
func testHeldBytes(t *testing.T, db stowage.DB) {
	update(t, db, func(tx stowage.Tx) error {
		for _, b := range []stowage.BlobRecord{
			{Digest: dg(1), Size: 10, State: stowage.BlobLive},
			{Digest: dg(2), Size: 20, State: stowage.BlobPending},
			{Digest: dg(3), Size: 40, State: stowage.BlobDeleting},
			{Digest: dg(4), Size: 80, State: stowage.BlobLive},
			{Digest: dg(10), Size: 5, State: stowage.BlobLive}, // a manifest of a
		} {
			b.Created, b.LastUsed, b.UnreferencedSince = now, now, now
			if err := tx.Blobs().PutBlob(b); err != nil {
				return err
			}
		}
		for _, l := range []struct {
			repo string
			d    stowage.Digest
		}{{"a", dg(1)}, {"a", dg(2)}, {"a", dg(3)}, {"a", dg(10)}, {"b", dg(1)}, {"b", dg(4)}} {
			if err := tx.Repositories().CreateRepository(l.repo, now); err != nil {
				return err
			}
			if err := tx.Blobs().LinkBlob(l.repo, l.d, now); err != nil {
				return err
			}
		}
		return tx.Manifests().PutManifest(stowage.ManifestRecord{Repo: "a", Digest: dg(10), MediaType: stowage.MediaTypeOCIManifest, Size: 5, Created: now},
			[]stowage.ManifestRef{{Digest: dg(1), Kind: stowage.RefBlob}})
	})
	view(t, db, func(tx stowage.Tx) error {
		if got, err := tx.Usage().HeldBytes(); err != nil || got != 10+20+80+5 {
			t.Errorf("HeldBytes = %d, %v; want 115 (pending and live, not deleting)", got, err)
		}
		return nil
	})
	// Every change of state or size moves the total; touching a lease does not.
	steps := []struct {
		name string
		fn   func(tx stowage.Tx) error
		want int64
	}{
		{"pending becomes live, size known", func(tx stowage.Tx) error {
			return tx.Blobs().PutBlob(stowage.BlobRecord{Digest: dg(2), Size: 25, State: stowage.BlobLive, Created: now, LastUsed: now, UnreferencedSince: now})
		}, 10 + 25 + 80 + 5},
		{"live blob being deleted", func(tx stowage.Tx) error { return tx.Blobs().SetBlobState(dg(4), stowage.BlobDeleting) }, 10 + 25 + 5},
		{"deleting blob removed", func(tx stowage.Tx) error { return tx.Blobs().DeleteBlob(dg(4)) }, 10 + 25 + 5},
		{"live blob removed", func(tx stowage.Tx) error { return tx.Blobs().DeleteBlob(dg(2)) }, 10 + 5},
		{"deleting blob back to live", func(tx stowage.Tx) error { return tx.Blobs().SetBlobState(dg(3), stowage.BlobLive) }, 10 + 40 + 5},
		{"touch", func(tx stowage.Tx) error { return tx.Blobs().TouchBlob(dg(1), now.Add(time.Hour)) }, 10 + 40 + 5},
		{"same row put again", func(tx stowage.Tx) error {
			return tx.Blobs().PutBlob(stowage.BlobRecord{Digest: dg(1), Size: 10, State: stowage.BlobLive, Created: now, LastUsed: now, UnreferencedSince: now})
		}, 10 + 40 + 5},
	}
	for _, st := range steps {
		update(t, db, st.fn)
		view(t, db, func(tx stowage.Tx) error {
			if got, err := tx.Usage().HeldBytes(); err != nil || got != st.want {
				t.Errorf("after %s: HeldBytes = %d, %v; want %d", st.name, got, err, st.want)
			}
			return nil
		})
	}
	update(t, db, func(tx stowage.Tx) error { // dg(4) and its link back; dg(3) stays live
		if err := tx.Blobs().PutBlob(stowage.BlobRecord{Digest: dg(4), Size: 80, State: stowage.BlobLive, Created: now, LastUsed: now, UnreferencedSince: now}); err != nil {
			return err
		}
		return tx.Blobs().LinkBlob("b", dg(4), now)
	})
	view(t, db, func(tx stowage.Tx) error {
		for repo, want := range map[string]int64{"a": 10 + 40 + 5, "b": 10 + 80, "none": 0} {
			if got, err := tx.Usage().RepositoryHeldBytes(repo); err != nil || got != want {
				t.Errorf("RepositoryHeldBytes(%s) = %d, %v; want %d", repo, got, err, want)
			}
		}
		return nil
	})
}

// testRepositoryUpdated: CreateRepository on an existing repository moves
// its updated time only when it is more than a second old (every push
// creates its repository; rewriting the row each time makes it a hot spot
// for concurrent pushes on PostgreSQL), and never its created time.
func testRepositoryUpdated(t *testing.T, db stowage.DB) {
	for _, tc := range []struct {
		at   time.Duration // after the creation
		want time.Duration // updated, after the creation
	}{
		{0, 0},
		{500 * time.Millisecond, 0},
		{1500 * time.Millisecond, 1500 * time.Millisecond},
		{2 * time.Second, 1500 * time.Millisecond},
		{10 * time.Second, 10 * time.Second},
	} {
		update(t, db, func(tx stowage.Tx) error { return tx.Repositories().CreateRepository("upd", now.Add(tc.at)) })
		view(t, db, func(tx stowage.Tx) error {
			r, err := tx.Repositories().GetRepository("upd")
			if err != nil {
				return err
			}
			if !r.Created.Equal(now) || !r.Updated.Equal(now.Add(tc.want)) {
				t.Errorf("after CreateRepository at +%v: created %v updated %v, want %v and +%v", tc.at, r.Created, r.Updated, now, tc.want)
			}
			return nil
		})
	}
}

// testJobLocks: a DB that implements stowage.Locker grants each name to
// one holder at a time, and ends the holder's context on release.
func testJobLocks(t *testing.T, db stowage.DB) {
	l, ok := db.(stowage.Locker)
	if !ok {
		t.Skip("DB does not implement stowage.Locker")
	}
	heldA, releaseA, err := l.TryLock(ctx, "gc")
	if err != nil {
		t.Fatalf("TryLock(gc): %v", err)
	}
	if _, _, err := l.TryLock(ctx, "gc"); !errors.Is(err, stowage.ErrLocked) {
		t.Errorf("second TryLock(gc): err = %v, want ErrLocked", err)
	}
	heldB, releaseB, err := l.TryLock(ctx, "retention")
	if err != nil {
		t.Fatalf("TryLock(retention) while gc is held: %v", err)
	}
	if heldA.Err() != nil || heldB.Err() != nil {
		t.Fatal("a held lock's context ended early")
	}
	releaseA()
	releaseA() // idempotent
	if heldA.Err() == nil {
		t.Error("the context of a released lock did not end")
	}
	if heldB.Err() != nil {
		t.Error("releasing gc ended retention's context")
	}
	held, release, err := l.TryLock(ctx, "gc")
	if err != nil {
		t.Fatalf("TryLock(gc) after release: %v", err)
	}
	release()
	releaseB()
	if held.Err() == nil {
		t.Error("released context still open")
	}
	// Many contenders: exactly one wins each round.
	for round := 0; round < 3; round++ {
		var wg sync.WaitGroup
		var mu sync.Mutex
		var wins int
		var releases []func()
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, rel, err := l.TryLock(ctx, "contended")
				if err == nil {
					mu.Lock()
					wins++
					releases = append(releases, rel)
					mu.Unlock()
				} else if !errors.Is(err, stowage.ErrLocked) {
					t.Errorf("TryLock: %v", err)
				}
			}()
		}
		wg.Wait()
		if wins != 1 {
			t.Errorf("round %d: %d holders of one lock, want 1", round, wins)
		}
		for _, rel := range releases {
			rel()
		}
	}
}

// testUploadWriters: one writer at a time holds an upload session's lease;
// it can renew it; another gets ErrLocked until it is released or runs out
// (by the database's clock). Taking over a lease that ran out while held
// bumps the session's generation; a clean release does not.
func testUploadWriters(t *testing.T, db stowage.DB) {
	update(t, db, func(tx stowage.Tx) error {
		return tx.Uploads().PutUpload(stowage.UploadRecord{ID: "u1", Repo: "r", Started: now, Updated: now})
	})
	gen := func() int64 {
		var u stowage.UploadRecord
		view(t, db, func(tx stowage.Tx) (err error) { u, err = tx.Uploads().GetUpload("u1"); return err })
		return u.Gen
	}
	steps := []struct {
		name    string
		fn      func(tx stowage.Tx) error
		wantErr error
		wantGen int64
	}{
		{"a claims", func(tx stowage.Tx) error { return tx.Uploads().ClaimUpload("u1", "a", time.Hour) }, nil, 0},
		{"b is refused while a's lease runs", func(tx stowage.Tx) error { return tx.Uploads().ClaimUpload("u1", "b", time.Hour) }, stowage.ErrLocked, 0},
		{"a renews, with a lease that has already run out", func(tx stowage.Tx) error { return tx.Uploads().ClaimUpload("u1", "a", -time.Minute) }, nil, 0},
		{"b takes over after a's lease ran out", func(tx stowage.Tx) error { return tx.Uploads().ClaimUpload("u1", "b", time.Hour) }, nil, 1},
		{"a's release does not end b's lease", func(tx stowage.Tx) error { return tx.Uploads().ReleaseUpload("u1", "a") }, nil, 1},
		{"so a is refused", func(tx stowage.Tx) error { return tx.Uploads().ClaimUpload("u1", "a", time.Hour) }, stowage.ErrLocked, 1},
		{"b releases", func(tx stowage.Tx) error { return tx.Uploads().ReleaseUpload("u1", "b") }, nil, 1},
		{"then a claims at once, in the same generation", func(tx stowage.Tx) error { return tx.Uploads().ClaimUpload("u1", "a", time.Hour) }, nil, 1},
		{"no such session", func(tx stowage.Tx) error { return tx.Uploads().ClaimUpload("nope", "a", time.Hour) }, stowage.ErrNotFound, 1},
	}
	for _, st := range steps {
		err := db.Update(ctx, st.fn)
		if !errors.Is(err, st.wantErr) || (st.wantErr == nil) != (err == nil) {
			t.Errorf("%s: err = %v, want %v", st.name, err, st.wantErr)
		}
		if g := gen(); g != st.wantGen {
			t.Errorf("%s: generation %d, want %d", st.name, g, st.wantGen)
		}
	}
	// A session whose writer holds a live lease is never stale.
	view(t, db, func(tx stowage.Tx) error {
		if got, err := tx.Uploads().StaleUploads(now.Add(time.Hour), 10); err != nil || len(got) != 0 {
			t.Errorf("StaleUploads while a writer holds the lease = %v, %v; want none", got, err)
		}
		return nil
	})
	update(t, db, func(tx stowage.Tx) error { return tx.Uploads().ClaimUpload("u1", "a", -time.Minute) })
	view(t, db, func(tx stowage.Tx) error {
		if got, err := tx.Uploads().StaleUploads(now.Add(time.Hour), 10); err != nil || len(got) != 1 {
			t.Errorf("StaleUploads after the lease ran out = %v, %v; want u1", got, err)
		}
		return nil
	})
	// A restarted node ends its own earlier leases, not others'.
	update(t, db, func(tx stowage.Tx) error {
		if err := tx.Uploads().PutUpload(stowage.UploadRecord{ID: "u2", Repo: "r", Started: now, Updated: now}); err != nil {
			return err
		}
		if err := tx.Uploads().ClaimUpload("u1", "node1/x", time.Hour); err != nil {
			return err
		}
		return tx.Uploads().ClaimUpload("u2", "node2/y", time.Hour)
	})
	update(t, db, func(tx stowage.Tx) error {
		n, err := tx.Uploads().ReleaseUploadWriters("node1/")
		if err != nil || n != 1 {
			t.Errorf("ReleaseUploadWriters(node1/) = %d, %v; want 1", n, err)
		}
		if err := tx.Uploads().ClaimUpload("u1", "node3/z", time.Hour); err != nil {
			t.Errorf("claim after node1's leases were released: %v", err)
		}
		if err := tx.Uploads().ClaimUpload("u2", "node3/z", time.Hour); !errors.Is(err, stowage.ErrLocked) {
			t.Errorf("claim of node2's session: %v, want ErrLocked", err)
		}
		n, err = tx.Uploads().ReleaseUploadWriters("")
		if err != nil || n != 2 {
			t.Errorf("ReleaseUploadWriters(\"\") = %d, %v; want 2", n, err)
		}
		return nil
	})
	// A claim leaves the session's progress alone.
	view(t, db, func(tx stowage.Tx) error {
		u, err := tx.Uploads().GetUpload("u1")
		if err != nil || u.Size != 0 || u.Repo != "r" {
			t.Errorf("GetUpload after claims = %+v, %v", u, err)
		}
		return nil
	})
}

// testRepairQueue: the mirror's repair queue (storage/mirror.RepairQueue).
func testRepairQueue(t *testing.T, db stowage.DB) {
	q, ok := db.(mirror.RepairQueue)
	if !ok {
		t.Fatalf("%T does not implement mirror.RepairQueue", db)
	}
	type got struct {
		key     string
		present bool
		seq     int64
	}
	due := func(name string, at time.Time, limit int) []got {
		t.Helper()
		var out []got
		if err := q.DueRepairs(ctx, name, at, at.Add(time.Minute), limit, func(k string, p bool, seq int64) { out = append(out, got{k, p, seq}) }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	keys := func(g []got) []string {
		var out []string
		for _, x := range g {
			out = append(out, x.key)
		}
		return out
	}
	pending := func(name string) int {
		t.Helper()
		n, err := q.PendingRepairs(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, r := range []struct {
		mirror, key string
		present     bool
		due         time.Time
	}{
		{"m1", "blobs/b", true, now},
		{"m1", "blobs/a", false, now.Add(-time.Second)},
		{"m1", "blobs/later", true, now.Add(time.Hour)},
		{"m2", "blobs/a", true, now},
	} {
		if err := q.AddRepair(ctx, r.mirror, r.key, r.present, r.due); err != nil {
			t.Fatal(err)
		}
	}
	if n := pending("m1"); n != 3 {
		t.Errorf("PendingRepairs(m1) = %d, want 3", n)
	}
	// Due: earliest first, only this mirror's, only what is due, limited.
	first := due("m1", now, 1)
	if len(first) != 1 || first[0].key != "blobs/a" || first[0].present {
		t.Fatalf("first due = %+v, want blobs/a (absent)", first)
	}
	rest := due("m1", now, 10)
	if len(rest) != 1 || rest[0].key != "blobs/b" || !rest[0].present {
		t.Fatalf("then due = %+v, want only blobs/b: a claimed repair waits for its retry time", rest)
	}
	if g := due("m1", now.Add(30*time.Second), 10); len(g) != 0 {
		t.Errorf("before the retry time: %v due", keys(g))
	}
	// After the retry time, unfinished claims are due again.
	if g := keys(due("m1", now.Add(time.Minute), 10)); !reflect.DeepEqual(g, []string{"blobs/a", "blobs/b"}) {
		t.Errorf("after the retry time: %v, want [blobs/a blobs/b]", g)
	}
	// Done removes a repair, unless it was queued again since the claim.
	if err := q.RepairDone(ctx, "m1", "blobs/a", first[0].seq); err != nil {
		t.Fatal(err)
	}
	if err := q.AddRepair(ctx, "m1", "blobs/b", false, now); err != nil {
		t.Fatal(err)
	}
	if err := q.RepairDone(ctx, "m1", "blobs/b", rest[0].seq); err != nil {
		t.Fatal(err)
	}
	if n := pending("m1"); n != 2 {
		t.Errorf("PendingRepairs(m1) after one done = %d, want 2 (blobs/b was queued again)", n)
	}
	again := due("m1", now.Add(2*time.Minute), 10)
	if len(again) != 1 || again[0].key != "blobs/b" || again[0].present || again[0].seq == rest[0].seq {
		t.Fatalf("due after requeue = %+v, want blobs/b absent with a new seq", again)
	}
	if err := q.RepairDone(ctx, "m1", "blobs/b", again[0].seq); err != nil {
		t.Fatal(err)
	}
	if g := keys(due("m1", now.Add(2*time.Hour), 10)); !reflect.DeepEqual(g, []string{"blobs/later"}) {
		t.Errorf("finally due: %v, want [blobs/later]", g)
	}
	if n := pending("m2"); n != 1 {
		t.Errorf("PendingRepairs(m2) = %d, want 1", n)
	}
	// Two workers claiming at once never get the same repair.
	for i := range 40 {
		if err := q.AddRepair(ctx, "m3", fmt.Sprintf("k%02d", i), true, now); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				var ks []string
				if err := q.DueRepairs(ctx, "m3", now, now.Add(time.Hour), 3, func(k string, _ bool, _ int64) { ks = append(ks, k) }); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, k := range ks {
					seen[k]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != 40 {
		t.Errorf("concurrent claims took %d of 40 repairs", len(seen))
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("repair %s claimed %d times", k, n)
		}
	}
}
