package gc

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/meta/postgres"
	"github.com/stowage/stowage/meta/postgres/pgtest"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/storage/fs"
	"github.com/stowage/stowage/storage/mem"
)

func sha(b []byte) stowage.Digest { return stowage.Digest(fmt.Sprintf("sha256:%x", sha256.Sum256(b))) }

// countingDB counts the transactions run through it; beforeUpdate, if
// set, runs (once) before the next write transaction begins.
type countingDB struct {
	stowage.DB
	txs          atomic.Int64
	beforeUpdate atomic.Pointer[func()]
}

func (c *countingDB) View(ctx context.Context, fn func(stowage.Tx) error) error {
	c.txs.Add(1)
	return c.DB.View(ctx, fn)
}

func (c *countingDB) Update(ctx context.Context, fn func(stowage.Tx) error) error {
	c.txs.Add(1)
	if f := c.beforeUpdate.Swap(nil); f != nil {
		(*f)()
	}
	return c.DB.Update(ctx, fn)
}

// hookedList calls during(i, key) after the listing reported its ith
// object (from 1) under blobs/, before the next one.
type hookedList struct {
	stowage.Backend
	during func(i int, key string)
}

func (h *hookedList) List(ctx context.Context, prefix string, fn func(stowage.ObjectInfo) error) error {
	i := 0
	return h.Backend.List(ctx, prefix, func(oi stowage.ObjectInfo) error {
		err := fn(oi)
		if prefix == "blobs/" && h.during != nil {
			i++
			h.during(i, oi.Key)
		}
		return err
	})
}

// sweepFixture is a registry whose storage holds n blob objects, all old
// enough for the sweep (the registry's lease is 1h); those whose position
// in key order orphan picks have no row, the others a live row that step 2
// does not collect, so that only the sweep looks at them. ds are the
// objects' digests in key order.
type sweepFixture struct {
	reg   *stowage.Registry
	db    *countingDB
	store *hookedList
	ds    []stowage.Digest
	data  map[stowage.Digest][]byte
}

