package auth_test

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stowage/stowage/auth"
)

// TestFailedLoginsDoNotLockOutOthers (issue 12 #14): with the default
// limits, someone else's failed logins never refuse a correct password: not
// from the same address (a NAT, a CI runner pool), not for the same name
// from other addresses; a guesser is held back by its own failures. Each
// scenario is a list of logins (address, name, password) and the answers
// wanted.
func TestFailedLoginsDoNotLockOutOthers(t *testing.T) {
	type step struct {
		n          int    // this many times (0: once)
		addr, name string // %d in either: the repetition's number
		password   string // "right" for the name's password
		want       int
		msg        string // in the body of a refusal
		wait       time.Duration
	}
	wrong, right := "wrong-password", "right"
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"attacker guesses other names from the victim's address", []step{
			{n: 30, addr: "10.0.0.1", name: "admin", password: wrong, want: 0}, // 401s, then 429s: its own failures
			{addr: "10.0.0.1", name: "carol", password: right, want: 200},      // never logged in before
			{n: 30, addr: "10.0.0.1", name: "user%d", password: wrong, want: 401},
			{addr: "10.0.0.1", name: "erin", password: right, want: 200},
			{addr: "10.0.0.1", name: "admin", password: wrong, want: 429, msg: "too many failed logins for admin from 10.0.0.1"},
		}},
		{"attacker guesses the victim's name from the victim's address", []step{
			{addr: "10.0.0.1", name: "carol", password: right, want: 200},
			{wait: 2 * time.Minute}, // past the credential cache
			{n: 10, addr: "10.0.0.1", name: "carol", password: wrong, want: 401},
			{addr: "10.0.0.1", name: "carol", password: wrong, want: 429, msg: "for carol from 10.0.0.1"},
			{addr: "10.0.0.1", name: "carol", password: right, want: 200}, // logged in before: not held back
			{addr: "10.0.0.1", name: "carol", password: wrong, want: 429},
		}},
		{"distributed guessing of one name", []step{
			{n: 25, addr: "10.0.1.%d", name: "dave", password: wrong, want: 401},
			{addr: "10.0.1.3", name: "dave", password: wrong, want: 429, msg: "too many failed logins for dave;"},
			{addr: "10.0.1.3", name: "dave", password: right, want: 429}, // an address that failed dave: held back
			{addr: "10.0.2.1", name: "dave", password: right, want: 200}, // dave, first login, from elsewhere
			{wait: 2 * time.Minute},
			{n: 30, addr: "10.0.3.%d", name: "erin", password: wrong, want: 401},
			{addr: "10.0.3.99", name: "erin", password: wrong, want: 401}, // checked (and counted)
			{addr: "10.0.3.99", name: "erin", password: wrong, want: 429},
		}},
		{"own failures hold back, after they stop they do not", []step{
			{n: 10, addr: "10.0.4.1", name: "carol", password: wrong, want: 401},
			{addr: "10.0.4.1", name: "carol", password: right, want: 429, msg: "retry in 6 s"},
			{wait: 6 * time.Second},
			{addr: "10.0.4.1", name: "carol", password: right, want: 200},
		}},
		{"spraying many names from one address", []step{
			{addr: "10.0.5.1", name: "dave", password: right, want: 200},
			{wait: 2 * time.Minute},
			{n: 100, addr: "10.0.5.1", name: "nobody%d", password: wrong, want: 401},
			{addr: "10.0.5.1", name: "nobody-else", password: wrong, want: 429, msg: "too many failed logins from 10.0.5.1"},
			{addr: "10.0.5.1", name: "dave", password: right, want: 200},  // logged in before
			{addr: "10.0.5.2", name: "carol", password: right, want: 200}, // another address
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(o *auth.Options) {
				o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
			})
			for _, u := range []string{"carol", "dave", "erin"} {
				e.mustJSON(http.MethodPost, "/api/v1/auth/users", `{"name":"`+u+`","password":"`+u+`-password"}`, http.StatusCreated, nil)
			}
			for i, s := range tc.steps {
				if s.wait > 0 {
					e.clk.Add(s.wait)
					continue
				}
				for j := 0; j < max(s.n, 1); j++ {
					addr, name := s.addr, s.name
					if strings.Contains(addr, "%d") {
						addr = fmt.Sprintf(addr, j)
					}
					if strings.Contains(name, "%d") {
						name = fmt.Sprintf(name, j)
					}
					pw := s.password
					if pw == right {
						pw = name + "-password"
					}
					r := e.do("GET", "/v2/", basic(name, pw), "", "X-Forwarded-For", addr)
					if s.want != 0 && r.status != s.want || !strings.Contains(string(r.body), s.msg) {
						t.Fatalf("step %d (%d of %d): %s as %s: %d %s, want %d %q", i, j+1, max(s.n, 1), addr, name, r.status, r.body, s.want, s.msg)
					}
				}
			}
		})
	}
}
