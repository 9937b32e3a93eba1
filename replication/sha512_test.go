package replication_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/stowage/stowage"
)

// TestSHA512TagPush: a sha512 manifest pushed with ?tag= arrives at the
// peer as that one manifest carrying the tag (it used to be stored again
// by its sha256, the tag on that copy: the tag's digest then differed
// between regions).
func TestSHA512TagPush(t *testing.T) {
	east, west := newRegion(t, "east", 0), newRegion(t, "west", 0)
	cfg := []byte(`{"seed":"sha512"}`)
	cd := digest.FromBytes(cfg)
	if _, err := east.reg.PutBlob(ctx, "app", cd, bytes.NewReader(cfg), int64(len(cfg))); err != nil {
		t.Fatal(err)
	}
	m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[]}`, cd, len(cfg)))
	d := digest.SHA512.FromBytes(m)
	if _, err := east.reg.PutManifest(ctx, "app", stowage.Reference{Digest: d}, "application/vnd.oci.image.manifest.v1+json", m, []string{"v1"}); err != nil {
		t.Fatal(err)
	}
	west.apply(t, east, east.changes(t, 0))
	if got := west.tag(t, "app", "v1"); got != d {
		t.Errorf("west app:v1 = %s, want the sha512 digest %s", got, d)
	}
	if _, err := west.reg.ResolveManifest(ctx, "app", stowage.Reference{Digest: digest.SHA256.FromBytes(m)}); err == nil {
		t.Error("west holds a sha256 copy of the sha512 manifest")
	}
}
