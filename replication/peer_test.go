package replication_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/replication"
)

// TestBackfillSkipsReadLocked: a back-fill passes over what is read-locked
// here (never shipped) and what the peer refuses to read because it is
// read-locked there, counts them as skipped, and walks the rest of the
// catalog (it used to stop at the first, with "answered 403: ").
func TestBackfillSkipsReadLocked(t *testing.T) {
	east, west := newRegion(t, "east", 0), newRegion(t, "west", 0)
	east.image(t, "a", "locked", "one")
	if _, err := east.reg.SetLocks(ctx, "a", stowage.Reference{Tag: "locked"}, stowage.LockRead, 0); err != nil {
		t.Fatal(err)
	}
	// West holds b:v1 read-locked; east's b:v1 differs (the lock has not
	// reached east): the peer's HEAD answers 403.
	west.image(t, "b", "v1", "west's")
	if _, err := west.reg.SetLocks(ctx, "b", stowage.Reference{Tag: "v1"}, stowage.LockRead, 0); err != nil {
		t.Fatal(err)
	}
	east.image(t, "b", "v1", "east's")
	dz, _ := east.image(t, "z", "v1", "last")

	srv := serve(t, west)
	svc, err := replication.New(east.reg, east.f, replication.Options{Region: "east",
		Peers: []replication.Peer{{Name: "west", URL: srv.URL}}})
	if err != nil {
		t.Fatal(err)
	}
	r := svc.Replicators[0]
	if err := r.Backfill(ctx); err != nil {
		t.Fatalf("back-fill: %v", err)
	}
	st := r.BackfillStatus()
	if st.Repos != 3 || st.Skipped != 2 || st.Shipped != 1 || st.LastError != "" {
		t.Errorf("back-fill status: %+v; want 3 repositories, 2 skipped (a:locked here, b:v1 there), 1 shipped", st)
	}
	if got := west.tag(t, "z", "v1"); got != dz {
		t.Errorf("west z:v1 = %q, want %s (the walk goes on past the read-locked)", got, dz)
	}
	if got := west.tag(t, "a", "locked"); got != "" {
		t.Errorf("west a:locked = %s: a read-locked tag was shipped", got)
	}
}

// TestPeerErrorHasReason: a peer's refusal, HEAD included (no body), says
// the peer's OCI code and message.
func TestPeerErrorHasReason(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		w.Write([]byte(`{"errors":[{"code":"DENIED","message":"repository x is quarantined"}]}`))
	}))
	defer srv.Close()
	c, err := replication.NewClient(replication.Peer{Name: "north", URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	_, herr := c.HeadManifest(ctx, "x", stowage.Reference{Tag: "v1"})
	_, berr := c.HasBlob(ctx, "x", stowage.Digest("sha256:"+strings.Repeat("a", 64)))
	_, aerr := c.Apply(ctx, replication.Change{})
	for _, err := range []error{herr, berr, aerr} {
		if err == nil || !strings.Contains(err.Error(), "DENIED: repository x is quarantined") {
			t.Errorf("peer error %q: want the peer's code and message", err)
		}
	}
	if got := (&replication.PeerError{Peer: "north", Status: 403}).Error(); strings.HasSuffix(strings.TrimSpace(got), ":") {
		t.Errorf("an empty peer error: %q", got)
	}
}
