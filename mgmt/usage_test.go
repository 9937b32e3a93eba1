package mgmt_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/mgmt"
	"github.com/stowage/stowage/storage/mem"
	"github.com/stowage/stowage/usage"
)

// getUsage GETs path and decodes the answer into out; it returns the status
// and the Link header.
func getUsage(t *testing.T, srv *httptest.Server, path string, out any) (int, string) {
	t.Helper()
	res, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if err := json.NewDecoder(res.Body).Decode(out); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return res.StatusCode, res.Header.Get("Link")
}

// nextOf is the target of a Link header's rel="next".
func nextOf(t *testing.T, link string) string {
	t.Helper()
	target, rel, ok := strings.Cut(link, ">; ")
	if !ok || rel != `rel="next"` || !strings.HasPrefix(target, "<") {
		t.Fatalf("Link %q: want <…>; rel=\"next\"", link)
	}
	return target[1:]
}

// TestUsagePages: GET /api/v1/usage and /api/v1/usage/REPO with ?n= answer
// the same totals as without, and rows a page at a time, each exactly once
// and in order, with a Link header to the next page and none after the
// last; a bad n or cursor is PAGINATION_NUMBER_INVALID.
func TestUsagePages(t *testing.T) {
	db, err := sqlite.Open(context.Background(), ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	reg := stowage.NewRegistry(db, mem.New(), stowage.Options{})
	srv := httptest.NewServer(mgmt.New(reg, nil))
	t.Cleanup(srv.Close)
	for i := range 7 {
		push(t, reg, fmt.Sprintf("team/r%d", i), "v1", "amd64")
	}
	for i := range 5 {
		push(t, reg, "team/r3", fmt.Sprintf("v%d", i+2), fmt.Sprintf("arch%d", i))
	}

	var all usage.Usage
	if code, link := getUsage(t, srv, "/api/v1/usage", &all); code != http.StatusOK || link != "" {
		t.Fatalf("GET /api/v1/usage: %d, Link %q", code, link)
	}
	if len(all.PerRepository) != 7 || all.Repositories != 7 || all.Manifests != 12 || all.Tags != 12 {
		t.Fatalf("GET /api/v1/usage: %+v", all)
	}
	for _, n := range []int{1, 2, 3, 7, 1000} {
		var rows []usage.RepositorySpace
		path := fmt.Sprintf("/api/v1/usage?n=%d", n)
		for pages := 0; path != ""; pages++ {
			if pages > 10 {
				t.Fatalf("n=%d: more than 10 pages", n)
			}
			var page usage.Usage
			code, link := getUsage(t, srv, path, &page)
			if code != http.StatusOK || len(page.PerRepository) > n {
				t.Fatalf("GET %s: %d, %d rows", path, code, len(page.PerRepository))
			}
			rows = append(rows, page.PerRepository...)
			totals := all
			page.PerRepository, totals.PerRepository = nil, nil
			if !reflect.DeepEqual(page, totals) {
				t.Errorf("GET %s: totals %+v, want %+v", path, page, totals)
			}
			path = ""
			if link != "" {
				path = nextOf(t, link)
			}
		}
		if !reflect.DeepEqual(rows, all.PerRepository) {
			t.Errorf("n=%d: rows by pages\n%+v\nwant %+v", n, rows, all.PerRepository)
		}
	}

	var whole usage.RepositoryDetail
	getUsage(t, srv, "/api/v1/usage/team/r3", &whole)
	if len(whole.PerManifest) != 6 {
		t.Fatalf("GET /api/v1/usage/team/r3: %d manifests, want 6", len(whole.PerManifest))
	}
	for _, n := range []int{1, 4, 6} {
		var rows []usage.ManifestSpace
		path := fmt.Sprintf("/api/v1/usage/team/r3?n=%d", n)
		for pages := 0; path != ""; pages++ {
			if pages > 10 {
				t.Fatalf("n=%d: more than 10 pages", n)
			}
			var page usage.RepositoryDetail
			code, link := getUsage(t, srv, path, &page)
			// Pages after the first leave out the unique and shared
			// bytes (they probe every digest of the repository).
			want := whole.RepositorySpace
			if pages > 0 {
				want.UniqueBytes, want.SharedBytes = 0, 0
			}
			if code != http.StatusOK || len(page.PerManifest) > n || page.RepositorySpace != want || page.Continued != (pages > 0) {
				t.Fatalf("GET %s: %d, %d rows, summary %+v (continued %v), want %+v", path, code, len(page.PerManifest), page.RepositorySpace, page.Continued, want)
			}
			if pages > 0 {
				var raw map[string]any
				getUsage(t, srv, path, &raw)
				if _, ok := raw["uniqueBytes"]; ok || raw["continued"] != true {
					t.Errorf("GET %s: a continued page's summary %v, want no uniqueBytes and continued: true", path, raw)
				}
			}
			rows = append(rows, page.PerManifest...)
			path = ""
			if link != "" {
				path = nextOf(t, link)
			}
		}
		if !reflect.DeepEqual(rows, whole.PerManifest) {
			t.Errorf("n=%d: manifests by pages differ from the whole list", n)
		}
	}

	for _, path := range []string{"/api/v1/usage?n=0", "/api/v1/usage?n=1001", "/api/v1/usage?n=x", "/api/v1/usage/team/r3?n=-1",
		"/api/v1/usage/team/r3?n=2&last=garbage"} {
		var body struct {
			Errors []struct{ Code string } `json:"errors"`
		}
		code, _ := getUsage(t, srv, path, &body)
		if code != http.StatusBadRequest || len(body.Errors) != 1 || body.Errors[0].Code != "PAGINATION_NUMBER_INVALID" {
			t.Errorf("GET %s: %d %+v, want 400 PAGINATION_NUMBER_INVALID", path, code, body)
		}
	}
}
