package mgmt_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/mgmt"
	"github.com/stowage/stowage/ociapi"
)

// importCall POSTs an import and returns the status, the progress lines and
// the last line.
func importCall(t *testing.T, srv *httptest.Server, body string) (int, []map[string]any, map[string]any) {
	t.Helper()
	res, err := http.Post(srv.URL+"/api/v1/imports", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var lines []map[string]any
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		lines = append(lines, m)
	}
	if len(lines) == 0 {
		t.Fatalf("no answer (status %d)", res.StatusCode)
	}
	return res.StatusCode, lines[:len(lines)-1], lines[len(lines)-1]
}

// TestImportEndpoint: POST /api/v1/imports copies an image from another
// registry through the engine's push path (a write lock refuses it), with
// progress lines, and refuses bad requests before it starts.
func TestImportEndpoint(t *testing.T) {
	_, src, _ := setup(t)
	d := push(t, src, "upstream/app", "v1", "amd64")
	up := httptest.NewServer(ociapi.New(src, nil))
	defer up.Close()
	host := strings.TrimPrefix(up.URL, "http://")

	_, reg, _ := setup(t)
	srv := httptest.NewServer(mgmt.New(reg, nil))
	defer srv.Close()

	status, progress, last := importCall(t, srv, `{"source":"`+host+`/upstream/app:v1","target":"copy/app:imported","plainHTTP":true,"password":"s3cret"}`)
	rep, _ := last["report"].(map[string]any)
	if status != 200 || rep == nil || rep["digest"] != string(d) || rep["blobs"] != 2.0 {
		t.Fatalf("import: %d %v", status, last)
	}
	if len(progress) == 0 {
		t.Error("no progress lines")
	}
	if m, err := reg.ResolveManifest(t.Context(), "copy/app", stowage.Reference{Tag: "imported"}); err != nil || m.Digest != d {
		t.Errorf("copy/app:imported = %v, %v", m.Digest, err)
	}
	b, _ := json.Marshal(last)
	if strings.Contains(string(b), "s3cret") {
		t.Error("the answer shows the password")
	}

	// Locks apply as for a push.
	push(t, reg, "locked/app", "old", "arm64")
	if _, err := reg.SetLocks(t.Context(), "locked/app", stowage.Reference{}, stowage.LockWrite, 0); err != nil {
		t.Fatal(err)
	}
	_, _, last = importCall(t, srv, `{"source":"`+host+`/upstream/app:v1","target":"locked/app","plainHTTP":true}`)
	if e, _ := last["error"].(string); !strings.Contains(e, "write") {
		t.Errorf("import into a write-locked repository: %v", last)
	}

	for _, tc := range []struct{ body, want string }{
		{`{"source":"ghcr.io/App:v1"}`, "NAME_INVALID"},
		{`{"source":"` + host + `/upstream/app:v1","target":"x@sha256:aa"}`, "INVALID"},
		{`{"source":"` + host + `/upstream/app:v1","platform":"linux"}`, "INVALID_PARAMETER"},
	} {
		res, err := http.Post(srv.URL+"/api/v1/imports", "application/json", strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ Errors []struct{ Code string } }
		json.NewDecoder(res.Body).Decode(&body)
		res.Body.Close()
		if res.StatusCode < 400 || len(body.Errors) == 0 || !strings.Contains(body.Errors[0].Code, tc.want) {
			t.Errorf("%s: %d %+v, want %s", tc.body, res.StatusCode, body, tc.want)
		}
	}
	_, _, last = importCall(t, srv, `{"source":"`+host+`/upstream/app:nope","plainHTTP":true}`)
	if e, _ := last["error"].(string); !strings.Contains(e, "404") {
		t.Errorf("missing source tag: %v", last)
	}
}
