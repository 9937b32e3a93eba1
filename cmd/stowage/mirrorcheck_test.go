package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/config"
	"github.com/stowage/stowage/mgmt"
)

// TestPlainMirrorFindsDamage: the real server, encryption off, blobs on a
// mirror of two directories; one byte of each blob's file is flipped on the
// first copy. A small blob's pull is checked before it is served and comes
// from the good copy; a large blob's first pull is cut short (never the
// damaged bytes in full under its digest), and the next one gets the right
// bytes. Both faults are logged, counted, shown by `stowage storage status`
// and queued for a check at once; the repair rewrites the damaged files.
func TestPlainMirrorFindsDamage(t *testing.T) {
	dir := t.TempDir()
	east, west := filepath.Join(dir, "east"), filepath.Join(dir, "west")
	yes := true
	cfg := config.Default()
	cfg.Addr, cfg.DataDir = "127.0.0.1:0", filepath.Join(dir, "data")
	cfg.Encryption = config.Encryption{None: true}
	cfg.Storage = config.Storage{Mirror: &config.Mirror{Copies: []config.NamedStorage{
		{Name: "east", Storage: config.Storage{Filesystem: &config.Filesystem{Path: east, Fsync: &yes}}},
		{Name: "west", Storage: config.Storage{Filesystem: &config.Filesystem{Path: west, Fsync: &yes}}},
	}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	m := NewMain(cfg, &logs)
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	base := "http://" + m.Addr

	small := bytes.Repeat([]byte("config "), 1000)    // 7 kB: checked before it is served
	large := bytes.Repeat([]byte("layer.."), 300_000) // 2.1 MB: checked as it streams
	for _, b := range [][]byte{small, large} {
		putBlob(t, base, "app", b)
	}
	file := func(root string, b []byte) string {
		return filepath.Join(root, filepath.FromSlash(stowage.BlobKey(stowage.Digest(digestOf(b)))))
	}
	for _, b := range [][]byte{small, large} {
		p := file(east, b)
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		raw[len(raw)-10] ^= 0xff // near the end: a stream has sent most bytes when it finds out
		if err := os.WriteFile(p, raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pull := func(b []byte) ([]byte, error) {
		resp, err := http.Get(base + "/v2/app/blobs/" + digestOf(b))
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("pull: %s", resp.Status)
		}
		return io.ReadAll(resp.Body)
	}

	if got, err := pull(small); err != nil || !bytes.Equal(got, small) {
		t.Errorf("small blob, damaged on east: %d bytes, %v; want the blob (from west)", len(got), err)
	}
	got, err := pull(large)
	if err == nil || bytes.Equal(got, large) || len(got) >= len(large) {
		t.Errorf("large blob, damaged on east, first pull: %d of %d bytes, err %v; want the response cut short", len(got), len(large), err)
	}
	for i := range 3 {
		if got, err := pull(large); err != nil || !bytes.Equal(got, large) {
			t.Errorf("large blob, pull %d after the damage was found: %d bytes, %v; want the blob (from west)", i+2, len(got), err)
		}
	}

	out, errOut, code := cli(t, "storage", "status", "--registry", base, "--output", "json")
	var st mgmt.TopologyStatus
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || len(st.Mirrors) != 1 {
		t.Fatalf("storage status: exit %d, %s %s", code, out, errOut)
	}
	ms := st.Mirrors[0]
	if ms.PendingRepairs != 2 || ms.Copies[0].Name != "east" || ms.Copies[0].CorruptFound != 2 || ms.Copies[1].CorruptFound != 0 {
		t.Errorf("storage status after the pulls: %+v; want east with 2 damaged objects found, 2 repairs pending", ms)
	}
	out, _, _ = cli(t, "storage", "status", "--registry", base)
	if !strings.Contains(out, "damaged: 2 (each queued for repair)") {
		t.Errorf("storage status table:\n%s\nwant east's 2 damaged objects", out)
	}
	if n := strings.Count(logs.String(), "a storage copy returned damaged bytes"); n != 2 {
		t.Errorf("%d log lines about damaged bytes, want 2 (one per object):\n%s", n, logs.String())
	}

	if err := m.topo.upkeep(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]byte{small, large} {
		if e, err := os.ReadFile(file(east, b)); err != nil || !bytes.Equal(e, b) {
			t.Errorf("after the repair, east's copy of %s is still damaged (%v)", digestOf(b), err)
		}
	}
}
