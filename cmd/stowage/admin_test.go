package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/gc"
	space "github.com/stowage/stowage/usage"
)

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// pushImage pushes a config, the given layers and a manifest over HTTP.
func pushImage(t *testing.T, base, repo, tag string, layers ...[]byte) {
	t.Helper()
	config := []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","tag":%q}`, tag))
	var descs []string
	for _, b := range append([][]byte{config}, layers...) {
		resp, err := http.Post(base+"/v2/"+repo+"/blobs/uploads/?digest="+digestOf(b), "application/octet-stream", bytes.NewReader(b))
		if err != nil || resp.StatusCode != http.StatusCreated {
			t.Fatalf("push blob: %v %v", resp, err)
		}
		resp.Body.Close()
	}
	for _, l := range layers {
		descs = append(descs, fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}`, digestOf(l), len(l)))
	}
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[%s]}`,
		digestOf(config), len(config), strings.Join(descs, ","))
	req, _ := http.NewRequest(http.MethodPut, base+"/v2/"+repo+"/manifests/"+tag, strings.NewReader(m))
	req.Header.Set("Content-Type", stowage.MediaTypeOCIManifest)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("push manifest: %v %v", resp, err)
	}
	resp.Body.Close()
}

func cli(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), code
}

// TestAdminCommands drives the admin CLI against the real server: usage,
// each kind of delete with a dry run, and gc, whose freed bytes must equal
// what the delete predicted.
func TestAdminCommands(t *testing.T) {
	m := startMain(t, t.TempDir())
	defer m.Close()
	base := "http://" + m.Addr
	shared, onlyA, onlyB := make([]byte, 300_000), make([]byte, 200_000), make([]byte, 100_000)
	for _, b := range [][]byte{shared, onlyA, onlyB} {
		rand.Read(b)
	}
	pushImage(t, base, "team/a", "v1", shared, onlyA)
	pushImage(t, base, "team/b", "v1", shared, onlyB)

	out, errOut, code := cli(t, "usage", "--registry", base)
	if code != 0 || !strings.Contains(out, "team/a") || !strings.Contains(out, "dedup ratio") {
		t.Fatalf("usage: %d\n%s%s", code, out, errOut)
	}
	out, _, _ = cli(t, "usage", "--registry", base, "--output", "json")
	var u space.Usage
	if err := json.Unmarshal([]byte(out), &u); err != nil || u.Repositories != 2 || u.LogicalBytes <= u.PhysicalBytes {
		t.Fatalf("usage json: %v %+v", err, u)
	}
	// --limit: the first rows only (pages of that size), the totals whole.
	out, _, code = cli(t, "usage", "--registry", base, "--limit", "1")
	if code != 0 || !strings.Contains(out, "team/a") || strings.Contains(out, "team/b") || !strings.Contains(out, "(the first 1 of 2 repositories: --limit)") {
		t.Fatalf("usage --limit 1: %d\n%s", code, out)
	}
	out, _, _ = cli(t, "usage", "--registry", base, "--limit", "1", "--output", "json")
	var first space.Usage
	if err := json.Unmarshal([]byte(out), &first); err != nil || len(first.PerRepository) != 1 || first.Repositories != 2 || first.LogicalBytes != u.LogicalBytes {
		t.Fatalf("usage --limit 1 json: %v %+v", err, first)
	}

	// A dry run predicts; the real delete agrees; gc frees exactly that.
	out, _, code = cli(t, "delete", "--registry", base, "--dry-run", "--output", "json", "team/a:v1")
	var dry stowage.DeleteReport
	if code != 0 || json.Unmarshal([]byte(out), &dry) != nil || !dry.DryRun || dry.BytesFreed < int64(len(onlyA)) || dry.BytesFreed >= int64(len(onlyA)+len(shared)) {
		t.Fatalf("delete --dry-run: %d %s", code, out)
	}
	if out, _, _ := cli(t, "usage", "--registry", base, "team/a"); !strings.Contains(out, "v1") {
		t.Fatalf("a dry run deleted something:\n%s", out)
	}
	out, _, code = cli(t, "delete", "--registry", base, "team/a:v1")
	if code != 0 || !strings.Contains(out, "deleted manifest team/a@") {
		t.Fatalf("delete: %d %s", code, out)
	}
	// A plain gc frees nothing yet (grace period and lease, 1h each) and
	// says what waits, until when, and how to collect it now.
	out, errOut, code = cli(t, "gc", "--registry", base)
	waitLine := fmt.Sprintf("%d blobs (%s) are waiting for the grace period or a lease (until ", dry.BlobsFreed, bytesStr(dry.BytesFreed))
	if code != 0 || !strings.Contains(out, "freed 0 B") || !strings.Contains(out, waitLine) || !strings.Contains(out, "run `stowage gc --min-age 0s` to collect them now") {
		t.Fatalf("plain gc: %d\n%s%s\nwant %q", code, out, errOut, waitLine)
	}
	out, _, code = cli(t, "gc", "--registry", base, "--dry-run", "--output", "json")
	var rep gc.Report
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || rep.Waiting == nil || rep.Waiting.Blobs != int64(dry.BlobsFreed) ||
		rep.Waiting.Bytes != dry.BytesFreed || rep.Waiting.Earliest == "" || rep.Waiting.Latest < rep.Waiting.Earliest {
		t.Fatalf("gc --output json: %d %s; want waiting %d blobs, %d bytes", code, out, dry.BlobsFreed, dry.BytesFreed)
	}
	out, errOut, code = cli(t, "gc", "--registry", base, "--min-age", "0s")
	if code != 0 || !strings.Contains(out, fmt.Sprintf("freed %s", bytesStr(dry.BytesFreed))) {
		t.Fatalf("gc: %d\n%s%s\nwant %s freed", code, out, errOut, bytesStr(dry.BytesFreed))
	}
	if strings.Contains(out, "waiting") {
		t.Errorf("gc --min-age 0s left blobs waiting:\n%s", out)
	}
	// team/b still pulls its shared layer.
	if r, err := http.Get(base + "/v2/team/b/blobs/" + digestOf(shared)); err != nil || r.StatusCode != 200 {
		t.Fatalf("shared layer gone after gc: %v %v", r, err)
	}

	// Errors a person understands.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"delete", "--registry", base, "team/a:nope"}, "MANIFEST_UNKNOWN"},
		{[]string{"delete", "--registry", base, "Bad Name:v1"}, "NAME_INVALID"},
		{[]string{"untag", "--registry", base, "team/b@" + digestOf(shared)}, "untag needs repo:tag"},
		{[]string{"usage", "--registry", "http://127.0.0.1:1"}, "cannot reach the registry"},
		{[]string{"gc", "--registry", base, "--min-age", "soon"}, "want a duration"},
	} {
		_, errOut, code := cli(t, tc.args...)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want an error containing %q", tc.args, code, errOut, tc.want)
		}
	}
	out, _, code = cli(t, "delete-repo", "--registry", base, "team/b")
	if code != 0 || !strings.Contains(out, "frees") {
		t.Errorf("delete-repo: %d %s", code, out)
	}
	if _, _, code := cli(t, "gc", "--help"); code != 0 {
		t.Errorf("gc --help exit %d, want 0", code)
	}
}

