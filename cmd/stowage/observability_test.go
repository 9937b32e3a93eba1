package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/stowage/stowage/config"
)

// startObserved starts a server on 127.0.0.1:0 with JSON logs into out and
// no caching of the metrics read from the database.
func startObserved(t *testing.T, dir string, out io.Writer, auth bool) *Main {
	t.Helper()
	cfg := config.Default()
	cfg.Addr, cfg.DataDir, cfg.Log.Format, cfg.Auth.Enabled = "127.0.0.1:0", dir, "json", auth
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	m := NewMain(cfg, out)
	m.metricsTTL = -1
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// scrape reads /metrics into series name{label="value",…} (labels sorted;
// histograms as _bucket{…,le=…}, _count and _sum) → value.
func scrape(t *testing.T, base string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	out := map[string]float64{}
	key := func(name string, ls []*dto.LabelPair, extra ...string) string {
		var parts []string
		for _, l := range ls {
			parts = append(parts, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
		}
		parts = append(parts, extra...)
		sort.Strings(parts)
		return name + "{" + strings.Join(parts, ",") + "}"
	}
	for name, f := range fams {
		for _, m := range f.Metric {
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[key(name, m.Label)] = m.Counter.GetValue()
			case dto.MetricType_GAUGE:
				out[key(name, m.Label)] = m.Gauge.GetValue()
			case dto.MetricType_UNTYPED:
				out[key(name, m.Label)] = m.Untyped.GetValue()
			case dto.MetricType_HISTOGRAM:
				h := m.Histogram
				out[key(name+"_count", m.Label)] = float64(h.GetSampleCount())
				out[key(name+"_sum", m.Label)] = h.GetSampleSum()
				for _, b := range h.Bucket {
					out[key(name+"_bucket", m.Label, fmt.Sprintf("le=%q", fmt.Sprint(b.GetUpperBound())))] = float64(b.GetCumulativeCount())
				}
				out[key(name+"_bucket", m.Label, `le="+Inf"`)] = float64(h.GetSampleCount())
			}
		}
	}
	return out
}

// do makes a request and returns the status, the body and the response's
// request id.
func do(t *testing.T, method, url string, body []byte, hdr ...string) (int, []byte, string) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = strings.NewReader(string(body))
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header.Get("X-Request-Id")
}

