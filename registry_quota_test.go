package stowage_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/storage/mem"
)

type quotaEnv struct {
	reg   *stowage.Registry
	store *mem.Backend
	ctx   context.Context
}

func newQuotaEnv(t *testing.T, limit int64) *quotaEnv {
	t.Helper()
	db, err := sqlite.Open(context.Background(), ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	store := mem.New()
	return &quotaEnv{reg: stowage.NewRegistry(db, store, stowage.Options{StorageLimit: limit}), store: store, ctx: context.Background()}
}

func randomBytes(n int) ([]byte, stowage.Digest) {
	b := make([]byte, n)
	rand.Read(b)
	return b, stowage.Digest("sha256:" + sha(b))
}

func (e *quotaEnv) put(repo string, b []byte) error {
	d := stowage.Digest("sha256:" + sha(b))
	_, err := e.reg.PutBlob(e.ctx, repo, d, bytes.NewReader(b), int64(len(b)))
	return err
}

func (e *quotaEnv) used(t *testing.T, repo string) int64 {
	t.Helper()
	q, err := e.reg.Quotas(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if repo == "" {
		return q.Registry.UsedBytes
	}
	for _, r := range q.Repositories {
		if r.Repository == repo {
			return r.UsedBytes
		}
	}
	t.Fatalf("no quota for %s", repo)
	return 0
}

func wantDenied(t *testing.T, what string, err error, mention string) {
	t.Helper()
	var se *stowage.Error
	if !errors.As(err, &se) || se.Code != stowage.CodeDenied {
		t.Fatalf("%s: err = %v, want DENIED", what, err)
	}
	if !strings.Contains(se.Message, mention) {
		t.Errorf("%s: message %q does not mention %q", what, se.Message, mention)
	}
}

// The registry's limit counts each digest once: a layer already stored is
// free in another repository; a new one that does not fit is refused before
// a byte of it is stored.
func TestStorageLimitIsDeduplicated(t *testing.T) {
	e := newQuotaEnv(t, 1000)
	a, _ := randomBytes(600)
	if err := e.put("one", a); err != nil {
		t.Fatal(err)
	}
	if err := e.put("two", a); err != nil {
		t.Fatalf("the same 600 bytes in another repository: %v (a stored layer costs nothing again)", err)
	}
	if got := e.used(t, ""); got != 600 {
		t.Errorf("used = %d, want 600", got)
	}
	b, bd := randomBytes(500)
	wantDenied(t, "500 more bytes over a 1000-byte limit", e.put("two", b), "storage limit is 1000 B with 600 B used")
	if _, err := e.store.Stat(e.ctx, stowage.BlobKey(bd)); err == nil {
		t.Error("the refused blob's object was stored")
	}
	if got := e.used(t, ""); got != 600 {
		t.Errorf("used after the refusal = %d, want 600", got)
	}
	c, _ := randomBytes(400)
	if err := e.put("two", c); err != nil {
		t.Fatalf("400 bytes that fit exactly: %v", err)
	}
}

// Repository quotas count what the repository links, each digest once:
// pushing or mounting a layer it already has is free, one from elsewhere
// costs its size.
func TestRepositoryQuota(t *testing.T) {
	e := newQuotaEnv(t, 0)
	shared, sd := randomBytes(300)
	if err := e.put("other", shared); err != nil {
		t.Fatal(err)
	}
	if err := e.reg.SetQuota(e.ctx, "team/app", 500); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := e.reg.MountBlob(e.ctx, "team/app", "other", sd); err != nil || !ok {
		t.Fatalf("mount 300 bytes under a 500-byte quota: %v, %v", ok, err)
	}
	if err := e.put("team/app", shared); err != nil {
		t.Fatalf("pushing a layer the repository holds again: %v", err)
	}
	big, _ := randomBytes(201)
	wantDenied(t, "201 bytes over a 500-byte quota with 300 used", e.put("team/app", big), "quota of repository team/app")
	other, od := randomBytes(250)
	if err := e.put("elsewhere", other); err != nil {
		t.Fatal(err)
	}
	_, _, err := e.reg.MountBlob(e.ctx, "team/app", "elsewhere", od)
	wantDenied(t, "mounting 250 bytes over the quota", err, "quota of repository team/app")
	if got := e.used(t, "team/app"); got != 300 {
		t.Errorf("team/app used = %d, want 300", got)
	}
	if err := e.put("unlimited", big); err != nil {
		t.Errorf("a repository without quota: %v", err)
	}
	if err := e.reg.SetQuota(e.ctx, "team/app", 0); err != nil {
		t.Fatal(err)
	}
	if err := e.put("team/app", big); err != nil {
		t.Errorf("after removing the quota: %v", err)
	}
}

// A chunked upload is stopped at the first chunk that would pass the
// limit, and its data is dropped.
func TestChunkedUploadStoppedAtLimit(t *testing.T) {
	e := newQuotaEnv(t, 1000)
	u, err := e.reg.StartUpload(e.ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	chunk, _ := randomBytes(600)
	if _, err := e.reg.WriteUpload(e.ctx, "r", u.ID, 0, 600, bytes.NewReader(chunk)); err != nil {
		t.Fatal(err)
	}
	_, err = e.reg.WriteUpload(e.ctx, "r", u.ID, 600, 600, bytes.NewReader(chunk))
	wantDenied(t, "a second 600-byte chunk over 1000", err, "storage limit")
	if _, err := e.reg.GetUpload(e.ctx, "r", u.ID); stowage.ErrorCodeOf(err) != stowage.CodeBlobUploadUnknown {
		t.Errorf("the refused upload is still open: %v", err)
	}
	// Unknown length: checked after the bytes came, and dropped.
	u, _ = e.reg.StartUpload(e.ctx, "r")
	big, _ := randomBytes(1200)
	_, err = e.reg.WriteUpload(e.ctx, "r", u.ID, 0, -1, bytes.NewReader(big))
	wantDenied(t, "a 1200-byte chunk of unknown length", err, "storage limit")
	var keys []string
	err = e.store.List(e.ctx, stowage.UploadPrefix(u.ID), func(o stowage.ObjectInfo) error {
		keys = append(keys, o.Key)
		return nil
	})
	if err != nil || len(keys) != 0 {
		t.Errorf("upload data left behind: %v, %v", keys, err)
	}
}

// Concurrent pushes cannot overshoot together: each reservation sees the
// others' pending bytes.
func TestStorageLimitUnderConcurrency(t *testing.T) {
	const limit, size, pushers = 10_000, 1000, 25
	e := newQuotaEnv(t, limit)
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, denied := 0, 0
	for i := range pushers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, _ := randomBytes(size)
			err := e.put("r"+string(rune('a'+i%5)), b)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case stowage.ErrorCodeOf(err) == stowage.CodeDenied:
				denied++
			default:
				t.Errorf("push: %v", err)
			}
		}()
	}
	wg.Wait()
	if ok != limit/size || denied != pushers-limit/size {
		t.Errorf("%d pushes stored, %d denied; want %d and %d", ok, denied, limit/size, pushers-limit/size)
	}
	if got := e.used(t, ""); got != limit {
		t.Errorf("used = %d, want exactly the limit %d", got, limit)
	}
}

