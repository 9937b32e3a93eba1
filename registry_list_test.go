package stowage_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/stowage/stowage"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/storage/mem"
)

// countingDB records the limit of every listing query the engine runs.
type countingDB struct {
	stowage.DB
	mu     sync.Mutex
	limits map[string][]int // query -> limits asked for (0 = everything)
}

func (c *countingDB) record(q string, limit int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.limits[q] = append(c.limits[q], limit)
}

func (c *countingDB) View(ctx context.Context, fn func(stowage.Tx) error) error {
	return c.DB.View(ctx, func(tx stowage.Tx) error { return fn(&countingTx{tx, c}) })
}

func (c *countingDB) Update(ctx context.Context, fn func(stowage.Tx) error) error {
	return c.DB.Update(ctx, func(tx stowage.Tx) error { return fn(&countingTx{tx, c}) })
}

type countingTx struct {
	stowage.Tx
	c *countingDB
}

func (t *countingTx) Tags() stowage.TagTx { return countingTags{t.Tx.Tags(), t.c} }
func (t *countingTx) Repositories() stowage.RepositoryTx {
	return countingRepos{t.Tx.Repositories(), t.c}
}
func (t *countingTx) Manifests() stowage.ManifestTx { return countingManifests{t.Tx.Manifests(), t.c} }

type countingTags struct {
	stowage.TagTx
	c *countingDB
}

func (t countingTags) ListTags(repo, after string, limit int) ([]string, error) {
	t.c.record("ListTags", limit)
	return t.TagTx.ListTags(repo, after, limit)
}

type countingRepos struct {
	stowage.RepositoryTx
	c *countingDB
}

func (t countingRepos) ListRepositories(after string, limit int, hidden bool) ([]string, error) {
	t.c.record("ListRepositories", limit)
	return t.RepositoryTx.ListRepositories(after, limit, hidden)
}

type countingManifests struct {
	stowage.ManifestTx
	c *countingDB
}

func (t countingManifests) Referrers(repo string, subject stowage.Digest) ([]stowage.ManifestRecord, error) {
	t.c.record("Referrers", 0)
	return t.ManifestTx.Referrers(repo, subject)
}

func (t countingManifests) ReferrersPage(repo string, subject stowage.Digest, after stowage.Digest, limit int) ([]stowage.ManifestRecord, error) {
	t.c.record("Referrers", limit)
	return t.ManifestTx.(stowage.ReferrersPageTx).ReferrersPage(repo, subject, after, limit)
}

var now0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func dgst(i int) stowage.Digest { return stowage.Digest(fmt.Sprintf("sha256:%064x", i)) }

