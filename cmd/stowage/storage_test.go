package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/config"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/scrub"
	"github.com/stowage/stowage/storage/crypt"
	"github.com/stowage/stowage/storage/mirror"
)

type fakeAborter struct{ ages []time.Duration }

func (f *fakeAborter) AbortStaleUploads(_ context.Context, age time.Duration) (int, error) {
	f.ages = append(f.ages, age)
	return 1, nil
}

// TestStaleUploadsAborted: a bucket's incomplete multipart uploads (left by
// a killed write) are aborted at start, then hourly by the storage upkeep
// job, only when older than a day.
func TestStaleUploadsAborted(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	topo := &topology{now: func() time.Time { return now }}
	f := &fakeAborter{}
	topo.addAborter(context.Background(), "storage", f, slog.New(slog.DiscardHandler))
	if len(f.ages) != 1 || f.ages[0] != staleUploadAge {
		t.Fatalf("at start: calls %v, want one with age %v", f.ages, staleUploadAge)
	}
	if !topo.needsUpkeep() {
		t.Fatal("a bucket does not get the upkeep job")
	}
	for _, step := range []struct {
		after time.Duration
		calls int
	}{{time.Minute, 1}, {30 * time.Minute, 1}, {time.Hour, 2}, {time.Hour + time.Minute, 2}, {2 * time.Hour, 3}} {
		now = time.Unix(1_700_000_000, 0).Add(step.after)
		if err := topo.upkeep(context.Background()); err != nil {
			t.Fatal(err)
		}
		if len(f.ages) != step.calls {
			t.Errorf("upkeep %v after start: %d calls, want %d", step.after, len(f.ages), step.calls)
		}
	}
}

// TestMirrorQueueIsTheDatabase: a mirror built from the configuration keeps
// its repair queue in the metadata database, under its place in the
// configuration.
func TestMirrorQueueIsTheDatabase(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "stowage.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cfg := config.Storage{Mirror: &config.Mirror{Copies: []config.NamedStorage{
		{Name: "east", Storage: config.Storage{Memory: &struct{}{}}},
		{Name: "west", Storage: config.Storage{Memory: &struct{}{}}},
	}}}
	topo := &topology{}
	if _, _, err := buildStorage(ctx, cfg, "storage", topo, storageEnv{log: slog.New(slog.DiscardHandler), db: db}); err != nil {
		t.Fatal(err)
	}
	if err := db.AddRepair(ctx, "storage", "blobs/x", true, time.Now()); err != nil {
		t.Fatal(err)
	}
	if st := topo.Status(); len(st.Mirrors) != 1 || st.Mirrors[0].PendingRepairs != 1 {
		t.Errorf("a repair queued in the database is not the mirror's: %+v", st.Mirrors)
	}
	var _ mirror.RepairQueue = db
}

