package pullthrough

import "testing"

func TestRuleMap(t *testing.T) {
	rules := []Record{
		{Rule: Rule{Name: "hub", Source: "docker-hub/*", Upstream: "registry-1.docker.io/library/*"}},
		{Rule: Rule{Name: "hubx", Source: "docker-hub/x/*", Upstream: "docker.io/other/*"}},
		{Rule: Rule{Name: "one", Source: "docker-hub/pinned", Upstream: "ghcr.io/org/pinned-app"}},
		{Rule: Rule{Name: "all", Source: "dh/*", Upstream: "docker.io/*"}},
		{Rule: Rule{Name: "ghcr", Source: "ghcr/*", Upstream: "ghcr.io/*"}},
	}
	for _, r := range rules {
		r := r.Rule
		if err := r.Validate(); err != nil {
			t.Fatalf("%s: %v", r.Name, err)
		}
	}
	for _, tc := range []struct{ repo, rule, up string }{
		{"docker-hub/alpine", "hub", "library/alpine"},
		{"docker-hub/a/b", "hub", "library/a/b"},
		{"docker-hub/x/y", "hubx", "other/y"},
		{"docker-hub/pinned", "one", "org/pinned-app"},
		{"dh/alpine", "all", "library/alpine"},
		{"dh/bitnami/redis", "all", "bitnami/redis"},
		{"ghcr/org/app", "ghcr", "org/app"},
		{"docker-hub", "", ""},
		{"other/alpine", "", ""},
	} {
		r, up := match(rules, tc.repo)
		name := ""
		if r != nil {
			name = r.Name
		}
		if name != tc.rule || up != tc.up {
			t.Errorf("match(%q) = %q %q, want %q %q", tc.repo, name, up, tc.rule, tc.up)
		}
	}
	for _, bad := range []Rule{
		{Name: "a", Source: "x/*", Upstream: "ghcr.io/org"},      // one wildcard
		{Name: "a", Source: "x", Upstream: "ghcr.io/org/*"},      // the other
		{Name: "a", Source: "x/*", Upstream: "ghcr.io/org:v1/*"}, // a tag
		{Name: "a", Source: "x", Upstream: "ghcr.io"},            // no repository
		{Name: "A", Source: "x", Upstream: "ghcr.io/x"},          // name
		{Name: "a", Source: "X/*", Upstream: "ghcr.io/x/*"},      // source
		{Name: "a", Source: "x", Upstream: "ghcr.io/x", TagTTL: -1},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("Validate(%+v) accepted", bad)
		}
	}
}
