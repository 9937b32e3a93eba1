package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestImportFrom: `stowage import --from` makes the target registry copy an
// image from a source registry (both real servers), by tag and by digest,
// and refuses bad command lines before it asks the server.
func TestImportFrom(t *testing.T) {
	src, dst := startMain(t, t.TempDir()), startMain(t, t.TempDir())
	defer src.Close()
	defer dst.Close()
	pushImage(t, "http://"+src.Addr, "team/app", "v1", []byte("import layer one"), []byte("import layer two"))
	base := "http://" + dst.Addr

	out, errOut, code := cli(t, "import", "--registry", base, "--from", src.Addr+"/team/app:v1", "--to", "copy/app:v1", "--plain-http", "--output", "json")
	var rep struct {
		Digest      string
		Blobs       int
		BytesCopied int64
		Tags        []string
	}
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || rep.Blobs != 3 || len(rep.Tags) != 1 {
		t.Fatalf("import: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "progress:") {
		t.Errorf("no progress summary on stderr (not a terminal): %q", errOut)
	}
	req, _ := http.NewRequest(http.MethodHead, base+"/v2/copy/app/manifests/v1", nil)
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != rep.Digest {
		t.Fatalf("HEAD copy/app:v1: %v %v", resp, err)
	}

	// By digest, to the same repository name: every blob is already here.
	out, errOut, code = cli(t, "import", "--registry", base, "--from", src.Addr+"/team/app@"+rep.Digest, "--plain-http")
	if code != 0 || !strings.Contains(out, "0 blobs copied") || !strings.Contains(out, "3 already here") {
		t.Errorf("import by digest: exit %d\n%s%s", code, out, errOut)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"import", "--registry", base}, "--from"},
		{[]string{"import", "--registry", base, "--from", "ghcr.io/Bad:v1"}, "NAME_INVALID"},
		{[]string{"import", "--registry", base, "--from", src.Addr + "/team/app:v1", "extra"}, "unexpected argument"},
	} {
		if _, errOut, code := cli(t, tc.args...); code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, %q; want 2 and %q", tc.args, code, errOut, tc.want)
		}
	}
	_, errOut, code = cli(t, "import", "--registry", base, "--from", src.Addr+"/team/app:nope", "--plain-http")
	if code != 1 || !strings.Contains(errOut, "404") {
		t.Errorf("missing tag: exit %d %q", code, errOut)
	}
	if !importFromRequested([]string{"--to", "x", "--from=a/b:c"}) || importFromRequested([]string{"layout-dir"}) {
		t.Error("importFromRequested")
	}
}
