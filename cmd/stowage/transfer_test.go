package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stowage/stowage/config"
)

// TestExportImportCommands: the command lines' refusals, and an export and
// import with access control on (the admin's Basic credentials on the OCI
// API), a bad layout named in the error.
func TestExportImportCommands(t *testing.T) {
	cfg := config.Default()
	cfg.Addr, cfg.DataDir, cfg.Auth.Enabled = "127.0.0.1:0", t.TempDir(), true
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	m := NewMain(cfg, testWriter{t})
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	base := "http://" + m.Addr
	pw, err := os.ReadFile(filepath.Join(cfg.DataDir, InitialAdminPasswordFile))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	layout := filepath.Join(dir, "layout")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"export"}, 2, "-o DIR"},
		{[]string{"export", "-o", layout, "--filter", "a/(:x"}, 2, "repository expression"},
		{[]string{"export", "-o", layout, "--ago", "soon"}, 2, "--ago"},
		{[]string{"export", "-o", layout, "--since", filepath.Join(dir, "none.json")}, 2, "--since"},
		{[]string{"export", "-o", layout, "extra"}, 2, "unexpected argument"},
		{[]string{"export", "-o", layout}, 1, "STOWAGE_USERNAME"},
		{[]string{"import"}, 2, "one LAYOUT"},
		{[]string{"import", dir}, 1, "no index.json"},
	} {
		out, errOut, code := cli(t, append(tc.args, "--registry", base)...)
		if code != tc.code || !strings.Contains(out+errOut, tc.want) {
			t.Errorf("stowage %s: exit %d (want %d)\n%s%s(want %q)", strings.Join(tc.args, " "), code, tc.code, out, errOut, tc.want)
		}
	}
	t.Setenv("STOWAGE_USERNAME", "admin")
	t.Setenv("STOWAGE_PASSWORD", strings.TrimSpace(string(pw)))
	layer := make([]byte, 100_000)
	rand.Read(layer)
	pushImageAs(t, base, "admin", strings.TrimSpace(string(pw)), "team/a", "v1", layer)
	if out, errOut, code := cli(t, "export", "--registry", base, "-o", layout); code != 0 || !strings.Contains(out, "exported 1 images") {
		t.Fatalf("export with credentials: %d %s%s", code, out, errOut)
	}
	if out, errOut, code := cli(t, "import", "--registry", base, "--repository", "team/copy", layout, "--output", "json"); code != 0 || !strings.Contains(out, `"team/copy:v1"`) {
		t.Fatalf("import with credentials: %d %s%s", code, out, errOut)
	}
	// A layout whose blob was damaged is refused on the way in, naming the
	// blob (once the registry no longer has it, so it must be read).
	for _, args := range [][]string{{"delete-repo", "team/a"}, {"delete-repo", "team/copy"}, {"gc", "--min-age", "0s"}} {
		if out, errOut, code := cli(t, append(args, "--registry", base)...); code != 0 {
			t.Fatalf("%v: %s%s", args, out, errOut)
		}
	}
	blobs, _ := filepath.Glob(filepath.Join(layout, "blobs", "sha256", "*"))
	for _, b := range blobs {
		if st, _ := os.Stat(b); st.Size() == int64(len(layer)) {
			os.WriteFile(b, make([]byte, len(layer)), 0o644)
		}
	}
	if out, errOut, code := cli(t, "import", "--registry", base, "--repository", "team/other", layout); code != 1 || !strings.Contains(errOut, "DIGEST_INVALID") {
		t.Errorf("import of a damaged layout: %d %s%s", code, out, errOut)
	}
}

// pushImageAs pushes a config, one layer and a manifest with Basic auth.
func pushImageAs(t *testing.T, base, user, pw, repo, tag string, layer []byte) {
	t.Helper()
	config := []byte(`{"architecture":"amd64","os":"linux"}`)
	do := func(method, url, ct string, body []byte) {
		req, _ := http.NewRequest(method, url, bytes.NewReader(body))
		req.SetBasicAuth(user, pw)
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