func newSweepFixture(t *testing.T, dbKind, backend string, n int, orphan func(i int) bool) *sweepFixture {
	t.Helper()
	ctx := context.Background()
	var db stowage.DB
	var err error
	if dbKind == "postgres" {
		db, err = postgres.Open(ctx, pgtest.Schema(t, "gcsweep"), postgres.Options{})
	} else {
		db, err = sqlite.Open(ctx, filepath.Join(t.TempDir(), "stowage.db"))
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	var inner stowage.Backend
	var root string
	switch backend {
	case "fs":
		root = t.TempDir()
		b, err := fs.New(root)
		if err != nil {
			t.Fatal(err)
		}
		b.NoSync = true
		inner = b
	default:
		inner = mem.New()
	}
	f := &sweepFixture{db: &countingDB{DB: db}, store: &hookedList{Backend: inner}, data: map[stowage.Digest][]byte{}}
	for i := range n {
		body := []byte(fmt.Sprintf("object %d", i))
		d := sha(body)
		f.ds = append(f.ds, d)
		f.data[d] = body
	}
	slices.Sort(f.ds) // key order (one algorithm): fs lists in it
	now := time.Now()
	err = db.Update(ctx, func(tx stowage.Tx) error {
		for i, d := range f.ds {
			if orphan(i) {
				continue
			}
			// Unreferenced since tomorrow: step 2 leaves them to the sweep.
			if err := tx.Blobs().PutBlob(stowage.BlobRecord{Digest: d, Size: int64(len(f.data[d])), Created: now,
				State: stowage.BlobLive, LastUsed: now, UnreferencedSince: now.Add(24 * time.Hour)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range f.ds {
		if err := inner.Put(ctx, stowage.BlobKey(d), bytes.NewReader(f.data[d]), int64(len(f.data[d]))); err != nil {
			t.Fatal(err)
		}
	}
	// Old enough: written 2 hours ago (fs), or the registry's clock 2
	// hours ahead (mem stamps objects with the real time).
	clock := func() time.Time { return time.Now() }
	if root != "" {
		past := now.Add(-2 * time.Hour)
		for _, d := range f.ds {
			if err := os.Chtimes(filepath.Join(root, filepath.FromSlash(stowage.BlobKey(d))), past, past); err != nil {
				t.Fatal(err)
			}
		}
	} else {
		clock = func() time.Time { return time.Now().Add(2 * time.Hour) }
	}
	f.reg = stowage.NewRegistry(f.db, f.store, stowage.Options{Now: clock})
	return f
}

// stored reports which of f.ds have an object.
func (f *sweepFixture) stored(t *testing.T) map[stowage.Digest]bool {
	t.Helper()
	out := map[stowage.Digest]bool{}
	for _, d := range f.ds {
		_, err := f.store.Stat(context.Background(), stowage.BlobKey(d))
		if err != nil && !stowage.IsNotExist(err) {
			t.Fatal(err)
		}
		out[d] = err == nil
	}
	return out
}

// TestSweepPages: the orphan sweep checks the listing a page at a time;
// page boundaries fall between an object without a row and one with, in
// both orders, and every orphan, and nothing else, is deleted, on a
// backend that lists in key order (fs) and one that lists in any order
// (mem), on SQLite and PostgreSQL (with STOWAGE_TEST_POSTGRES). It takes
// a bounded number of transactions per page, not one per object.
func TestSweepPages(t *testing.T) {
	n := 2*sweepPage + 3
	edge := map[int]bool{sweepPage - 1: false, sweepPage: true, 2*sweepPage - 1: true, 2 * sweepPage: false, n - 1: true}
	orphan := func(i int) bool {
		if o, ok := edge[i]; ok {
			return o
		}
		return i%3 == 0
	}
	for _, tc := range []struct{ db, backend string }{{"sqlite", "fs"}, {"sqlite", "mem"}, {"postgres", "fs"}} {
		t.Run(tc.db+"/"+tc.backend, func(t *testing.T) {
			f := newSweepFixture(t, tc.db, tc.backend, n, orphan)
			var want int64
			var wantBytes int64
			for i, d := range f.ds {
				if orphan(i) {
					want++
					wantBytes += int64(len(f.data[d]))
				}
			}
			for _, dry := range []bool{true, false} {
				before := f.db.txs.Load()
				rep, err := New(f.reg).Collect(context.Background(), Options{DryRun: dry})
				if err != nil {
					t.Fatal(err)
				}
				if rep.OrphansDeleted != want || rep.OrphanBytes != wantBytes || rep.BlobsDeleted != 0 {
					t.Errorf("dry run %v: %d orphans (%d bytes), %d blobs; want %d orphans (%d bytes), no blob",
						dry, rep.OrphansDeleted, rep.OrphanBytes, rep.BlobsDeleted, want, wantBytes)
				}
				// Per page: a check, a claim and the rows' deletion; plus
				// the collection's own few.
				if txs, most := f.db.txs.Load()-before, int64(3*(n/sweepPage+1)+20); txs > most {
					t.Errorf("dry run %v: %d transactions for %d objects, want at most %d (a page at a time)", dry, txs, n, most)
				}
				stored := f.stored(t)
				for i, d := range f.ds {
					if want := dry || !orphan(i); stored[d] != want {
						t.Errorf("dry run %v: object %d (orphan %v) stored = %v, want %v", dry, i, orphan(i), stored[d], want)
					}
				}
			}
			// The claimed rows are gone with their objects.
			err := f.db.View(context.Background(), func(tx stowage.Tx) error {
				got, err := tx.Blobs().ExistingBlobs(f.ds)
				if err != nil {
					return err
				}
				if len(got) != n-int(want) {
					t.Errorf("%d rows left, want %d", len(got), n-int(want))
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestSweepDuringPushes: what is written while the sweep walks storage is
// never deleted: an object written after the sweep began (a push in
// flight, whose row may come later), and an orphan whose digest a push
// stores after the walk listed it and before its page was checked, after
// its page was checked and before it was claimed, or after an earlier page
// was checked and before the walk reaches it.
func TestSweepDuringPushes(t *testing.T) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) { sweepDuringPushes(t, db) })
	}
}

func sweepDuringPushes(t *testing.T, db string) {
	ctx := context.Background()
	n := 2*sweepPage + 10
	orphan := func(i int) bool { return i%2 == 0 }
	f := newSweepFixture(t, db, "fs", n, orphan)
	// Digests pushed during the walk: the orphan listed first (its page is
	// checked after the push) and one in the last page (its page checked
	// after the push, the first page before it).
	// And one of the first page's orphans, after the page's check found no
	// row and before the claim (the first write transaction after the
	// walk began).
	pushedEarly, pushedBetween, pushedLate := f.ds[0], f.ds[4], f.ds[2*sweepPage+2]
	fresh := []byte("written during the sweep, its row not there yet")
	var pushErrs []error
	push := func(d stowage.Digest) {
		_, err := f.reg.PutBlob(ctx, "app", d, bytes.NewReader(f.data[d]), int64(len(f.data[d])))
		pushErrs = append(pushErrs, err)
	}
	f.store.during = func(i int, key string) {
		switch i {
		case 1:
			push(pushedEarly)
			// No row: the object of a push between its write and its
			// record (or a crash there), too young to be an orphan.
			if err := f.store.Backend.Put(ctx, stowage.BlobKey(sha(fresh)), bytes.NewReader(fresh), int64(len(fresh))); err != nil {
				pushErrs = append(pushErrs, err)
			}
			between := func() { push(pushedBetween) }
			f.db.beforeUpdate.Store(&between)
		case sweepPage + 1:
			if f.db.beforeUpdate.Load() != nil {
				pushErrs = append(pushErrs, fmt.Errorf("the first page's orphans were not claimed"))
			}
			push(pushedLate)
		}
	}
	rep, err := New(f.reg).Collect(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range pushErrs {
		if err != nil {
			t.Fatalf("push during the sweep: %v", err)
		}
	}
	var want int64
	for i := range f.ds {
		if orphan(i) {
			want++
		}
	}
	want -= 3 // the three pushed meanwhile
	if rep.OrphansDeleted != want {
		t.Errorf("%d orphans deleted, want %d", rep.OrphansDeleted, want)
	}
	for _, d := range []stowage.Digest{pushedEarly, pushedBetween, pushedLate} {
		r, _, err := f.reg.OpenBlob(ctx, "app", d, 0)
		if err != nil {
			t.Fatalf("blob pushed during the sweep: %v", err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(got, f.data[d]) {
			t.Errorf("blob pushed during the sweep reads %q, %v", got, err)
		}
	}
	if _, err := f.store.Stat(ctx, stowage.BlobKey(sha(fresh))); err != nil {
		t.Errorf("object written during the sweep: %v", err)
	}
}

// TestSweepEvery: with SweepEvery, a collection walks storage only when
// the last full sweep (recorded in the database) is that old: the first
// run sweeps, the next within the interval leaves an orphan alone and
// says when the last sweep was, one after the interval (or with
// SweepEvery 0, as `stowage gc` runs) sweeps again. A dry run records
// nothing.
func TestSweepEvery(t *testing.T) {
	orphan := func(i int) bool { return i == 1 }
	f := newSweepFixture(t, "sqlite", "mem", 3, orphan)
	ctx := context.Background()
	var now atomic.Pointer[time.Time]
	t0 := time.Now().Add(2 * time.Hour) // the fixture's clock: its objects old enough
	now.Store(&t0)
	reg := stowage.NewRegistry(f.db, f.store, stowage.Options{Now: func() time.Time { return *now.Load() }})
	at := func(d time.Duration) { t := t0.Add(d); now.Store(&t) }
	run := func(step string, opts Options, swept bool, orphans int64) Report {
		t.Helper()
		rep, err := New(reg).Collect(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Swept != swept || rep.OrphansDeleted != orphans || swept == (rep.LastSweep != "") {
			t.Errorf("%s: swept %v, %d orphans, last sweep %q; want swept %v, %d orphans, a last sweep iff not swept",
				step, rep.Swept, rep.OrphansDeleted, rep.LastSweep, swept, orphans)
		}
		return rep
	}
	every := Options{SweepEvery: time.Hour}
	run("dry run, never swept", Options{SweepEvery: time.Hour, DryRun: true}, true, 1)
	run("first run", every, true, 1)
	// A crash leaves another orphan (old enough).
	lost := []byte("left by a crash")
	if err := f.store.Put(ctx, stowage.BlobKey(sha(lost)), bytes.NewReader(lost), int64(len(lost))); err != nil {
		t.Fatal(err)
	}
	at(2 * time.Hour)
	rep := run("within the interval", Options{SweepEvery: 3 * time.Hour}, false, 0)
	if want := t0.UTC().Format(time.RFC3339); rep.LastSweep != want {
		t.Errorf("last sweep %q, want %q", rep.LastSweep, want)
	}
	run("after the interval", every, true, 1)
	run("the next, within", every, false, 0)
	if err := f.store.Put(ctx, stowage.BlobKey(sha(lost)), bytes.NewReader(lost), int64(len(lost))); err != nil {
		t.Fatal(err)
	}
	run("NoSweep", Options{NoSweep: true}, false, 0)
	// A node whose clock ran a day ahead recorded its sweep: the others
	// do not wait a day for the next.
	if err := f.db.Update(ctx, func(tx stowage.Tx) error {
		return tx.Settings().PutSetting(lastSweepKey, t0.Add(26*time.Hour).Format(time.RFC3339Nano), t0)
	}); err != nil {
		t.Fatal(err)
	}
	run("after a sweep recorded in the future", every, true, 1)
	if err := f.store.Put(ctx, stowage.BlobKey(sha(lost)), bytes.NewReader(lost), int64(len(lost))); err != nil {
		t.Fatal(err)
	}
	run("SweepEvery 0", Options{}, true, 1)
}
