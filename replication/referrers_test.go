package replication_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/ociapi"
	"github.com/stowage/stowage/replication"
)

// served is a region behind its real /v2/ handler, with read-through to
// the peers set on rt.
type served struct {
	*region
	rt  *replication.ReadThrough
	url string
}

func serveRegion(t *testing.T, name string) *served {
	t.Helper()
	rg := newRegion(t, name, 0)
	rt := &replication.ReadThrough{Reg: rg.reg, Log: slog.New(slog.DiscardHandler), ReferrersWait: time.Second}
	srv := httptest.NewServer(ociapi.New(rg.reg, nil).WithMiss(rt))
	t.Cleanup(srv.Close)
	return &served{region: rg, rt: rt, url: srv.URL}
}

// peers makes each region of rs a read-through peer of s.
func (s *served) peers(t *testing.T, rs ...*served) {
	t.Helper()
	for _, r := range rs {
		c, err := replication.NewClient(replication.Peer{Name: r.name, URL: r.url})
		if err != nil {
			t.Fatal(err)
		}
		s.rt.Peers = append(s.rt.Peers, c)
	}
}

// referrer pushes into repo, by digest, an artifact of artifactType whose
// subject is the manifest subject (one layer: seed), and returns its digest.
func (rg *region) referrer(t *testing.T, repo string, subject stowage.Digest, subjectSize int, artifactType, seed string) stowage.Digest {
	t.Helper()
	layer := []byte("signature of " + seed)
	ld := digest.FromBytes(layer)
	if _, err := rg.reg.PutBlob(ctx, repo, ld, bytes.NewReader(layer), int64(len(layer))); err != nil {
		t.Fatal(err)
	}
	m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":%q,`+
		`"config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2,"data":"e30="},`+
		`"layers":[{"mediaType":"application/octet-stream","digest":"%s","size":%d}],`+
		`"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%d}}`,
		artifactType, ld, len(layer), subject, subjectSize))
	empty := []byte("{}")
	if _, err := rg.reg.PutBlob(ctx, repo, digest.FromBytes(empty), bytes.NewReader(empty), 2); err != nil {
		t.Fatal(err)
	}
	d := digest.FromBytes(m)
	if _, err := rg.reg.PutManifest(ctx, repo, stowage.Reference{Digest: d}, stowage.MediaTypeOCIManifest, m, nil); err != nil {
		t.Fatal(err)
	}
	return d
}

// listReferrers asks s's /v2/ API for the referrers of subject (of
// artifactType, unless ""), as a client in that region would (or as a
// peer, with the replication header), and returns their digests, sorted.
func (s *served) listReferrers(t *testing.T, repo string, subject stowage.Digest, artifactType string, fromPeer bool) []stowage.Digest {
	t.Helper()
	u := s.url + "/v2/" + repo + "/referrers/" + string(subject)
	if artifactType != "" {
		u += "?artifactType=" + artifactType
	}
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	if fromPeer {
		req.Header.Set(replication.Header, "1")
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req) // fails, not hangs, if a peer blocks it
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var idx struct{ Manifests []stowage.Descriptor }
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&idx) != nil {
		t.Fatalf("GET %s: %s", u, resp.Status)
	}
	if artifactType != "" && resp.Header.Get("OCI-Filters-Applied") != "artifactType" {
		t.Errorf("GET %s: OCI-Filters-Applied = %q", u, resp.Header.Get("OCI-Filters-Applied"))
	}
	out := []stowage.Digest{}
	for _, m := range idx.Manifests {
		out = append(out, m.Digest)
	}
	slices.Sort(out)
	return out
}

func sorted(ds ...stowage.Digest) []stowage.Digest {
	slices.Sort(ds)
	return ds
}

