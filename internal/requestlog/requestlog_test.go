package requestlog

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestValidID(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want bool
	}{
		{"", false},
		{"abc", true},
		{"0f8e2c1a-7d7b-4c55-9f7e-3f7c2b9d5a10", true},
		{"lb.1:req_42", true},
		{strings.Repeat("x", MaxIDLength), true},
		{strings.Repeat("x", MaxIDLength+1), false},
		{"a b", false},
		{`a"b`, false},
		{"a\nb", false},
		{"a\x00b", false},
		{"é", false},
		{"<script>", false},
	} {
		if got := ValidID(tc.id); got != tc.want {
			t.Errorf("ValidID(%q) = %v, want %v", tc.id, got, tc.want)
		}
	}
	if a, b := NewID(), NewID(); a == b || len(a) != 32 || !ValidID(a) {
		t.Errorf("NewID: %q, %q", a, b)
	}
}

// TestMiddleware: the id reaches the handler (header and context), the
// answer and the log line, which records the status and body bytes both
// ways; records logged with the request's context carry the id.
func TestMiddleware(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(Handler(slog.NewJSONHandler(&logs, nil)))
	var done Info
	h := Middleware(log, Options{Route: func(string) string { return "/r" }, Done: func(i Info) { done = i }},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get(Header) != ID(r.Context()) {
				t.Errorf("header %q, context %q", r.Header.Get(Header), ID(r.Context()))
			}
			b, _ := io.ReadAll(r.Body)
			log.ErrorContext(r.Context(), "boom")
			w.WriteHeader(http.StatusTeapot)
			w.(io.ReaderFrom).ReadFrom(strings.NewReader(string(b) + "!"))
			w.(http.Flusher).Flush()
		}))
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("PUT", "/x/y", strings.NewReader("hello"))
	req.Header.Set(Header, "from-proxy")
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusTeapot || rec.Header().Get(Header) != "from-proxy" || rec.Body.String() != "hello!" {
		t.Fatalf("answer %d %q %q", rec.Code, rec.Header().Get(Header), rec.Body)
	}
	if done != (Info{ID: "from-proxy", Route: "/r", Method: "PUT", Status: 418, BytesIn: 5, BytesOut: 6, Duration: done.Duration}) {
		t.Errorf("info %+v", done)
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("log: %s", logs.String())
	}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil || m["request_id"] != "from-proxy" {
			t.Errorf("line %s: %v, want request_id from-proxy", l, err)
		}
	}
	// Without a context id, nothing is added.
	logs.Reset()
	log.InfoContext(context.Background(), "plain")
	if strings.Contains(logs.String(), "request_id") {
		t.Errorf("request_id without a request: %s", logs.String())
	}
}

// TestQuietRoutes: a quiet route is logged at debug level, unless it fails.
func TestQuietRoutes(t *testing.T) {
	for _, tc := range []struct {
		route  string
		status int
		lines  int
	}{
		{"/healthz", 200, 0},
		{"/readyz", 503, 1},
		{"/v2/", 200, 1},
	} {
		var logs bytes.Buffer
		log := slog.New(slog.NewJSONHandler(&logs, nil)) // level info
		h := Middleware(log, Options{Route: func(p string) string { return p }, Quiet: map[string]bool{"/healthz": true, "/readyz": true}},
			http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(tc.status) }))
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", tc.route, nil))
		if n := strings.Count(logs.String(), "\n"); n != tc.lines {
			t.Errorf("%s answering %d: %d lines at info, want %d", tc.route, tc.status, n, tc.lines)
		}
	}
}
