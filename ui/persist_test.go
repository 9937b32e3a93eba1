package ui_test

import (
	"context"
	"database/sql"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/auth"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/storage/mem"
	"github.com/stowage/stowage/ui"
	_ "modernc.org/sqlite"
)

// TestSessionsInDatabase: a session lives in the metadata database, so a
// session made on one server works on another on the same database (a
// scale-out without sticky sessions) and after a restart; logout on one
// ends it on all; the database holds neither the password nor the id.
func TestSessionsInDatabase(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "stowage.db")
	const password = "admin-password-persist-1"
	// server opens the database as a process of its own would.
	server := func(first bool) *httptest.Server {
		db, err := sqlite.Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		a, err := auth.New(ctx, db, auth.Options{BcryptCost: bcrypt.MinCost})
		if err != nil {
			t.Fatal(err)
		}
		if first {
			if _, err := a.CreateUser(ctx, auth.UserSpec{Name: "admin", Password: password, Admin: true}); err != nil {
				t.Fatal(err)
			}
		}
		h, err := ui.New(ui.Options{Registry: stowage.NewRegistry(db, mem.New(), stowage.Options{}), Auth: a})
		if err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		mux.Handle(ui.Prefix, h)
		srv := httptest.NewServer(mux)
		t.Cleanup(func() { srv.Close(); db.Close() })
		return srv
	}
	a, b := server(true), server(false)
	c := (&env{}).client(t)
	tok := csrf(t, c, a.URL+"/ui/login")
	if st, body, _ := post(t, c, a.URL+"/ui/login", url.Values{"csrf": {tok}, "name": {"admin"}, "password": {password}}, nil); st != http.StatusSeeOther {
		t.Fatalf("login on a: %d %s", st, body)
	}
	au, _ := url.Parse(a.URL + "/ui/")
	cookies := c.Jar.Cookies(au)
	var sessionCookie string
	for _, k := range cookies {
		if k.Name == "stowage_ui" {
			sessionCookie = k.Value
		}
	}
	if sessionCookie == "" {
		t.Fatal("no session cookie")
	}
	// The same cookie on b (another host for the jar: copy it).
	onServer := func(srv *httptest.Server) int {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/ui/", nil)
		req.AddCookie(&http.Cookie{Name: "stowage_ui", Value: sessionCookie})
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := onServer(b); st != http.StatusOK {
		t.Errorf("the session of a on b: %d, want 200", st)
	}
	a.Close()
	restarted := server(false)
	if st := onServer(restarted); st != http.StatusOK {
		t.Errorf("the session after a restart: %d, want 200", st)
	}
	// What the database holds: no password, no session id.
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var n int
	var dump string
	if err := raw.QueryRow(`SELECT COUNT(*), COALESCE(group_concat(id_hash || name || hex(sealed) || CAST(sealed AS TEXT) || csrf, ''), '') FROM ui_sessions`).Scan(&n, &dump); err != nil {
		t.Fatal(err)
	}
	id, _, _ := strings.Cut(sessionCookie, ".")
	if n != 1 || strings.Contains(dump, password) || strings.Contains(dump, id) {
		t.Errorf("ui_sessions: %d rows, password or id in them: %v %v", n, strings.Contains(dump, password), strings.Contains(dump, id))
	}
	// Logout on b ends it everywhere.
	lt := csrfOf(t, b, sessionCookie)
	req, _ := http.NewRequest(http.MethodPost, b.URL+"/ui/logout", strings.NewReader(url.Values{"csrf": {lt}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: "stowage_ui", Value: sessionCookie})
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	if st := onServer(restarted); st != http.StatusSeeOther {
		t.Errorf("after logout on b, the session on another server: %d, want 303 to the login page", st)
	}
	if err := raw.QueryRow(`SELECT COUNT(*) FROM ui_sessions`).Scan(&n); err != nil || n != 0 {
		t.Errorf("after logout: %d rows (%v), want 0", n, err)
	}
}

// csrfOf returns the csrf field of the overview for the session cookie.
func csrfOf(t *testing.T, srv *httptest.Server, cookie string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/ui/", nil)
	req.AddCookie(&http.Cookie{Name: "stowage_ui", Value: cookie})
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 1<<16)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	m := csrfField.FindStringSubmatch(b.String())
	if m == nil {
		t.Fatal("no csrf field")
	}
	return m[1]
}
