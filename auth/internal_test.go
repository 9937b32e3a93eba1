package auth

import (
	"context"
	"crypto/hmac"
	"encoding/base64"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/limits"
	"github.com/stowage/stowage/meta/sqlite"
)

func newTestAuthority(t testing.TB, now func() time.Time) *Authority {
	t.Helper()
	db, err := sqlite.Open(context.Background(), ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	a, err := New(context.Background(), db, Options{BcryptCost: bcrypt.MinCost, Now: now, Service: "registry.test"})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestCredentialCacheSkipsBcrypt(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	a := newTestAuthority(t, func() time.Time { return now })
	ctx := context.Background()
	if _, err := a.CreateUser(ctx, UserSpec{Name: "alice", Password: "alice-password", ScopeMap: "_repositories_pull"}); err != nil {
		t.Fatal(err)
	}
	var runs atomic.Int64
	old := compareHash
	compareHash = func(h, p []byte) error { runs.Add(1); return old(h, p) }
	defer func() { compareHash = old }()
	req := httptest.NewRequest("GET", "/v2/a/blobs/x", nil)
	req.Header.Set("Authorization", BasicAuthorization("alice", "alice-password"))
	// A docker pull of 20 layers: one bcrypt run.
	for i := 0; i < 20; i++ {
		if id, err := a.Authenticate(req); err != nil || id.Name != "alice" {
			t.Fatalf("login %d: %v", i, err)
		}
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("%d bcrypt runs for 20 logins, want 1", n)
	}
	// A wrong password is never served from the cache.
	req.Header.Set("Authorization", BasicAuthorization("alice", "alice-passwore"))
	if _, err := a.Authenticate(req); err == nil {
		t.Fatal("wrong password accepted")
	}
	// After the TTL, bcrypt runs again.
	now = now.Add(2 * time.Minute)
	req.Header.Set("Authorization", BasicAuthorization("alice", "alice-password"))
	a.Authenticate(req)
	if n := runs.Load(); n != 3 {
		t.Fatalf("%d bcrypt runs, want 3 (cached, wrong password, expired cache)", n)
	}
	// Unknown names cost a bcrypt run too (no user enumeration by timing).
	req.Header.Set("Authorization", BasicAuthorization("nobody", "whatever-pass"))
	a.Authenticate(req)
	if n := runs.Load(); n != 4 {
		t.Fatalf("%d bcrypt runs, want 4", n)
	}
}

func TestLoginLimiterBoundedAndForgets(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	store := limits.NewMemStore(100)
	spec := LoginLimit{Burst: 2, Every: time.Second}
	l := newLoginLimiter(store, func() time.Time { return now }, spec, spec, spec, func(err error) { t.Error(err) })
	ctx := context.Background()
	for i := 0; i < 1000; i++ {
		now = now.Add(time.Millisecond)
		l.fail(ctx, fmt.Sprintf("10.0.%d.%d", i/256, i%256), fmt.Sprintf("user%d", i))
		if n := store.Len(); n > 103 {
			t.Fatalf("after %d failures: %d buckets, bound 100", i, n)
		}
	}
	now = now.Add(time.Hour)
	l.fail(ctx, "10.9.9.9", "x")
	if n := store.Len(); n != 3 {
		t.Fatalf("after an hour: %d buckets, want 3 (refilled buckets are forgotten)", n)
	}
	if w, _ := l.wait(ctx, "10.9.9.9", "x", false); w != 0 {
		t.Fatalf("one failure of a burst of 2 must not block: %v", w)
	}
	l.fail(ctx, "10.9.9.9", "x")
	if w, which := l.wait(ctx, "10.9.9.9", "x", false); w != time.Second || which != "pair" {
		t.Fatalf("two failures: wait %v (%s), want 1s (pair)", w, which)
	}
	if w, _ := l.wait(ctx, "10.9.9.9", "x", true); w != 0 {
		t.Fatalf("known good credentials waited %v", w)
	}
}

func TestPatternMatches(t *testing.T) {
	for _, tc := range []struct {
		pattern, repo string
		want          bool
	}{
		{"*", "a", true}, {"*", "a/b/c", true},
		{"team-a/*", "team-a/x", true}, {"team-a/*", "team-a/x/y", true}, {"team-a/*", "team-a", false},
		{"team-a/*", "team-ab/x", false}, {"team-a/*", "team-b/x", false},
		{"team-a/x", "team-a/x", true}, {"team-a/x", "team-a/x/y", false}, {"team-a/x", "team-a", false},
	} {
		if got := patternMatches(tc.pattern, tc.repo); got != tc.want {
			t.Errorf("patternMatches(%q, %q) = %v, want %v", tc.pattern, tc.repo, got, tc.want)
		}
	}
	for p, ok := range map[string]bool{"*": true, "a/*": true, "a/b": true, "a": true, "a*": false, "/*": false, "A/*": false, "a/**": false, "": false, "a/*/b": false} {
		if err := validatePattern(p); (err == nil) != ok {
			t.Errorf("validatePattern(%q) = %v, want ok=%v", p, err, ok)
		}
	}
}

func TestParseScope(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Scope
		ok   bool
	}{
		{"repository:team-a/x:pull,push", Scope{Type: "repository", Name: "team-a/x", Actions: []string{"pull", "push"}}, true},
		{"registry:catalog:*", Scope{Type: "registry", Name: "catalog", Actions: []string{"*"}}, true},
		{"repository:localhost:5000/x:pull", Scope{Type: "repository", Name: "localhost:5000/x", Actions: []string{"pull"}}, true},
		{"repository(plugin):sample/x:pull", Scope{Type: "repository", Class: "plugin", Name: "sample/x", Actions: []string{"pull"}}, true},
		{"repository:a:pull,pull", Scope{Type: "repository", Name: "a", Actions: []string{"pull"}}, true},
		{"repository:a:content/read,metadata_read", Scope{Type: "repository", Name: "a", Actions: []string{"content/read", "metadata_read"}}, true},
		{"repository:a", Scope{}, false},
		{"repository::pull", Scope{}, false},
		{"repository:a:", Scope{}, false},
		{"repository:a:pull,,push", Scope{}, false},
		{":a:pull", Scope{}, false},
		{"repository(:a:pull", Scope{}, false},
		{"(x):a:pull", Scope{}, false},
		{"repo sitory:a:pull", Scope{}, false},
		{`repository:a"b:pull`, Scope{}, false},
	} {
		got, err := ParseScope(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ParseScope(%q): err %v, want ok=%v", tc.in, err, tc.ok)
			continue
		}
		if tc.ok && got.String() != tc.want.String() {
			t.Errorf("ParseScope(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
	scopes, errs := ParseScopes([]string{"repository:a:pull registry:catalog:*", "bad", "repository:b:push"})
	if len(scopes) != 3 || len(errs) != 1 {
		t.Fatalf("ParseScopes: %v, %v", scopes, errs)
	}
}

func TestVerifyRefusesForgeries(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	a := newTestAuthority(t, func() time.Time { return now })
	st, _ := a.store.get(context.Background())
	good := Claims{Issuer: "stowage", Audience: "registry.test", Expiry: now.Add(time.Minute).Unix(), Kind: "anonymous", Use: useAccess}
	tok, err := a.key.sign(good)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.verify(st, tok, useAccess, "registry.test"); err != nil {
		t.Fatalf("good token: %v", err)
	}
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	parts := strings.Split(tok, ".")
	other := a.key
	other.Key = []byte(strings.Repeat("k", 32))
	otherTok, _ := other.sign(good)
	expired := good
	expired.Expiry = now.Add(-time.Second).Unix()
	expTok, _ := a.key.sign(expired)
	for name, bad := range map[string]string{
		"alg none":      enc(`{"alg":"none","kid":"`+a.key.ID+`"}`) + "." + parts[1] + ".",
		"alg HS384":     enc(`{"alg":"HS384","kid":"`+a.key.ID+`"}`) + "." + parts[1] + "." + parts[2],
		"other key":     otherTok,
		"payload swap":  parts[0] + "." + enc(`{"iss":"stowage","sub":"admin","stowage_kind":"user"}`) + "." + parts[2],
		"no signature":  parts[0] + "." + parts[1] + ".",
		"two parts":     parts[0] + "." + parts[1],
		"expired":       expTok,
		"empty":         "",
		"huge":          strings.Repeat("a", 9000),
		"signature pad": tok + "==",
	} {
		if _, _, err := a.verify(st, bad, useAccess, "registry.test"); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, _, err := a.verify(st, tok, useRefresh, "registry.test"); err == nil {
		t.Error("access token accepted as a refresh token")
	}
	if _, _, err := a.verify(st, tok, useAccess, "elsewhere"); err == nil {
		t.Error("token accepted for another service")
	}
}

// ---- fuzzing ----

func FuzzVerifyToken(f *testing.F) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	a := newTestAuthority(f, func() time.Time { return now })
	st, _ := a.store.get(context.Background())
	for _, c := range []Claims{
		{Issuer: "stowage", Audience: "registry.test", Expiry: now.Add(time.Minute).Unix(), Kind: "anonymous", Use: useAccess},
		{Issuer: "stowage", Audience: "registry.test", Expiry: now.Add(time.Minute).Unix(), Kind: "anonymous", Use: useAccess,
			Access: []ResourceActions{{Type: "repository", Name: "a/b", Actions: []string{"pull"}}}},
		{Issuer: "stowage", Subject: "x", Audience: "registry.test", Expiry: now.Add(time.Hour).Unix(), Kind: "user", Use: useRefresh},
	} {
		tok, _ := a.key.sign(c)
		f.Add(tok)
	}
	f.Add("")
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("....")
	f.Fuzz(func(t *testing.T, tok string) {
		for _, use := range []string{useAccess, useRefresh} {
			id, _, err := a.verify(st, tok, use, "registry.test")
			if err != nil {
				continue
			}
			parts := strings.Split(tok, ".")
			sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
			if len(parts) != 3 || !hmac.Equal(sig, a.key.mac(parts[0]+"."+parts[1])) {
				t.Fatalf("verify accepted %q without a valid signature", tok)
			}
			if id.Kind != KindAnonymous {
				t.Fatalf("verify accepted %q for %s, who does not exist", tok, id)
			}
		}
	})
}

// TestLeastPrivilegeNeeds: what /metrics, the quota report and a purge
// need, and that metrics/read and a team's delete rights do not reach
// further (no image reads, no registry-wide reports, no admin jobs).
func TestLeastPrivilegeNeeds(t *testing.T) {
	a := newTestAuthority(t, time.Now)
	metrics := Identity{Kind: KindToken, Name: "prom", rules: []Rule{{AnyRepository, []Action{MetricsRead}}}}
	ci := Identity{Kind: KindToken, Name: "ci", rules: []Rule{{"team-a/*", []Action{ContentRead, ContentWrite, ContentDelete, MetadataRead}}}}
	admin := Identity{Kind: KindUser, Name: "root", admin: true}
	repl := Identity{Kind: KindUser, Name: "repl", rules: []Rule{{AnyRepository, []Action{ContentRead, ContentWrite, ReplicationApply}}}}
	repoAdmin := Identity{Kind: KindToken, Name: "ra", rules: []Rule{{AnyRepository, Actions}}}
	bearerMetrics := metrics
	bearerMetrics.bearer, bearerMetrics.access = true, []ResourceActions{{Type: "registry", Name: "metrics", Actions: []string{"read"}}}
	for _, c := range []struct {
		id           Identity
		method, path string
		ok           bool
	}{
		{metrics, "GET", "/metrics", true},
		{bearerMetrics, "GET", "/metrics", true},
		{admin, "GET", "/metrics", true},
		{ci, "GET", "/metrics", false},
		{Identity{}, "GET", "/metrics", false},
		{metrics, "POST", "/metrics", false},
		{metrics, "GET", "/v2/team-a/app/manifests/v1", false},
		{metrics, "GET", "/v2/team-a/app/tags/list", false},
		{metrics, "GET", "/api/v1/usage", false},
		{metrics, "GET", "/api/v1/events", false},
		{bearerMetrics, "GET", "/v2/team-a/app/blobs/sha256:" + strings.Repeat("a", 64), false},
		{ci, "GET", "/api/v1/quotas", true}, // filtered by the handler
		{ci, "PUT", "/api/v1/quotas/team-a/app", false},
		{ci, "POST", "/api/v1/purge", true}, // checked against the delete filter by the handler
		{ci, "PUT", "/api/v1/purge-policies/x", false},
		{ci, "POST", "/api/v1/gc", false},
		{Identity{}, "POST", "/api/v1/purge", false},
		// A geo-replication peer: the apply endpoint, pulls and pushes.
		{repl, "POST", "/api/v1/replication/apply", true},
		{admin, "POST", "/api/v1/replication/apply", true},
		{ci, "POST", "/api/v1/replication/apply", false},
		{repoAdmin, "POST", "/api/v1/replication/apply", false},
		{repl, "GET", "/api/v1/replication/apply", false},
		{repl, "GET", "/api/v1/replication/status", false},
		{repl, "HEAD", "/v2/team-a/app/blobs/sha256:" + strings.Repeat("a", 64), true},
		{repl, "POST", "/v2/team-a/app/blobs/uploads/", true},
		{repl, "DELETE", "/v2/team-a/app/manifests/sha256:" + strings.Repeat("a", 64), false},
		{repl, "POST", "/api/v1/auth/users", false},
		{repl, "GET", "/metrics", false},
	} {
		r := httptest.NewRequest(c.method, c.path, nil)
		if err := a.Authorize(c.id, r); (err == nil) != c.ok {
			t.Errorf("%s %s by %s: %v, want allowed %v", c.method, c.path, c.id, err, c.ok)
		}
	}

	// The delete filter a purge honours is the caller's content/delete.
	ctx := NewContext(context.Background(), ci)
	keep, who := stowage.DeleteFilter(ctx)
	if keep == nil || !keep("team-a/app") || keep("team-b/app") || who != "token ci" {
		t.Errorf("ci's delete filter: team-a %v, team-b %v, who %q", keep != nil && keep("team-a/app"), keep != nil && keep("team-b/app"), who)
	}
	if keep, _ := stowage.DeleteFilter(NewContext(context.Background(), admin)); keep != nil {
		t.Error("an admin's purge is filtered")
	}

	// registry:metrics:read is granted to who holds metrics/read only.
	asked := []Scope{{Type: "registry", Name: "metrics", Actions: []string{"read"}}}
	if g := Grant(metrics, asked); len(g) != 1 || g[0].Name != "metrics" {
		t.Errorf("grant to prom: %+v", g)
	}
	if g := Grant(ci, asked); len(g) != 0 {
		t.Errorf("grant to ci: %+v, want nothing", g)
	}

	// metrics/read is registry-wide only, and "*" does not mean it.
	if _, err := validateRules([]Rule{{"team-a/*", []Action{MetricsRead}}}); err == nil {
		t.Error("metrics/read on team-a/* accepted")
	}
	if _, err := validateRules([]Rule{{AnyRepository, []Action{MetricsRead}}}); err != nil {
		t.Errorf("metrics/read on *: %v", err)
	}
	// So is replication/apply.
	if _, err := validateRules([]Rule{{"team-a/*", []Action{ReplicationApply}}}); err == nil {
		t.Error("replication/apply on team-a/* accepted")
	}
	if _, err := validateRules([]Rule{{AnyRepository, []Action{ContentRead, ReplicationApply}}}); err != nil {
		t.Errorf("replication/apply on *: %v", err)
	}
	if repoAdmin.CanAll(MetricsRead) {
		t.Error("every repository action implies metrics/read")
	}
}
