package auth_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/auth"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/mgmt"
	"github.com/stowage/stowage/ociapi"
	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/recyclebin"
	"github.com/stowage/stowage/storage/mem"
)

// ---- harness ----

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// syncBuffer collects log lines from concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type env struct {
	t    *testing.T
	db   stowage.DB
	a    *auth.Authority
	clk  *clock
	logs *syncBuffer
	srv  *httptest.Server
	host string
}

const adminPass = "admin-password-1"

func newEnv(t *testing.T, tweak ...func(*auth.Options)) *env {
	t.Helper()
	return newEnvAt(t, ":memory:", tweak...)
}

// newEnvAt is newEnv on the SQLite database at path.
func newEnvAt(t *testing.T, path string, tweak ...func(*auth.Options)) *env {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, db: db, clk: &clock{t: time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)}, logs: &syncBuffer{}}
	opts := auth.Options{BcryptCost: bcrypt.MinCost, Now: e.clk.Now,
		Logger: slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	for _, f := range tweak {
		f(&opts)
	}
	if e.a, err = auth.New(ctx, db, opts); err != nil {
		t.Fatal(err)
	}
	if created, err := e.a.EnsureAdmin(ctx, "admin", adminPass); err != nil || !created {
		t.Fatalf("EnsureAdmin = %v, %v", created, err)
	}
	reg := stowage.NewRegistry(db, mem.New(), stowage.Options{Now: e.clk.Now})
	mux := http.NewServeMux()
	oci := ociapi.New(reg, nil)
	mux.Handle("/v2/", e.a.Middleware(oci))
	mux.Handle(auth.TokenPath, e.a.TokenHandler())
	mux.Handle(auth.AdminPrefix, e.a.ManagementMiddleware(e.a.Handler()))
	mux.Handle("/api/v1/", e.a.ManagementMiddleware(mgmt.New(reg, nil).WithPolicies(policy.New(reg), recyclebin.New(reg))))
	mux.Handle("/acr/v1/", e.a.ManagementMiddleware(mgmt.NewACR(reg, nil)))
	// /probe/ reports the identity the middleware put into the context.
	mux.Handle("/probe/", e.a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
	e.srv = httptest.NewServer(mux)
	e.host = strings.TrimPrefix(e.srv.URL, "http://")
	t.Cleanup(func() {
		e.srv.Close()
		db.Close()
	})
	return e
}

type resp struct {
	status int
	hdr    http.Header
	body   []byte
}

func (r resp) code() stowage.ErrorCode {
	var b struct {
		Errors []struct {
			Code    stowage.ErrorCode
			Message string
		}
	}
	if json.Unmarshal(r.body, &b) != nil || len(b.Errors) == 0 {
		return ""
	}
	return b.Errors[0].Code
}

// do sends a request; authz is the Authorization header ("" for none).
func (e *env) do(method, path, authz string, body string, hdr ...string) resp {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{res.StatusCode, res.Header, b}
}

func basic(user, pass string) string { return auth.BasicAuthorization(user, pass) }
func bearer(tok string) string       { return "Bearer " + tok }

var admin = basic("admin", adminPass)

// token gets an access token from the token endpoint (GET, Docker's way).
func (e *env) token(authz string, scopes ...string) (auth.TokenResponse, resp) {
	e.t.Helper()
	q := url.Values{"service": {e.host}, "scope": scopes, "client_id": {"test"}}
	r := e.do(http.MethodGet, auth.TokenPath+"?"+q.Encode(), authz, "")
	var tr auth.TokenResponse
	if r.status == http.StatusOK {
		if err := json.Unmarshal(r.body, &tr); err != nil {
			e.t.Fatalf("token response %s: %v", r.body, err)
		}
	}
	return tr, r
}

func (e *env) mustToken(authz string, scopes ...string) string {
	e.t.Helper()
	tr, r := e.token(authz, scopes...)
	if r.status != http.StatusOK {
		e.t.Fatalf("token for %v: %d %s", scopes, r.status, r.body)
	}
	return tr.Token
}

func claimsOf(t *testing.T, tok string) auth.Claims {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q is not a JWT", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c auth.Claims
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func (e *env) mustJSON(method, path, body string, want int, out any) {
	e.t.Helper()
	r := e.do(method, path, admin, body, "Content-Type", "application/json")
	if r.status != want {
		e.t.Fatalf("%s %s: %d %s, want %d", method, path, r.status, r.body, want)
	}
	if out != nil {
		if err := json.Unmarshal(r.body, out); err != nil {
			e.t.Fatalf("%s %s: %v in %s", method, path, err, r.body)
		}
	}
}

// pushImage pushes a one-layer image as the admin and returns the layer's digest.
func (e *env) pushImage(repo, tag, content string) string {
	e.t.Helper()
	put := func(data []byte) string {
		d := fmt.Sprintf("sha256:%x", sha256.Sum256(data))
		r := e.do(http.MethodPost, "/v2/"+repo+"/blobs/uploads/?digest="+d, admin, string(data))
		if r.status != http.StatusCreated {
			e.t.Fatalf("push blob to %s: %d %s", repo, r.status, r.body)
		}
		return d
	}
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	layer := []byte(content)
	cd, ld := put(cfg), put(layer)
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},`+
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`, cd, len(cfg), ld, len(layer))
	r := e.do(http.MethodPut, "/v2/"+repo+"/manifests/"+tag, admin, m, "Content-Type", "application/vnd.oci.image.manifest.v1+json")
	if r.status != http.StatusCreated {
		e.t.Fatalf("push manifest to %s: %d %s", repo, r.status, r.body)
	}
	return ld
}

// newToken creates a scope map with rules and a token bound to it, and
// returns the token's two passwords.
func (e *env) newToken(name string, rules string) (string, string) {
	e.t.Helper()
	e.mustJSON(http.MethodPut, "/api/v1/auth/scope-maps/"+name+"-map", `{"rules":`+rules+`}`, http.StatusCreated, nil)
	var ti auth.TokenInfo
	e.mustJSON(http.MethodPost, "/api/v1/auth/tokens", `{"name":"`+name+`","scopeMap":"`+name+`-map"}`, http.StatusCreated, &ti)
	if len(ti.Passwords) != 2 || ti.Passwords[0].Value == "" || ti.Passwords[1].Value == "" {
		e.t.Fatalf("created token %+v: want two passwords with values", ti)
	}
	return ti.Passwords[0].Value, ti.Passwords[1].Value
}

var challengeRe = regexp.MustCompile(`(\w+)="([^"]*)"`)

func parseChallenge(t *testing.T, h string) map[string]string {
	t.Helper()
	if !strings.HasPrefix(h, "Bearer ") {
		t.Fatalf("challenge %q: want Bearer", h)
	}
	out := map[string]string{}
	for _, m := range challengeRe.FindAllStringSubmatch(h, -1) {
		out[m[1]] = m[2]
	}
	return out
}

const readTeamA = `[{"repository":"team-a/*","actions":["content/read","metadata/read"]}]`

// ---- the token flow ----

