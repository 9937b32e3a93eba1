package ui_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/auth"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/mgmt"
	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/storage/mem"
	"github.com/stowage/stowage/ui"
	"github.com/stowage/stowage/usage"
	"github.com/stowage/stowage/usage/history"
	"github.com/stowage/stowage/usage/rank"
)

func digestOf(b []byte) stowage.Digest {
	s := sha256.Sum256(b)
	return stowage.Digest("sha256:" + hex.EncodeToString(s[:]))
}

// push stores an image of one config and one layer (shared: the layer's
// bytes are the same for every image with the same layer text).
func push(t testing.TB, reg *stowage.Registry, repo, tag, layerText string) stowage.Digest {
	t.Helper()
	ctx := context.Background()
	config := []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","tag":%q,"repo":%q}`, tag, repo))
	layer := []byte(layerText)
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

type env struct {
	srv  *httptest.Server
	reg  *stowage.Registry
	a    *auth.Authority
	api  http.Handler // the management API behind its access control
	pw   map[string]string
	dig  map[string]stowage.Digest
	hist history.Store
}

func setup(t *testing.T, withAuth bool) *env { t.Helper(); return setupWith(t, withAuth, nil) }

// setupWith is setup with the UI's options changed by opt.
func setupWith(t *testing.T, withAuth bool, opt func(*ui.Options)) *env {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	reg := stowage.NewRegistry(db, mem.New(), stowage.Options{})
	e := &env{reg: reg, pw: map[string]string{}, dig: map[string]stowage.Digest{}}
	e.dig["team-a/x"] = push(t, reg, "team-a/x", "1", "shared layer")
	e.dig["team-a/z"] = push(t, reg, "team-a/z", "1", "only in z")
	e.dig["team-b/y"] = push(t, reg, "team-b/y", "1", "shared layer")
	opts := ui.Options{Registry: reg, Policies: policy.New(reg)}
	opts.History, _ = history.Of(db)
	opts.Rank, _ = rank.Of(db)
	e.hist = opts.History
	if withAuth {
		a, err := auth.New(ctx, db, auth.Options{BcryptCost: bcrypt.MinCost})
		if err != nil {
			t.Fatal(err)
		}
		e.a, opts.Auth = a, a
		e.pw["admin"] = "admin-password-1"
		if _, err := a.CreateUser(ctx, auth.UserSpec{Name: "admin", Password: e.pw["admin"], Admin: true}); err != nil {
			t.Fatal(err)
		}
		// alice may delete and lock in team-a; the token ta may only read team-a.
		if _, _, err := a.PutScopeMap(ctx, "team-a-delete", auth.ScopeMapSpec{Rules: []auth.Rule{{Repository: "team-a/*",
			Actions: []auth.Action{auth.ContentRead, auth.MetadataRead, auth.ContentDelete, auth.MetadataWrite}}}}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := a.PutScopeMap(ctx, "team-a-read", auth.ScopeMapSpec{Rules: []auth.Rule{{Repository: "team-a/*",
			Actions: []auth.Action{auth.ContentRead, auth.MetadataRead}}}}); err != nil {
			t.Fatal(err)
		}
		e.pw["alice"] = "alice-password-1"
		if _, err := a.CreateUser(ctx, auth.UserSpec{Name: "alice", Password: e.pw["alice"], ScopeMap: "team-a-delete"}); err != nil {
			t.Fatal(err)
		}
		tok, err := a.CreateToken(ctx, auth.TokenSpec{Name: "ta", ScopeMap: "team-a-read"})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range tok.Passwords {
			if p.Value != "" {
				e.pw["ta"] = p.Value
				break
			}
		}
		if e.pw["ta"] == "" {
			t.Fatalf("token without a password: %+v", tok)
		}
		apiMux := http.NewServeMux()
		apiMux.Handle("/api/v1/", a.ManagementMiddleware(mgmt.New(reg, nil).WithPolicies(policy.New(reg), nil)))
		apiMux.Handle("/acr/v1/", a.ManagementMiddleware(mgmt.NewACR(reg, nil)))
		e.api = apiMux
	}
	if opt != nil {
		opt(&opts)
	}
	h, err := ui.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(ui.Prefix, h)
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	return e
}

// client is a browser: cookies, no redirects followed.
func (e *env) client(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// get returns the status and body of a GET.
func get(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func post(t *testing.T, c *http.Client, u string, form url.Values, header http.Header) (int, string, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header.Get("Location")
}

// csrf returns the token the forms of page u carry.
func csrf(t *testing.T, c *http.Client, u string) string {
	t.Helper()
	_, body := get(t, c, u)
	m := csrfField.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no csrf field in %s", u)
	}
	return m[1]
}

// login logs c in as name; "" stays logged out.
func (e *env) login(t *testing.T, c *http.Client, name string) {
	t.Helper()
	if name == "" {
		return
	}
	tok := csrf(t, c, e.srv.URL+"/ui/login")
	st, body, loc := post(t, c, e.srv.URL+"/ui/login", url.Values{"csrf": {tok}, "name": {name}, "password": {e.pw[name]}}, nil)
	if st != http.StatusSeeOther {
		t.Fatalf("login %s: %d %s", name, st, body)
	}
	if name == "ta" && loc != "/ui/repositories" {
		t.Errorf("a token without registry-wide reads lands on %q, want /ui/repositories", loc)
	}
}

// apiStatus is what the management API answers name for the same request
// (a dry run where there is one). Its access control refuses with 401 or
// 403; anything else got past it.
func (e *env) apiStatus(t *testing.T, name, method, path string) int {
	req := httptest.NewRequest(method, path+sep(path)+"dry_run=true", nil)
	if name != "" {
		req.SetBasicAuth(name, e.pw[name])
	}
	w := httptest.NewRecorder()
	e.api.ServeHTTP(w, req)
	return w.Code
}

func sep(p string) string {
	if strings.Contains(p, "?") {
		return "&"
	}
	return "?"
}

// TestAuthorization: every UI route, for every kind of caller, answers as
// the management API does for the same request: allowed on both, or
// refused on both (the UI with 403, or a redirect to the login page).
func TestAuthorization(t *testing.T) {
	e := setup(t, true)
	x, y := e.dig["team-a/x"], e.dig["team-b/y"]
	type route struct {
		method, path string
		form         url.Values
		api          string // the API request that decides: METHOD PATH; "" = static, public
	}
	routes := []route{
		{"GET", "/ui/", nil, "GET /api/v1/usage"},
		{"GET", "/ui/repositories", nil, "GET /acr/v1/_catalog"},
		{"GET", "/ui/repository?name=team-a/x", nil, "GET /api/v1/usage/team-a/x"},
		{"GET", "/ui/repository?name=team-b/y", nil, "GET /api/v1/usage/team-b/y"},
		{"GET", "/ui/manifest?name=team-a/x&digest=" + string(x), nil, "GET /acr/v1/team-a/x/_manifests/" + string(x)},
		{"GET", "/ui/manifest?name=team-b/y&digest=" + string(y), nil, "GET /acr/v1/team-b/y/_manifests/" + string(y)},
		{"GET", "/ui/delete?what=image&target=team-a/x@" + string(x), nil, "DELETE /api/v1/images/team-a/x@" + string(x)},
		{"GET", "/ui/delete?what=tag&target=team-b/y:1", nil, "DELETE /api/v1/tags/team-b/y:1"},
		{"GET", "/ui/delete?what=repository&target=team-b/y", nil, "DELETE /api/v1/repositories/team-b/y"},
		{"POST", "/ui/locks", url.Values{"target": {"team-a/x"}}, "PATCH /api/v1/locks/team-a/x"},
		{"POST", "/ui/locks", url.Values{"target": {"team-b/y"}}, "PATCH /api/v1/locks/team-b/y"},
		{"GET", "/ui/policies", nil, "GET /api/v1/retention"},
		{"POST", "/ui/policies/retention", url.Values{"action": {"preview"}}, "POST /api/v1/retention/run"},
		{"POST", "/ui/delete", url.Values{"what": {"repository"}, "target": {"team-b/y"}}, "DELETE /api/v1/repositories/team-b/y"},
		{"GET", "/ui/static/ui.css", nil, ""},
	}
	for _, who := range []string{"", "ta", "alice", "admin"} {
		c := e.client(t)
		e.login(t, c, who)
		for _, rt := range routes {
			var st int
			var body string
			if rt.method == "GET" {
				st, body = get(t, c, e.srv.URL+rt.path)
			} else {
				form := url.Values{}
				for k, v := range rt.form {
					form[k] = v
				}
				form.Set("csrf", csrf(t, c, e.srv.URL+"/ui/login"))
				st, body, _ = post(t, c, e.srv.URL+rt.path, form, nil)
			}
			name := fmt.Sprintf("%s %s %s as %q", rt.method, rt.path, rt.form.Encode(), who)
			if rt.api == "" {
				if st != http.StatusOK {
					t.Errorf("%s: %d, want 200", name, st)
				}
				continue
			}
			method, path, _ := strings.Cut(rt.api, " ")
			ast := e.apiStatus(t, who, method, path)
			apiOK := who != "" && ast != http.StatusUnauthorized && ast != http.StatusForbidden
			uiOK := st < 300 || st == http.StatusSeeOther && rt.method == "POST"
			switch {
			case apiOK != uiOK:
				t.Errorf("%s: UI %d, API %s %d: they disagree", name, st, rt.api, ast)
			case !uiOK && who == "" && rt.method == "GET" && st != http.StatusSeeOther:
				t.Errorf("%s: %d, want a redirect to the login page", name, st)
			case !uiOK && who == "" && rt.method == "POST" && st != http.StatusUnauthorized:
				t.Errorf("%s: %d, want 401", name, st)
			case !uiOK && who != "" && st != http.StatusForbidden:
				t.Errorf("%s: %d, want 403: %.300s", name, st, body)
			}
		}
	}
	// What the token sees in its listings is its scope map's.
	c := e.client(t)
	e.login(t, c, "ta")
	_, body := get(t, c, e.srv.URL+"/ui/repositories")
	if !strings.Contains(body, `data-repo="team-a/x"`) || !strings.Contains(body, `data-repo="team-a/z"`) || strings.Contains(body, "team-b") {
		t.Errorf("token ta's repository list is not team-a/* only:\n%s", body)
	}
	_, body = get(t, c, e.srv.URL+"/ui/manifest?name=team-a/x&digest="+string(x))
	if strings.Contains(body, "team-b/y") {
		t.Errorf("the layer shared with team-b/y names it to a token that cannot see it")
	}
	if strings.Contains(body, "Delete this image") {
		t.Errorf("a read-only token is offered a delete button")
	}
}

// TestSessions: a wrong password shows the login page again; a deleted
// token ends its session at once; logout ends it; cookies are HttpOnly and
// SameSite=Strict.
func TestSessions(t *testing.T) {
	e := setup(t, true)
	c := e.client(t)
	tok := csrf(t, c, e.srv.URL+"/ui/login")
	st, body, _ := post(t, c, e.srv.URL+"/ui/login", url.Values{"csrf": {tok}, "name": {"admin"}, "password": {"wrong"}}, nil)
	if st != http.StatusUnauthorized || !strings.Contains(body, "invalid name or password") {
		t.Errorf("wrong password: %d %.200s", st, body)
	}
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/ui/login", strings.NewReader(url.Values{"csrf": {tok}, "name": {"ta"}, "password": {e.pw["ta"]}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var sc *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "stowage_ui" {
			sc = ck
		}
	}
	if sc == nil || !sc.HttpOnly || sc.SameSite != http.SameSiteStrictMode || sc.Path != "/ui/" || sc.Secure {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/ui/, not Secure over plain HTTP", sc)
	}
	// Behind a TLS-terminating proxy the cookie is Secure.
	c2 := e.client(t)
	tok2 := csrf(t, c2, e.srv.URL+"/ui/login")
	req2, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/ui/login", strings.NewReader(url.Values{"csrf": {tok2}, "name": {"admin"}, "password": {e.pw["admin"]}}.Encode()))
	req2.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req2.Header.Set("X-Forwarded-Proto", "https")
	resp2, err := c2.Do(req2)
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	for _, ck := range resp2.Cookies() {
		if ck.Name == "stowage_ui" && !ck.Secure {
			t.Errorf("behind an https proxy the session cookie is not Secure")
		}
	}
	if st, _ := get(t, c, e.srv.URL+"/ui/repositories"); st != http.StatusOK {
		t.Fatalf("logged-in token: %d", st)
	}
	if err := e.a.DeleteToken(context.Background(), "ta"); err != nil {
		t.Fatal(err)
	}
	if st, _ := get(t, c, e.srv.URL+"/ui/repositories"); st != http.StatusSeeOther {
		t.Errorf("the session of a deleted token still works: %d", st)
	}
	e.login(t, c, "admin")
	tok = csrf(t, c, e.srv.URL+"/ui/login")
	if st, _, _ := post(t, c, e.srv.URL+"/ui/logout", url.Values{"csrf": {tok}}, nil); st != http.StatusSeeOther {
		t.Errorf("logout: %d", st)
	}
	if st, _ := get(t, c, e.srv.URL+"/ui/"); st != http.StatusSeeOther {
		t.Errorf("after logout: %d, want a redirect to the login page", st)
	}
}

// TestCSRF: a POST without the form's token, with another session's, or
// from another origin changes nothing.
func TestCSRF(t *testing.T) {
	for _, withAuth := range []bool{true, false} {
		e := setup(t, withAuth)
		c := e.client(t)
		if withAuth {
			e.login(t, c, "admin")
		}
		other := e.client(t)
		if withAuth {
			e.login(t, other, "admin")
		}
		target := "team-a/x@" + string(e.dig["team-a/x"])
		page := e.srv.URL + "/ui/delete?what=image&target=" + url.QueryEscape(target)
		good := csrf(t, c, page)
		otherTok := csrf(t, other, page)
		form := func(tok string) url.Values {
			return url.Values{"csrf": {tok}, "what": {"image"}, "target": {target}}
		}
		for _, tc := range []struct {
			name   string
			form   url.Values
			header http.Header
		}{
			{"no token", url.Values{"what": {"image"}, "target": {target}}, nil},
			{"another session's token", form(otherTok), nil},
			{"another origin", form(good), http.Header{"Origin": {"http://evil.example"}}},
		} {
			st, _, _ := post(t, c, e.srv.URL+"/ui/delete", tc.form, tc.header)
			if st != http.StatusForbidden {
				t.Errorf("auth=%t %s: %d, want 403", withAuth, tc.name, st)
			}
			if _, err := e.reg.ResolveManifest(context.Background(), "team-a/x", stowage.Reference{Digest: e.dig["team-a/x"]}); err != nil {
				t.Fatalf("auth=%t %s: the image was deleted: %v", withAuth, tc.name, err)
			}
		}
		st, body, loc := post(t, c, e.srv.URL+"/ui/delete", form(good), nil)
		if st != http.StatusSeeOther {
			t.Errorf("auth=%t with the right token: %d %.300s", withAuth, st, body)
		}
		// The next page says what the delete did, once; a link cannot make
		// the UI say something.
		if _, body := get(t, c, e.srv.URL+loc); !strings.Contains(body, "the next garbage collection frees") {
			t.Errorf("auth=%t: the page after the delete does not say what it frees", withAuth)
		}
		if _, body := get(t, c, e.srv.URL+loc+"&done=EVIL-TEXT"); strings.Contains(body, "garbage collection frees") || strings.Contains(body, "EVIL-TEXT") {
			t.Errorf("auth=%t: the message is shown twice, or the URL wrote it", withAuth)
		}
		if _, err := e.reg.ResolveManifest(context.Background(), "team-a/x", stowage.Reference{Digest: e.dig["team-a/x"]}); err == nil {
			t.Errorf("auth=%t: the confirmed delete did not delete", withAuth)
		}
	}
}

var rowName = regexp.MustCompile(`<tr data-repo="([^"]+)"`)
var nextLink = regexp.MustCompile(`<a href="([^"]+)" id="next"`)

// TestPaging: the repository list pages through every repository exactly
// once, in each order, with and without a name prefix, and the rows of a
// token's listing are only its own.
func TestPaging(t *testing.T) {
	e := setup(t, false)
	const n = 130
	var want []string
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("p/r%03d", i)
		push(t, e.reg, name, "1", strings.Repeat("x", i+1)+name)
		want = append(want, name)
	}
	want = append(want, "team-a/x", "team-a/z", "team-b/y")
	// The size order is the last recording's; p/new is created after it.
	if _, err := history.Record(context.Background(), e.hist, usageReporter(e.reg), time.Now()); err != nil {
		t.Fatal(err)
	}
	push(t, e.reg, "p/new", "1", strings.Repeat("y", 10000))
	want = append(want, "p/new")
	slices.Sort(want)
	c := e.client(t)
	walk := func(first string) ([]string, int) {
		var got []string
		pages := 0
		u := e.srv.URL + first
		for u != "" && pages < 20 {
			st, body := get(t, c, u)
			if st != http.StatusOK {
				t.Fatalf("%s: %d %.300s", u, st, body)
			}
			pages++
			for _, m := range rowName.FindAllStringSubmatch(body, -1) {
				got = append(got, m[1])
			}
			u = ""
			if m := nextLink.FindStringSubmatch(body); m != nil {
				u = e.srv.URL + strings.ReplaceAll(m[1], "&amp;", "&")
			}
		}
		return got, pages
	}
	for _, order := range []string{"name", "size", "updated"} {
		got, pages := walk("/ui/repositories?n=40&sort=" + order)
		if pages != 4 {
			t.Errorf("sort=%s: %d pages of 40 for %d repositories, want 4", order, pages, len(want))
		}
		if order == "updated" && got[0] != "p/new" {
			t.Errorf("sort=updated starts with %s, want p/new (the last change)", got[0])
		}
		sorted := slices.Clone(got)
		sort.Strings(sorted)
		if !slices.Equal(sorted, want) {
			t.Errorf("sort=%s: got %d names (%v…), want each of %d once", order, len(got), got[:min(5, len(got))], len(want))
		}
		if order == "size" && (got[0] != "p/r129" || got[1] != "p/r128" || got[len(got)-1] != "p/new") {
			t.Errorf("sort=size: %v … %v, want the largest, p/r129, p/r128, first, and p/new (created since the recording) last", got[:3], got[len(got)-3:])
		}
		if order == "name" && !slices.IsSorted(got) {
			t.Errorf("sort=name is not in name order")
		}
	}
	got, _ := walk("/ui/repositories?n=7&q=p/r12")
	if want := []string{"p/r120", "p/r121", "p/r122", "p/r123", "p/r124", "p/r125", "p/r126", "p/r127", "p/r128", "p/r129"}; !slices.Equal(got, want) {
		t.Errorf("q=p/r12: %v, want %v", got, want)
	}
	if st, _ := get(t, c, e.srv.URL+"/ui/repositories?after=garbage"); st != http.StatusBadRequest {
		t.Errorf("a bad cursor: %d, want 400", st)
	}
}

