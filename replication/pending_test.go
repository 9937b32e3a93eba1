package replication_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/replication"
)

// TestLockOfMissingTargetDoesNotStall: east locks a tag and a manifest it
// received from north (not shipped by east: north ships its own), then
// pushes to another repository. West has not heard from north yet. East's
// replicator to west (a real Service over HTTP) must not stall on the lock
// changes: the later push arrives, and when north's push reaches west, the
// tag and manifest come locked there, as in east.
func TestLockOfMissingTargetDoesNotStall(t *testing.T) {
	east, west, north := newRegion(t, "east", 0), newRegion(t, "west", 0), newRegion(t, "north", 0)
	d, _ := north.image(t, "app", "v1", "north")
	fromNorth := north.changes(t, 0)
	east.apply(t, north, fromNorth)
	if _, err := east.reg.SetLocks(ctx, "app", stowage.Reference{Tag: "v1"}, stowage.LockDelete|stowage.LockWrite, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := east.reg.SetLocks(ctx, "app", stowage.Reference{Digest: d}, stowage.LockDelete, 0); err != nil {
		t.Fatal(err)
	}
	other, _ := east.image(t, "other", "v1", "east")

	srv := serve(t, west)
	svc, err := replication.New(east.reg, east.f, replication.Options{Region: "east",
		Peers: []replication.Peer{{Name: "west", URL: srv.URL}}})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); svc.Run(runCtx) }()
	defer func() { cancel(); wg.Wait() }()

	deadline := time.Now().Add(10 * time.Second)
	for west.tag(t, "other", "v1") != other && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := west.tag(t, "other", "v1"); got != other {
		st, _ := svc.Status(ctx)
		t.Fatalf("west other:v1 = %q after 10s, want %s: east's stream to west stalled on the lock of a tag west does not have yet (status %+v)", got, other, st)
	}
	// North's push reaches west: the tag and manifest come locked.
	west.apply(t, north, fromNorth)
	for _, c := range []struct {
		ref  stowage.Reference
		want stowage.Locks
	}{{stowage.Reference{Tag: "v1"}, stowage.LockDelete | stowage.LockWrite}, {stowage.Reference{Digest: d}, stowage.LockDelete}} {
		for _, rg := range []*region{east, west} {
			if l, err := rg.reg.Locks(ctx, "app", c.ref); err != nil || l != c.want {
				t.Errorf("%s: app %v locks %v, %v; want %v", rg.name, c.ref, l, err, c.want)
			}
		}
	}
}
