package replication_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/stowage/stowage"
	"github.com/stowage/stowage/ociapi"
	"github.com/stowage/stowage/replication"
)

// TestBlobDeleteNotReadThrough: a blob a client deleted in a region (the
// conformance suite's blob delete) is not fetched back from a peer that
// got it with a manifest: GET answers 404. A manifest pushed here that
// references it (its blobs in another region) brings it back.
func TestBlobDeleteNotReadThrough(t *testing.T) {
	east, west := newRegion(t, "east", 0), newRegion(t, "west", 0)
	_, m := west.image(t, "app", "v1", "one")
	cfg := []byte(`{"seed":"one"}`)
	d := digest.FromBytes(cfg)
	if _, err := east.reg.PutBlob(ctx, "app", d, bytes.NewReader(cfg), int64(len(cfg))); err != nil {
		t.Fatal(err)
	}
	if err := east.reg.DeleteBlob(ctx, "app", d); err != nil {
		t.Fatal(err)
	}
	peer := serve(t, west)
	svc, err := replication.New(east.reg, east.f, replication.Options{Region: "east", ReadThrough: true,
		Peers: []replication.Peer{{Name: "west", URL: peer.URL}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ociapi.New(east.reg, nil).WithMiss(svc.ReadThrough))
	defer srv.Close()
	for _, method := range []string{http.MethodHead, http.MethodGet} {
		req, _ := http.NewRequest(method, srv.URL+"/v2/app/blobs/"+string(d), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s of a blob deleted here: %d, want 404 (not fetched back from the peer)", method, resp.StatusCode)
		}
	}
	// A manifest pushed here referencing it: fetched again.
	if err := svc.ReadThrough.FetchReferences(ctx, "app", "application/vnd.oci.image.manifest.v1+json", m); err != nil {
		t.Fatal(err)
	}
	if _, err := east.reg.StatBlob(ctx, "app", d); err != nil {
		t.Errorf("the blob a manifest pushed here references: %v, want fetched from the peer", err)
	}
	if _, err := east.reg.PutManifest(ctx, "app", stowage.Reference{Tag: "v1"}, "application/vnd.oci.image.manifest.v1+json", m, nil); err != nil {
		t.Errorf("the manifest push: %v", err)
	}
}
