package ui_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
)

var errorMessageRe = regexp.MustCompile(`id="error-message">([^<]*)`)

// TestDeniedWording: a refusal reads as one sentence, as on the API
// ("this needs …" or "it needs … on repository …"), never "it needs this
// needs …" (review r2/i16 F3).
func TestDeniedWording(t *testing.T) {
	e := setup(t, true)
	c := e.client(t)
	e.login(t, c, "ta")
	for _, tc := range []struct{ path, want string }{
		{"/ui/", "token ta may not do this: this needs metadata/read on every repository"},
		{"/ui/policies", "token ta may not do this: this needs metadata/read on every repository"},
		{"/ui/repository?name=team-b/y", "token ta may not do this: it needs metadata/read on repository team-b/y"},
	} {
		st, body := get(t, c, e.srv.URL+tc.path)
		m := errorMessageRe.FindStringSubmatch(body)
		if st != http.StatusForbidden || m == nil {
			t.Fatalf("%s: %d, no error message", tc.path, st)
		}
		if !strings.HasPrefix(m[1], tc.want) || strings.Contains(m[1], "needs this needs") {
			t.Errorf("%s: %q, want it to start with %q", tc.path, m[1], tc.want)
		}
	}
}
