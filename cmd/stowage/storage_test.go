package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/config"
	"github.com/stowage/stowage/meta/sqlite"
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