func TestTokenFlowEndToEnd(t *testing.T) {
	e := newEnv(t)
	e.pushImage("team-a/x", "v1", "layer a")

	// docker login: GET /v2/ without credentials → 401 with the realm.
	r := e.do(http.MethodGet, "/v2/", "", "")
	if r.status != http.StatusUnauthorized || r.hdr.Get("Docker-Distribution-API-Version") != "registry/2.0" {
		t.Fatalf("GET /v2/ anonymous: %d %v", r.status, r.hdr)
	}
	ch := parseChallenge(t, r.hdr.Get("WWW-Authenticate"))
	if ch["realm"] != e.srv.URL+auth.TokenPath || ch["service"] != e.host || ch["scope"] != "" {
		t.Fatalf("challenge %v: want realm %s, service %s, no scope", ch, e.srv.URL+auth.TokenPath, e.host)
	}

	// A pull: 401 names the scope; the client asks the realm for it.
	r = e.do(http.MethodGet, "/v2/team-a/x/manifests/v1", "", "")
	ch = parseChallenge(t, r.hdr.Get("WWW-Authenticate"))
	if r.status != http.StatusUnauthorized || ch["scope"] != "repository:team-a/x:pull" {
		t.Fatalf("anonymous pull: %d, challenge %v", r.status, ch)
	}
	q := url.Values{"service": {ch["service"]}, "scope": {ch["scope"]}}
	realm, _ := url.Parse(ch["realm"])
	r = e.do(http.MethodGet, realm.Path+"?"+q.Encode(), admin, "")
	if r.status != http.StatusOK {
		t.Fatalf("token endpoint: %d %s", r.status, r.body)
	}
	var tr map[string]any
	json.Unmarshal(r.body, &tr)
	for _, f := range []string{"token", "access_token", "expires_in", "issued_at"} {
		if _, ok := tr[f]; !ok {
			t.Errorf("token response %s lacks %q", r.body, f)
		}
	}
	if _, ok := tr["refresh_token"]; ok {
		t.Errorf("token response %s has a refresh token nobody asked for", r.body)
	}
	if tr["expires_in"] != float64(300) || tr["token"] != tr["access_token"] {
		t.Errorf("token response %s: want expires_in 300 and token == access_token", r.body)
	}
	tok := tr["token"].(string)
	c := claimsOf(t, tok)
	if c.Subject != "admin" || c.Audience != e.host || c.Kind != "user" || c.Expiry-c.IssuedAt != 300 ||
		len(c.Access) != 1 || c.Access[0].Name != "team-a/x" || strings.Join(c.Access[0].Actions, ",") != "pull" {
		t.Fatalf("claims %+v", c)
	}
	if r := e.do(http.MethodGet, "/v2/team-a/x/manifests/v1", bearer(tok), ""); r.status != http.StatusOK {
		t.Fatalf("pull with the token: %d %s", r.status, r.body)
	}
	// The token does not cover a push: 401 insufficient_scope, asking for push.
	r = e.do(http.MethodPost, "/v2/team-a/x/blobs/uploads/", bearer(tok), "")
	ch = parseChallenge(t, r.hdr.Get("WWW-Authenticate"))
	if r.status != http.StatusUnauthorized || ch["error"] != "insufficient_scope" || ch["scope"] != "repository:team-a/x:pull,push" {
		t.Fatalf("push with a pull token: %d %v", r.status, ch)
	}
	// Nor another repository, nor the catalog.
	if r := e.do(http.MethodGet, "/v2/team-b/y/tags/list", bearer(tok), ""); r.status != http.StatusUnauthorized {
		t.Fatalf("other repository with the token: %d", r.status)
	}
	r = e.do(http.MethodGet, "/v2/_catalog", bearer(tok), "")
	if ch := parseChallenge(t, r.hdr.Get("WWW-Authenticate")); r.status != http.StatusUnauthorized || ch["scope"] != "registry:catalog:*" {
		t.Fatalf("catalog with a repository token: %d %v", r.status, ch)
	}
	cat := e.mustToken(admin, "registry:catalog:*")
	if r := e.do(http.MethodGet, "/v2/_catalog", bearer(cat), ""); r.status != http.StatusOK {
		t.Fatalf("catalog with a catalog token: %d %s", r.status, r.body)
	}

	// Expired access token: refused, with invalid_token.
	e.clk.Add(6 * time.Minute)
	r = e.do(http.MethodGet, "/v2/team-a/x/manifests/v1", bearer(tok), "")
	if ch := parseChallenge(t, r.hdr.Get("WWW-Authenticate")); r.status != http.StatusUnauthorized || ch["error"] != "invalid_token" {
		t.Fatalf("expired token: %d %v", r.status, ch)
	}
	// Tampered token: refused.
	parts := strings.Split(tok, ".")
	forged := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"admin"}`)) + "." + parts[2]
	if r := e.do(http.MethodGet, "/v2/team-a/x/manifests/v1", bearer(forged), ""); r.status != http.StatusUnauthorized {
		t.Fatalf("forged token: %d", r.status)
	}
	// Basic credentials work on /v2/ too; wrong ones get 401 and a challenge.
	if r := e.do(http.MethodGet, "/v2/team-a/x/manifests/v1", admin, ""); r.status != http.StatusOK {
		t.Fatalf("basic pull: %d", r.status)
	}
	r = e.do(http.MethodGet, "/v2/", basic("admin", "wrong-password"), "")
	if r.status != http.StatusUnauthorized || r.code() != stowage.CodeUnauthorized || r.hdr.Get("WWW-Authenticate") == "" {
		t.Fatalf("wrong password: %d %s %v", r.status, r.body, r.hdr)
	}
}

func TestTokenEndpointPOST(t *testing.T) {
	e := newEnv(t)
	post := func(form url.Values) resp {
		return e.do(http.MethodPost, auth.TokenPath, "", form.Encode(), "Content-Type", "application/x-www-form-urlencoded")
	}
	r := post(url.Values{"grant_type": {"password"}, "username": {"admin"}, "password": {adminPass},
		"client_id": {"test"}, "service": {e.host}, "scope": {"repository:a/b:pull,push registry:catalog:*"}})
	if r.status != http.StatusOK {
		t.Fatalf("password grant: %d %s", r.status, r.body)
	}
	var tr auth.TokenResponse
	json.Unmarshal(r.body, &tr)
	if tr.AccessToken == "" || tr.RefreshToken == "" || tr.Scope != "repository:a/b:pull,push registry:catalog:*" {
		t.Fatalf("password grant answer %+v", tr)
	}
	r = post(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}, "client_id": {"test"},
		"service": {e.host}, "scope": {"repository:a/b:delete"}})
	var tr2 auth.TokenResponse
	json.Unmarshal(r.body, &tr2)
	if r.status != http.StatusOK || tr2.Scope != "repository:a/b:delete" || tr2.RefreshToken != "" {
		t.Fatalf("refresh grant: %d %s", r.status, r.body)
	}
	for _, tc := range []struct {
		name string
		form url.Values
		code stowage.ErrorCode
	}{
		{"no grant type", url.Values{"username": {"admin"}}, stowage.CodeInvalidParameter},
		{"unknown grant type", url.Values{"grant_type": {"client_credentials"}}, stowage.CodeInvalidParameter},
		{"wrong password", url.Values{"grant_type": {"password"}, "username": {"admin"}, "password": {"nope-nope"}}, stowage.CodeUnauthorized},
		{"access token as refresh token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.AccessToken}}, stowage.CodeUnauthorized},
		{"garbage refresh token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"a.b.c"}}, stowage.CodeUnauthorized},
	} {
		if r := post(tc.form); r.code() != tc.code {
			t.Errorf("%s: %d %s, want %s", tc.name, r.status, r.body, tc.code)
		}
	}
	// A token for another service is not good here.
	r = post(url.Values{"grant_type": {"password"}, "username": {"admin"}, "password": {adminPass}, "service": {"elsewhere"}})
	var other auth.TokenResponse
	json.Unmarshal(r.body, &other)
	if r.status != 200 || claimsOf(t, other.Token).Audience != "elsewhere" {
		t.Fatalf("token for another service: %d %s", r.status, r.body)
	}
	if r := e.do(http.MethodGet, "/v2/", bearer(other.Token), ""); r.status != http.StatusUnauthorized {
		t.Fatalf("token for another service used here: %d", r.status)
	}
	// A refresh token is not a bearer token for requests.
	if r := e.do(http.MethodGet, "/v2/", bearer(tr.RefreshToken), ""); r.status != http.StatusUnauthorized {
		t.Fatalf("refresh token as bearer: %d", r.status)
	}
}

func TestConfiguredService(t *testing.T) {
	e := newEnv(t, func(o *auth.Options) {
		o.Service = "registry.example"
		o.Realm = "https://auth.example/oauth2/token"
	})
	r := e.do(http.MethodGet, "/v2/", "", "")
	if ch := parseChallenge(t, r.hdr.Get("WWW-Authenticate")); ch["service"] != "registry.example" || ch["realm"] != "https://auth.example/oauth2/token" {
		t.Fatalf("challenge %v", ch)
	}
	q := url.Values{"service": {"elsewhere"}}
	if r := e.do(http.MethodGet, auth.TokenPath+"?"+q.Encode(), admin, ""); r.code() != stowage.CodeInvalidParameter || !strings.Contains(string(r.body), "registry.example") {
		t.Fatalf("token for another service: %d %s", r.status, r.body)
	}
	r = e.do(http.MethodGet, auth.TokenPath, admin, "") // no service: the configured one
	var tr auth.TokenResponse
	json.Unmarshal(r.body, &tr)
	tok := tr.Token
	if r := e.do(http.MethodGet, "/v2/", bearer(tok), ""); r.status != 200 {
		t.Fatalf("token of the configured service: %d %s", r.status, r.body)
	}
}

// ---- scope maps, tokens and intersections ----

func TestScopedTokenAccess(t *testing.T) {
	e := newEnv(t)
	e.pushImage("team-a/x", "v1", "layer a")
	e.pushImage("team-b/y", "v1", "layer b")
	p1, _ := e.newToken("ci-read", readTeamA)
	tb := basic("ci-read", p1)
	// The token's bearer tokens, asked for more than it may have.
	tokA := e.mustToken(tb, "repository:team-a/x:pull,push,delete")
	tokB := e.mustToken(tb, "repository:team-b/y:pull")
	if c := claimsOf(t, tokA); len(c.Access) != 1 || strings.Join(c.Access[0].Actions, ",") != "pull" || c.Kind != "token" {
		t.Fatalf("team-a token claims %+v: want pull only", c)
	}
	if c := claimsOf(t, tokB); len(c.Access) != 0 {
		t.Fatalf("team-b token claims %+v: want nothing", c)
	}
	for _, tc := range []struct {
		name, method, path, authz string
		status                    int
	}{
		{"basic pull team-a", "GET", "/v2/team-a/x/manifests/v1", tb, 200},
		{"basic head team-a", "HEAD", "/v2/team-a/x/manifests/v1", tb, 200},
		{"basic tags team-a", "GET", "/v2/team-a/x/tags/list", tb, 200},
		{"basic push team-a", "POST", "/v2/team-a/x/blobs/uploads/", tb, 403},
		{"basic put manifest team-a", "PUT", "/v2/team-a/x/manifests/v2", tb, 403},
		{"basic delete team-a", "DELETE", "/v2/team-a/x/manifests/v1", tb, 403},
		{"basic pull team-b", "GET", "/v2/team-b/y/manifests/v1", tb, 403},
		{"basic tags team-b", "GET", "/v2/team-b/y/tags/list", tb, 403},
		{"basic team-a itself is not below team-a/", "GET", "/v2/team-a/manifests/v1", tb, 403},
		{"basic base", "GET", "/v2/", tb, 200},
		{"basic catalog", "GET", "/v2/_catalog", tb, 200},
		{"bearer pull team-a", "GET", "/v2/team-a/x/manifests/v1", bearer(tokA), 200},
		{"bearer push team-a", "POST", "/v2/team-a/x/blobs/uploads/", bearer(tokA), 403},
		{"bearer pull team-b", "GET", "/v2/team-b/y/manifests/v1", bearer(tokB), 403},
		{"bearer with team-a token on team-b", "GET", "/v2/team-b/y/manifests/v1", bearer(tokA), 403},
		{"management delete", "DELETE", "/api/v1/repositories/team-a/x", tb, 403},
		{"management gc", "POST", "/api/v1/gc", tb, 403},
		{"management auth", "GET", "/api/v1/auth/tokens", tb, 403},
		{"management usage of team-a/x", "GET", "/api/v1/usage/team-a/x", tb, 200},
		{"management usage of all", "GET", "/api/v1/usage", tb, 403},
		{"acr team-a", "GET", "/acr/v1/team-a/x/_tags", tb, 200},
		{"acr team-b", "GET", "/acr/v1/team-b/y/_tags", tb, 403},
		{"acr lock team-a", "PATCH", "/acr/v1/team-a/x", tb, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(tc.method, tc.path, tc.authz, "")
			if r.status != tc.status {
				t.Fatalf("%s %s: %d %s, want %d", tc.method, tc.path, r.status, r.body, tc.status)
			}
			if tc.status == 403 && tc.method != "HEAD" && r.code() != stowage.CodeDenied {
				t.Fatalf("code %s, want DENIED", r.code())
			}
		})
	}
	// Scope map changes take effect at once.
	e.mustJSON(http.MethodPut, "/api/v1/auth/scope-maps/ci-read-map",
		`{"rules":[{"repository":"team-b/y","actions":["content/read"]}]}`, http.StatusOK, nil)
	if r := e.do("GET", "/v2/team-a/x/manifests/v1", tb, ""); r.status != 403 {
		t.Fatalf("after narrowing the scope map: %d", r.status)
	}
	if r := e.do("GET", "/v2/team-b/y/manifests/v1", tb, ""); r.status != 200 {
		t.Fatalf("after widening the scope map: %d", r.status)
	}
	// Claims never outlive the rights: the old team-a bearer token is refused.
	if r := e.do("GET", "/v2/team-a/x/manifests/v1", bearer(tokA), ""); r.status != 403 {
		t.Fatalf("old bearer token after narrowing: %d", r.status)
	}
}

func TestGrantIntersections(t *testing.T) {
	e := newEnv(t)
	p, _ := e.newToken("pusher", `[{"repository":"team-a/*","actions":["content/read","content/write","metadata/read"]},`+
		`{"repository":"shared","actions":["metadata/read"]},{"repository":"*","actions":["content/delete"]}]`)
	e.mustJSON(http.MethodPost, "/api/v1/auth/users", `{"name":"bob","password":"bob-password"}`, http.StatusCreated, nil)
	all := []string{"repository:team-a/x:pull,push,delete,*", "repository:shared:pull,push", "repository:team-b/y:*",
		"registry:catalog:*", "registry:*:*", "repository:Bad Name:pull", "repository(plugin):team-a/p:pull", "nonsense", "repository:localhost:5000/x:pull"}
	for _, tc := range []struct {
		name  string
		authz string
		want  string
	}{
		{"token", basic("pusher", p),
			"repository:team-a/x:pull,push,delete repository:shared:pull repository:team-b/y:delete registry:catalog:* repository(plugin):team-a/p:pull"},
		{"admin", admin,
			"repository:team-a/x:pull,push,delete,* repository:shared:pull,push repository:team-b/y:* registry:catalog:* registry:*:* repository(plugin):team-a/p:pull"},
		{"user without a scope map", basic("bob", "bob-password"), "registry:catalog:*"},
		{"anonymous", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, r := e.token(tc.authz, all...)
			if r.status != 200 {
				t.Fatalf("token: %d %s", r.status, r.body)
			}
			if tr.Scope != tc.want {
				t.Fatalf("granted %q\nwant    %q", tr.Scope, tc.want)
			}
		})
	}
	// With anonymous pull on, everyone gets pull everywhere, but not the catalog.
	e.mustJSON(http.MethodPut, "/api/v1/auth/anonymous-pull", `{"enabled":true}`, http.StatusOK, nil)
	tr, _ := e.token("", "repository:team-b/y:pull,push", "registry:catalog:*")
	if tr.Scope != "repository:team-b/y:pull" {
		t.Fatalf("anonymous with anonymous pull: granted %q", tr.Scope)
	}
	tr, _ = e.token(basic("bob", "bob-password"), "repository:team-b/y:pull,push")
	if tr.Scope != "repository:team-b/y:pull" {
		t.Fatalf("bob with anonymous pull: granted %q", tr.Scope)
	}
}

func TestDisabledAndExpiredTokens(t *testing.T) {
	e := newEnv(t)
	e.pushImage("team-a/x", "v1", "layer")
	p1, p2 := e.newToken("ci", readTeamA)
	tb := basic("ci", p1)
	tok := e.mustToken(tb, "repository:team-a/x:pull")
	pull := func(authz string) int { return e.do("GET", "/v2/team-a/x/manifests/v1", authz, "").status }
	if pull(tb) != 200 || pull(bearer(tok)) != 200 {
		t.Fatal("enabled token refused")
	}
	e.mustJSON(http.MethodPatch, "/api/v1/auth/tokens/ci", `{"status":"disabled"}`, http.StatusOK, nil)
	if s := pull(tb); s != 401 {
		t.Fatalf("disabled token, basic: %d", s)
	}
	if s := pull(bearer(tok)); s != 401 {
		t.Fatalf("disabled token, bearer issued before: %d", s)
	}
	if _, r := e.token(tb, "repository:team-a/x:pull"); r.status != 401 || !strings.Contains(string(r.body), "disabled") {
		t.Fatalf("disabled token at the token endpoint: %d %s", r.status, r.body)
	}
	e.mustJSON(http.MethodPatch, "/api/v1/auth/tokens/ci", `{"status":"enabled","expiry":"2030-01-01T13:00:00Z"}`, http.StatusOK, nil)
	if s := pull(tb); s != 200 {
		t.Fatalf("re-enabled token: %d", s)
	}
	e.clk.Add(2 * time.Hour)
	if s := pull(basic("ci", p2)); s != 401 {
		t.Fatalf("expired token: %d", s)
	}
	if _, r := e.token(tb, "repository:team-a/x:pull"); r.status != 401 || !strings.Contains(string(r.body), "expired") {
		t.Fatalf("expired token at the token endpoint: %d %s", r.status, r.body)
	}
	// An expiry in the past is refused; noExpiry lifts it.
	r := e.do(http.MethodPatch, "/api/v1/auth/tokens/ci", admin, `{"expiry":"2000-01-01T00:00:00Z"}`)
	if r.code() != stowage.CodeInvalidParameter {
		t.Fatalf("past expiry: %d %s", r.status, r.body)
	}
	e.mustJSON(http.MethodPatch, "/api/v1/auth/tokens/ci", `{"noExpiry":true}`, http.StatusOK, nil)
	if s := pull(tb); s != 200 {
		t.Fatalf("token without expiry: %d", s)
	}
	// Deleted: refused at once.
	e.mustJSON(http.MethodDelete, "/api/v1/auth/tokens/ci", "", http.StatusNoContent, nil)
	if s := pull(tb); s != 401 {
		t.Fatalf("deleted token: %d", s)
	}
}

func TestPasswordRotation(t *testing.T) {
	e := newEnv(t)
	e.pushImage("team-a/x", "v1", "layer")
	p1, p2 := e.newToken("ci", readTeamA)
	pull := func(authz string) int { return e.do("GET", "/v2/team-a/x/manifests/v1", authz, "").status }
	refresh := func(user, pass string) string {
		q := url.Values{"service": {e.host}, "offline_token": {"true"}, "scope": {"repository:team-a/x:pull"}}
		r := e.do("GET", auth.TokenPath+"?"+q.Encode(), basic(user, pass), "")
		var tr auth.TokenResponse
		json.Unmarshal(r.body, &tr)
		if tr.RefreshToken == "" {
			t.Fatalf("no refresh token: %d %s", r.status, r.body)
		}
		return tr.RefreshToken
	}
	useRefresh := func(rt string) int {
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "service": {e.host}, "scope": {"repository:team-a/x:pull"}}
		return e.do("POST", auth.TokenPath, "", form.Encode(), "Content-Type", "application/x-www-form-urlencoded").status
	}
	if pull(basic("ci", p1)) != 200 || pull(basic("ci", p2)) != 200 {
		t.Fatal("both passwords must work")
	}
	rt1, rt2 := refresh("ci", p1), refresh("ci", p2)
	// Regenerate password1 (with an expiry): the old one and its refresh
	// tokens stop working (even from the login cache); password2 goes on.
	var np auth.PasswordInfo
	e.mustJSON(http.MethodPost, "/api/v1/auth/tokens/ci/passwords", `{"name":"password1","expiry":"2030-02-01T00:00:00Z"}`, http.StatusCreated, &np)
	if np.Value == "" || np.Value == p1 || np.Name != "password1" || np.Expiry == nil {
		t.Fatalf("new password %+v", np)
	}
	if s := pull(basic("ci", p1)); s != 401 {
		t.Fatalf("old password1: %d", s)
	}
	if pull(basic("ci", np.Value)) != 200 || pull(basic("ci", p2)) != 200 {
		t.Fatal("new password1 and password2 must work")
	}
	if s := useRefresh(rt1); s != 401 {
		t.Fatalf("refresh token of the old password1: %d", s)
	}
	if s := useRefresh(rt2); s != 200 {
		t.Fatalf("refresh token of password2: %d", s)
	}
	// The list never shows values or hashes.
	r := e.do("GET", "/api/v1/auth/tokens", admin, "")
	if strings.Contains(string(r.body), np.Value) || strings.Contains(string(r.body), "$2a$") || strings.Contains(string(r.body), "hash") {
		t.Fatalf("token list shows secrets: %s", r.body)
	}
	// The password expires on its own.
	e.clk.Add(31 * 24 * time.Hour)
	if s := pull(basic("ci", np.Value)); s != 401 {
		t.Fatalf("expired password1: %d", s)
	}
	// Delete password2: refused from then on.
	e.mustJSON(http.MethodDelete, "/api/v1/auth/tokens/ci/passwords/password2", "", http.StatusNoContent, nil)
	if s := pull(basic("ci", p2)); s != 401 {
		t.Fatalf("deleted password2: %d", s)
	}
	if s := useRefresh(rt2); s != 401 {
		t.Fatalf("refresh token of deleted password2: %d", s)
	}
}

func TestRefreshTokensAndUsers(t *testing.T) {
	e := newEnv(t)
	e.mustJSON(http.MethodPost, "/api/v1/auth/users", `{"name":"alice","password":"alice-password","scopeMap":"_repositories_pull"}`, http.StatusCreated, nil)
	q := url.Values{"service": {e.host}, "offline_token": {"true"}, "client_id": {"docker"}}
	r := e.do("GET", auth.TokenPath+"?"+q.Encode(), basic("alice", "alice-password"), "")
	var tr auth.TokenResponse
	json.Unmarshal(r.body, &tr)
	if tr.RefreshToken == "" {
		t.Fatalf("docker login (offline_token=true): no refresh token in %s", r.body)
	}
	if c := claimsOf(t, tr.RefreshToken); c.Expiry-c.IssuedAt != int64(30*24*3600) || len(c.Access) != 0 {
		t.Fatalf("refresh token claims %+v", c)
	}
	use := func() resp {
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}, "service": {e.host}, "scope": {"repository:a/b:pull,push"}}
		return e.do("POST", auth.TokenPath, "", form.Encode(), "Content-Type", "application/x-www-form-urlencoded")
	}
	r = use()
	var tr2 auth.TokenResponse
	json.Unmarshal(r.body, &tr2)
	if r.status != 200 || tr2.Scope != "repository:a/b:pull" {
		t.Fatalf("refresh: %d %s", r.status, r.body)
	}
	// Disabled: refused; enabled again: works; password changed: refused for good.
	e.mustJSON(http.MethodPatch, "/api/v1/auth/users/alice", `{"disabled":true}`, http.StatusOK, nil)
	if r := use(); r.status != 401 {
		t.Fatalf("refresh for a disabled user: %d", r.status)
	}
	if r := e.do("GET", "/v2/", basic("alice", "alice-password"), ""); r.status != 401 {
		t.Fatalf("disabled user, basic: %d", r.status)
	}
	e.mustJSON(http.MethodPatch, "/api/v1/auth/users/alice", `{"disabled":false}`, http.StatusOK, nil)
	if r := use(); r.status != 200 {
		t.Fatalf("refresh after enabling: %d", r.status)
	}
	e.mustJSON(http.MethodPut, "/api/v1/auth/users/alice/password", `{"password":"new-alice-password"}`, http.StatusNoContent, nil)
	if r := use(); r.status != 401 {
		t.Fatalf("refresh after a password change: %d", r.status)
	}
	if r := e.do("GET", "/v2/", basic("alice", "alice-password"), ""); r.status != 401 {
		t.Fatalf("old password (cached login) after the change: %d", r.status)
	}
	if r := e.do("GET", "/v2/", basic("alice", "new-alice-password"), ""); r.status != 200 {
		t.Fatalf("new password: %d", r.status)
	}
	// Deleted and re-created under the same name: old tokens stay dead.
	tr3 := e.mustToken(basic("alice", "new-alice-password"), "repository:a/b:pull")
	e.mustJSON(http.MethodDelete, "/api/v1/auth/users/alice", "", http.StatusNoContent, nil)
	e.mustJSON(http.MethodPost, "/api/v1/auth/users", `{"name":"alice","password":"new-alice-password"}`, http.StatusCreated, nil)
	if r := e.do("GET", "/v2/", bearer(tr3), ""); r.status != 401 {
		t.Fatalf("token of a deleted user: %d", r.status)
	}
}

func TestAnonymousPull(t *testing.T) {
	e := newEnv(t)
	e.pushImage("team-a/x", "v1", "layer")
	pull := func() int { return e.do("GET", "/v2/team-a/x/manifests/v1", "", "").status }
	if s := pull(); s != 401 {
		t.Fatalf("anonymous pull while off: %d", s)
	}
	if tr, _ := e.token("", "repository:team-a/x:pull"); tr.Scope != "" || tr.Token == "" {
		t.Fatalf("anonymous token while off: %+v", tr)
	}
	var got map[string]bool
	e.mustJSON(http.MethodPut, "/api/v1/auth/anonymous-pull", `{"enabled":true}`, http.StatusOK, &got)
	e.mustJSON(http.MethodGet, "/api/v1/auth/anonymous-pull", "", http.StatusOK, &got)
	if !got["enabled"] {
		t.Fatalf("anonymous-pull = %v", got)
	}
	if s := pull(); s != 200 {
		t.Fatalf("anonymous pull while on: %d", s)
	}
	tok := e.mustToken("", "repository:team-a/x:pull,push")
	if c := claimsOf(t, tok); c.Kind != "anonymous" || c.Subject != "" || len(c.Access) != 1 || strings.Join(c.Access[0].Actions, ",") != "pull" {
		t.Fatalf("anonymous token claims %+v", c)
	}
	if r := e.do("GET", "/v2/team-a/x/manifests/v1", bearer(tok), ""); r.status != 200 {
		t.Fatalf("anonymous bearer pull: %d", r.status)
	}
	for _, tc := range []struct{ method, path string }{
		{"POST", "/v2/team-a/x/blobs/uploads/"}, {"DELETE", "/v2/team-a/x/manifests/v1"},
		{"GET", "/v2/_catalog"}, {"GET", "/v2/"}, {"GET", "/api/v1/usage/team-a/x"},
	} {
		if r := e.do(tc.method, tc.path, "", ""); r.status != 401 {
			t.Errorf("anonymous %s %s while anonymous pull is on: %d", tc.method, tc.path, r.status)
		}
	}
	e.mustJSON(http.MethodPut, "/api/v1/auth/anonymous-pull", `{"enabled":false}`, http.StatusOK, nil)
	if s := pull(); s != 401 {
		t.Fatalf("anonymous pull right after turning it off: %d", s)
	}
	if r := e.do("GET", "/v2/team-a/x/manifests/v1", bearer(tok), ""); r.status != 401 {
		t.Fatalf("anonymous bearer token after turning it off: %d", r.status)
	}
}

func TestCrossRepositoryMount(t *testing.T) {
	e := newEnv(t)
	layer := e.pushImage("team-b/y", "v1", "shared layer")
	pw, _ := e.newToken("writer", `[{"repository":"team-a/*","actions":["content/read","content/write"]}]`)
	rw, _ := e.newToken("reader-writer", `[{"repository":"team-a/*","actions":["content/read","content/write"]},{"repository":"team-b/y","actions":["content/read"]}]`)
	for _, tc := range []struct {
		name, authz, query string
		status             int
	}{
		{"no read on from: a normal upload", basic("writer", pw), "?mount=" + layer + "&from=team-b/y", 202},
		{"no from, not a reader of all: a normal upload", basic("writer", pw), "?mount=" + layer, 202},
		{"read on from: mounted", basic("reader-writer", rw), "?mount=" + layer + "&from=team-b/y", 201},
		{"admin without from: mounted", admin, "?mount=" + layer, 201},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("POST", "/v2/team-a/x/blobs/uploads/"+tc.query, tc.authz, "")
			if r.status != tc.status {
				t.Fatalf("%d %s, want %d", r.status, r.body, tc.status)
			}
		})
	}
	// The writer really did not get the blob.
	if r := e.do("HEAD", "/v2/team-a/x/blobs/"+layer, basic("writer", pw), ""); r.status != 200 {
		// mounted by reader-writer/admin into team-a/x above, so visible now
		t.Fatalf("blob after the permitted mounts: %d", r.status)
	}
	if r := e.do("POST", "/v2/team-a/z/blobs/uploads/?mount="+layer+"&from=team-b/y", basic("writer", pw), ""); r.status != 202 {
		t.Fatalf("mount into a fresh repository without read on from: %d", r.status)
	}
	if r := e.do("HEAD", "/v2/team-a/z/blobs/"+layer, basic("writer", pw), ""); r.status != 404 {
		t.Fatalf("the refused mount left the blob in team-a/z: %d", r.status)
	}
}

func TestIdentityInContext(t *testing.T) {
	e := newEnv(t)
	p, _ := e.newToken("lister", readTeamA)
	var got auth.Identity
	h := e.a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := auth.FromContext(r.Context())
		if !ok {
			t.Error("no identity in the context")
		}
		got = id
	}))
	req := httptest.NewRequest("GET", "/v2/_catalog", nil)
	req.Host = e.host // the service tokens are issued for
	req.Header.Set("Authorization", basic("lister", p))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 || got.Kind != auth.KindToken || got.Name != "lister" || got.String() != "token lister" {
		t.Fatalf("catalog: %d, identity %+v", rec.Code, got)
	}
	for repo, want := range map[string]bool{"team-a/x": true, "team-a/deep/er": true, "team-a": false, "team-b/y": false} {
		if got.CanList(repo) != want || got.Can(repo, auth.ContentRead) != want {
			t.Errorf("CanList/Can(%s) = %v/%v, want %v", repo, got.CanList(repo), got.Can(repo, auth.ContentRead), want)
		}
	}
	if got.Can("team-a/x", auth.ContentWrite) || got.IsAdmin() || got.CanAll(auth.MetadataRead) {
		t.Error("the read-only token may do more than it should")
	}
	// With a catalog bearer token, listing filters by the token's own rights.
	cat := e.mustToken(basic("lister", p), "registry:catalog:*")
	req.Header.Set("Authorization", bearer(cat))
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("catalog with a catalog token: %d %s", rec.Code, rec.Body)
	}
	if got.Method != "bearer" || !got.CanList("team-a/x") || got.CanList("team-b/y") || got.Can("team-a/x", auth.ContentRead) {
		t.Fatalf("catalog bearer identity: %#v %v %v %v", got, got.CanList("team-a/x"), got.CanList("team-b/y"), got.Can("team-a/x", auth.ContentRead))
	}
	if n := e.a.LimitName(req); n != "" && n != "ip:127.0.0.1" && !strings.HasPrefix(n, "ip:") {
		t.Fatalf("LimitName of a request outside the middleware: %q", n)
	}
	ctxReq := req.WithContext(auth.NewContext(req.Context(), got))
	if n := e.a.LimitName(ctxReq); n != "lister" {
		t.Fatalf("LimitName = %q, want lister", n)
	}
}

// ---- failed logins, audit ----

func TestFailedLoginLimit(t *testing.T) {
	e := newEnv(t, func(o *auth.Options) {
		o.LoginLimitName = auth.LoginLimit{Burst: 3, Every: 10 * time.Second}
		o.LoginLimitIP = auth.LoginLimit{Burst: 100, Every: time.Second}
	})
	e.mustJSON(http.MethodPost, "/api/v1/auth/users", `{"name":"carol","password":"carol-password"}`, http.StatusCreated, nil)
	e.mustJSON(http.MethodPost, "/api/v1/auth/users", `{"name":"dave","password":"dave-password"}`, http.StatusCreated, nil)
	// dave logs in before the attack: his login is cached and keeps working.
	if r := e.do("GET", "/v2/", basic("dave", "dave-password"), ""); r.status != 200 {
		t.Fatalf("dave: %d", r.status)
	}
	for _, name := range []string{"carol", "dave"} {
		for i := 0; i < 3; i++ {
			if r := e.do("GET", "/v2/", basic(name, "wrong-password"), ""); r.status != 401 {
				t.Fatalf("%s failure %d: %d", name, i, r.status)
			}
		}
	}
	r := e.do("GET", "/v2/", basic("carol", "carol-password"), "")
	if r.status != 429 || r.code() != stowage.CodeTooManyRequests || r.hdr.Get("Retry-After") != "10" {
		t.Fatalf("after 3 failures: %d %s Retry-After=%q", r.status, r.body, r.hdr.Get("Retry-After"))
	}
	if _, r := e.token(basic("carol", "carol-password")); r.status != 429 {
		t.Fatalf("token endpoint while limited: %d", r.status)
	}
	if r := e.do("GET", "/v2/", basic("dave", "dave-password"), ""); r.status != 200 {
		t.Fatalf("dave's cached login during the attack: %d", r.status)
	}
	e.clk.Add(10 * time.Second)
	if r := e.do("GET", "/v2/", basic("carol", "carol-password"), ""); r.status != 200 {
		t.Fatalf("carol after the wait: %d %s", r.status, r.body)
	}
	logs := e.logs.String()
	for _, want := range []string{`"msg":"authentication failed"`, `"name":"carol"`, `"reason":"wrong password"`,
		`"remote":"127.0.0.1:`, `"reason":"refused: too many failed logins for carol"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s", want)
		}
	}
	if strings.Contains(logs, "wrong-password") || strings.Contains(logs, "carol-password") {
		t.Error("logs hold a password")
	}
}