// TestMetricsScrape pushes, pulls and asks for what is not there against
// the real server, and checks that /metrics moved by exactly that: request
// counts by route template, method and status, the latency histogram's
// count and buckets, bytes in and out, usage gauges, and a garbage
// collection's run and results.
func TestMetricsScrape(t *testing.T) {
	m := startObserved(t, t.TempDir(), io.Discard, false)
	base := "http://" + m.Addr
	before := scrape(t, base)

	const repo = "team/app"
	config := []byte(`{"architecture":"amd64","os":"linux"}`)
	layer := []byte(strings.Repeat("layer bytes ", 1000))
	manifest := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`,
		digestOf(config), len(config), digestOf(layer), len(layer))
	putBlob(t, base, repo, config)
	putBlob(t, base, repo, layer)
	putManifest(t, base, repo, "v1", manifest)

	blobOut := 0
	for range 3 {
		code, b, _ := do(t, "GET", base+"/v2/"+repo+"/blobs/"+digestOf(layer), nil)
		if code != 200 || string(b) != string(layer) {
			t.Fatalf("pull layer: %d", code)
		}
		blobOut += len(b)
	}
	manifestOut := 0
	for range 2 {
		code, b, _ := do(t, "GET", base+"/v2/"+repo+"/manifests/v1", nil, "Accept", "application/vnd.oci.image.manifest.v1+json")
		if code != 200 {
			t.Fatalf("pull manifest: %d", code)
		}
		manifestOut += len(b)
	}
	for range 2 {
		code, b, _ := do(t, "GET", base+"/v2/"+repo+"/manifests/nope", nil)
		if code != 404 {
			t.Fatalf("unknown manifest: %d", code)
		}
		manifestOut += len(b)
	}
	code, b, _ := do(t, "GET", base+"/v2/"+repo+"/blobs/"+digestOf([]byte("absent")), nil)
	if code != 404 {
		t.Fatalf("unknown blob: %d", code)
	}
	blobOut += len(b)

	const (
		uploads   = `route="/v2/{name}/blobs/uploads/"`
		manifests = `route="/v2/{name}/manifests/{reference}"`
		blobs     = `route="/v2/{name}/blobs/{digest}"`
	)
	series := func(name, route, method string, rest ...string) string {
		parts := append([]string{route, fmt.Sprintf("method=%q", method)}, rest...)
		sort.Strings(parts)
		return name + "{" + strings.Join(parts, ",") + "}"
	}
	want := map[string]float64{
		series("stowage_http_requests_total", uploads, "POST", `code="201"`):              2,
		series("stowage_http_requests_total", manifests, "PUT", `code="201"`):             1,
		series("stowage_http_requests_total", blobs, "GET", `code="200"`):                 3,
		series("stowage_http_requests_total", blobs, "GET", `code="404"`):                 1,
		series("stowage_http_requests_total", manifests, "GET", `code="200"`):             2,
		series("stowage_http_requests_total", manifests, "GET", `code="404"`):             2,
		series("stowage_http_request_duration_seconds_count", blobs, "GET"):               4,
		series("stowage_http_request_duration_seconds_bucket", blobs, "GET", `le="+Inf"`): 4,
		series("stowage_http_request_duration_seconds_bucket", blobs, "GET", `le="300"`):  4,
		series("stowage_http_request_duration_seconds_count", manifests, "GET"):           4,
		series("stowage_http_request_duration_seconds_count", uploads, "POST"):            2,
		series("stowage_http_request_body_bytes_total", uploads, "POST"):                  float64(len(config) + len(layer)),
		series("stowage_http_request_body_bytes_total", manifests, "PUT"):                 float64(len(manifest)),
		series("stowage_http_response_body_bytes_total", blobs, "GET"):                    float64(blobOut),
		series("stowage_http_response_body_bytes_total", manifests, "GET"):                float64(manifestOut),
		"stowage_blobs{}":      3, // config, layer, manifest
		"stowage_blob_bytes{}": float64(len(config) + len(layer) + len(manifest)),
	}
	// The request counts move when each answer is done, just after the
	// client has it: scrape until they are all there (bounded).
	var after map[string]float64
	for i := 0; ; i++ {
		after = scrape(t, base)
		missing := ""
		for k, v := range want {
			if got := after[k] - before[k]; got != v {
				missing += fmt.Sprintf("\n%s moved by %v, want %v", k, got, v)
			}
		}
		if missing == "" {
			break
		}
		if i == 50 {
			t.Fatalf("after the pushes and pulls:%s", missing)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Buckets are cumulative and the fastest holds at most the count.
	if fast := after[series("stowage_http_request_duration_seconds_bucket", blobs, "GET", `le="0.005"`)]; fast > 4 {
		t.Errorf("le=0.005 bucket %v > count 4", fast)
	}
	// Routes are templates: no series names the repository or a digest.
	for k := range after {
		if strings.Contains(k, "team") || strings.Contains(k, "sha256") || strings.Contains(k, "nope") {
			t.Errorf("a series carries a raw path: %s", k)
		}
	}
	if v := after[`stowage_db_pool_max_connections{pool="write"}`]; v != 1 {
		t.Errorf("SQLite's write pool: max connections %v, want 1", v)
	}
	build := 0
	for k, v := range after {
		if strings.HasPrefix(k, "stowage_build_info{") && strings.Contains(k, `version="dev"`) && v == 1 {
			build++
		}
	}
	if build != 1 {
		t.Errorf("%d stowage_build_info series with version dev and value 1, want 1", build)
	}

	// A garbage collection after the image is deleted: one successful gc
	// run, and every byte of it freed.
	if code, b, _ := do(t, "DELETE", base+"/v2/"+repo+"/manifests/"+digestOf([]byte(manifest)), nil); code != 202 {
		t.Fatalf("delete: %d %s", code, b)
	}
	if code, b, _ := do(t, "POST", base+"/api/v1/gc?min_age=0s", nil); code != 200 || !strings.Contains(string(b), `"report"`) {
		t.Fatalf("gc: %d %s", code, b)
	}
	after = scrape(t, base)
	for k, v := range map[string]float64{
		`stowage_job_runs_total{job="gc",result="success"}`: 1,
		`stowage_job_runs_total{job="gc",result="failure"}`: 0,
		`stowage_job_running{job="gc"}`:                     0,
		`stowage_gc_blobs_deleted_total{}`:                  3,
		`stowage_gc_bytes_freed_total{}`:                    float64(len(config) + len(layer) + len(manifest)),
		`stowage_gc_last_bytes_freed{}`:                     float64(len(config) + len(layer) + len(manifest)),
		`stowage_blobs{}`:                                   0,
		`stowage_job_progress_done{job="gc"}`:               3,
	} {
		if got := after[k] - before[k]; got != v {
			t.Errorf("after gc: %s moved by %v, want %v", k, got, v)
		}
	}
	if after[`stowage_job_last_success_timestamp_seconds{job="gc"}`] < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Error("gc's last success time not set")
	}
}

// TestHealthAndReadiness: /healthz and /readyz answer without credentials
// (access control on); /readyz turns 503, naming only what failed, when
// the storage directory cannot be used and when the database is closed,
// and comes back with the storage.
func TestHealthAndReadiness(t *testing.T) {
	dir := t.TempDir()
	var logs syncBuffer
	m := startObserved(t, dir, &logs, true)
	base := "http://" + m.Addr
	check := func(step, path string, wantCode int, wantBody string) {
		t.Helper()
		code, b, _ := do(t, "GET", base+path, nil)
		if code != wantCode || string(b) != wantBody {
			t.Errorf("%s: GET %s = %d %q, want %d %q", step, path, code, b, wantCode, wantBody)
		}
	}
	check("up", "/healthz", 200, "ok\n")
	check("up", "/readyz", 200, `{"status":"ready"}`+"\n")
	if code, _, _ := do(t, "GET", base+"/metrics", nil); code != http.StatusUnauthorized {
		t.Errorf("/metrics without credentials: %d, want 401", code)
	}

	// The storage directory replaced by a file (what root cannot read
	// either), and, when not root, made unreadable.
	storage := filepath.Join(dir, "storage")
	if err := os.Rename(storage, storage+".away"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(storage, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	check("storage is a file", "/readyz", 503, `{"status":"not ready","failed":["storage"]}`+"\n")
	check("storage is a file", "/healthz", 200, "ok\n")
	os.Remove(storage)
	if err := os.Rename(storage+".away", storage); err != nil {
		t.Fatal(err)
	}
	check("storage back", "/readyz", 200, `{"status":"ready"}`+"\n")
	if os.Geteuid() != 0 {
		os.Chmod(storage, 0)
		check("storage unreadable", "/readyz", 503, `{"status":"not ready","failed":["storage"]}`+"\n")
		os.Chmod(storage, 0o700)
	}

	m.db.Close()
	check("database closed", "/readyz", 503, `{"status":"not ready","failed":["database"]}`+"\n")
	check("database closed", "/readyz", 503, `{"status":"not ready","failed":["database"]}`+"\n")
	check("database closed", "/healthz", 200, "ok\n")
	// Why goes to the log, once per change.
	if n := strings.Count(logs.String(), `sql: database is closed"`); n != 1 {
		t.Errorf("the closed database logged %d times, want once:\n%s", n, logs.String())
	}
}

