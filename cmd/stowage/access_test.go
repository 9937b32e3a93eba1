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

func TestCheckExposure(t *testing.T) {
	cases := []struct {
		addr        string
		auth, open  bool
		wantRefusal bool
	}{
		{"127.0.0.1:5000", false, false, false},
		{"[::1]:5000", false, false, false},
		{"localhost:5000", false, false, false},
		{"0.0.0.0:5000", false, false, true},
		{":5000", false, false, true},
		{"10.1.2.3:5000", false, false, true},
		{"0.0.0.0:5000", true, false, false},
		{"0.0.0.0:5000", false, true, false},
	}
	for _, tc := range cases {
		cfg := config.Default()
		cfg.Addr, cfg.Auth.Enabled, cfg.InsecureOpen = tc.addr, tc.auth, tc.open
		err := checkExposure(cfg)
		if (err != nil) != tc.wantRefusal {
			t.Errorf("%s auth=%v open=%v: %v, want refusal %v", tc.addr, tc.auth, tc.open, err, tc.wantRefusal)
		}
		if err != nil && !strings.Contains(err.Error(), "--insecure-open-registry") {
			t.Errorf("refusal does not name the flag: %v", err)
		}
	}
}

func TestLimitsFor(t *testing.T) {
	n := func(i int) *int { return &i }
	cases := []struct {
		name   string
		tier   string
		limits config.Limits
		want   string // requestLimitText; "unlimited" for none
	}{
		{"no tier", "", config.Limits{}, "unlimited"},
		{"basic", "basic", config.Limits{}, "reads 10000/5000, writes 2000/1000, deletes 1000/500, token requests 2000/500"},
		{"premium", "premium", config.Limits{}, "reads 20000/10000, writes 4000/2000, deletes 4000/2000, token requests 4000/1000"},
		{"override", "basic", config.Limits{Reads: config.RateLimit{Identity: n(60)}, Deletes: config.RateLimit{Registry: n(0)}},
			"reads 10000/60, writes 2000/1000, deletes 0/500"},
		{"only an override", "", config.Limits{Writes: config.RateLimit{Identity: n(5)}}, "reads 0/0, writes 0/5"},
	}
	for _, tc := range cases {
		cfg := config.Default()
		cfg.Tier, cfg.Limits = tc.tier, tc.limits
		m := NewMain(cfg, io.Discard)
		m.log = newLogger(cfg.Log, io.Discard)
		lim, err := limitsFor(cfg, m)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := requestLimitText(lim); !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s: %q, want it to start with %q", tc.name, got, tc.want)
		}
	}
}