// TestPolicyCommands drives purge and retention against the real server.
func TestPolicyCommands(t *testing.T) {
	m := startMain(t, t.TempDir())
	defer m.Close()
	base := "http://" + m.Addr
	for i := 1; i <= 3; i++ {
		layer := make([]byte, 10_000)
		rand.Read(layer)
		pushImage(t, base, "ci/app", fmt.Sprintf("pr-%d", i), layer)
	}
	pushImage(t, base, "ci/app", "release", []byte("release layer"))

	out, errOut, code := cli(t, "purge", "--registry", base, "--filter", "ci/.*:pr-.*", "--keep", "1", "--untagged", "--dry-run")
	if code != 0 || !strings.Contains(out, "would delete tag ci/app:pr-1") || !strings.Contains(out, "would delete tag ci/app:pr-2") ||
		strings.Contains(out, "pr-3") || !strings.Contains(out, "2 tags, 2 manifests") {
		t.Fatalf("purge --dry-run: %d\n%s%s", code, out, errOut)
	}
	out, _, code = cli(t, "purge", "--registry", base, "--filter", "ci/.*:pr-.*", "--keep", "1", "--untagged")
	if code != 0 || !strings.Contains(out, "deleted tag ci/app:pr-1") {
		t.Fatalf("purge: %d\n%s", code, out)
	}
	resp, err := http.Get(base + "/v2/ci/app/tags/list")
	if err != nil {
		t.Fatal(err)
	}
	var tags struct{ Tags []string }
	json.NewDecoder(resp.Body).Decode(&tags)
	resp.Body.Close()
	if fmt.Sprint(tags.Tags) != "[pr-3 release]" {
		t.Errorf("tags after purge: %v, want [pr-3 release]", tags.Tags)
	}

	if _, _, code := cli(t, "untag", "--registry", base, "ci/app:pr-3"); code != 0 {
		t.Fatal("untag failed")
	}
	if out, _, _ := cli(t, "retention", "show", "--registry", base); !strings.Contains(out, "disabled") || !strings.Contains(out, "not run yet") {
		t.Errorf("retention show: %s", out)
	}
	if _, errOut, code := cli(t, "retention", "set", "--registry", base, "--days", "500"); code == 0 || !strings.Contains(errOut, "0 to 365") {
		t.Errorf("retention set --days 500: %d %s", code, errOut)
	}
	if _, errOut, code := cli(t, "retention", "set", "--registry", base, "--enabled=true", "--days", "0"); code != 0 {
		t.Fatalf("retention set: %s", errOut)
	}
	out, _, code = cli(t, "retention", "run", "--registry", base)
	if code != 0 || !strings.Contains(out, "1 manifests") || !strings.Contains(out, "(retention)") {
		t.Errorf("retention run: %d %s", code, out)
	}
	if out, _, _ := cli(t, "retention", "show", "--registry", base); !strings.Contains(out, "enabled, 0 days") || !strings.Contains(out, "deleted 1 manifests") {
		t.Errorf("retention show after a run: %s", out)
	}
	if _, errOut, code := cli(t, "purge", "--registry", base); code != 2 || !strings.Contains(errOut, "--filter") {
		t.Errorf("purge without a filter: %d %s", code, errOut)
	}
	if _, errOut, code := cli(t, "purge", "--registry", base, "--filter", "ci/(:x"); code == 0 || !strings.Contains(errOut, "repository expression") {
		t.Errorf("purge with a bad filter: %d %s", code, errOut)
	}
}