// TestKeepBlob: a shard rebalance moves a blob only while its row is live
// (extending its lease) or pending; other objects always.
func TestKeepBlob(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	dg := func(i int) stowage.Digest { return stowage.Digest(fmt.Sprintf("sha256:%064x", i)) }
	old := time.Unix(1_600_000_000, 0)
	err = db.Update(ctx, func(tx stowage.Tx) error {
		for i, st := range []stowage.BlobState{stowage.BlobLive, stowage.BlobPending, stowage.BlobDeleting} {
			if err := tx.Blobs().PutBlob(stowage.BlobRecord{Digest: dg(i), Size: 1, Created: old, State: st, LastUsed: old, UnreferencedSince: old}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	keep := keepBlob(db)
	for _, c := range []struct {
		key  string
		want bool
	}{
		{stowage.BlobKey(dg(0)), true},
		{stowage.BlobKey(dg(1)), true},
		{stowage.BlobKey(dg(2)), false},
		{stowage.BlobKey(dg(3)), false}, // no row: collected
		{"uploads/u/data", true},
		{"blobs/sha256/zz/" + dg(0).Encoded(), true}, // not a blob key
	} {
		if got, err := keep(ctx, c.key); err != nil || got != c.want {
			t.Errorf("keep(%s) = %v, %v; want %v", c.key, got, err, c.want)
		}
	}
	db.View(ctx, func(tx stowage.Tx) error {
		b, err := tx.Blobs().GetBlob(dg(0))
		if err != nil || !b.LastUsed.After(old) {
			t.Errorf("a live blob being moved: lease not extended (%+v, %v)", b, err)
		}
		return nil
	})
}

// TestPullFindsMirrorFaults: under encryption, a mirror of two real
// filesystem copies; one blob's bytes are damaged on the first copy,
// another blob's file is gone from it. Pulls through the engine succeed
// (from the other copy), and the faults are seen: counted per copy, shown
// in the storage status and the metrics, queued for repair at once; the
// storage upkeep (the repair worker) then fixes both copies, and a scrub's
// repairs count in the status too.
func TestPullFindsMirrorFaults(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := sqlite.Open(ctx, filepath.Join(dir, "stowage.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	yes := true
	east, west := filepath.Join(dir, "east"), filepath.Join(dir, "west")
	cfg := config.Storage{Mirror: &config.Mirror{Copies: []config.NamedStorage{
		{Name: "east", Storage: config.Storage{Filesystem: &config.Filesystem{Path: east, Fsync: &yes}}},
		{Name: "west", Storage: config.Storage{Filesystem: &config.Filesystem{Path: west, Fsync: &yes}}},
	}}}
	topo := &topology{}
	inner, _, err := buildStorage(ctx, cfg, "storage", topo, storageEnv{log: slog.New(slog.DiscardHandler), db: db})
	if err != nil {
		t.Fatal(err)
	}
	keyring, err := crypt.OpenFileKeyring(filepath.Join(dir, "keys", "service.json"), true)
	if err != nil {
		t.Fatal(err)
	}
	store := crypt.New(inner, crypt.NewManager(db, keyring))
	topo.setTop(store)
	reg := stowage.NewRegistry(db, store, stowage.Options{})

	blob := func(seed byte) ([]byte, stowage.Digest) {
		b := bytes.Repeat([]byte{seed, seed + 1, seed + 2}, 100_000)
		return b, stowage.Digest(digest.FromBytes(b))
	}
	damaged, dd := blob(1)
	lost, ld := blob(7)
	for _, b := range [][]byte{damaged, lost} {
		if _, err := reg.PutBlob(ctx, "app", stowage.Digest(digest.FromBytes(b)), bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
	}
	file := func(root string, d stowage.Digest) string {
		return filepath.Join(root, filepath.FromSlash(stowage.BlobKey(d)))
	}
	corrupt := func(path string) {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0xff
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	corrupt(file(east, dd))
	if err := os.Remove(file(east, ld)); err != nil {
		t.Fatal(err)
	}

	for round := range 3 { // a burst of pulls: each fault counted once
		for _, c := range []struct {
			d    stowage.Digest
			want []byte
		}{{dd, damaged}, {ld, lost}} {
			rc, _, err := reg.OpenBlob(ctx, "app", c.d, 0)
			if err != nil {
				t.Fatalf("pull %d of %s: %v", round, c.d, err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || !bytes.Equal(got, c.want) {
				t.Fatalf("pull %d of %s: %d bytes, err %v; want the blob", round, c.d, len(got), err)
			}
		}
	}
	st := topo.Status().Mirrors[0]
	if st.PendingRepairs != 2 {
		t.Errorf("after the pulls: %d repairs pending, want 2 (one missing, one damaged copy)", st.PendingRepairs)
	}
	if c := st.Copies[0]; c.Name != "east" || c.MissingFound != 1 || c.CorruptFound != 1 {
		t.Errorf("copy %s: %d missing, %d damaged found by reads; want east 1, 1", c.Name, c.MissingFound, c.CorruptFound)
	}
	if c := st.Copies[1]; c.MissingFound+c.CorruptFound != 0 {
		t.Errorf("copy %s: faults %d/%d counted on the good copy", c.Name, c.MissingFound, c.CorruptFound)
	}
	rec := httptest.NewRecorder()
	mset, _ := newMetrics(reg, db, topo, nil, 0, -1)
	mset.Handler(nil).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{
		`stowage_storage_read_faults_total{copy="east",kind="corrupt",mirror="storage"} 1`,
		`stowage_storage_read_faults_total{copy="east",kind="missing",mirror="storage"} 1`,
		`stowage_storage_pending_repairs{mirror="storage"} 2`,
	} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	if err := topo.upkeep(ctx); err != nil {
		t.Fatal(err)
	}
	for _, d := range []stowage.Digest{dd, ld} {
		e, err1 := os.ReadFile(file(east, d))
		w, err2 := os.ReadFile(file(west, d))
		if err1 != nil || err2 != nil || !bytes.Equal(e, w) {
			t.Errorf("after the repair, %s: east and west differ (%v, %v)", d, err1, err2)
		}
	}
	st = topo.Status().Mirrors[0]
	if st.PendingRepairs != 0 || st.Repaired != 2 {
		t.Errorf("after the repair: %d pending, %d repaired; want 0, 2", st.PendingRepairs, st.Repaired)
	}

	// A scrub's repairs count too.
	corrupt(file(west, ld))
	rep, err := scrub.New(reg.Parts()).Run(ctx, scrub.Options{})
	if err != nil || rep.Repaired != 1 {
		t.Fatalf("scrub: %+v, %v; want 1 repaired", rep, err)
	}
	if st = topo.Status().Mirrors[0]; st.Repaired != 3 {
		t.Errorf("after a scrub repaired a copy: status says %d repaired, want 3", st.Repaired)
	}

	// No good copy (outside review): east damaged, west missing. The pull
	// fails; the repair copies nothing (the source does not decrypt) and
	// counts nothing; the status lists the object lost.
	gone, gd := blob(20)
	if _, err := reg.PutBlob(ctx, "app", gd, bytes.NewReader(gone), int64(len(gone))); err != nil {
		t.Fatal(err)
	}
	corrupt(file(east, gd))
	if err := os.Remove(file(west, gd)); err != nil {
		t.Fatal(err)
	}
	if rc, _, err := reg.OpenBlob(ctx, "app", gd, 0); err == nil {
		_, err = io.ReadAll(rc)
		rc.Close()
		if err == nil {
			t.Fatal("a pull of a blob with no good copy succeeded")
		}
	}
	if err := topo.upkeep(ctx); err != nil {
		t.Log(err)
	}
	if _, err := os.Stat(file(west, gd)); err == nil {
		t.Error("the repair copied the damaged east copy to west")
	}
	st = topo.Status().Mirrors[0]
	if st.Repaired != 3 || st.Lost != 1 || len(st.LostObjects) != 1 || st.LostObjects[0] != stowage.BlobKey(gd) {
		t.Errorf("after a repair with no good copy: %d repaired, lost %d %v; want 3, 1 [%s]", st.Repaired, st.Lost, st.LostObjects, stowage.BlobKey(gd))
	}
	rec = httptest.NewRecorder()
	mset.Handler(nil).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if want := `stowage_storage_lost_objects{mirror="storage"} 1`; !strings.Contains(rec.Body.String(), want) {
		t.Errorf("metrics lack %s", want)
	}
}
