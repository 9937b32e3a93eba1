package replication_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/mgmt"
	"github.com/stowage/stowage/ociapi"
	"github.com/stowage/stowage/replication"
)

// serve serves rg's OCI API and replication endpoint over HTTP (no access
// control), as a peer.
func serve(t *testing.T, rg *region) *httptest.Server {
	t.Helper()
	svc, err := replication.New(rg.reg, rg.f, replication.Options{Region: rg.name})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/v2/", ociapi.New(rg.reg, nil))
	mux.Handle("/api/v1/", mgmt.New(rg.reg, nil).WithReplication(svc))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// TestBackfill: a region that holds data before it is joined to a peer
// ships it all by a back-fill (tags, untagged manifests, blobs), leaves
// what the peer changed later, counts its progress, and a second walk
// ships nothing.
func TestBackfill(t *testing.T) {
	east, west := newRegion(t, "east", 0), newRegion(t, "west", 0)
	d1, _ := east.image(t, "app", "v1", "one")
	d2, _ := east.image(t, "app", "v2", "two")
	d3, _ := east.image(t, "app", "", "untagged")
	dt, _ := east.image(t, "tools/x", "latest", "tool")
	// West moved app:v2 later (its own push): that stays.
	w2, _ := west.image(t, "app", "v2", "west's")

	srv := serve(t, west)
	svc, err := replication.New(east.reg, east.f, replication.Options{Region: "east",
		Peers: []replication.Peer{{Name: "west", URL: srv.URL}}})
	if err != nil {
		t.Fatal(err)
	}
	r := svc.Replicators[0]
	if err := r.Backfill(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		repo string
		ref  stowage.Reference
		want stowage.Digest
	}{
		{"app", stowage.Reference{Tag: "v1"}, d1},
		{"app", stowage.Reference{Tag: "v2"}, w2},
		{"app", stowage.Reference{Digest: d2}, d2},
		{"app", stowage.Reference{Digest: d3}, d3},
		{"tools/x", stowage.Reference{Tag: "latest"}, dt},
	} {
		m, err := west.reg.ResolveManifest(ctx, c.repo, c.ref)
		if err != nil || m.Digest != c.want {
			t.Errorf("west %s:%s after the back-fill: %v %v, want %s", c.repo, c.ref, m.Digest, err, c.want)
			continue
		}
		if len(west.changes(t, 0)) == 0 {
			t.Fatal("no changes in west")
		}
	}
	st := r.BackfillStatus()
	if st == nil || st.Running || st.Repos != 2 || st.Checked != 4 || st.Shipped != 4 || st.Applied != 3 || st.LastError != "" {
		t.Errorf("back-fill status: %+v; want 2 repositories, 4 checked, 4 shipped, 3 applied (west's later v2 kept)", st)
	}
	ps, err := r.Status(ctx, east.reg.Parts().Now())
	if err != nil || ps.Backfill == nil || ps.Backfill.Shipped != 4 {
		t.Errorf("replication status: backfill %+v, %v", ps.Backfill, err)
	}
	// Again: west holds everything (v2: its own, later) but v2 differs, so
	// only it is shipped, and not applied.
	if err := r.Backfill(ctx); err != nil {
		t.Fatal(err)
	}
	if st := r.BackfillStatus(); st.Shipped != 1 || st.Applied != 0 {
		t.Errorf("second back-fill: %+v, want 1 shipped (v2), none applied", st)
	}
}