// TestLockCommands: locks and immutability through the CLI and the real
// server, seen by an OCI client.
func TestLockCommands(t *testing.T) {
	m := startMain(t, t.TempDir())
	defer m.Close()
	base := "http://" + m.Addr
	pushImage(t, base, "prod/app", "v1", []byte("layer one"))

	out, errOut, code := cli(t, "lock", "--registry", base, "prod/app:v1", "--delete=false", "--write=false")
	if code != 0 || !strings.Contains(out, "writeEnabled=false deleteEnabled=false readEnabled=true listEnabled=true") {
		t.Fatalf("lock: %d %s%s", code, out, errOut)
	}
	// An OCI client overwriting the tag gets DENIED with the lock named.
	pushImageExpect(t, base, "prod/app", "v1", []byte("layer two"), http.StatusForbidden, "write-locked")
	if _, errOut, code := cli(t, "untag", "--registry", base, "prod/app:v1"); code == 0 || !strings.Contains(errOut, "DENIED") || !strings.Contains(errOut, "delete-locked") {
		t.Errorf("untag of a delete-locked tag: %d %s", code, errOut)
	}
	if out, _, _ := cli(t, "lock", "--registry", base, "prod/app:v1"); !strings.Contains(out, "deleteEnabled=false") {
		t.Errorf("lock show: %s", out)
	}
	cli(t, "lock", "--registry", base, "prod/app:v1", "--delete=true", "--write=true")
	if _, _, code := cli(t, "immutability", "set", "--registry", base, "prod/.*:v[0-9]+"); code != 0 {
		t.Fatal("immutability set failed")
	}
	if out, _, _ := cli(t, "immutability", "show", "--registry", base); !strings.Contains(out, "prod/.*:v[0-9]+") {
		t.Errorf("immutability show: %s", out)
	}
	pushImageExpect(t, base, "prod/app", "v1", []byte("layer three"), http.StatusForbidden, "immutable")
	pushImageExpect(t, base, "prod/app", "latest", []byte("layer three"), http.StatusCreated, "")
	// A read-locked repository refuses pulls.
	cli(t, "lock", "--registry", base, "prod/app", "--read=false")
	if r, err := http.Get(base + "/v2/prod/app/manifests/v1"); err != nil || r.StatusCode != http.StatusForbidden {
		t.Errorf("pull from a read-locked repository: %v %v, want 403", r, err)
	}
	if _, errOut, code := cli(t, "lock", "--registry", base, "prod/nope:v1", "--read=false"); code == 0 || !strings.Contains(errOut, "MANIFEST_UNKNOWN") {
		t.Errorf("lock of a missing tag: %d %s", code, errOut)
	}
}