// TestPages: with access control off, every page answers 200, and the
// overview's numbers are the usage report's.
func TestPages(t *testing.T) {
	e := setup(t, false)
	ctx := context.Background()
	if _, err := history.Record(ctx, e.hist, usageReporter(e.reg), time.Now()); err != nil {
		t.Fatal(err)
	}
	c := e.client(t)
	x := e.dig["team-a/x"]
	for _, p := range []string{"/ui/", "/ui/repositories", "/ui/repositories?sort=size", "/ui/repository?name=team-a/x",
		"/ui/manifest?name=team-a/x&digest=" + string(x), "/ui/delete?what=image&target=team-a/x@" + string(x), "/ui/policies"} {
		if st, body := get(t, c, e.srv.URL+p); st != http.StatusOK {
			t.Errorf("%s: %d %.400s", p, st, body)
		}
	}
	u, err := usageReporter(e.reg).Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, body := get(t, c, e.srv.URL+"/ui/")
	for _, want := range []string{
		fmt.Sprintf(`id="physical"><span class="bytes" title="%s bytes" data-bytes="%d"`, commas(u.PhysicalBytes), u.PhysicalBytes),
		fmt.Sprintf(`id="logical"><span class="bytes" title="%s bytes" data-bytes="%d"`, commas(u.LogicalBytes), u.LogicalBytes),
		fmt.Sprintf(`id="dedup">%.2f×`, u.DedupRatio),
		"<polyline", "<rect",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("overview lacks %q", want)
		}
	}
	// Every link of the pages leads to a page that answers 200.
	hrefs := regexp.MustCompile(`href="(/ui/[^"]*)"`)
	seen := map[string]bool{}
	for _, p := range []string{"/ui/", "/ui/repositories", "/ui/repository?name=team-a/x", "/ui/manifest?name=team-a/x&digest=" + string(x)} {
		_, body := get(t, c, e.srv.URL+p)
		for _, m := range hrefs.FindAllStringSubmatch(body, -1) {
			link := strings.ReplaceAll(m[1], "&amp;", "&")
			if seen[link] {
				continue
			}
			seen[link] = true
			if st, body := get(t, c, e.srv.URL+link); st != http.StatusOK {
				t.Errorf("link %s on %s: %d %.300s", link, p, st, body)
			}
		}
	}
	if len(seen) < 10 {
		t.Errorf("only %d links checked", len(seen))
	}
	// A signature of team-a/x is listed among its referrers, with its
	// artifact type, and not as an image.
	empty := []byte("{}")
	if _, err := e.reg.PutBlob(ctx, "team-a/x", digestOf(empty), bytes.NewReader(empty), 2); err != nil {
		t.Fatal(err)
	}
	subj, err := e.reg.ResolveManifest(ctx, "team-a/x", stowage.Reference{Digest: x})
	if err != nil {
		t.Fatal(err)
	}
	sig := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"artifactType":"application/vnd.dev.cosign.artifact.sig.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":%q,"size":2},"layers":[{"mediaType":"application/vnd.oci.empty.v1+json","digest":%q,"size":2}],"subject":{"mediaType":%q,"digest":%q,"size":%d}}`,
		stowage.MediaTypeOCIManifest, digestOf(empty), digestOf(empty), stowage.MediaTypeOCIManifest, x, subj.Size)
	res, err := e.reg.PutManifest(ctx, "team-a/x", stowage.Reference{Digest: digestOf([]byte(sig))}, stowage.MediaTypeOCIManifest, []byte(sig), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, body = get(t, c, e.srv.URL+"/ui/repository?name=team-a/x")
	refs := body[strings.Index(body, `id="referrers"`):]
	if !strings.Contains(refs, "application/vnd.dev.cosign.artifact.sig.v1&#43;json") || !strings.Contains(refs, "<code>"+string(res.Digest)[:19]+"</code>") {
		t.Errorf("the signature is not among team-a/x's referrers:\n%.2000s", refs)
	}
	if strings.Contains(body, `<tr data-digest="`+string(res.Digest)+`"`) {
		t.Errorf("the signature is listed as an image")
	}
	// The layer team-a/x shares with team-b/y is listed as shared.
	_, body = get(t, c, e.srv.URL+"/ui/manifest?name=team-a/x&digest="+string(x))
	if !strings.Contains(body, "team-b/y@") {
		t.Errorf("the manifest page does not say the layer is shared with team-b/y")
	}
}

func commas(n int64) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func usageReporter(reg *stowage.Registry) *usage.Reporter { return usage.New(reg) }

// TestPagingFiltered: a token that may list every third repository pages
// through exactly those, each once, in every order, however the pages cut
// the filtered batches.
func TestPagingFiltered(t *testing.T) {
	e := setup(t, true)
	ctx := context.Background()
	var rules []auth.Rule
	var want []string
	for i := 0; i < 150; i++ {
		name := fmt.Sprintf("p/r%03d", i)
		push(t, e.reg, name, "1", strings.Repeat("z", i+1)+name)
		if i%3 == 1 {
			rules = append(rules, auth.Rule{Repository: name, Actions: []auth.Action{auth.MetadataRead}})
			want = append(want, name)
		}
	}
	if _, err := history.Record(ctx, e.hist, usageReporter(e.reg), time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.a.PutScopeMap(ctx, "thirds", auth.ScopeMapSpec{Rules: rules}); err != nil {
		t.Fatal(err)
	}
	tok, err := e.a.CreateToken(ctx, auth.TokenSpec{Name: "thirds", ScopeMap: "thirds"})
	if err != nil {
		t.Fatal(err)
	}
	e.pw["thirds"] = tok.Passwords[0].Value
	c := e.client(t)
	e.login(t, c, "thirds")
	for _, order := range []string{"name", "size", "updated"} {
		var got []string
		u := e.srv.URL + "/ui/repositories?n=7&sort=" + order
		for pages := 0; u != "" && pages < 30; pages++ {
			st, body := get(t, c, u)
			if st != http.StatusOK {
				t.Fatalf("%s: %d", u, st)
			}
			for _, m := range rowName.FindAllStringSubmatch(body, -1) {
				got = append(got, m[1])
			}
			u = ""
			if m := nextLink.FindStringSubmatch(body); m != nil {
				u = e.srv.URL + strings.ReplaceAll(m[1], "&amp;", "&")
			}
		}
		sorted := slices.Clone(got)
		slices.Sort(sorted)
		if !slices.Equal(sorted, want) {
			t.Errorf("sort=%s: %d rows, want each of the %d listable once; got %v", order, len(got), len(want), got)
		}
	}
}

// TestLocks: the lock form sets exactly the checked locks, through the
// engine (a delete-locked image then refuses the UI's delete).
func TestLocks(t *testing.T) {
	e := setup(t, false)
	ctx := context.Background()
	c := e.client(t)
	x := e.dig["team-a/x"]
	target := "team-a/x@" + string(x)
	page := e.srv.URL + "/ui/delete?what=image&target=" + url.QueryEscape(target)
	tok := csrf(t, c, page)
	if st, body, _ := post(t, c, e.srv.URL+"/ui/locks", url.Values{"csrf": {tok}, "target": {target}, "delete": {"on"}, "write": {"on"}}, nil); st != http.StatusSeeOther {
		t.Fatalf("set locks: %d %.300s", st, body)
	}
	l, err := e.reg.Locks(ctx, "team-a/x", stowage.Reference{Digest: x})
	if err != nil || l != stowage.LockDelete|stowage.LockWrite {
		t.Fatalf("locks after the form: %v, %v; want delete and write", l, err)
	}
	if st, _, _ := post(t, c, e.srv.URL+"/ui/delete", url.Values{"csrf": {tok}, "what": {"image"}, "target": {target}}, nil); st != http.StatusForbidden {
		t.Errorf("delete of a delete-locked image: %d, want 403", st)
	}
	if st, _, _ := post(t, c, e.srv.URL+"/ui/locks", url.Values{"csrf": {tok}, "target": {target}}, nil); st != http.StatusSeeOther {
		t.Fatalf("clear locks: %d", st)
	}
	if l, err := e.reg.Locks(ctx, "team-a/x", stowage.Reference{Digest: x}); err != nil || l != 0 {
		t.Errorf("locks after clearing: %v, %v", l, err)
	}
}
