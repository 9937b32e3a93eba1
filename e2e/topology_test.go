package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Storage topologies with the real server: mirrored disks and shards.

func writeConfig(t *testing.T, yaml string) string {
	p := filepath.Join(t.TempDir(), "stowage.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestMirroredDisks: delete one copy of a layer and corrupt another layer's
// copy: every pull still succeeds, and `stowage scrub` repairs both copies.
func TestMirroredDisks(t *testing.T) {
	dir := t.TempDir()
	east, west := filepath.Join(dir, "east"), filepath.Join(dir, "west")
	cfg := writeConfig(t, fmt.Sprintf(`
storage:
  mirror:
    copies:
      - name: east
        filesystem: {path: %s}
      - name: west
        filesystem: {path: %s}
`, east, west))
	s := startServer(t, dir, "--config="+cfg)
	layers := map[string][]byte{}
	for i := range 6 {
		b := randomBytes(t, 100_000+i*50_000)
		layers[pushChunked(t, s.URL, "mirror/app", b, 70_000)] = b
	}
	var ds []string
	for d := range layers {
		ds = append(ds, d)
	}
	// One copy of ds[0] gone, one copy of ds[1] damaged (in each mirror).
	if err := os.Remove(filepath.Join(east, "blobs", "sha256", ds[0][7:9], ds[0][7:])); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(east, "blobs", "sha256", ds[1][7:9], ds[1][7:])
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)/3] ^= 0x55
	os.WriteFile(p, raw, 0o644)
	for round := range 3 {
		for d, b := range layers {
			r := mustDo(t, http.MethodGet, s.URL, "/v2/mirror/app/blobs/"+d, nil, nil)
			if r.Status != 200 || !bytes.Equal(r.Body, b) {
				t.Errorf("round %d: pull %s with one bad copy: %s", round, d[:19], r)
			}
		}
	}
	out, err := stowageCLI(t, "scrub", "--registry", s.URL, "--output", "json")
	var rep struct {
		Blobs, OK, Lost int
		Repaired        int `json:"repairedCopies"`
		Missing         int `json:"missingCopies"`
		Corrupt         int `json:"corruptCopies"`
	}
	if err != nil || json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &rep) != nil {
		t.Fatalf("stowage scrub: %v\n%s", err, out)
	}
	if rep.Blobs != 6 || rep.Missing != 1 || rep.Corrupt != 1 || rep.Repaired != 2 || rep.Lost != 0 {
		t.Errorf("scrub report: %+v\n%s", rep, out)
	}
	if got, err := os.ReadFile(filepath.Join(east, "blobs", "sha256", ds[0][7:9], ds[0][7:])); err != nil || len(got) == 0 {
		t.Errorf("the deleted copy was not rewritten: %v", err)
	}
	if out, err := stowageCLI(t, "storage", "status", "--registry", s.URL); err != nil || !strings.Contains(out, "east") {
		t.Errorf("storage status: %v\n%s", err, out)
	}
	m := mustDo(t, http.MethodGet, s.URL, "/metrics", nil, nil)
	for _, want := range []string{`stowage_storage_copy_state{copy="east",mirror="storage",state="healthy"}`, "stowage_scrub_last_repaired_copies 2", "stowage_encryption_data_keys{"} {
		if !strings.Contains(string(m.Body), want) {
			t.Errorf("/metrics lacks %s:\n%s", want, m.Body)
		}
	}
	httpClient.CloseIdleConnections()
}

// TestShardsGrow: pushes land on two shards; the registry restarts with a
// third; everything stays readable before and after `stowage storage
// rebalance`, which moves only the objects the new shard owns.
func TestShardsGrow(t *testing.T) {
	dir := t.TempDir()
	shardCfg := func(n int) string {
		var b strings.Builder
		b.WriteString("storage:\n  shard:\n    shards:\n")
		for i := 1; i <= n; i++ {
			fmt.Fprintf(&b, "      - name: account-%d\n        filesystem: {path: %s}\n", i, filepath.Join(dir, fmt.Sprint("account-", i)))
		}
		return writeConfig(t, b.String())
	}
	s := startServer(t, dir, "--config="+shardCfg(2))
	blobs := map[string][]byte{}
	for i := range 60 {
		b := randomBytes(t, 2000+i)
		if i%3 == 0 {
			blobs[pushChunked(t, s.URL, "shard/app", b, 700)] = b
		} else {
			blobs[pushBlob(t, s.URL, "shard/app", b)] = b
		}
	}
	httpClient.CloseIdleConnections()
	s.Stop()
	s = startServer(t, dir, "--config="+shardCfg(3))
	check := func(what string) {
		for d, b := range blobs {
			if r := mustDo(t, http.MethodGet, s.URL, "/v2/shard/app/blobs/"+d, nil, nil); r.Status != 200 || !bytes.Equal(r.Body, b) {
				t.Fatalf("%s: pull %s: %s", what, d[:19], r)
			}
		}
	}
	check("with a new shard, before the rebalance")
	out, err := stowageCLI(t, "storage", "rebalance", "--registry", s.URL)
	if err != nil {
		t.Fatalf("storage rebalance: %v\n%s", err, out)
	}
	t.Logf("rebalance: %s", strings.TrimSpace(out))
	check("after the rebalance")
	files := 0
	filepath.Walk(filepath.Join(dir, "account-3"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && strings.Contains(p, "blobs") {
			files++
		}
		return nil
	})
	// Blobs and their encryption: about a third of them belong on the new shard.
	if files < 5 || files > 45 {
		t.Errorf("the new shard holds %d blob objects after the rebalance, want about a third of %d", files, len(blobs))
	}
	if out, _ := stowageCLI(t, "storage", "rebalance", "--dry-run", "--registry", s.URL); !strings.Contains(out, "0 were away") {
		t.Errorf("a second rebalance finds misplaced objects: %s", out)
	}
	httpClient.CloseIdleConnections()
}
