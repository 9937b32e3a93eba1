package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stowage/stowage/config"
)

// basicAuthTransport adds Basic credentials to requests that carry none
// (pushImage uses http.Post).
type basicAuthTransport struct{ user, pw string }

func (b basicAuthTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("Authorization") == "" {
		r = r.Clone(r.Context())
		r.SetBasicAuth(b.user, b.pw)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TestLeastPrivilegeScopes: against the real server with access control
// on, a token with metrics/read scrapes /metrics and nothing else; a CI
// token with content/delete on team-a/* sees team-a's quotas only and
// purges within team-a only (a filter that reaches team-b is refused,
// naming no repository it may not see); neither escalates.
func TestLeastPrivilegeScopes(t *testing.T) {
	cfg := config.Default()
	cfg.Addr, cfg.DataDir, cfg.Auth.Enabled = "127.0.0.1:0", t.TempDir(), true
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	m := NewMain(cfg, testWriter{t})
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	base := "http://" + m.Addr
	pwFile, err := os.ReadFile(filepath.Join(cfg.DataDir, InitialAdminPasswordFile))
	if err != nil {
		t.Fatal(err)
	}
	adminPW := strings.TrimSpace(string(pwFile))
	t.Setenv("STOWAGE_USERNAME", "admin")
	t.Setenv("STOWAGE_PASSWORD", adminPW)
	pw := map[string]string{"admin": adminPW}
	for _, s := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"scope-map", "create", "metrics", "--rule", "*=metrics/read"}, 0, "metrics/read"},
		{[]string{"scope-map", "create", "bad", "--rule", "team-a/*=metrics/read"}, 1, "registry-wide"},
		{[]string{"scope-map", "create", "ci-a", "--rule", "team-a/*=content/read,content/write,content/delete,metadata/read"}, 0, "team-a/*"},
		{[]string{"token", "create", "prom", "--scope-map", "metrics"}, 0, "password1: "},
		{[]string{"token", "create", "ci", "--scope-map", "ci-a"}, 0, "password1: "},
		{[]string{"token", "create", "reader", "--scope-map", "_repositories_pull"}, 0, "password1: "},
		{[]string{"scope-map", "create", "ci-a-sees-b", "--rule", "team-a/*=content/delete,metadata/read", "--rule", "team-b/*=metadata/read"}, 0, "team-b/*"},
		{[]string{"token", "create", "ci2", "--scope-map", "ci-a-sees-b"}, 0, "password1: "},
		{[]string{"quota", "set", "team-a/app", "1MiB"}, 0, "team-a/app"},
		{[]string{"quota", "set", "team-b/app", "2MiB"}, 0, "team-b/app"},
	} {
		out, errOut, code := cli(t, append(s.args, "--registry", base)...)
		if code != s.code || !strings.Contains(out+errOut, s.want) {
			t.Fatalf("stowage %s: exit %d (want %d)\n%s%s(want %q)", strings.Join(s.args, " "), code, s.code, out, errOut, s.want)
		}
		if s.args[0] == "token" {
			for _, line := range strings.Split(out, "\n") {
				if v, ok := strings.CutPrefix(line, "password1: "); ok {
					pw[s.args[2]] = v
				}
			}
		}
	}
	old := http.DefaultClient.Transport
	http.DefaultClient.Transport = basicAuthTransport{"admin", adminPW}
	pushImage(t, base, "team-a/app", "pr-1", []byte("a-pr"))
	pushImage(t, base, "team-a/app", "v1", []byte("a-v1"))
	pushImage(t, base, "team-b/app", "pr-1", []byte("b-pr"))
	http.DefaultClient.Transport = old

	do := func(method, path, user string) (int, string) {
		req, _ := http.NewRequest(method, base+path, nil)
		if user != "" {
			req.SetBasicAuth(user, pw[user])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, c := range []struct {
		method, path, user string
		want               int
		has, hasNot        string
	}{
		{"GET", "/metrics", "prom", http.StatusOK, "stowage_blobs", ""},
		{"GET", "/metrics", "admin", http.StatusOK, "stowage_blobs", ""},
		{"GET", "/metrics", "", http.StatusUnauthorized, "", ""},
		{"GET", "/metrics", "ci", http.StatusForbidden, "metrics/read", ""},
		// metrics/read reads no image, no listing, no registry-wide report.
		{"GET", "/v2/team-a/app/manifests/v1", "prom", http.StatusForbidden, "", ""},
		{"GET", "/v2/team-a/app/tags/list", "prom", http.StatusForbidden, "", ""},
		{"GET", "/api/v1/usage", "prom", http.StatusForbidden, "", ""},
		// No content/delete anywhere: refused, naming the right (not an
		// empty result that looks like "nothing matched").
		{"POST", "/api/v1/purge?filter=team-a/.*:pr-.*", "prom", http.StatusForbidden, "purge needs content/delete", ""},
		// Quotas: each caller sees what it may list.
		{"GET", "/api/v1/quotas", "ci", http.StatusOK, `"team-a/app"`, "team-b"},
		{"GET", "/api/v1/quotas", "prom", http.StatusOK, `"repositories": []`, "team-"},
		{"GET", "/api/v1/quotas", "admin", http.StatusOK, `"team-b/app"`, ""},
		{"GET", "/api/v1/quotas", "reader", http.StatusOK, `"team-b/app"`, `"usedBytes": 0`}, // reads every repository: the registry's usage too
		{"GET", "/api/v1/quotas", "ci", http.StatusOK, `"usedBytes": 0`, ""},                 // the registry's usage is left out
		// Purge: every repository the filter reaches that the caller may see
		// must be deletable; those it may not see are left out as if absent
		// (a refusal would reveal that they exist).
		{"POST", "/api/v1/purge?filter=team-b/.*:pr-.*", "ci", http.StatusOK, `"repositories":[]`, "team-b"},
		{"POST", "/api/v1/purge?filter=team-b/nosuch.*:pr-.*", "ci", http.StatusOK, `"repositories":[]`, "team-b"},
		{"POST", "/api/v1/purge?filter=.*:pr-.*&dry_run=true", "ci", http.StatusOK, `"team-a/app"`, "team-b"},
		{"POST", "/api/v1/purge?filter=team-b/.*:pr-.*&dry_run=true", "reader", http.StatusForbidden, "purge needs content/delete", "team-b/app"}, // may delete nowhere
		{"POST", "/api/v1/purge?filter=team-b/.*:pr-.*&dry_run=true", "ci2", http.StatusForbidden, "team-b/app", ""},                              // sees it, may not delete it
		{"POST", "/api/v1/gc", "ci", http.StatusForbidden, "", ""},
	} {
		code, body := do(c.method, c.path, c.user)
		if code != c.want || !strings.Contains(body, c.has) || c.hasNot != "" && strings.Contains(body, c.hasNot) {
			t.Errorf("%s %s as %q: %d %s; want %d with %q, without %q", c.method, c.path, c.user, code, strings.TrimSpace(body), c.want, c.has, c.hasNot)
		}
	}

	// The CLI, as the CI token: quota shows its repositories; purge runs
	// within them and leaves team-b alone.
	// Texts that name the fix (outside review): a user that does not exist
	// names the command that lists users; quota show of a repository that
	// does not exist says so, as usage does.
	if _, errOut, code := cli(t, "user", "show", "nobody", "--registry", base); code != 1 || !strings.Contains(errOut, "stowage user list") || strings.Contains(errOut, "/api/v1/auth/users") {
		t.Errorf("user show nobody: exit %d\n%s", code, errOut)
	}
	if out, errOut, code := cli(t, "quota", "show", "nosuch/repo", "--registry", base); code != 1 || !strings.Contains(errOut, "NAME_UNKNOWN") {
		t.Errorf("quota show nosuch/repo: exit %d\n%s%s; want NAME_UNKNOWN", code, out, errOut)
	}
	if out, _, code := cli(t, "quota", "show", "--registry", base); code != 0 || strings.Contains(out, "hidden") {
		t.Errorf("quota show as admin: the registry's usage is hidden:\n%s", out)
	}
	t.Setenv("STOWAGE_USERNAME", "ci")
	t.Setenv("STOWAGE_PASSWORD", pw["ci"])
	if out, errOut, code := cli(t, "quota", "--registry", base); code != 0 || !strings.Contains(out, "team-a/app") || strings.Contains(out, "team-b") ||
		!strings.Contains(out, "(registry)  (hidden)") {
		t.Errorf("quota as ci: exit %d\n%s%s; want team-a/app only and the registry's usage (hidden)", code, out, errOut)
	}
	// The registry's usage is hidden from the token: said so, not a bare 0.
	if out, errOut, code := cli(t, "quota", "--output", "json", "--registry", base); code != 0 || !strings.Contains(out, `"usageHidden": true`) {
		t.Errorf("quota --output json as ci: exit %d\n%s%s; want registry.usageHidden true", code, out, errOut)
	}
	if out, errOut, code := cli(t, "purge", "--registry", base, "--filter", "team-a/.*:pr-.*"); code != 0 {
		t.Errorf("purge of team-a as ci: exit %d\n%s%s", code, out, errOut)
	}
	// Repositories the token may not see are left out as if they did not
	// exist: refusing because of them would reveal their names one regular
	// expression at a time (outside review). team-b/app:pr-1 stays (below).
	for _, f := range []string{"team-b/.*:.*", "team-b/a.*:.*", "team-b/zzz.*:.*"} {
		if out, errOut, code := cli(t, "purge", "--registry", base, "--filter", f, "--dry-run"); code != 0 || !strings.Contains(out, "0 tags") {
			t.Errorf("purge %s as ci: exit %d\n%s%s; want the same empty answer whether the hidden repository exists or not", f, code, out, errOut)
		}
	}
	if out, errOut, code := cli(t, "purge", "--registry", base, "--filter", "team-b/.*:.*"); code != 0 {
		t.Errorf("purge of team-b as ci: exit %d\n%s%s", code, out, errOut)
	}
	for _, c := range []struct {
		path string
		want int
	}{
		{"/v2/team-a/app/manifests/pr-1", http.StatusNotFound},
		{"/v2/team-a/app/manifests/v1", http.StatusOK},
		{"/v2/team-b/app/manifests/pr-1", http.StatusOK},
	} {
		if code, body := do("GET", c.path, "admin"); code != c.want {
			t.Errorf("after ci's purge, GET %s: %d %s, want %d", c.path, code, body, c.want)
		}
	}
}
