package stowage_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencyDirection pins the layering: the root package (vocabulary,
// contracts, engine) depends only on the standard library and the OCI
// packages; the HTTP API never imports a storage or database implementation;
// implementations never import each other.
func TestDependencyDirection(t *testing.T) {
	deps := func(pkg string) []string {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", pkg, err)
		}
		return strings.Fields(string(out))
	}
	const mod = "github.com/stowage/stowage"
	for _, tc := range []struct {
		pkg     string
		allowed []string // prefixes of allowed non-standard imports
	}{
		{mod, []string{mod, "github.com/opencontainers/"}},
		{mod + "/ociapi", []string{mod + "/ociapi", mod + "/internal/httperr", mod + "/internal/ociroute", mod, "github.com/opencontainers/"}},
		{mod + "/storage/fs", []string{mod + "/storage/fs", mod, "github.com/opencontainers/"}},
		{mod + "/storage/mem", []string{mod + "/storage/mem", mod, "github.com/opencontainers/"}},
		{mod + "/storage/crypt", []string{mod + "/storage/crypt", mod, "github.com/opencontainers/"}},
		{mod + "/feed", []string{mod + "/feed", mod, "github.com/opencontainers/"}}, // databases implement its Store
	} {
		for _, d := range deps(tc.pkg) {
			ok := false
			for _, a := range tc.allowed {
				if d == a || strings.HasPrefix(d, a) && (strings.HasSuffix(a, "/") || d == a) {
					ok = true
				}
			}
			if !ok {
				t.Errorf("%s depends on %s, which breaks the layering", tc.pkg, d)
			}
		}
	}
	// The HTTP edges share only the error writer (internal/httperr) and the
	// path grammar (internal/ociroute) with the OCI API, and reach storage
	// through interfaces they declare.
	for _, tc := range []struct {
		pkg       string
		forbidden []string // packages, or prefixes ending in "/"
	}{
		{mod + "/auth", []string{mod + "/ociapi", mod + "/storage/"}},
		{mod + "/limits", []string{mod + "/ociapi", mod + "/storage/"}},
		{mod + "/mgmt", []string{mod + "/ociapi", mod + "/storage/"}},
	} {
		for _, d := range deps(tc.pkg) {
			for _, f := range tc.forbidden {
				if d == f || strings.HasSuffix(f, "/") && strings.HasPrefix(d, f) {
					t.Errorf("%s depends on %s, which breaks the layering", tc.pkg, d)
				}
			}
		}
	}
}
