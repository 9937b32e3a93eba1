package replication_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/stowage/stowage"
	"github.com/stowage/stowage/feed"
	"github.com/stowage/stowage/mgmt"
	"github.com/stowage/stowage/ociapi"
	"github.com/stowage/stowage/replication"
)

// TestLocksGuardClientsNotReplicatedChanges: a change one region accepted
// passes another region's write and delete locks (they guard that region's
// clients; the lock attributes replicate with their own clocks), so the
// regions end with the same tags and the same locks (review r3 finding 1).
func TestLocksGuardClientsNotReplicatedChanges(t *testing.T) {
	lock := func(t *testing.T, rg *region, tag string, l stowage.Locks) {
		t.Helper()
		if _, err := rg.reg.SetLocks(ctx, "app", stowage.Reference{Tag: tag}, l, 0); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("a tag move in one region, a write lock of the tag in the other, later", func(t *testing.T) {
		east, north := newRegion(t, "east", 0), newRegion(t, "north", 0)
		east.image(t, "app", "v1", "A")
		north.apply(t, east, east.changes(t, 0))
		e0, n0 := east.newest(t), north.newest(t)
		dB, _ := north.image(t, "app", "v1", "B") // the move, first
		time.Sleep(3 * time.Millisecond)
		lock(t, east, "v1", stowage.LockWrite) // the lock, later
		fromEast, fromNorth := east.changes(t, e0), north.changes(t, n0)
		east.apply(t, north, fromNorth)
		north.apply(t, east, fromEast)
		for _, rg := range []*region{east, north} {
			if got := rg.tag(t, "app", "v1"); got != dB {
				t.Errorf("%s: app:v1 = %q, want the move %s (no lock in north refused it; the lock does not refuse a replicated change)", rg.name, got, dB)
			}
			if l, err := rg.reg.Locks(ctx, "app", stowage.Reference{Tag: "v1"}); err != nil || l != stowage.LockWrite {
				t.Errorf("%s: app:v1 locks %v, %v; want write-locked (kept)", rg.name, l, err)
			}
		}
		// The lock still refuses this region's clients.
		if _, err := east.reg.PutManifest(ctx, "app", stowage.Reference{Tag: "v1"}, "application/vnd.oci.image.manifest.v1+json", manifestOf(t, east, "A"), nil); stowage.ErrorCodeOf(err) != stowage.CodeDenied {
			t.Errorf("east: a client's move of the write-locked tag: %v, want DENIED", err)
		}
	})
	t.Run("a tag move in one region, an immutability rule for the tag in the other", func(t *testing.T) {
		east, north := newRegion(t, "east", 0), newRegion(t, "north", 0)
		east.image(t, "app", "v1", "A")
		north.apply(t, east, east.changes(t, 0))
		if err := east.reg.SetImmutabilityRules(ctx, []string{"app:v.*"}); err != nil {
			t.Fatal(err)
		}
		n0 := north.newest(t)
		dB, _ := north.image(t, "app", "v1", "B")
		east.apply(t, north, north.changes(t, n0))
		if got := east.tag(t, "app", "v1"); got != dB {
			t.Errorf("east: app:v1 = %q, want north's move %s (east's rule guards east's clients)", got, dB)
		}
		_, err := east.reg.PutManifest(ctx, "app", stowage.Reference{Tag: "v1"}, "application/vnd.oci.image.manifest.v1+json", manifestOf(t, east, "A"), nil)
		if stowage.ErrorCodeOf(err) != stowage.CodeDenied {
			t.Errorf("east: a client's move of the immutable tag: %v, want DENIED", err)
		}
	})
	t.Run("an untag in one region, a delete lock of the tag in the other, later", func(t *testing.T) {
		east, north := newRegion(t, "east", 0), newRegion(t, "north", 0)
		east.image(t, "app", "v1", "A")
		north.apply(t, east, east.changes(t, 0))
		e0, n0 := east.newest(t), north.newest(t)
		if _, err := north.reg.Untag(ctx, "app", "v1", false); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Millisecond)
		lock(t, east, "v1", stowage.LockDelete)
		fromEast, fromNorth := east.changes(t, e0), north.changes(t, n0)
		east.apply(t, north, fromNorth)
		north.apply(t, east, fromEast)
		for _, rg := range []*region{east, north} {
			if got := rg.tag(t, "app", "v1"); got != "" {
				t.Errorf("%s: app:v1 = %q, want untagged everywhere", rg.name, got)
			}
		}
	})
	t.Run("a manifest delete in one region, a delete lock of its tag in the other, later", func(t *testing.T) {
		east, north := newRegion(t, "east", 0), newRegion(t, "north", 0)
		dA, _ := east.image(t, "app", "v1", "A")
		north.apply(t, east, east.changes(t, 0))
		e0, n0 := east.newest(t), north.newest(t)
		deleteImage(t, north, "app", dA)
		time.Sleep(3 * time.Millisecond)
		lock(t, east, "v1", stowage.LockDelete)
		fromEast, fromNorth := east.changes(t, e0), north.changes(t, n0)
		east.apply(t, north, fromNorth)
		north.apply(t, east, fromEast)
		for _, rg := range []*region{east, north} {
			if _, err := rg.reg.ResolveManifest(ctx, "app", stowage.Reference{Digest: dA}); stowage.ErrorCodeOf(err) != stowage.CodeManifestUnknown && stowage.ErrorCodeOf(err) != stowage.CodeNameUnknown {
				t.Errorf("%s: app@%s: %v, want deleted everywhere", rg.name, dA, err)
			}
		}
	})
}