func TestFailedLoginLimitPerIP(t *testing.T) {
	e := newEnv(t, func(o *auth.Options) {
		o.LoginLimitIP = auth.LoginLimit{Burst: 2, Every: time.Minute}
		o.TrustedProxies = nil
	})
	for i := 0; i < 2; i++ {
		e.do("GET", "/v2/", basic(fmt.Sprintf("nobody%d", i), "whatever-pass"), "")
	}
	r := e.do("GET", "/v2/", basic("someone-else", "whatever-pass"), "")
	if r.status != 429 || r.hdr.Get("Retry-After") != "60" || !strings.Contains(string(r.body), "from 127.0.0.1") {
		t.Fatalf("third failure from one address: %d %s %q", r.status, r.body, r.hdr.Get("Retry-After"))
	}
}

func TestManagementAPI(t *testing.T) {
	e := newEnv(t)
	// Anonymous: 401 with a Basic challenge; a user who is not an admin: 403.
	if r := e.do("GET", "/api/v1/auth/users", "", ""); r.status != 401 || !strings.HasPrefix(r.hdr.Get("WWW-Authenticate"), "Basic ") {
		t.Fatalf("anonymous: %d %v", r.status, r.hdr)
	}
	e.mustJSON(http.MethodPost, "/api/v1/auth/users", `{"name":"bob","password":"bob-password"}`, http.StatusCreated, nil)
	if r := e.do("GET", "/api/v1/auth/users", basic("bob", "bob-password"), ""); r.status != 403 || r.code() != stowage.CodeDenied {
		t.Fatalf("non-admin: %d %s", r.status, r.body)
	}
	var who map[string]any
	r := e.do("GET", "/api/v1/auth/whoami", basic("bob", "bob-password"), "")
	json.Unmarshal(r.body, &who)
	if r.status != 200 || who["name"] != "bob" || who["admin"] != false || who["kind"] != "user" {
		t.Fatalf("whoami: %d %s", r.status, r.body)
	}
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		code                     stowage.ErrorCode
		msg                      string
	}{
		{"bad user name", "POST", "/api/v1/auth/users", `{"name":"a:b","password":"long-enough"}`, 400, stowage.CodeInvalidParameter, "letters, digits"},
		{"short password", "POST", "/api/v1/auth/users", `{"name":"eve","password":"short"}`, 400, stowage.CodeInvalidParameter, "at least 8"},
		{"duplicate user", "POST", "/api/v1/auth/users", `{"name":"bob","password":"long-enough"}`, 400, stowage.CodeInvalidParameter, "exists"},
		{"unknown field", "POST", "/api/v1/auth/users", `{"name":"x","password":"long-enough","role":"root"}`, 400, stowage.CodeInvalidParameter, "unknown field"},
		{"unknown scope map for a user", "POST", "/api/v1/auth/users", `{"name":"x","password":"long-enough","scopeMap":"nope"}`, 404, stowage.CodeNameUnknown, "create it first"},
		{"token named like a user", "POST", "/api/v1/auth/tokens", `{"name":"bob","scopeMap":"_repositories_pull"}`, 400, stowage.CodeInvalidParameter, "one namespace"},
		{"token without scope map", "POST", "/api/v1/auth/tokens", `{"name":"t1"}`, 400, stowage.CodeInvalidParameter, "needs a scope map"},
		{"token with a bad status", "POST", "/api/v1/auth/tokens", `{"name":"t1","scopeMap":"_repositories_pull","status":"on"}`, 400, stowage.CodeInvalidParameter, "enabled or disabled"},
		{"scope map with a bad action", "PUT", "/api/v1/auth/scope-maps/m1", `{"rules":[{"repository":"a/*","actions":["content/steal"]}]}`, 400, stowage.CodeInvalidParameter, "unknown action"},
		{"scope map with a bad pattern", "PUT", "/api/v1/auth/scope-maps/m1", `{"rules":[{"repository":"a*","actions":["content/read"]}]}`, 400, stowage.CodeInvalidParameter, "prefix ending in /*"},
		{"scope map without rules", "PUT", "/api/v1/auth/scope-maps/m1", `{"rules":[]}`, 400, stowage.CodeInvalidParameter, "at least one rule"},
		{"change a built-in scope map", "DELETE", "/api/v1/auth/scope-maps/_repositories_pull", "", 403, stowage.CodeDenied, "built in"},
		{"unknown token", "PATCH", "/api/v1/auth/tokens/nope", `{"status":"disabled"}`, 404, stowage.CodeNameUnknown, "stowage token list"},
		{"bad password slot", "POST", "/api/v1/auth/tokens/nope/passwords", `{"name":"password3"}`, 400, stowage.CodeInvalidParameter, "password1 or password2"},
		{"delete the last admin", "DELETE", "/api/v1/auth/users/admin", "", 403, stowage.CodeDenied, "last enabled admin"},
		{"demote the last admin", "PATCH", "/api/v1/auth/users/admin", `{"admin":false}`, 403, stowage.CodeDenied, "last enabled admin"},
		{"unknown endpoint", "GET", "/api/v1/auth/groups", "", 404, stowage.CodeNameUnknown, "users, scope-maps"},
		{"anonymous pull without a value", "PUT", "/api/v1/auth/anonymous-pull", `{}`, 400, stowage.CodeInvalidParameter, "enabled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(tc.method, tc.path, admin, tc.body)
			if r.status != tc.status || r.code() != tc.code || !strings.Contains(string(r.body), tc.msg) {
				t.Fatalf("%d %s, want %d %s with %q", r.status, r.body, tc.status, tc.code, tc.msg)
			}
		})
	}
	// A scope map in use cannot be deleted.
	e.newToken("t2", readTeamA)
	r = e.do("DELETE", "/api/v1/auth/scope-maps/t2-map", admin, "")
	if r.status != 403 || !strings.Contains(string(r.body), "token t2") {
		t.Fatalf("delete a scope map in use: %d %s", r.status, r.body)
	}
	e.mustJSON("DELETE", "/api/v1/auth/tokens/t2", "", http.StatusNoContent, nil)
	e.mustJSON("DELETE", "/api/v1/auth/scope-maps/t2-map", "", http.StatusNoContent, nil)
	var maps struct{ ScopeMaps []auth.ScopeMap }
	e.mustJSON("GET", "/api/v1/auth/scope-maps", "", http.StatusOK, &maps)
	if len(maps.ScopeMaps) != 3 || !maps.ScopeMaps[0].BuiltIn {
		t.Fatalf("scope maps %+v: want the three built-in ones", maps.ScopeMaps)
	}
	// A second admin may then remove the first.
	e.mustJSON("PATCH", "/api/v1/auth/users/bob", `{"admin":true}`, http.StatusOK, nil)
	e.mustJSON("DELETE", "/api/v1/auth/users/admin", "", http.StatusNoContent, nil)
	if r := e.do("GET", "/api/v1/auth/users", basic("bob", "bob-password"), ""); r.status != 200 {
		t.Fatalf("bob as admin: %d", r.status)
	}
	// Audit lines: who, what, target, outcome, from where.
	logs := e.logs.String()
	for _, want := range []string{`"audit":"user.create"`, `"actor":"user admin"`, `"target":"bob"`, `"outcome":"ok"`,
		`"audit":"scopemap.delete"`, `"outcome":"refused"`, `"audit":"mgmt.request"`, `"remote":"127.0.0.1:`} {
		if !strings.Contains(logs, want) {
			t.Errorf("audit log lacks %s", want)
		}
	}
	if strings.Contains(logs, "bob-password") {
		t.Error("the audit log holds a password")
	}
}

