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
		{mod + "/ociapi", []string{mod + "/ociapi", mod, "github.com/opencontainers/"}},
		{mod + "/storage/fs", []string{mod + "/storage/fs", mod, "github.com/opencontainers/"}},
		{mod + "/storage/mem", []string{mod + "/storage/mem", mod, "github.com/opencontainers/"}},
		{mod + "/storage/crypt", []string{mod + "/storage/crypt", mod, "github.com/opencontainers/"}},
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
}
