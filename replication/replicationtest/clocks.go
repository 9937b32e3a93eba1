// Package replicationtest holds the shared test of a metadata database's
// replication clocks (meta/sqlite and meta/postgres each run it).
package replicationtest

import (
	"context"
	"errors"
	"testing"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/replication"
)

// TestClockStore is the shared test of a database's replication.ClockStore (both
// metadata databases run it): a missing clock is ErrNotFound, PutClock
// creates and replaces, and a rolled-back transaction leaves nothing.
func TestClockStore(t *testing.T, db stowage.DB) {
	ctx := context.Background()
	clocks := func(tx stowage.Tx) replication.ClockStore {
		ct, ok := tx.(replication.ClockTx)
		if !ok {
			t.Fatalf("%T keeps no replication clocks", tx)
		}
		return ct.ReplicationClocks()
	}
	want := []replication.Clock{
		{Repo: "app", Name: "v1", Digest: stowage.Digest("sha256:" + string(make64('a'))), HLC: replication.HLC{Wall: 1796303223017, Logical: 3, Region: "east"}},
		{Repo: "app", Name: replication.ManifestName(stowage.Digest("sha256:" + string(make64('b')))), HLC: replication.HLC{Wall: 5, Region: "west"}},
		{Repo: "app", Name: replication.RepositoryName, HLC: replication.HLC{Wall: 6, Logical: 1, Region: "north"}},
	}
	err := db.Update(ctx, func(tx stowage.Tx) error {
		if _, err := clocks(tx).GetClock("app", "v1"); !errors.Is(err, stowage.ErrNotFound) {
			t.Errorf("GetClock of nothing: %v, want ErrNotFound", err)
		}
		for _, c := range want {
			if err := clocks(tx).PutClock(c); err != nil {
				return err
			}
		}
		want[0].Digest, want[0].HLC.Logical = "", 4 // replaced: untagged later
		return clocks(tx).PutClock(want[0])
	})
	if err != nil {
		t.Fatal(err)
	}
	rollback := errors.New("roll back")
	if err := db.Update(ctx, func(tx stowage.Tx) error {
		clocks(tx).PutClock(replication.Clock{Repo: "app", Name: "v9", HLC: replication.HLC{Wall: 1, Region: "east"}})
		return rollback
	}); !errors.Is(err, rollback) {
		t.Fatal(err)
	}
	testLatestLive(t, db, clocks)
	err = db.View(ctx, func(tx stowage.Tx) error {
		for _, c := range want {
			got, err := clocks(tx).GetClock(c.Repo, c.Name)
			if err != nil || got != c {
				t.Errorf("GetClock(%s, %s) = %+v, %v; want %+v", c.Repo, c.Name, got, err, c)
			}
		}
		if _, err := clocks(tx).GetClock("app", "v9"); !errors.Is(err, stowage.ErrNotFound) {
			t.Errorf("a rolled-back clock: %v, want ErrNotFound", err)
		}
		// Every clock of app is a removal (or the repository's own).
		if got, err := clocks(tx).LatestLive("app"); !errors.Is(err, stowage.ErrNotFound) {
			t.Errorf("LatestLive(app) with only tombstones = %+v, %v; want ErrNotFound", got, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// testLatestLive: the latest live clock of a repository, in HLC order
// (wall, logical, region in byte order), tombstones, the repository's own
// clock and locks' registers left out.
func testLatestLive(t *testing.T, db stowage.DB, clocks func(stowage.Tx) replication.ClockStore) {
	d := stowage.Digest("sha256:" + string(make64('c')))
	live := []replication.Clock{
		{Repo: "lv", Name: "a", Digest: d, HLC: replication.HLC{Wall: 7, Logical: 2, Region: "east"}},
		{Repo: "lv", Name: "b", Digest: d, HLC: replication.HLC{Wall: 7, Logical: 2, Region: "west"}}, // the latest: region breaks the tie
		{Repo: "lv", Name: "c", Digest: d, HLC: replication.HLC{Wall: 7, Logical: 1, Region: "zz"}},
		{Repo: "lv", Name: "d", HLC: replication.HLC{Wall: 9, Region: "east"}},                            // a tombstone, later
		{Repo: "lv", Name: replication.RepositoryName, HLC: replication.HLC{Wall: 9, Region: "a"}},        // the repository's own
		{Repo: "lv", Name: "lock:a:write", Digest: "locked", HLC: replication.HLC{Wall: 10, Region: "a"}}, // a lock's register
		{Repo: "lw", Name: "x", Digest: d, HLC: replication.HLC{Wall: 99, Region: "east"}},                // another repository
	}
	ctx := context.Background()
	if err := db.Update(ctx, func(tx stowage.Tx) error {
		for _, c := range live {
			if err := clocks(tx).PutClock(c); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.View(ctx, func(tx stowage.Tx) error {
		if got, err := clocks(tx).LatestLive("lv"); err != nil || got != live[1] {
			t.Errorf("LatestLive(lv) = %+v, %v; want %+v", got, err, live[1])
		}
		if _, err := clocks(tx).LatestLive("none"); !errors.Is(err, stowage.ErrNotFound) {
			t.Errorf("LatestLive of a repository without clocks: %v, want ErrNotFound", err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func make64(c byte) []byte {
	b := make([]byte, 64)
	for i := range b {
		b[i] = c
	}
	return b
}