func TestManagementRoutes(t *testing.T) {
	e := newEnv(t)
	e.pushImage("team-a/x", "v1", "a")
	e.pushImage("team-b/y", "v1", "b")
	p, _ := e.newToken("ops", `[{"repository":"team-a/*","actions":["content/delete","metadata/read","metadata/write"]}]`)
	ops := basic("ops", p)
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/api/v1/locks/team-a/x", 200},
		{"PATCH", "/api/v1/locks/team-a/x:v1", 200},
		{"PATCH", "/api/v1/locks/team-b/y", 403},
		{"DELETE", "/api/v1/tags/team-a/x:v1?dry_run=true", 200},
		{"DELETE", "/api/v1/images/team-b/y:v1?dry_run=true", 403},
		{"GET", "/api/v1/recycle-bin/team-a/x", 200},
		{"GET", "/api/v1/recycle-bin", 403},
		{"GET", "/api/v1/retention", 403},
		{"PUT", "/api/v1/retention", 403},
		{"POST", "/api/v1/purge?filter=team-a/.*:.*&dry_run=true", 200}, // within its delete rights
		{"POST", "/api/v1/purge?filter=.*:.*&dry_run=true", 200},        // team-b, which it may not see, is left out as if absent
		{"GET", "/api/v1/keys", 403},
		{"GET", "/api/v1/nonsense", 403},
		{"GET", "/acr/v1/_catalog", 200},
		{"GET", "/acr/v1/team-a/x/_manifests", 200},
		{"DELETE", "/acr/v1/team-b/y/_tags/v1", 403},
		{"DELETE", "/api/v1/repositories/team-a/x", 200},
	} {
		body := ""
		if tc.method == "PATCH" {
			body = `{"writeEnabled":true}`
		}
		r := e.do(tc.method, tc.path, ops, body, "Content-Type", "application/json")
		if r.status != tc.status {
			t.Errorf("%s %s: %d %s, want %d", tc.method, tc.path, r.status, r.body, tc.status)
		}
	}
	// Anonymous on /acr/v1/: a Bearer challenge (as ACR), with the scope.
	r := e.do("GET", "/acr/v1/team-a/x/_tags", "", "")
	if ch := parseChallenge(t, r.hdr.Get("WWW-Authenticate")); r.status != 401 || ch["scope"] != "repository:team-a/x:metadata_read" {
		t.Fatalf("anonymous ACR request: %d %v", r.status, ch)
	}
	// A bearer token with metadata_read works on /acr/v1/.
	tok := e.mustToken(ops, "repository:team-a/x:metadata_read")
	if r := e.do("GET", "/acr/v1/team-a/x/_manifests", bearer(tok), ""); r.status != 200 && r.status != 404 {
		t.Fatalf("ACR with a bearer token: %d %s", r.status, r.body)
	}
	// Admin-only endpoints with a bearer token need registry:*:*.
	adm := e.mustToken(admin, "repository:team-a/x:pull")
	if r := e.do("GET", "/api/v1/retention", bearer(adm), ""); r.status != 401 {
		t.Fatalf("admin bearer without registry:*:*: %d", r.status)
	}
	adm = e.mustToken(admin, "registry:*:*")
	if r := e.do("GET", "/api/v1/retention", bearer(adm), ""); r.status != 200 {
		t.Fatalf("admin bearer with registry:*:*: %d %s", r.status, r.body)
	}
}

