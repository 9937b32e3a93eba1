package stowage_test

import (
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The house's layering, for every package of the module: who may import whom
// (non-test code; tests may import anything). Read from the bottom up:
//
//	root (stowage)      vocabulary, contracts, the image model and the core engine
//	capabilities        gc, scrub, policy, recyclebin, jobs, feed: built on the core
//	storage/*           Backends and decorators: the storage contract only
//	meta/*              the databases: implement the core's and the capabilities' stores
//	internal/httperr…   what the HTTP edges share
//	ociapi, mgmt, auth, limits, config    the edges
//	cmd/stowage         the wiring: may import anything but the test tools
//
// A new package needs a row here, and a new arrow that breaks the layering
// fails the test: change the design (an interface the importer declares, a
// helper moved down a layer), not the table, unless the layering itself is
// what should change (then say why in the commit).
var layering = map[string][]string{
	"":                            {"ext:github.com/opencontainers/"},
	"jobs":                        {""},
	"gc":                          {"", "jobs"},
	"scrub":                       {"", "jobs", "ext:github.com/opencontainers/"},
	"policy":                      {"", "jobs"},
	"recyclebin":                  {"", "jobs"},
	"feed":                        {"", "jobs"},
	"replication":                 {"", "feed", "jobs"},
	"replication/replicationtest": {"", "replication"},
	"webhook":                     {"", "feed"},
	"usage":                       {""},
	"transfer":                    {"", "policy"},
	"usage/history":               {"", "usage"},
	"usage/rank":                  {""},
	"ui/sessionstore":             {""},
	"storage/fs":                  {""},
	"storage/fs/faultfs":          {"storage/fs"},
	"storage/mem":                 {""},
	"storage/s3":                  {"", "ext:github.com/aws/"},
	"storage/azure":               {"", "ext:github.com/Azure/"},
	"storage/crypt":               {""},
	"storage/mirror":              {""},
	"storage/shard":               {""},
	"storage/storagetest":         {""},
	"meta/tables":                 {},
	"meta/sqlite":                 {"", "meta/tables", "@capabilities", "ext:modernc.org/"},
	"meta/postgres":               {"", "meta/tables", "@capabilities", "ext:github.com/jackc/"},
	"meta/postgres/pgtest":        {"internal/testenv", "ext:github.com/jackc/"},
	"meta/metatest":               {"", "meta/tables", "@capabilities", "storage/crypt", "storage/mirror"},
	"internal/httperr":            {""},
	"internal/ociroute":           {""},
	"internal/testenv":            {},
	"internal/requestlog":         {},
	"metrics":                     {"internal/ociroute", "ext:github.com/prometheus/"},
	"ociapi":                      {"", "internal/httperr", "internal/ociroute"},
	"limits":                      {"", "internal/httperr"},
	"auth":                        {"", "internal/httperr", "internal/ociroute", "limits", "ext:golang.org/x/"},
	"mgmt":                        {"", "internal/httperr", "@capabilities", "remote"},
	"ui":                          {"", "auth", "mgmt", "@capabilities"},
	"config":                      {"", "ext:gopkg.in/yaml.v3"},
	"remote":                      {"", "ext:github.com/opencontainers/"},
	"pullthrough":                 {"", "remote"},
	"cmd/stowage":                 {"@all-but-test-tools"},
	// Test tools: they drive the real engine, databases and storage.
	"internal/modeltest": {"", "@capabilities", "meta/sqlite", "meta/postgres", "storage/fs", "storage/fs/faultfs",
		"storage/crypt", "storage/mirror", "storage/shard", "internal/testenv"},
	"e2e":               {"internal/testenv"},
	"bench":             {},
	"bench/scale":       {"", "meta/sqlite", "meta/postgres", "storage/fs"},
	"scripts/rrproxy":   {},
	"scripts/layoutgen": {},
}

var capabilities = []string{"jobs", "gc", "scrub", "policy", "recyclebin", "feed", "usage", "usage/history", "usage/rank", "webhook", "pullthrough", "replication", "ui/sessionstore"}
var testTools = []string{"internal/modeltest", "e2e", "bench", "bench/scale", "scripts/rrproxy", "scripts/layoutgen"}

// TestDependencyDirection checks every package's imports against layering.
func TestDependencyDirection(t *testing.T) {
	const mod = "github.com/stowage/stowage"
	out, err := exec.Command("go", "list", "-json=ImportPath,Imports", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	rel := func(p string) string {
		if p == mod {
			return ""
		}
		return strings.TrimPrefix(p, mod+"/")
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	seen := map[string]bool{}
	for dec.More() {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		name := rel(p.ImportPath)
		seen[name] = true
		rules, ok := layering[name]
		if !ok {
			t.Errorf("package %q has no row in the layering table (depcheck_test.go): add one that says what it may import", p.ImportPath)
			continue
		}
		for _, imp := range p.Imports {
			if !strings.Contains(strings.Split(imp, "/")[0], ".") {
				continue // standard library
			}
			if !allowed(rules, imp, mod, rel) {
				t.Errorf("%s imports %s, which breaks the layering (see the table in depcheck_test.go)", p.ImportPath, imp)
			}
		}
	}
	for name := range layering {
		if !seen[name] {
			t.Errorf("the layering table has a row for %q, which is not a package any more", name)
		}
	}
}

func allowed(rules []string, imp, mod string, rel func(string) string) bool {
	internal := imp == mod || strings.HasPrefix(imp, mod+"/")
	for _, r := range rules {
		switch {
		case strings.HasPrefix(r, "ext:"):
			if !internal && strings.HasPrefix(imp, strings.TrimPrefix(r, "ext:")) {
				return true
			}
		case r == "@capabilities":
			if internal && slices.Contains(capabilities, rel(imp)) {
				return true
			}
		case r == "@all-but-test-tools":
			if !internal || !slices.Contains(testTools, rel(imp)) && rel(imp) != "internal/testenv" {
				return true
			}
		default:
			if internal && rel(imp) == r {
				return true
			}
		}
	}
	return false
}

// TestLayeringTableCatches: the check is not vacuous: the arrows the
// restructure removed are refused.
func TestLayeringTableCatches(t *testing.T) {
	const mod = "github.com/stowage/stowage"
	rel := func(p string) string {
		if p == mod {
			return ""
		}
		return strings.TrimPrefix(p, mod+"/")
	}
	for _, tc := range []struct{ pkg, imp string }{
		{"mgmt", mod + "/storage/crypt"},
		{"mgmt", mod + "/ociapi"},
		{"auth", mod + "/ociapi"},
		{"limits", mod + "/ociapi"},
		{"", mod + "/gc"},
		{"gc", mod + "/meta/sqlite"},
		{"storage/crypt", mod + "/meta/sqlite"},
		{"ociapi", mod + "/meta/postgres"},
		{"cmd/stowage", mod + "/internal/modeltest"},
		{"", "github.com/jackc/pgx/v5"},
	} {
		if allowed(layering[tc.pkg], tc.imp, mod, rel) {
			t.Errorf("the table lets %q import %s", tc.pkg, tc.imp)
		}
	}
}