// manifestOf returns the bytes of the manifest rg.image makes for seed.
func manifestOf(t *testing.T, rg *region, seed string) []byte {
	t.Helper()
	_, m := rg.image(t, "other", "", seed)
	return m
}

// TestReappliedPushMakesNoEvent: a push applied again (a batch retried
// after a later change in it failed) is a no-op with no new event in the
// peer's change feed (review r3 finding 7: duplicate webhooks and audit).
func TestReappliedPushMakesNoEvent(t *testing.T) {
	east, west := newRegion(t, "east", 0), newRegion(t, "west", 0)
	east.image(t, "app", "", "by-digest") // a push by digest: no tag clock
	east.image(t, "app", "v1", "tagged")
	push := east.changes(t, 0)
	west.apply(t, east, push)
	n := countEvents(t, west)
	for i := 0; i < 3; i++ {
		for _, r := range west.apply(t, east, push) {
			if r.Applied {
				t.Errorf("applied again: %+v", r)
			}
		}
	}
	if got := countEvents(t, west); got != n {
		t.Errorf("west's feed: %d events after applying the same pushes 3 more times, want %d (no new event)", got, n)
	}
}

// TestReplicatedPushOneEvent: a tagged push applied at a peer is one push
// event there, with its tag, as at the origin (review r4 B6: two, the
// manifest's and the tag's, so webhooks at the peer fired twice).
func TestReplicatedPushOneEvent(t *testing.T) {
	east, west := newRegion(t, "east", 0), newRegion(t, "west", 0)
	east.image(t, "app", "v1", "tagged")
	origin := countEvents(t, east)
	west.apply(t, east, east.changes(t, 0))
	p, err := west.f.Read(ctx, feed.Query{Resume: true, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	pushes := 0
	for _, e := range p.Events {
		if e.Kind == stowage.EventPush {
			pushes++
			if e.Tag != "v1" {
				t.Errorf("west's push event: %+v, want tag v1", e)
			}
		}
	}
	if pushes != 1 {
		t.Errorf("west's feed: %d push events for one tagged push (the origin has %d events), want 1", pushes, origin)
	}
}

func countEvents(t *testing.T, rg *region) int {
	t.Helper()
	p, err := rg.f.Read(ctx, feed.Query{Resume: true, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return len(p.Events)
}

// TestRefusedForGoodDoesNotWedge: a change the peer refuses for good (here
// its quota refuses the push's blob) is recorded and passed over; the
// changes after it (another repository's push, a delete) still reach the
// peer (review r3 finding 4b).
func TestRefusedForGoodDoesNotWedge(t *testing.T) {
	east, west := newRegion(t, "east", 0), newRegion(t, "west", 0)
	srv := serve(t, west)
	if err := west.reg.SetQuota(ctx, "q", 5); err != nil {
		t.Fatal(err)
	}
	svc, err := replication.New(east.reg, east.f, replication.Options{Region: "east",
		Peers: []replication.Peer{{Name: "west", URL: srv.URL}}})
	if err != nil {
		t.Fatal(err)
	}
	r := svc.Replicators[0]
	east.image(t, "q", "v1", "too big for west's quota")
	d, _ := east.image(t, "app", "v1", "fits")
	deleteImage(t, east, "app", d)
	dk, _ := east.image(t, "app", "v2", "kept")
	p, err := east.f.Read(ctx, feed.Query{Resume: true, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Handle(ctx, p.Events); err != nil {
		t.Fatalf("a change the peer refuses for good stopped the batch: %v", err)
	}
	if got := west.tag(t, "app", "v2"); got != dk {
		t.Errorf("west app:v2 = %q, want %s (shipped after the refused change)", got, dk)
	}
	if _, err := west.reg.ResolveManifest(ctx, "app", stowage.Reference{Digest: d}); stowage.ErrorCodeOf(err) != stowage.CodeManifestUnknown {
		t.Errorf("west app@%s: %v, want deleted (the delete reached it)", d, err)
	}
	// West has no read-through: its applier cannot fetch the blob its
	// quota refused, so the push is refused and parked.
	n, last, _ := r.Parked()
	if n != 1 || !strings.Contains(last, "push q") {
		t.Errorf("parked: %d, %q; want 1, the push to q", n, last)
	}
	// Shown in the status (and so in `replication status` and /metrics).
	if st, err := svc.Status(ctx); err != nil || len(st.Peers) != 1 || st.Peers[0].Parked != 1 || !strings.Contains(st.Peers[0].LastParked, "push q") {
		t.Errorf("status after a parked change: %+v, %v", st.Peers, err)
	}
}

// TestReplicatedContentPassesQuota: a region's quota refuses the shipping
// region's blob upload; the region's applier fetches the blob itself,
// admitted past the quota as part of the replicated change, and counted:
// its own clients are refused afterwards (docs/replication.md "Locks,
// quotas and convergence").
func TestReplicatedContentPassesQuota(t *testing.T) {
	east, west := newRegion(t, "east", 0), newRegion(t, "west", 0)
	eastSrv := serve(t, east)
	westSvc, err := replication.New(west.reg, west.f, replication.Options{Region: "west", ReadThrough: true,
		Peers: []replication.Peer{{Name: "east", URL: eastSrv.URL}}})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/v2/", ociapi.New(west.reg, nil))
	mux.Handle("/api/v1/", mgmt.New(west.reg, nil).WithReplication(westSvc))
	westSrv := httptest.NewServer(mux)
	t.Cleanup(westSrv.Close)
	if err := west.reg.SetQuota(ctx, "q", 5); err != nil {
		t.Fatal(err)
	}
	svc, err := replication.New(east.reg, east.f, replication.Options{Region: "east",
		Peers: []replication.Peer{{Name: "west", URL: westSrv.URL}}})
	if err != nil {
		t.Fatal(err)
	}
	r := svc.Replicators[0]
	d, _ := east.image(t, "q", "v1", "too big for west's quota")
	p, err := east.f.Read(ctx, feed.Query{Resume: true, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Handle(ctx, p.Events); err != nil {
		t.Fatal(err)
	}
	if got := west.tag(t, "q", "v1"); got != d {
		t.Errorf("west q:v1 = %q, want %s (admitted past west's quota)", got, d)
	}
	if n, last, _ := r.Parked(); n != 0 {
		t.Errorf("parked %d: %s; want none", n, last)
	}
	// Counted: west's own client is refused now.
	b := []byte("west's own layer")
	_, err = west.reg.PutBlob(ctx, "q", digest.FromBytes(b), bytes.NewReader(b), int64(len(b)))
	if stowage.ErrorCodeOf(err) != stowage.CodeDenied {
		t.Errorf("west: a client's blob push into q over its quota: %v, want DENIED", err)
	}
}