// pushImageExpect pushes an image and checks the manifest PUT's status.
func pushImageExpect(t *testing.T, base, repo, tag string, layer []byte, status int, msg string) {
	t.Helper()
	config := []byte(`{"os":"linux"}`)
	for _, b := range [][]byte{config, layer} {
		resp, err := http.Post(base+"/v2/"+repo+"/blobs/uploads/?digest="+digestOf(b), "application/octet-stream", bytes.NewReader(b))
		if err != nil || resp.StatusCode != http.StatusCreated {
			t.Fatalf("push blob: %v %v", resp, err)
		}
		resp.Body.Close()
	}
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`,
		digestOf(config), len(config), digestOf(layer), len(layer))
	req, _ := http.NewRequest(http.MethodPut, base+"/v2/"+repo+"/manifests/"+tag, strings.NewReader(m))
	req.Header.Set("Content-Type", stowage.MediaTypeOCIManifest)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	body.ReadFrom(resp.Body)
	if resp.StatusCode != status || !strings.Contains(body.String(), msg) {
		t.Errorf("push %s:%s: %d %s, want %d with %q", repo, tag, resp.StatusCode, body.String(), status, msg)
	}
}

// TestSoftDeleteCommands: delete with soft delete on, list, restore.
func TestSoftDeleteCommands(t *testing.T) {
	m := startMain(t, t.TempDir())
	defer m.Close()
	base := "http://" + m.Addr
	pushImage(t, base, "team/app", "v1", []byte("soft layer"))
	if out, _, code := cli(t, "soft-delete", "set", "--registry", base, "--enabled=true", "--days", "14"); code != 0 || !strings.Contains(out, "14 days") {
		t.Fatalf("soft-delete set: %s", out)
	}
	out, _, code := cli(t, "delete", "--registry", base, "team/app:v1")
	if code != 0 || !strings.Contains(out, "recycle bin until") {
		t.Fatalf("delete: %s", out)
	}
	if r, _ := http.Get(base + "/v2/team/app/manifests/v1"); r.StatusCode != http.StatusNotFound {
		t.Errorf("a soft-deleted tag still pulls: %d", r.StatusCode)
	}
	out, _, _ = cli(t, "recycle-bin", "--registry", base, "--output", "json")
	var bin struct{ Entries []struct{ ID int64 } }
	if err := json.Unmarshal([]byte(out), &bin); err != nil || len(bin.Entries) != 1 {
		t.Fatalf("recycle-bin: %v %s", err, out)
	}
	// gc tells what only the recycle bin keeps (outside review): the
	// manifest and its layer; not the config, which a live image shares.
	pushImage(t, base, "team/other", "v1", []byte("another layer"))
	for _, args := range [][]string{{"gc"}, {"gc", "--min-age", "0s"}} {
		out, errOut, code := cli(t, append(args, "--registry", base)...)
		if code != 0 || !strings.Contains(out, "2 blobs (") || !strings.Contains(out, "kept only by the recycle bin (soft delete, 1 entries;") || !strings.Contains(out, "stowage restore ID") {
			t.Errorf("stowage %s: exit %d\n%s%s; want the 2 blobs the recycle bin keeps", strings.Join(args, " "), code, out, errOut)
		}
	}
	out, _, _ = cli(t, "gc", "--registry", base, "--output", "json")
	var rep struct {
		Recycled *struct {
			Entries, Blobs, Bytes int64
			Earliest, Latest      string
		}
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Recycled == nil || rep.Recycled.Blobs != 2 || rep.Recycled.Entries != 1 ||
		rep.Recycled.Bytes <= int64(len("soft layer")) || rep.Recycled.Bytes > 2000 || rep.Recycled.Earliest == "" {
		t.Errorf("gc --output json: recycled %+v (%v)\n%s", rep.Recycled, err, out)
	}
	out, errOut, code := cli(t, "restore", "--registry", base, fmt.Sprint(bin.Entries[0].ID))
	if code != 0 || !strings.Contains(out, "with tags v1") {
		t.Fatalf("restore: %d %s%s", code, out, errOut)
	}
	if r, _ := http.Get(base + "/v2/team/app/manifests/v1"); r.StatusCode != http.StatusOK {
		t.Errorf("after restore: %d", r.StatusCode)
	}
	if _, errOut, code := cli(t, "soft-delete", "set", "--registry", base, "--days", "91"); code == 0 || !strings.Contains(errOut, "1 to 90") {
		t.Errorf("soft-delete --days 91: %s", errOut)
	}
}

func TestPurgePolicyCommands(t *testing.T) {
	m := startMain(t, t.TempDir())
	defer m.Close()
	base := "http://" + m.Addr
	if out, errOut, code := cli(t, "purge-policy", "set", "--registry", base, "nightly", "--filter", "ci/.*:pr-.*", "--ago", "30d", "--keep", "5", "--every", "24h"); code != 0 || !strings.Contains(out, "every 24h") {
		t.Fatalf("purge-policy set: %d %s%s", code, out, errOut)
	}
	if out, _, _ := cli(t, "purge-policy", "list", "--registry", base); !strings.Contains(out, "nightly: every 24h, filters ci/.*:pr-.*, ago 30d, keep 5") {
		t.Errorf("purge-policy list: %s", out)
	}
	if _, errOut, code := cli(t, "purge-policy", "set", "--registry", base, "bad", "--every", "24h"); code == 0 || !strings.Contains(errOut, "at least one filter") {
		t.Errorf("a policy without a filter: %d %s", code, errOut)
	}
	if out, _, code := cli(t, "purge-policy", "delete", "--registry", base, "nightly"); code != 0 || !strings.Contains(out, "deleted") {
		t.Errorf("purge-policy delete: %s", out)
	}
	if out, _, _ := cli(t, "purge-policy", "list", "--registry", base); !strings.Contains(out, "no purge policies") {
		t.Errorf("after delete: %s", out)
	}
}