// ---- persistence, caching, several nodes ----

func TestConcurrentChangesAreNotLost(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.a.CreateToken(ctx, auth.TokenSpec{Name: fmt.Sprintf("tok%d", i), ScopeMap: "_repositories_pull"})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	ts, err := e.a.Tokens(ctx)
	if err != nil || len(ts) != 20 {
		t.Fatalf("%d tokens (%v), want 20", len(ts), err)
	}
}

func TestSecondNodeSharesStateAndKey(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	b, err := auth.New(ctx, e.db, auth.Options{BcryptCost: bcrypt.MinCost, Now: e.clk.Now, RefreshInterval: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// A token signed by node A is good on node B (same key from the settings).
	tok := e.mustToken(admin, "repository:a/b:pull")
	req := httptest.NewRequest("GET", "/v2/a/b/manifests/latest", nil)
	req.Host = e.host
	req.Header.Set("Authorization", bearer(tok))
	id, err := b.Authenticate(req)
	if err != nil || id.Name != "admin" || !id.Can("a/b", auth.ContentRead) {
		t.Fatalf("node B: %+v %v", id, err)
	}
	// A change on A reaches B once B's cache is older than its refresh interval.
	if err := e.a.SetAnonymousPull(ctx, true); err != nil {
		t.Fatal(err)
	}
	if on, _ := b.AnonymousPull(ctx); on {
		t.Fatal("node B saw the change before its refresh interval")
	}
	e.clk.Add(11 * time.Second)
	if on, _ := b.AnonymousPull(ctx); !on {
		t.Fatal("node B did not see the change after its refresh interval")
	}
	if has, err := b.HasUsers(ctx); !has || err != nil {
		t.Fatalf("HasUsers = %v, %v", has, err)
	}
	// EnsureAdmin leaves an existing admin alone.
	if created, err := b.EnsureAdmin(ctx, "admin", "another-password"); created || err != nil {
		t.Fatalf("EnsureAdmin on an existing admin = %v, %v", created, err)
	}
	if r := e.do("GET", "/v2/", admin, ""); r.status != 200 {
		t.Fatal("EnsureAdmin changed the password")
	}
}

func TestHasUsersOnFreshRegistry(t *testing.T) {
	db, err := sqlite.Open(context.Background(), ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	a, err := auth.New(context.Background(), db, auth.Options{BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	if has, err := a.HasUsers(context.Background()); has || err != nil {
		t.Fatalf("HasUsers on a fresh registry = %v, %v", has, err)
	}
	if _, err := a.EnsureAdmin(context.Background(), "root", "short"); stowage.ErrorCodeOf(err) != stowage.CodeInvalidParameter {
		t.Fatalf("EnsureAdmin with a short password: %v", err)
	}
}

func TestTrustedProxy(t *testing.T) {
	a := newEnv(t).a
	req := httptest.NewRequest("GET", "/v2/", nil)
	req.RemoteAddr = "10.0.0.5:1234"
	req.Header.Set("X-Forwarded-For", "203.0.113.9, 10.0.0.4")
	if ip := a.ClientIP(req); ip != "10.0.0.5" {
		t.Fatalf("untrusted proxy: ClientIP = %s", ip)
	}
	e := newEnv(t, func(o *auth.Options) {
		o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.0/8")}
	})
	if ip := e.a.ClientIP(req); ip != "203.0.113.9" {
		t.Fatalf("trusted proxy: ClientIP = %s", ip)
	}
	// Behind a TLS-terminating proxy the realm is https.
	r := e.do("GET", "/v2/", "", "", "X-Forwarded-Proto", "https", "X-Forwarded-For", "198.51.100.7")
	if ch := parseChallenge(t, r.hdr.Get("WWW-Authenticate")); ch["realm"] != "https://"+e.host+auth.TokenPath {
		t.Fatalf("realm behind a trusted proxy: %v", ch)
	}
	e.do("GET", "/v2/", basic("admin", "wrong-password"), "", "X-Forwarded-For", "198.51.100.7")
	if logs := e.logs.String(); !strings.Contains(logs, `"client":"198.51.100.7"`) || !strings.Contains(logs, `"forwarded_for":"198.51.100.7"`) {
		t.Fatalf("audit line lacks the forwarded client: %s", logs)
	}
}

func TestAuthorize(t *testing.T) {
	e := newEnv(t)
	p, _ := e.newToken("reader", readTeamA)
	id := func(authz string) auth.Identity {
		req := httptest.NewRequest("GET", "/v2/", nil)
		req.Header.Set("Authorization", authz)
		got, err := e.a.Authenticate(req)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	reader, anon := id(basic("reader", p)), auth.Identity{}
	for _, tc := range []struct {
		id           auth.Identity
		method, path string
		code         stowage.ErrorCode // "" = allowed
	}{
		{reader, "GET", "/v2/team-a/x/manifests/v1", ""},
		{reader, "PUT", "/v2/team-a/x/manifests/v1", stowage.CodeDenied},
		{reader, "GET", "/v2/team-b/x/tags/list", stowage.CodeDenied},
		{reader, "GET", "/api/v1/usage/team-a/x", ""},
		{reader, "POST", "/api/v1/gc", stowage.CodeDenied},
		{reader, "GET", "/metrics", stowage.CodeDenied},
		{anon, "GET", "/v2/team-a/x/manifests/v1", stowage.CodeUnauthorized},
		{anon, "GET", "/api/v1/usage/team-a/x", stowage.CodeUnauthorized},
		{anon, "GET", "/v2/NOT A ROUTE", stowage.CodeUnauthorized},
		{reader, "GET", "/v2/NOT A ROUTE", ""},
	} {
		err := e.a.Authorize(tc.id, httptest.NewRequest(tc.method, "http://x"+strings.ReplaceAll(tc.path, " ", "%20"), nil))
		if got := stowage.ErrorCode(""); err != nil {
			got = stowage.ErrorCodeOf(err)
			if got != tc.code {
				t.Errorf("%s %s %s: %v, want %q", tc.id, tc.method, tc.path, err, tc.code)
			}
		} else if tc.code != "" {
			t.Errorf("%s %s %s: allowed, want %s", tc.id, tc.method, tc.path, tc.code)
		}
	}
}