// TestListingsReadInPages: a listing without a page size (all tags, the
// whole catalog, all referrers) reads the database in pages of
// ListPageSize, not in one query (on SQLite a 1M-tag list was one string),
// and returns the same list as before.
func TestListingsReadInPages(t *testing.T) {
	const nTags, nRepos, nReferrers = 20_000, 2_500, 2_500
	ctx := context.Background()
	db, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	subject := dgst(1 << 30)
	var wantTags, wantRepos []string
	var wantRefs []stowage.Digest
	store := mem.New()
	err = db.Update(ctx, func(tx stowage.Tx) error {
		if err := tx.Repositories().CreateRepository("big", now0); err != nil {
			return err
		}
		wantRepos = append(wantRepos, "big")
		for i := range nTags {
			tag := fmt.Sprintf("t%05d", i)
			if err := tx.Tags().PutTag("big", tag, dgst(i%7), now0); err != nil {
				return err
			}
			wantTags = append(wantTags, tag)
		}
		for i := range nRepos {
			name := fmt.Sprintf("repo/%05d", i)
			if err := tx.Repositories().CreateRepository(name, now0); err != nil {
				return err
			}
			wantRepos = append(wantRepos, name)
		}
		// Referrers are described from their stored manifests.
		for i := range nReferrers {
			body := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"artifactType":"application/sig",`+
				`"config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},`+
				`"layers":[],"subject":{"mediaType":%q,"digest":%q,"size":100},"annotations":{"n":"%d"}}`,
				stowage.MediaTypeOCIManifest, stowage.MediaTypeOCIManifest, subject, i))
			m := stowage.ManifestRecord{Repo: "big", Digest: digest.FromBytes(body), MediaType: stowage.MediaTypeOCIManifest,
				Size: int64(len(body)), Subject: subject, Created: now0}
			if err := store.Put(ctx, stowage.BlobKey(m.Digest), bytes.NewReader(body), m.Size); err != nil {
				return err
			}
			if err := tx.Manifests().PutManifest(m, nil); err != nil {
				return err
			}
			wantRefs = append(wantRefs, m.Digest)
		}
		slices.Sort(wantRefs)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(wantRepos)

	for _, tc := range []struct {
		name  string
		query string
		pages int // at least
		list  func(reg *stowage.Registry) ([]string, error)
		want  []string
	}{
		{"all tags", "ListTags", nTags / stowage.ListPageSize, func(reg *stowage.Registry) ([]string, error) {
			return reg.ListTags(ctx, "big", "", -1)
		}, wantTags},
		{"tags after one", "ListTags", (nTags - 10) / stowage.ListPageSize, func(reg *stowage.Registry) ([]string, error) {
			return reg.ListTags(ctx, "big", "t00009", 0)
		}, wantTags[10:]},
		{"catalog", "ListRepositories", nRepos / stowage.ListPageSize, func(reg *stowage.Registry) ([]string, error) {
			return reg.Catalog(ctx, "", 0)
		}, wantRepos},
		{"filtered catalog", "ListRepositories", nRepos / stowage.ListPageSize, func(reg *stowage.Registry) ([]string, error) {
			return reg.Catalog(stowage.WithListFilter(ctx, func(string) bool { return true }), "", -1)
		}, wantRepos},
		{"referrers", "Referrers", nReferrers / stowage.ListPageSize, func(reg *stowage.Registry) ([]string, error) {
			descs, err := reg.Referrers(ctx, "big", subject, "")
			var ds []string
			for _, d := range descs {
				ds = append(ds, string(d.Digest))
			}
			return ds, err
		}, func() []string {
			var s []string
			for _, d := range wantRefs {
				s = append(s, string(d))
			}
			return s
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cdb := &countingDB{DB: db, limits: map[string][]int{}}
			reg := stowage.NewRegistry(cdb, store, stowage.Options{})
			got, err := tc.list(reg)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %d items (%s…), want %d (%s…)", len(got), strings.Join(got[:min(3, len(got))], " "),
					len(tc.want), strings.Join(tc.want[:min(3, len(tc.want))], " "))
			}
			limits := cdb.limits[tc.query]
			if len(limits) < tc.pages {
				t.Errorf("%d %s queries, want at least %d pages", len(limits), tc.query, tc.pages)
			}
			for _, l := range limits {
				if l <= 0 || l > stowage.ListPageSize {
					t.Errorf("%s queried with limit %d, want pages of at most %d (limits %v)", tc.query, l, stowage.ListPageSize, limits)
					break
				}
			}
		})
	}
}

// TestFilteredCatalogWithoutPageSize: without a page size (n <= 0) the
// catalog under a listing filter is the unfiltered catalog filtered (it
// once returned nothing for n = 0, while the unfiltered one returned
// everything), and with n it is its first n names.
func TestFilteredCatalogWithoutPageSize(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	err = db.Update(ctx, func(tx stowage.Tx) error {
		for i := range 2*stowage.ListPageSize + 7 {
			if err := tx.Repositories().CreateRepository(fmt.Sprintf("team-%d/app%05d", i%3, i), now0); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	reg := stowage.NewRegistry(db, mem.New(), stowage.Options{})
	all, err := reg.Catalog(ctx, "", 0)
	if err != nil || len(all) != 2*stowage.ListPageSize+7 {
		t.Fatalf("unfiltered catalog: %d names, %v", len(all), err)
	}
	for _, f := range []struct {
		name string
		keep func(string) bool
	}{
		{"everything", func(string) bool { return true }},
		{"one team", func(s string) bool { return strings.HasPrefix(s, "team-1/") }},
		{"nothing", func(string) bool { return false }},
	} {
		want := slices.DeleteFunc(slices.Clone(all), func(s string) bool { return !f.keep(s) })
		for _, n := range []int{0, -1, 1, 5, stowage.ListPageSize + 1, 10 * stowage.ListPageSize} {
			t.Run(fmt.Sprintf("%s n=%d", f.name, n), func(t *testing.T) {
				got, err := reg.Catalog(stowage.WithListFilter(ctx, f.keep), "", n)
				if err != nil {
					t.Fatal(err)
				}
				w := want
				if n > 0 && len(w) > n {
					w = w[:n]
				}
				if !slices.Equal(got, w) {
					t.Errorf("filtered catalog: %d names, want %d", len(got), len(w))
				}
			})
		}
	}
}
