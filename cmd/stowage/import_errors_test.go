package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestImportFailures: an import that cannot succeed says why, names what
// was pushed and what was refused, and says to run it again only when that
// can help. A damaged layout and an incremental layout without its base
// are found before anything is uploaded: the registry is left as it was
// (no repository in the catalog). A tag immutability refusal stops only
// the image refused; the others are pushed and listed.
func TestImportFailures(t *testing.T) {
	src, dst := startMain(t, t.TempDir()), startMain(t, t.TempDir())
	defer src.Close()
	defer dst.Close()
	sb, db := "http://"+src.Addr, "http://"+dst.Addr
	layer1, layer2 := bytes.Repeat([]byte("layer one "), 20_000), bytes.Repeat([]byte("layer two "), 20_000)
	pushPlain(t, sb, "team/a", "v1", []byte(`{"os":"linux","n":1}`), layer1)
	pushPlain(t, sb, "team/b", "v1", []byte(`{"os":"linux","n":2}`), layer2)
	dir := t.TempDir()
	l1, bad, l2, l3 := filepath.Join(dir, "l1"), filepath.Join(dir, "bad"), filepath.Join(dir, "l2"), filepath.Join(dir, "l3")
	mustCLI(t, "export", "--registry", sb, "-o", l1)
	// bad: l1 with one byte of layer1 flipped.
	mustCLI(t, "export", "--registry", sb, "-o", bad)
	p := filepath.Join(bad, "blobs", "sha256", strings.TrimPrefix(digestOf(layer1), "sha256:"))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 1
	os.WriteFile(p, b, 0o644)
	// l2: incremental after l1, an image whose layer only l1 holds.
	pushPlain(t, sb, "team/c", "v1", []byte(`{"os":"linux","n":3}`), layer1)
	mustCLI(t, "export", "--registry", sb, "--since", filepath.Join(l1, "stowage-export.json"), "-o", l2)

	catalog := func() string {
		resp, err := http.Get(db + "/v2/_catalog")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.TrimSpace(string(b))
	}
	for _, tc := range []struct {
		layout string
		want   []string
	}{
		{bad, []string{"blob " + digestOf(layer1) + " in the layout", "DIGEST_INVALID", "the layout is damaged; write it again", "nothing was pushed"}},
		{l2, []string{"blob " + digestOf(layer1) + " (for team/c) is neither in the layout nor in the registry", "(--since) first", "nothing was pushed"}},
	} {
		out, errOut, code := cli(t, "import", "--registry", db, tc.layout)
		for _, w := range tc.want {
			if code != 1 || !strings.Contains(errOut, w) {
				t.Errorf("import %s: exit %d, want 1 and %q in:\n%s%s", filepath.Base(tc.layout), code, w, out, errOut)
			}
		}
		for _, no := range []string{"cannot reach", "run the same command again"} {
			if strings.Contains(errOut, no) {
				t.Errorf("import %s says %q:\n%s", filepath.Base(tc.layout), no, errOut)
			}
		}
		if c := catalog(); c != `{"repositories":[]}` {
			t.Errorf("after the failed import of %s the catalog is %s, want it empty", filepath.Base(tc.layout), c)
		}
	}

	// Immutability: team/a:v1 moved at the source, refused at the target;
	// team/c:v1 and team/d:v1 are pushed all the same, and said to be.
	mustCLI(t, "import", "--registry", db, l1)
	mustCLI(t, "immutability", "set", "team/a:.*", "--registry", db)
	pushPlain(t, sb, "team/a", "v1", []byte(`{"os":"linux","n":4}`), layer2)
	pushPlain(t, sb, "team/d", "v1", []byte(`{"os":"linux","n":5}`), layer2)
	mustCLI(t, "export", "--registry", sb, "-o", l3)
	out, errOut, code := cli(t, "import", "--registry", db, l3)
	for _, w := range []string{"DENIED", "tags pushed: team/c:v1, team/d:v1", "refused:\n    team/a:v1: push manifest team/a:v1: DENIED", "a rerun is refused the same way"} {
		if code != 1 || !strings.Contains(errOut, w) {
			t.Errorf("import with an immutable tag moved: exit %d, want 1 and %q in:\n%s%s", code, w, out, errOut)
		}
	}
	if strings.Contains(errOut, "run the same command again") || strings.Contains(errOut, "0 images") {
		t.Errorf("import with an immutable tag moved:\n%s", errOut)
	}
	// --output json: the report, with what was refused.
	out, _, code = cli(t, "import", "--registry", db, l3, "--output", "json")
	if code != 1 || !strings.Contains(out, `"refused"`) || !strings.Contains(out, `"image": "team/a:v1"`) {
		t.Errorf("import --output json with an immutable tag moved: exit %d\n%s", code, out)
	}
	for _, ref := range []string{"team/c/manifests/v1", "team/d/manifests/v1"} {
		req, _ := http.NewRequest(http.MethodHead, db+"/v2/"+ref, nil)
		req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
		if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
			t.Errorf("HEAD %s after the import: %v %v", ref, resp, err)
		}
	}
}

func mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := cli(t, args...)
	if code != 0 {
		t.Fatalf("stowage %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// pushPlain pushes a config, one layer and an OCI manifest without
// credentials.
func pushPlain(t *testing.T, base, repo, tag string, config, layer []byte) {
	t.Helper()
	do := func(method, url, ct string, body []byte) {
		req, _ := http.NewRequest(method, url, bytes.NewReader(body))
		req.Header.Set("Content-Type", ct)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusCreated {
			t.Fatalf("%s %s: %v %v", method, url, resp, err)
		}
		resp.Body.Close()
	}
	for _, b := range [][]byte{config, layer} {
		do(http.MethodPost, base+"/v2/"+repo+"/blobs/uploads/?digest="+digestOf(b), "application/octet-stream", b)
	}
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`,
		digestOf(config), len(config), digestOf(layer), len(layer))
	do(http.MethodPut, base+"/v2/"+repo+"/manifests/"+tag, "application/vnd.oci.image.manifest.v1+json", []byte(m))
}