var hexID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// TestRequestIDs: every answer carries X-Request-Id (a sane one from the
// client kept, anything else replaced by a new one); the JSON log has one
// parseable line per request with that id, an error logged for a request
// carries it, and the change feed records the same id for a push.
func TestRequestIDs(t *testing.T) {
	var logs syncBuffer
	m := startObserved(t, t.TempDir(), &logs, false)
	base := "http://" + m.Addr

	ids := map[string]string{} // id → route wanted in its log line
	for _, tc := range []struct {
		sent string
		keep bool
	}{
		{"", false},
		{"0f8e2c1a-7d7b-4c55-9f7e-3f7c2b9d5a10", true},
		{"proxy.lb-1:req_42", true},
		{"has space", false},
		{`quote"`, false},
		{strings.Repeat("a", 129), false},
		{strings.Repeat("a", 128), true},
	} {
		var hdr []string
		if tc.sent != "" {
			hdr = []string{"X-Request-Id", tc.sent}
		}
		code, _, got := do(t, "GET", base+"/v2/", nil, hdr...)
		switch {
		case code != 200:
			t.Errorf("GET /v2/ with id %q: %d", tc.sent, code)
		case tc.keep && got != tc.sent:
			t.Errorf("id %q: answered %q, want it kept", tc.sent, got)
		case !tc.keep && !hexID.MatchString(got):
			t.Errorf("id %q: answered %q, want a new 32-hex id", tc.sent, got)
		}
		if _, dup := ids[got]; dup {
			t.Errorf("id %q answered twice", got)
		}
		ids[got] = "/v2/"
	}

	// A push: the change feed records the id the client got back.
	layer := []byte("request id layer")
	config := []byte(`{"os":"linux"}`)
	putBlob(t, base, "ids/app", layer)
	putBlob(t, base, "ids/app", config)
	manifest := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`,
		digestOf(config), len(config), digestOf(layer), len(layer))
	for _, sent := range []string{"ci-push-7", "not valid!"} {
		code, b, got := do(t, "PUT", base+"/v2/ids/app/manifests/"+strings.Fields(sent)[0], []byte(manifest), "Content-Type", "application/vnd.oci.image.manifest.v1+json", "X-Request-Id", sent)
		if code != 201 {
			t.Fatalf("push: %d %s", code, b)
		}
		if sent == "ci-push-7" && got != sent || sent != "ci-push-7" && !hexID.MatchString(got) {
			t.Errorf("push with id %q: answered %q", sent, got)
		}
		ids[got] = "/v2/{name}/manifests/{reference}"
		code, b, _ = do(t, "GET", base+"/api/v1/events?kind=push", nil)
		var compact bytes.Buffer
		json.Compact(&compact, b)
		if code != 200 || !strings.Contains(compact.String(), `"requestId":"`+got+`"`) {
			t.Errorf("the change feed lacks requestId %q of the push: %d %s", got, code, b)
		}
	}

	// An error logged for a request carries its id.
	m.db.Close()
	code, _, errID := do(t, "GET", base+"/v2/ids/app/manifests/ci-push-7", nil, "X-Request-Id", "failing-1")
	if code != 500 || errID != "failing-1" {
		t.Fatalf("GET with the database closed: %d, id %q; want 500, failing-1", code, errID)
	}
	ids[errID] = "/v2/{name}/manifests/{reference}"

	// Every line is JSON; each request has its line with its id (written
	// just after the answer: read until all are there, bounded).
	var requestLines map[string]map[string]any
	var errorLine map[string]any
	for i := 0; ; i++ {
		requestLines, errorLine = map[string]map[string]any{}, nil
		sc := bufio.NewScanner(strings.NewReader(logs.String()))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var rec map[string]any
			if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
				t.Fatalf("log line is not JSON: %v: %s", err, sc.Text())
			}
			id, _ := rec["request_id"].(string)
			switch rec["msg"] {
			case "request":
				requestLines[id] = rec
			case "request failed":
				if id == errID {
					errorLine = rec
				}
			}
		}
		done := errorLine != nil
		for id := range ids {
			if requestLines[id] == nil {
				done = false
			}
		}
		if done {
			break
		}
		if i == 100 {
			t.Fatalf("log lines missing (error line %v); ids %v; log:\n%s", errorLine, ids, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for id, route := range ids {
		rec := requestLines[id]
		if rec["route"] != route || rec["level"] != "INFO" || rec["status"] == nil || rec["duration_ms"] == nil {
			t.Errorf("log line of %s: %v, want route %s", id, rec, route)
		}
	}
	if errorLine["level"] != "ERROR" || requestLines[errID]["status"] != float64(500) {
		t.Errorf("error line %v / request line %v: want ERROR and status 500", errorLine, requestLines[errID])
	}
}

// TestPoolMetrics: both databases report their pools to /metrics (the
// PostgreSQL case runs in the postgres CI stage, which sets
// STOWAGE_TEST_POSTGRES).
func TestPoolMetrics(t *testing.T) {
	for _, tc := range []struct {
		name  string
		db    func(t *testing.T) config.Database
		pools map[string]int64 // pool → max connections
	}{
		{"sqlite", func(t *testing.T) config.Database {
			return config.Database{SQLite: filepath.Join(t.TempDir(), "stowage.db")}
		}, map[string]int64{"write": 1}},
		{"postgres", func(t *testing.T) config.Database {
			return config.Database{Postgres: pgSchema(t), MaxConns: 3}
		}, map[string]int64{"main": 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, _, err := openDB(context.Background(), tc.db(t))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			stats := poolStats(db)
			if stats == nil {
				t.Fatal("no pool statistics")
			}
			got := stats()
			for pool, max := range tc.pools {
				if s, ok := got[pool]; !ok || s.Max != max || s.InUse != 0 {
					t.Errorf("pool %s: %+v (of %v), want max %d, none in use", pool, s, got, max)
				}
			}
		})
	}
}
