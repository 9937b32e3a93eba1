package metrics

import (
	"bytes"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRoute(t *testing.T) {
	d := "sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, tc := range []struct{ path, want string }{
		{"/v2/", "/v2/"},
		{"/v2", "/v2/"},
		{"/v2/_catalog", "/v2/_catalog"},
		{"/v2/team/app/tags/list", "/v2/{name}/tags/list"},
		{"/v2/team/app/manifests/v1", "/v2/{name}/manifests/{reference}"},
		{"/v2/a/b/c/manifests/" + d, "/v2/{name}/manifests/{reference}"},
		{"/v2/app/blobs/" + d, "/v2/{name}/blobs/{digest}"},
		{"/v2/app/blobs/uploads/", "/v2/{name}/blobs/uploads/"},
		{"/v2/app/blobs/uploads/0123456789abcdef0123456789abcdef", "/v2/{name}/blobs/uploads/{uuid}"},
		{"/v2/app/blobs/uploads/not-an-upload-id", "/v2/{unknown}"},
		{"/v2/app/referrers/" + d, "/v2/{name}/referrers/{digest}"},
		{"/v2/app/blobs/not-a-digest", "/v2/{unknown}"},
		{"/v2/UPPER/manifests/v1", "/v2/{unknown}"},
		{"/v2/app/whatever/x", "/v2/{unknown}"},
		{"/api/v1/usage", "/api/v1/usage"},
		{"/api/v1/usage/team/app", "/api/v1/usage/{rest}"},
		{"/api/v1/auth/users/bob", "/api/v1/auth/{rest}"},
		{"/api/v1/gc", "/api/v1/gc"},
		{"/api/v1/random-" + d, "/api/v1/{other}"},
		{"/acr/v1/_catalog", "/acr/v1/_catalog"},
		{"/acr/v1/team/app", "/acr/v1/{name}"},
		{"/acr/v1/team/app/_tags", "/acr/v1/{name}/_tags"},
		{"/acr/v1/team/app/_tags/v1", "/acr/v1/{name}/_tags/{reference}"},
		{"/acr/v1/team/app/_manifests/" + d, "/acr/v1/{name}/_manifests/{reference}"},
		{"/ui/repositories/team/app", "/ui/"},
		{"/metrics", "/metrics"},
		{"/healthz", "/healthz"},
		{"/readyz", "/readyz"},
		{"/oauth2/token", "/oauth2/token"},
		{"/favicon.ico", "{other}"},
		{"/team/app", "{other}"},
	} {
		if got := Route(tc.path); got != tc.want {
			t.Errorf("Route(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
}

func TestMethod(t *testing.T) {
	for in, want := range map[string]string{"GET": "GET", "PATCH": "PATCH", "get": "OTHER", "PROPFIND": "OTHER", "": "OTHER"} {
		if got := Method(in); got != want {
			t.Errorf("Method(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestHandlerLogsGatherErrors: a collector's error (two samples with the
// same labels) does not fail the scrape: the rest is served, and the error
// logged.
func TestHandlerLogsGatherErrors(t *testing.T) {
	s := New("test")
	d := prometheus.NewDesc("stowage_test_dup", "dup", []string{"l"}, nil)
	s.Registerer().MustRegister(Func(func(ch chan<- prometheus.Metric) {
		ch <- Gauge(d, 1, "a")
		ch <- Gauge(d, 2, "a")
	}))
	var logs bytes.Buffer
	rec := httptest.NewRecorder()
	s.Handler(slog.New(slog.NewTextHandler(&logs, nil))).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "stowage_build_info") {
		t.Errorf("scrape: %d\n%s", rec.Code, rec.Body)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "stowage_test_dup") {
		t.Errorf("log: %s", logs.String())
	}
}