// Catalog honours a listing filter (access control's), paging past the
// repositories it hides.
func TestCatalogFilter(t *testing.T) {
	e := newQuotaEnv(t, 0)
	var want []string
	for i := range 30 {
		name := "b/" + string(rune('a'+i%26)) + strings.Repeat("x", i/26)
		if i%3 == 0 {
			name = "a/" + name[2:]
			want = append(want, name)
		}
		b, _ := randomBytes(10)
		if err := e.put(name, b); err != nil {
			t.Fatal(err)
		}
	}
	ctx := stowage.WithListFilter(e.ctx, func(repo string) bool { return strings.HasPrefix(repo, "a/") })
	var got []string
	last := ""
	for range 20 {
		page, err := e.reg.Catalog(ctx, last, 3)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, page...)
		if len(page) < 3 {
			break
		}
		last = page[len(page)-1]
	}
	if strings.Join(got, " ") != strings.Join(sortedCopy(want), " ") {
		t.Errorf("filtered catalog = %v, want %v", got, sortedCopy(want))
	}
	all, err := e.reg.Catalog(ctx, "", -1) // no page size: everything visible
	if err != nil || strings.Join(all, " ") != strings.Join(sortedCopy(want), " ") {
		t.Errorf("filtered catalog without a page size = %v, %v; want %v", all, err, sortedCopy(want))
	}
}

func sortedCopy(s []string) []string { return slices.Sorted(slices.Values(s)) }
