package mgmt_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/gc"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/mgmt"
	"github.com/stowage/stowage/scrub"
	"github.com/stowage/stowage/storage/mem"
)

// jobCall sends method path to srv and returns the status and the body's last
// JSON line (a streamed job's report or error, or the whole answer).
func jobCall(t *testing.T, srv *httptest.Server, method, path string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var last map[string]any
	if res.Header.Get("Content-Type") != "application/x-ndjson" {
		if err := json.NewDecoder(res.Body).Decode(&last); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		return res.StatusCode, last
	}
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		last = nil
		if err := json.Unmarshal(sc.Bytes(), &last); err != nil {
			t.Fatalf("%s %s: line %q: %v", method, path, sc.Text(), err)
		}
	}
	return res.StatusCode, last
}

// TestJobEndpoints: POST /api/v1/gc and /api/v1/scrub run the collector and
// the scrubber the server wires in (with the configured collection
// defaults), and answer UNSUPPORTED when none is.
func TestJobEndpoints(t *testing.T) {
	db, err := sqlite.Open(context.Background(), ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	c := &clock{time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	reg := stowage.NewRegistry(db, mem.New(), stowage.Options{Now: c.now})

	bare := httptest.NewServer(mgmt.New(reg, nil))
	t.Cleanup(bare.Close)
	for _, p := range []struct{ method, path string }{{"POST", "/api/v1/gc"}, {"GET", "/api/v1/scrub"}, {"POST", "/api/v1/scrub"}} {
		code, body := jobCall(t, bare, p.method, p.path)
		if b, _ := json.Marshal(body); code != http.StatusMethodNotAllowed || !strings.Contains(string(b), `"UNSUPPORTED"`) {
			t.Errorf("%s %s without a collector or scrubber: %d %s, want 405 UNSUPPORTED", p.method, p.path, code, b)
		}
	}

	// The configured grace period (a day) holds an image deleted two hours
	// ago; min_age=0s overrides it.
	wired := httptest.NewServer(mgmt.New(reg, nil).WithGC(gc.New(reg), gc.Options{Grace: 24 * time.Hour}).WithScrub(scrub.New(reg.Parts())))
	t.Cleanup(wired.Close)
	push(t, reg, "app", "v1", "amd64")
	push(t, reg, "app", "v2", "arm64")
	if _, err := reg.DeleteImage(context.Background(), "app", stowage.Reference{Tag: "v1"}, false); err != nil {
		t.Fatal(err)
	}
	c.t = c.t.Add(2 * time.Hour)
	report := func(body map[string]any) map[string]any {
		t.Helper()
		r, ok := body["report"].(map[string]any)
		if !ok {
			t.Fatalf("no report: %v", body)
		}
		return r
	}
	for _, step := range []struct {
		path        string
		wantDeleted float64
	}{
		{"/api/v1/gc", 0},
		{"/api/v1/gc?dry_run=true&min_age=0s", 3},
		{"/api/v1/gc?min_age=0s", 3},
		{"/api/v1/gc?min_age=0s", 0},
	} {
		code, body := jobCall(t, wired, "POST", step.path)
		if r := report(body); code != http.StatusOK || r["blobsDeleted"] != step.wantDeleted {
			t.Errorf("POST %s: %d, %v; want %v blobs deleted", step.path, code, body, step.wantDeleted)
		}
	}

	if code, body := jobCall(t, wired, "GET", "/api/v1/scrub"); code != http.StatusNotFound {
		t.Errorf("GET /api/v1/scrub before any scrub: %d %v, want 404", code, body)
	}
	code, body := jobCall(t, wired, "POST", "/api/v1/scrub")
	if r := report(body); code != http.StatusOK || r["blobs"] != 3.0 || r["ok"] != 3.0 {
		t.Errorf("POST /api/v1/scrub: %d %v, want 3 blobs ok", code, body)
	}
	code, body = jobCall(t, wired, "GET", "/api/v1/scrub")
	if code != http.StatusOK || body["blobs"] != 3.0 {
		t.Errorf("GET /api/v1/scrub after a scrub: %d %v, want its report", code, body)
	}
}
