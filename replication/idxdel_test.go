package replication_test

import (
	"fmt"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/replication"
)

const ociIndex = "application/vnd.oci.image.index.v1+json"

// TestIndexReassertsDeletedChild (review B1): east pushes child manifest
// M, replicated to north; cut off, north pushes index I (v1) listing M,
// and east deletes M. On heal, north refuses M's delete (used by index)
// and east applies I: the index is later than the delete, so east fetches
// M back from north and keeps it. Both end with I and M, also when the
// index's clock reading is older than the delete's: the two were
// concurrent (north refuses the delete), and only the index winning
// converges without losing an acknowledged push.
func TestIndexReassertsDeletedChild(t *testing.T) {
	for _, tc := range []struct {
		name        string
		indexFirst  bool // the index is pushed before the delete (older)
		wantApplied bool
	}{
		{"index newer than the delete", false, true},
		{"index older than the delete", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			east, north := newRegion(t, "east", 0), newRegion(t, "north", 0)
			from := east.newest(t)
			md, m := east.image(t, "app", "", "child")
			north.apply(t, east, east.changes(t, from))
			fromE, fromN := east.newest(t), north.newest(t)
			idx := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"%s","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%d}]}`, ociIndex, md, len(m)))
			pushIndex := func() {
				if _, err := north.reg.PutManifest(ctx, "app", stowage.Reference{Tag: "v1"}, ociIndex, idx, nil); err != nil {
					t.Fatal(err)
				}
			}
			deleteChild := func() {
				if _, err := east.reg.DeleteImage(ctx, "app", stowage.Reference{Digest: md}, false); err != nil {
					t.Fatal(err)
				}
			}
			if tc.indexFirst {
				pushIndex()
				deleteChild()
			} else {
				deleteChild()
				pushIndex()
			}
			// east fetches what an index lists from north (read-through).
			svc, err := replication.New(east.reg, east.f, replication.Options{Region: "east", ReadThrough: true,
				Peers: []replication.Peer{{Name: "north", URL: serve(t, north).URL}}})
			if err != nil {
				t.Fatal(err)
			}
			east.app.Fetch = svc.ReadThrough.FetchReferences
			// heal: each applies the other's changes, twice.
			for i := 0; i < 2; i++ {
				for _, r := range north.apply(t, east, east.changes(t, fromE)) {
					t.Logf("north: %+v", r)
				}
				var got []replication.Result
				for _, ch := range north.changes(t, fromN) {
					r, err := east.app.Apply(ctx, ch)
					if err != nil && tc.wantApplied {
						t.Fatalf("east applying the index: %v", err)
					}
					got = append(got, r)
				}
				t.Logf("east: %+v", got)
			}
			id := digest.FromBytes(idx)
			if d := north.tag(t, "app", "v1"); d != id {
				t.Fatalf("north v1 = %q, want the index %s (the acknowledged push)", d, id)
			}
			if d := east.tag(t, "app", "v1"); tc.wantApplied && d != id {
				t.Errorf("east v1 = %q, want the index %s: the index is later than the delete", d, id)
			} else if !tc.wantApplied && d != "" {
				t.Errorf("east v1 = %q, want none: the child was deleted after the index", d)
			}
			_, err = east.reg.ResolveManifest(ctx, "app", stowage.Reference{Digest: md})
			if tc.wantApplied && err != nil {
				t.Errorf("east child %s: %v, want fetched back and kept", md, err)
			}
			if _, err := north.reg.ResolveManifest(ctx, "app", stowage.Reference{Digest: md}); err != nil {
				t.Errorf("north child: %v, want kept (used by the index)", err)
			}
		})
	}
}