// TestReferrersReadThrough: a signature and an SBOM made in east, not yet
// replicated, are listed in west's referrers answer (with west's own
// attestation, each once, the artifactType filter applied), and west then
// holds them, blobs included. A request from a peer does not fan out again.
func TestReferrersReadThrough(t *testing.T) {
	east, west := serveRegion(t, "east"), serveRegion(t, "west")
	east.peers(t, west)
	west.peers(t, east)
	const sigType, sbomType, attType = "application/vnd.example.sig", "application/vnd.example.sbom", "application/vnd.example.att"
	subject, body := east.image(t, "app", "v1", "base")
	sig := east.referrer(t, "app", subject, len(body), sigType, "east sig")
	sbom := east.referrer(t, "app", subject, len(body), sbomType, "east sbom")
	att := west.referrer(t, "app", subject, len(body), attType, "west att")
	cases := []struct {
		name         string
		artifactType string
		fromPeer     bool
		want         []stowage.Digest
	}{
		{"a peer's request does not fan out", "", true, []stowage.Digest{att}},
		{"the union", "", false, sorted(sig, sbom, att)},
		{"again: each once", "", false, sorted(sig, sbom, att)},
		{"filtered", sigType, false, []stowage.Digest{sig}},
		{"filtered: west's own", attType, false, []stowage.Digest{att}},
	}
	for _, c := range cases {
		if got := west.listReferrers(t, "app", subject, c.artifactType, c.fromPeer); !slices.Equal(got, c.want) {
			t.Errorf("%s: west lists %v, want %v", c.name, got, c.want)
		}
	}
	// One more made in east: fetched too, and only it (filter on the peer).
	late := east.referrer(t, "app", subject, len(body), sigType, "east sig 2")
	if got, want := west.listReferrers(t, "app", subject, sigType, false), sorted(sig, late); !slices.Equal(got, want) {
		t.Errorf("west lists %v of type %s, want %v", got, sigType, want)
	}
	// West keeps what it fetched, blobs included, and serves it.
	for _, d := range []stowage.Digest{sig, sbom} {
		if _, _, err := west.reg.GetManifest(ctx, "app", stowage.Reference{Digest: d}); err != nil {
			t.Errorf("west does not hold referrer %s: %v", d, err)
		}
	}
	if _, err := west.reg.StatBlob(ctx, "app", digest.FromBytes([]byte("signature of east sig"))); err != nil {
		t.Errorf("west does not hold the signature's layer: %v", err)
	}
	// East's answer holds west's attestation too (east asked west).
	if got, want := east.listReferrers(t, "app", subject, "", false), sorted(sig, sbom, att, late); !slices.Equal(got, want) {
		t.Errorf("east lists %v, want %v", got, want)
	}
}

// TestReferrersReadThroughKeepsDeletes: a referrer deleted in west (east
// still has it: the delete has not reached it) is not brought back by
// west's referrers requests; a subject deleted in west gets none of
// east's referrers.
func TestReferrersReadThroughKeepsDeletes(t *testing.T) {
	east, west := serveRegion(t, "east"), serveRegion(t, "west")
	west.peers(t, east)
	subject, body := east.image(t, "app", "v1", "base")
	sig := east.referrer(t, "app", subject, len(body), "application/vnd.example.sig", "sig")
	// West gets the signature (by replication or read-through), and
	// deletes it.
	if got := west.listReferrers(t, "app", subject, "", false); !slices.Equal(got, []stowage.Digest{sig}) {
		t.Fatalf("west lists %v, want [%s]", got, sig)
	}
	if err := west.reg.DeleteManifest(ctx, "app", stowage.Reference{Digest: sig}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if got := west.listReferrers(t, "app", subject, "", false); len(got) != 0 {
			t.Errorf("west lists %v after deleting the signature, want none", got)
		}
	}
	if _, _, err := west.reg.GetManifest(ctx, "app", stowage.Reference{Digest: sig}); stowage.ErrorCodeOf(err) != stowage.CodeManifestUnknown {
		t.Errorf("the deleted signature is back in west: %v", err)
	}

	// A subject west deleted: east's referrers of it stay out.
	other, obody := east.image(t, "app", "", "other")
	osig := east.referrer(t, "app", other, len(obody), "application/vnd.example.sig", "other sig")
	if _, err := west.rt.FetchManifest(ctx, "app", stowage.Reference{Digest: other}); err != nil {
		t.Fatal(err)
	}
	if err := west.reg.DeleteManifest(ctx, "app", stowage.Reference{Digest: other}); err != nil {
		t.Fatal(err)
	}
	if got := west.listReferrers(t, "app", other, "", false); len(got) != 0 {
		t.Errorf("west lists %v for a subject it deleted, want none", got)
	}
	if _, _, err := west.reg.GetManifest(ctx, "app", stowage.Reference{Digest: osig}); stowage.ErrorCodeOf(err) != stowage.CodeManifestUnknown {
		t.Errorf("a referrer of a subject west deleted was fetched: %v", err)
	}
}

// TestReferrersReadThroughSlowPeer: a peer that never answers is skipped
// after the wait; the answer still holds what the other peer has.
func TestReferrersReadThroughSlowPeer(t *testing.T) {
	east, west := serveRegion(t, "east"), serveRegion(t, "west")
	stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // never answers; ends when the caller gives up
	}))
	t.Cleanup(stuck.Close)
	c, err := replication.NewClient(replication.Peer{Name: "stuck", URL: stuck.URL})
	if err != nil {
		t.Fatal(err)
	}
	west.rt.Peers = append(west.rt.Peers, c) // asked first
	west.peers(t, east)
	west.rt.ReferrersWait = 500 * time.Millisecond
	subject, body := east.image(t, "app", "v1", "base")
	sig := east.referrer(t, "app", subject, len(body), "application/vnd.example.sig", "sig")
	start := time.Now()
	got := west.listReferrers(t, "app", subject, "", false)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("the answer took %s with a peer that never answers (wait %s)", took, west.rt.ReferrersWait)
	}
	if !slices.Equal(got, []stowage.Digest{sig}) {
		t.Errorf("west lists %v, want [%s] from the peer that answers", got, sig)
	}
}
