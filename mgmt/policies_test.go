package mgmt_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/mgmt"
	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/recyclebin"
)

// TestPolicyEndpoints: the retention, purge, soft delete and recycle bin
// endpoints reach the parts the handler was given (WithPolicies), and
// without them answer UNSUPPORTED instead of failing.
func TestPolicyEndpoints(t *testing.T) {
	_, reg, _ := setup(t)
	with := httptest.NewServer(mgmt.New(reg, nil).WithPolicies(policy.New(reg), recyclebin.New(reg)))
	t.Cleanup(with.Close)
	without := httptest.NewServer(mgmt.New(reg, nil))
	t.Cleanup(without.Close)
	for _, c := range []struct {
		method, path, body string
		want               int    // with the parts
		wantBody           string // a part of it
	}{
		{"PUT", "/api/v1/retention", `{"enabled":true,"days":3}`, 200, `"days":3`},
		{"GET", "/api/v1/retention", "", 200, `"days":3`},
		{"POST", "/api/v1/retention/run?dry_run=true", "", 200, `"dryRun":true`},
		{"PUT", "/api/v1/purge-policies/prs", `{"filters":["ci/.*:pr-.*"],"every":"1d"}`, 200, `"name":"prs"`},
		{"GET", "/api/v1/purge-policies", "", 200, `"name":"prs"`},
		{"DELETE", "/api/v1/purge-policies/prs", "", 204, ""},
		{"POST", "/api/v1/purge?filter=ci/.*:pr-.*&dry_run=true", "", 200, `"report"`},
		{"PUT", "/api/v1/soft-delete", `{"enabled":true,"days":5}`, 200, `"days":5`},
		{"GET", "/api/v1/soft-delete", "", 200, `"days":5`},
		{"GET", "/api/v1/recycle-bin", "", 200, `"entries":[]`},
		{"POST", "/api/v1/recycle-bin/7/restore", "", 404, "MANIFEST_UNKNOWN"},
	} {
		for _, srv := range []*httptest.Server{with, without} {
			req, _ := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader(c.body))
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			body := strings.Join(strings.Fields(string(b)), "")
			want, wantBody := c.want, c.wantBody
			if srv == without {
				want, wantBody = http.StatusMethodNotAllowed, string(stowage.CodeUnsupported)
			}
			if res.StatusCode != want || !strings.Contains(body, wantBody) {
				t.Errorf("%s %s (configured %v): %d %s, want %d with %s", c.method, c.path, srv == with, res.StatusCode, body, want, wantBody)
			}
		}
	}
}
