package mgmt_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/mgmt"
	"github.com/stowage/stowage/storage/mem"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func digestOf(b []byte) stowage.Digest {
	s := sha256.Sum256(b)
	return stowage.Digest("sha256:" + hex.EncodeToString(s[:]))
}

func setup(t *testing.T) (*httptest.Server, *stowage.Registry, *clock) {
	db, err := sqlite.Open(context.Background(), ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	c := &clock{time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	reg := stowage.NewRegistry(db, mem.New(), stowage.Options{Now: c.now})
	srv := httptest.NewServer(mgmt.NewACR(reg, nil))
	t.Cleanup(srv.Close)
	return srv, reg, c
}

func push(t *testing.T, reg *stowage.Registry, repo, tag, arch string) stowage.Digest {
	ctx := context.Background()
	config := []byte(fmt.Sprintf(`{"architecture":%q,"os":"linux","tag":%q}`, arch, tag))
	layer := []byte("layer of " + tag)
	for _, b := range [][]byte{config, layer} {
		if _, err := reg.PutBlob(ctx, repo, digestOf(b), bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
	}
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`,
		stowage.MediaTypeOCIManifest, digestOf(config), len(config), digestOf(layer), len(layer))
	res, err := reg.PutManifest(ctx, repo, stowage.Reference{Tag: tag}, stowage.MediaTypeOCIManifest, []byte(m), nil)
	if err != nil {
		t.Fatal(err)
	}
	return res.Digest
}

func call(t *testing.T, method, url, body string, wantStatus int, out any) http.Header {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantStatus {
		t.Fatalf("%s %s: %d %s, want %d", method, url, resp.StatusCode, b, wantStatus)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, url, err, b)
		}
	}
	return resp.Header
}

// next follows a Link header.
func next(srv *httptest.Server, h http.Header) string {
	l := h.Get("Link")
	if l == "" {
		return ""
	}
	return srv.URL + l[1:strings.Index(l, ">")]
}

func TestACRShapesAndPagination(t *testing.T) {
	srv, reg, c := setup(t)
	var digests []stowage.Digest
	for i := 1; i <= 5; i++ {
		digests = append(digests, push(t, reg, "hello-world", fmt.Sprintf("v%d", i), "amd64"))
		c.t = c.t.Add(time.Minute)
	}
	push(t, reg, "other", "latest", "arm64")

	// _catalog with n and Link.
	var cat struct{ Repositories []string }
	h := call(t, "GET", srv.URL+"/acr/v1/_catalog?n=1", "", 200, &cat)
	if fmt.Sprint(cat.Repositories) != "[hello-world]" || next(srv, h) == "" {
		t.Fatalf("catalog page 1: %v, Link %q", cat.Repositories, h.Get("Link"))
	}
	call(t, "GET", next(srv, h), "", 200, &cat)
	if fmt.Sprint(cat.Repositories) != "[other]" {
		t.Errorf("catalog page 2: %v", cat.Repositories)
	}

	// Repository attributes with ACR's field names.
	var repo map[string]any
	call(t, "GET", srv.URL+"/acr/v1/hello-world", "", 200, &repo)
	for _, k := range []string{"registry", "imageName", "createdTime", "lastUpdateTime", "manifestCount", "tagCount", "changeableAttributes"} {
		if _, ok := repo[k]; !ok {
			t.Errorf("repository JSON lacks %q: %v", k, repo)
		}
	}
	if repo["manifestCount"] != float64(5) || repo["tagCount"] != float64(5) {
		t.Errorf("counts: %v", repo)
	}
	if _, err := time.Parse(time.RFC3339, repo["createdTime"].(string)); err != nil {
		t.Errorf("createdTime not RFC 3339: %v", err)
	}

	// Tags newest first, two per page; the cursor survives deleting the
	// item it points at (as a purge walking pages does).
	type tagsResp struct {
		Tags []struct {
			Name, Digest, LastUpdateTime string
			ChangeableAttributes         map[string]bool
		}
	}
	var page tagsResp
	h = call(t, "GET", srv.URL+"/acr/v1/hello-world/_tags?orderby=timedesc&n=2", "", 200, &page)
	if len(page.Tags) != 2 || page.Tags[0].Name != "v5" || page.Tags[1].Name != "v4" {
		t.Fatalf("first page: %+v", page.Tags)
	}
	call(t, "DELETE", srv.URL+"/acr/v1/hello-world/_tags/v4", "", 202, nil)
	var seen []string
	for url := next(srv, h); url != ""; url = next(srv, h) {
		page = tagsResp{}
		h = call(t, "GET", url, "", 200, &page)
		for _, tg := range page.Tags {
			seen = append(seen, tg.Name)
		}
	}
	if fmt.Sprint(seen) != "[v3 v2 v1]" {
		t.Errorf("pages after deleting the cursor's item: %v, want [v3 v2 v1]", seen)
	}
	h = call(t, "GET", srv.URL+"/acr/v1/hello-world/_tags?orderby=timeasc&n=10", "", 200, &page)
	if len(page.Tags) != 4 || page.Tags[0].Name != "v1" || h.Get("Link") != "" {
		t.Errorf("timeasc: %+v (Link %q)", page.Tags, h.Get("Link"))
	}

	// PATCH changes only the fields given; the lock is enforced.
	var one struct {
		Tag struct{ ChangeableAttributes map[string]bool }
	}
	call(t, "PATCH", srv.URL+"/acr/v1/hello-world/_tags/v1", `{"deleteEnabled":false}`, 200, &one)
	if a := one.Tag.ChangeableAttributes; a["deleteEnabled"] || !a["writeEnabled"] || !a["readEnabled"] || !a["listEnabled"] {
		t.Errorf("after PATCH: %v", a)
	}
	call(t, "DELETE", srv.URL+"/acr/v1/hello-world/_tags/v1", "", 403, nil)

	// Manifests: size, platform, tags.
	var ms struct {
		Manifests []struct {
			Digest, Architecture, OS, MediaType string
			ImageSize                           int64
			Tags                                []string
		}
	}
	call(t, "GET", srv.URL+"/acr/v1/hello-world/_manifests?orderby=timedesc", "", 200, &ms)
	if len(ms.Manifests) != 5 || ms.Manifests[0].Digest != string(digests[4]) || ms.Manifests[0].Architecture != "amd64" ||
		ms.Manifests[0].OS != "linux" || ms.Manifests[0].ImageSize <= 0 || fmt.Sprint(ms.Manifests[0].Tags) != "[v5]" {
		t.Errorf("manifests: %+v", ms.Manifests)
	}
	call(t, "DELETE", srv.URL+"/acr/v1/hello-world/_manifests/"+string(digests[1]), "", 202, nil)
	call(t, "GET", srv.URL+"/acr/v1/hello-world/_manifests/"+string(digests[1]), "", 404, nil)

	// Deleting the repository answers 202 with what went.
	call(t, "PATCH", srv.URL+"/acr/v1/hello-world/_tags/v1", `{"deleteEnabled":true}`, 200, nil)
	var del struct{ ManifestsDeleted, TagsDeleted []string }
	call(t, "DELETE", srv.URL+"/acr/v1/hello-world", "", 202, &del)
	if len(del.ManifestsDeleted) != 4 || len(del.TagsDeleted) != 3 {
		t.Errorf("repository delete: %+v", del)
	}
	call(t, "GET", srv.URL+"/acr/v1/hello-world", "", 404, nil)
	call(t, "GET", srv.URL+"/acr/v1/other/_tags?orderby=sideways", "", 400, nil)
	call(t, "GET", srv.URL+"/acr/v1/other/_tags?orderby=timedesc&last=garbage", "", 400, nil)
}

// TestACRListLockedItemReachable: listEnabled=false hides a tag or manifest
// from the lists only, as on ACR; the item's own GET and PATCH still reach
// it (they once answered 404, the PATCH after applying its change, so the
// lock could not even be cleared through the API that set it).
func TestACRListLockedItemReachable(t *testing.T) {
	srv, reg, _ := setup(t)
	d := push(t, reg, "app", "v1", "amd64")
	push(t, reg, "app", "v2", "amd64")
	type attrs struct{ ChangeableAttributes map[string]bool }
	for _, tc := range []struct {
		name, item, list string
		key              string // what the list shows of the item
	}{
		{"tag", "/acr/v1/app/_tags/v1", "/acr/v1/app/_tags", `"name": "v1"`},
		{"manifest", "/acr/v1/app/_manifests/" + string(d), "/acr/v1/app/_manifests", `"digest": "` + string(d) + `"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			listed := func() bool {
				resp, err := http.Get(srv.URL + tc.list)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return strings.Contains(string(b), tc.key)
			}
			if !listed() {
				t.Fatalf("%s does not list the item before any lock", tc.list)
			}
			for _, st := range []struct {
				method, body string
				listEnabled  bool
			}{
				{"PATCH", `{"listEnabled":false}`, false},
				{"GET", "", false},
				{"PATCH", `{"readEnabled":false}`, false}, // another change while hidden
				{"PATCH", `{"listEnabled":true,"readEnabled":true}`, true},
				{"GET", "", true},
			} {
				var got struct {
					Tag      *attrs
					Manifest *attrs
				}
				call(t, st.method, srv.URL+tc.item, st.body, 200, &got)
				a := got.Tag
				if a == nil {
					a = got.Manifest
				}
				if a == nil || a.ChangeableAttributes["listEnabled"] != st.listEnabled {
					t.Errorf("%s %s: %+v, want listEnabled %v", st.method, st.body, a, st.listEnabled)
				}
				if l := listed(); l != st.listEnabled {
					t.Errorf("after %s %s: listed %v, want %v", st.method, st.body, l, st.listEnabled)
				}
			}
		})
	}
}

// TestACRBodyOverLimit: a JSON body over the 1 MiB limit is answered 413
// SIZE_INVALID, readable by a client that sends its whole body before it
// reads (http.MaxBytesReader once made the server close the connection while
// the client was still sending: it saw a broken pipe).
func TestACRBodyOverLimit(t *testing.T) {
	srv, reg, _ := setup(t)
	push(t, reg, "app", "v1", "amd64")
	body := `{"listEnabled":false}` + strings.Repeat(" ", 5<<20)
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(srv.URL, "http://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	req := fmt.Sprintf("PATCH /acr/v1/app/_tags/v1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatalf("sending the body: %v (the server closed the connection before reading it)", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), `"SIZE_INVALID"`) || !strings.Contains(string(b), "1 MiB") {
		t.Errorf("answer %d %s, want 413 SIZE_INVALID giving the limit", resp.StatusCode, b)
	}
}
