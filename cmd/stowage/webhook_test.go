package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stowage/stowage/config"
)

// TestWebhookAdminOnly: /api/v1/webhooks answers admins only; a token that
// may do everything to every repository gets 403, no credentials 401.
func TestWebhookAdminOnly(t *testing.T) {
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
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusAccepted) }))
	defer rcv.Close()
	t.Setenv("TEST_HOOK_SECRET", "cmd-test-secret-41")
	pw := map[string]string{"admin": adminPW}
	for _, s := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"scope-map", "create", "everything", "--rule", "*=content/read,content/write,content/delete,metadata/read,metadata/write"}, 0, ""},
		{[]string{"token", "create", "ci", "--scope-map", "everything"}, 0, "password1: "},
		{[]string{"webhook", "create", "hook", "--uri", rcv.URL, "--actions", "push", "--secret-env", "TEST_HOOK_SECRET"}, 0, "webhook hook created"},
		{[]string{"webhook", "create", "hook2", "--actions", "push"}, 2, "--uri is required"},
		{[]string{"webhook", "create", "hook2", "--uri", rcv.URL, "--actions", "pull"}, 1, "unknown webhook action"},
		{[]string{"webhook", "ping", "hook"}, 0, "ping delivered: the receiver answered 202"},
		{[]string{"webhook", "show", "nope"}, 1, "no webhook named"},
		{[]string{"webhook", "frob"}, 2, ""},
	} {
		out, errOut, code := cli(t, append(s.args, "--registry", base)...)
		if code != s.code || !strings.Contains(out+errOut, s.want) {
			t.Fatalf("stowage %s: exit %d (want %d)\n%s%s(want %q)", strings.Join(s.args, " "), code, s.code, out, errOut, s.want)
		}
		if strings.Contains(out+errOut, "cmd-test-secret-41") {
			t.Fatalf("stowage %s printed the secret", strings.Join(s.args, " "))
		}
		if s.args[0] == "token" {
			for _, line := range strings.Split(out, "\n") {
				if v, ok := strings.CutPrefix(line, "password1: "); ok {
					pw[s.args[2]] = v
				}
			}
		}
	}
	for _, c := range []struct {
		method, path, user string
		want               int
	}{
		{"GET", "/api/v1/webhooks", "admin", http.StatusOK},
		{"GET", "/api/v1/webhooks", "ci", http.StatusForbidden},
		{"GET", "/api/v1/webhooks", "", http.StatusUnauthorized},
		{"GET", "/api/v1/webhooks/hook", "ci", http.StatusForbidden},
		{"GET", "/api/v1/webhooks/hook/events", "ci", http.StatusForbidden},
		{"POST", "/api/v1/webhooks/hook/ping", "ci", http.StatusForbidden},
		{"PUT", "/api/v1/webhooks/evil", "ci", http.StatusForbidden},
		{"PATCH", "/api/v1/webhooks/hook", "ci", http.StatusForbidden},
		{"DELETE", "/api/v1/webhooks/hook", "ci", http.StatusForbidden},
		{"DELETE", "/api/v1/webhooks/hook", "admin", http.StatusNoContent},
	} {
		req, _ := http.NewRequest(c.method, base+c.path, strings.NewReader(`{"serviceUri":"http://127.0.0.1:1/","actions":["push"]}`))
		if c.user != "" {
			req.SetBasicAuth(c.user, pw[c.user])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want || strings.Contains(string(b), "cmd-test-secret-41") {
			t.Errorf("%s %s as %q: %d %s, want %d", c.method, c.path, c.user, resp.StatusCode, b, c.want)
		}
	}
}
