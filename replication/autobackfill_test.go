package replication_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/feed"
	"github.com/stowage/stowage/replication"
)

// TestAutomaticBackfill: events the change feed's retention deleted
// before they were shipped are not skipped. A peer that joins a registry
// whose feed was already trimmed (no cursor yet), and a peer whose cursor
// fell behind the retention while its replicator was stopped, are each
// back-filled automatically: every image reaches the peer, the status
// says why (trigger, missed range) and counts it, and the marker of the
// pending back-fill is gone once it is done.
func TestAutomaticBackfill(t *testing.T) {
	for _, tc := range []struct {
		name    string
		trigger string
		// before: images pushed (and trimmed) before the replicator first
		// runs; during: after a first run, while it is stopped.
		before, during int
	}{
		{"new peer on a trimmed feed", "new-peer", 6, 0},
		{"cursor behind retention", "behind-retention", 2, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			east, west := newRegion(t, "east", 0), newRegion(t, "west", 0)
			fst, _ := feed.Of(east.db)
			east.f = feed.New(fst, feed.Options{Retention: feed.Retention{MaxCount: 2}, Poll: 20 * time.Millisecond})
			srv := serve(t, west)
			cursors, _ := feed.CursorsOf(east.reg.DB())
			var want []string
			push := func(n int) {
				for i := 0; i < n; i++ {
					tag := fmt.Sprintf("v%d", len(want))
					east.image(t, "app", tag, tc.name+tag)
					want = append(want, tag)
				}
				if _, err := east.f.Trim(ctx); err != nil {
					t.Fatal(err)
				}
			}
			run := func() (*replication.Service, func()) {
				svc, err := replication.New(east.reg, east.f, replication.Options{Region: "east",
					Peers: []replication.Peer{{Name: "west", URL: srv.URL}}})
				if err != nil {
					t.Fatal(err)
				}
				rctx, cancel := context.WithCancel(ctx)
				done := make(chan struct{})
				go func() { defer close(done); svc.Run(rctx) }()
				return svc, func() { cancel(); <-done }
			}
			arrived := func() []string {
				var missing []string
				deadline := time.Now().Add(20 * time.Second)
				for {
					missing = missing[:0]
					for _, tag := range want {
						if _, err := west.reg.ResolveManifest(ctx, "app", stowage.Reference{Tag: tag}); err != nil {
							missing = append(missing, tag)
						}
					}
					if len(missing) == 0 || time.Now().After(deadline) {
						return missing
					}
					time.Sleep(50 * time.Millisecond)
				}
			}

			push(tc.before)
			svc, stop := run()
			if missing := arrived(); len(missing) > 0 {
				stop()
				t.Fatalf("west lacks %v after the first run", missing)
			}
			if tc.during > 0 {
				stop()
				push(tc.during)
				// The status of a replicator whose cursor is behind the
				// retention still answers (counted from the oldest).
				if st, err := svc.Status(ctx); err != nil || st.Peers[0].LagEvents == 0 || st.Peers[0].LagExact {
					t.Errorf("status with the cursor behind the retention: %+v, %v; want an inexact lag", st, err)
				}
				svc, stop = run()
				if missing := arrived(); len(missing) > 0 {
					stop()
					t.Fatalf("west lacks %v: events deleted by retention were skipped", missing)
				}
			}
			// The status: the back-fill, why, what was missed, counted.
			var ps replication.PeerStatus
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				st, err := svc.Status(ctx)
				if err != nil {
					t.Fatal(err)
				}
				ps = st.Peers[0]
				if b := ps.Backfill; b != nil && !b.Running || time.Now().After(deadline) {
					break
				}
			}
			stop()
			b := ps.Backfill
			if b == nil || b.Running || b.Trigger != tc.trigger || b.Missed == "" || b.LastError != "" || b.Checked == 0 || ps.AutoBackfills != 1 {
				t.Errorf("status: back-fill %+v, automatic back-fills %d; want one finished %s back-fill naming the missed events", b, ps.AutoBackfills, tc.trigger)
			}
			if _, ok, err := cursors.Cursor(ctx, replication.BackfillMarker("west")); err != nil || ok {
				t.Errorf("the pending back-fill's marker is still there (%v) after it finished", err)
			}
		})
	}
}
