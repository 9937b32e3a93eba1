package auth_test

import (
	"database/sql"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/auth"
)

// feed returns the change feed's events after seq, read with SQL from the
// database file.
func feed(t *testing.T, path string, after int64) []stowage.Event {
	t.Helper()
	raw, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	rows, err := raw.Query(`SELECT seq, kind, actor, addr, repo, digest, tag, reason, detail FROM events WHERE seq > ? ORDER BY seq`, after)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []stowage.Event
	for rows.Next() {
		var e stowage.Event
		if err := rows.Scan(&e.Seq, &e.Kind, &e.Actor, &e.Addr, &e.Repo, &e.Digest, &e.Tag, &e.Reason, &e.Detail); err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func feedEnd(t *testing.T, path string) int64 {
	es := feed(t, path, 0)
	if len(es) == 0 {
		return 0
	}
	return es[len(es)-1].Seq
}

// TestAccessControlEvents: every change to users, tokens, scope maps and
// anonymous pull appends one event, by the admin who made it, in the
// transaction that writes the access control settings; a refused change
// appends none; a failed login appends login.failed with the name tried.
func TestAccessControlEvents(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stowage.db")
	e := newEnvAt(t, path)
	const secret = "bob-password-1"
	cases := []struct {
		name         string
		method, path string
		authz, body  string
		status       int
		kind         stowage.EventKind // "": no event
		actor        string
		details      []string
	}{
		{"create a user", "POST", "/api/v1/auth/users", admin, `{"name":"bob","password":"` + secret + `"}`, 201,
			stowage.EventUser, "admin", []string{`"action":"create"`, `"name":"bob"`, `"admin":false`}},
		{"a taken name", "POST", "/api/v1/auth/users", admin, `{"name":"bob","password":"` + secret + `"}`, 400, "", "", nil},
		{"change a user", "PATCH", "/api/v1/auth/users/bob", admin, `{"disabled":true}`, 200,
			stowage.EventUser, "admin", []string{`"action":"update"`, `"name":"bob"`, `"disabled":true`}},
		{"set a password", "PUT", "/api/v1/auth/users/bob/password", admin, `{"password":"` + secret + `-2"}`, 204,
			stowage.EventUser, "admin", []string{`"action":"password"`, `"name":"bob"`}},
		{"delete the last admin", "DELETE", "/api/v1/auth/users/admin", admin, "", 403, "", "", nil},
		{"create a scope map", "PUT", "/api/v1/auth/scope-maps/ci", admin, `{"rules":[{"repository":"app/*","actions":["content/read"]}]}`, 201,
			stowage.EventScopeMap, "admin", []string{`"action":"create"`, `"name":"ci"`, `"repository":"app/*"`}},
		{"replace a scope map", "PUT", "/api/v1/auth/scope-maps/ci", admin, `{"rules":[{"repository":"app/*","actions":["content/read","content/write"]}]}`, 200,
			stowage.EventScopeMap, "admin", []string{`"action":"update"`, `"content/write"`}},
		{"create a token", "POST", "/api/v1/auth/tokens", admin, `{"name":"robot","scopeMap":"ci"}`, 201,
			stowage.EventToken, "admin", []string{`"action":"create"`, `"name":"robot"`, `"scopeMap":"ci"`}},
		{"delete a scope map in use", "DELETE", "/api/v1/auth/scope-maps/ci", admin, "", 403, "", "", nil},
		{"disable a token", "PATCH", "/api/v1/auth/tokens/robot", admin, `{"status":"disabled"}`, 200,
			stowage.EventToken, "admin", []string{`"action":"update"`, `"status":"disabled"`}},
		{"generate a token password", "POST", "/api/v1/auth/tokens/robot/passwords", admin, `{"name":"password1"}`, 201,
			stowage.EventToken, "admin", []string{`"action":"password.generate"`, `"password":"password1"`}},
		{"delete a token password", "DELETE", "/api/v1/auth/tokens/robot/passwords/password2", admin, "", 204,
			stowage.EventToken, "admin", []string{`"action":"password.delete"`, `"password":"password2"`}},
		{"delete a token", "DELETE", "/api/v1/auth/tokens/robot", admin, "", 204,
			stowage.EventToken, "admin", []string{`"action":"delete"`, `"name":"robot"`}},
		{"delete a scope map", "DELETE", "/api/v1/auth/scope-maps/ci", admin, "", 204,
			stowage.EventScopeMap, "admin", []string{`"action":"delete"`, `"name":"ci"`}},
		{"delete a user", "DELETE", "/api/v1/auth/users/bob", admin, "", 204,
			stowage.EventUser, "admin", []string{`"action":"delete"`, `"name":"bob"`}},
		{"turn anonymous pull on", "PUT", "/api/v1/auth/anonymous-pull", admin, `{"enabled":true}`, 200,
			stowage.EventPolicy, "admin", []string{`"name":"anonymousPull"`, `"before":false`, `"after":true`}},
		{"a wrong password", "GET", "/v2/", basic("mallory", "guess-1"), "", 401,
			stowage.EventLoginFailed, "mallory", []string{`"method":"basic"`, `"reason":"unknown name"`}},
		{"a wrong password at the token endpoint", "GET", auth.TokenPath + "?service=x", basic("admin", "guess-2"), "", 401,
			stowage.EventLoginFailed, "admin", []string{`"reason":"wrong password"`}},
		{"a bad bearer token (only logged)", "GET", "/v2/", "Bearer not-a-token", "", 401, "", "", nil},
		{"a non-admin's change is refused", "PUT", "/api/v1/auth/anonymous-pull", "", `{"enabled":false}`, 401, "", "", nil},
	}
	for _, tc := range cases {
		seq := feedEnd(t, path)
		r := e.do(tc.method, tc.path, tc.authz, tc.body, "Content-Type", "application/json", "User-Agent", "stowage-cli/1", "X-Request-Id", "rq-1")
		if r.status != tc.status {
			t.Fatalf("%s: %d %s, want %d", tc.name, r.status, r.body, tc.status)
		}
		got := feed(t, path, seq)
		if tc.kind == "" {
			if len(got) != 0 {
				t.Errorf("%s: appended %+v, want nothing", tc.name, got)
			}
			continue
		}
		if len(got) != 1 {
			t.Errorf("%s: %d events %+v, want one", tc.name, len(got), got)
			continue
		}
		g := got[0]
		if g.Kind != tc.kind || g.Actor != tc.actor || g.Addr != "127.0.0.1" || g.Repo != "" {
			t.Errorf("%s: event %+v, want kind %s by %s at 127.0.0.1", tc.name, g, tc.kind, tc.actor)
		}
		for _, d := range append(tc.details, `"userAgent":"stowage-cli/1"`, `"requestId":"rq-1"`) {
			if !strings.Contains(g.Detail, d) {
				t.Errorf("%s: detail %s lacks %s", tc.name, g.Detail, d)
			}
		}
		if strings.Contains(g.Detail, secret) || strings.Contains(g.Detail, "$2") || strings.Contains(strings.ToLower(g.Detail), "hash") {
			t.Errorf("%s: detail %s holds a secret", tc.name, g.Detail)
		}
	}
}

// TestActorBehindAccessControl: an engine change made through the
// middleware records the authenticated caller as its actor.
func TestActorBehindAccessControl(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stowage.db")
	e := newEnvAt(t, path)
	seq := feedEnd(t, path)
	e.pushImage("app", "v1", "layer")
	if r := e.do(http.MethodDelete, "/api/v1/tags/app:v1", admin, ""); r.status != 200 {
		t.Fatalf("untag: %d %s", r.status, r.body)
	}
	got := feed(t, path, seq)
	if len(got) != 2 || got[0].Kind != stowage.EventPush || got[1].Kind != stowage.EventUntag {
		t.Fatalf("events %+v: want push, untag", got)
	}
	for _, g := range got {
		if g.Actor != "admin" || g.Addr != "127.0.0.1" || g.Repo != "app" || g.Tag != "v1" {
			t.Errorf("event %+v: want app:v1 by admin at 127.0.0.1", g)
		}
	}
}
