package ui_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stowage/stowage/policy"
)

// TestPurgePolicyForm: an admin previews (dry run) a new scheduled purge
// policy from the form, saves it, edits it and deletes it; the preview
// names what the purge would remove and removes nothing; a caller the API
// refuses (a read-only token, a user with delete rights in team-a) gets
// 403 and changes nothing, as on the API.
func TestPurgePolicyForm(t *testing.T) {
	e := setup(t, true)
	ctx := context.Background()
	pol := policy.New(e.reg)
	form := url.Values{"name": {"old-x"}, "filters": {"team-a/x:.*\n"}, "ago": {"0d"}, "keep": {"0"}, "every": {"24h"}}
	do := func(c *http.Client, action string, f url.Values) (int, string, string) {
		t.Helper()
		g := url.Values{"csrf": {csrf(t, c, e.srv.URL+"/ui/repositories")}, "action": {action}}
		for k, v := range f {
			g[k] = v
		}
		return post(t, c, e.srv.URL+"/ui/policies/purge", g, nil)
	}
	for _, who := range []string{"ta", "alice"} {
		c := e.client(t)
		e.login(t, c, who)
		for _, action := range []string{"preview", "save", "delete"} {
			if st, _, _ := do(c, action, form); st != http.StatusForbidden {
				t.Errorf("%s %s: %d, want 403", who, action, st)
			}
		}
		if st := e.apiStatus(t, who, http.MethodPut, "/api/v1/purge-policies/old-x"); st != http.StatusForbidden {
			t.Errorf("the API answers %s's PUT with %d, want 403 as the UI does", who, st)
		}
	}
	c := e.client(t)
	e.login(t, c, "admin")
	st, body, _ := do(c, "preview", form)
	if st != http.StatusOK || !strings.Contains(body, `id="purge-dryrun"`) || !strings.Contains(body, "would remove 1 tags and 0 manifests") || !strings.Contains(body, "team-a/x: <code>1</code>") {
		t.Fatalf("preview: %d\n%s", st, body)
	}
	if ps, _ := pol.PurgePolicies(ctx); len(ps) != 0 {
		t.Fatalf("the preview saved a policy: %+v", ps)
	}
	if _, err := e.reg.ManifestInfo(ctx, "team-a/x", e.dig["team-a/x"]); err != nil {
		t.Fatalf("the preview deleted: %v", err)
	}
	bad := url.Values{"name": {"bad"}, "filters": {"(:x"}, "every": {"24h"}}
	if st, body, _ := do(c, "save", bad); st != http.StatusBadRequest || !strings.Contains(body, `id="purge-form-error"`) {
		t.Errorf("a bad filter: %d, want 400 with the form's error", st)
	}
	if st, _, loc := do(c, "save", form); st != http.StatusSeeOther || loc != "/ui/policies" {
		t.Fatalf("save: %d %s", st, loc)
	}
	ps, err := pol.PurgePolicies(ctx)
	if err != nil || len(ps) != 1 || ps[0].Name != "old-x" || ps[0].Every != "24h" || len(ps[0].Filters) != 1 || ps[0].Filters[0] != "team-a/x:.*" {
		t.Fatalf("saved: %+v %v", ps, err)
	}
	if _, body := get(t, c, e.srv.URL+"/ui/policies?edit=old-x"); !strings.Contains(body, "Edit purge policy old-x") || !strings.Contains(body, "team-a/x:.*</textarea>") {
		t.Errorf("the edit form is not filled:\n%s", body)
	}
	form.Set("keep", "3")
	form.Set("edit", "true")
	if st, _, _ := do(c, "save", form); st != http.StatusSeeOther {
		t.Fatalf("edit: %d", st)
	}
	if ps, _ := pol.PurgePolicies(ctx); len(ps) != 1 || ps[0].Keep != 3 {
		t.Errorf("after the edit: %+v", ps)
	}
	if st, _, _ := do(c, "delete", url.Values{"name": {"old-x"}}); st != http.StatusSeeOther {
		t.Fatalf("delete: %d", st)
	}
	if ps, _ := pol.PurgePolicies(ctx); len(ps) != 0 {
		t.Errorf("after delete: %+v", ps)
	}
}