// TestAccessCommands drives the access control CLI against the real server
// with auth on: the first admin, scope maps, tokens, users, quotas, and
// what a token may then do over HTTP.
func TestAccessCommands(t *testing.T) {
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
		t.Fatalf("the generated admin password: %v", err)
	}
	adminPW := strings.TrimSpace(string(pwFile))

	// Without credentials the CLI says what to set.
	_, errOut, code := cli(t, "token", "list", "--registry", base)
	if code != 1 || !strings.Contains(errOut, "STOWAGE_USERNAME") {
		t.Errorf("token list without credentials: %d %s", code, errOut)
	}
	t.Setenv("STOWAGE_USERNAME", "admin")
	t.Setenv("STOWAGE_PASSWORD", adminPW)
	steps := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"whoami"}, 0, "user admin (admin: true"},
		{[]string{"scope-map", "create", "team-a-read", "--rule", "team-a/*=content/read,metadata/read"}, 0, "team-a/*=content/read,metadata/read"},
		{[]string{"scope-map", "create", "bad", "--rule", "team-a/*=content/fly"}, 1, "content/fly"},
		{[]string{"scope-map", "list"}, 0, "_repositories_pull"},
		{[]string{"token", "create", "ta", "--scope-map", "team-a-read", "--expiry", "24h"}, 0, "password2: "},
		{[]string{"token", "create", "tb", "--scope-map", "nope"}, 1, "nope"},
		{[]string{"token", "list"}, 0, "team-a-read"},
		{[]string{"token", "disable", "ta"}, 0, "token ta is disabled"},
		{[]string{"token", "enable", "ta"}, 0, "token ta is enabled"},
		{[]string{"token", "update", "ta", "--no-expiry"}, 0, "expiry never"},
		{[]string{"token", "update", "ta"}, 1, "nothing to change"},
		{[]string{"token", "delete-password", "ta", "--which", "password2"}, 0, "deleted password2 of token ta"},
		{[]string{"token", "password", "ta", "--which", "password2"}, 0, "password2: "},
		{[]string{"user", "create", "bob", "--scope-map", "team-a-read"}, 0, "password: "},
		{[]string{"user", "list"}, 0, "bob"},
		{[]string{"user", "delete", "admin"}, 1, "admin"},
		{[]string{"quota", "set", "team-a/x", "1MiB"}, 0, "team-a/x"},
		{[]string{"quota", "set", "team-a/x", "lots"}, 1, "not a size"},
		{[]string{"quota"}, 0, "1.0 MiB"},
		{[]string{"anonymous-pull", "on"}, 0, "anonymous pull: on"},
		{[]string{"anonymous-pull"}, 0, "anonymous pull: on"},
		{[]string{"anonymous-pull", "off"}, 0, "anonymous pull: off"},
		{[]string{"gc"}, 0, "freed"}, // a streamed job, with the admin's credentials
		// For scripts: the same, as JSON.
		{[]string{"user", "list", "--output", "json"}, 0, `"name": "bob"`},
		{[]string{"token", "list", "--output", "json"}, 0, `"tokens": [`},
		{[]string{"scope-map", "list", "--output", "json"}, 0, `"scopeMaps": [`},
		{[]string{"anonymous-pull", "--output", "json"}, 0, `"enabled": false`},
		{[]string{"whoami", "--output", "json"}, 0, `"name": "admin"`},
	}
	var tokenPW string
	for _, s := range steps {
		out, errOut, code := cli(t, append(s.args, "--registry", base)...)
		if code != s.code || !strings.Contains(out+errOut, s.want) {
			t.Errorf("stowage %s: exit %d (want %d)\n%s%s(want %q)", strings.Join(s.args, " "), code, s.code, out, errOut, s.want)
		}
		if s.args[0] == "token" && s.args[1] == "create" && code == 0 {
			for _, line := range strings.Split(out, "\n") {
				if v, ok := strings.CutPrefix(line, "password1: "); ok {
					tokenPW = v
				}
			}
		}
	}
	// The token reads team-a with basic auth, nothing else.
	get := func(path, user, pw string) int {
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		if user != "" {
			req.SetBasicAuth(user, pw)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct {
		path, user, pw string
		want           int
	}{
		{"/v2/", "", "", http.StatusUnauthorized},
		{"/v2/", "ta", tokenPW, http.StatusOK},
		{"/v2/", "ta", "wrong", http.StatusUnauthorized},
		{"/v2/team-a/x/tags/list", "ta", tokenPW, http.StatusNotFound},
		{"/v2/team-b/y/tags/list", "ta", tokenPW, http.StatusForbidden},
		{"/api/v1/quotas", "ta", tokenPW, http.StatusOK}, // filtered to team-a (TestLeastPrivilegeScopes)
		{"/api/v1/quotas", "admin", adminPW, http.StatusOK},
		{"/api/v1/events", "ta", tokenPW, http.StatusForbidden}, // every repository's changes: admins only
		{"/api/v1/events", "", "", http.StatusUnauthorized},
		{"/api/v1/events", "admin", adminPW, http.StatusOK},
	} {
		if got := get(c.path, c.user, c.pw); got != c.want {
			t.Errorf("GET %s as %q: %d, want %d", c.path, c.user, got, c.want)
		}
	}
}
