package sqlite

import (
	"slices"
	"strings"
	"testing"
)

// TestUsagePlansStayInTheRepository pins the cost of usage reads: their
// query plans read the kept sums (repository_usage, usage_totals), one page
// of rows found by a primary key or index range, and probe indexes for each
// digest; they never scan a whole table (which made `stowage usage` take
// seconds at 100,000 repositories: docs/performance.md, "Cost at scale").
// Only a CTE's own rows, the 1-row usage_totals, and the walk of
// repository_usage_size from the top (under a LIMIT) may be scanned. A
// repository's unique bytes are one range of digest_owners_sole (the
// digests it owns alone, migration 0023): never a probe per digest it uses
// (usage_digests), which took a second for a repository of 100,000
// manifests.
func TestUsagePlansStayInTheRepository(t *testing.T) {
	db := planDB(t)
	for _, c := range []struct {
		name, q string
		args    []any
		scans   []string // SCAN targets allowed
		unique  bool     // computes repositories' unique bytes
		must    []string // steps the plan must have
	}{
		{"RepositoryUsageOf", sqlRepositoryUsageOf, []any{"some/repo"}, nil, true, nil},
		{"RepositoryKept", sqlRepositoryKept, []any{"some/repo"}, nil, false, nil},
		{"RepositoryUsage page", sqlRepositoryUsage, []any{"some/repo", 100}, nil, true, nil},
		{"RepositoryUsage all", sqlRepositoryUsageAll, []any{"some/repo"}, nil, true, nil},
		{"LargestRepositories", sqlLargestRepositories, []any{15}, []string{"repository_usage", "top"}, true, nil},
		// The page's references: one primary key range per manifest of the
		// page, not every reference of the repository.
		{"ManifestUsage page", sqlManifestUsage, []any{"some/repo", "sha256:x", int64(1 << 60), 100}, []string{"page", "p", "h"}, false,
			[]string{"SEARCH r USING PRIMARY KEY (repo=? AND parent=?)"}},
		{"Totals", sqlUsageTotals, nil, []string{"usage_totals"}, false, nil},
		{"BlobTotals", sqlBlobTotals, nil, []string{"usage_totals"}, false, nil},
	} {
		plan := queryPlan(t, db, c.name, c.q, c.args...)
		for _, m := range c.must {
			if !slices.Contains(plan, m) {
				t.Errorf("%s: no step %q; plan:\n%s", c.name, m, strings.Join(plan, "\n"))
			}
		}
		for _, step := range plan {
			f := strings.Fields(step)
			if len(f) < 2 || f[0] != "SCAN" {
				continue
			}
			ok := false
			for _, s := range c.scans {
				ok = ok || f[1] == s && (s != "repository_usage" || strings.Contains(step, "repository_usage_size"))
			}
			if !ok {
				t.Errorf("%s scans %q (a whole table or index, whatever the repository); plan:\n%s", c.name, step, strings.Join(plan, "\n"))
			}
		}
		// Unique bytes: a range of the covering partial index, nothing of
		// usage_digests.
		if c.unique {
			p := strings.Join(plan, "\n")
			if !strings.Contains(p, "USING COVERING INDEX digest_owners_sole (sole_owner") || strings.Contains(p, "usage_digests") {
				t.Errorf("%s does not sum unique bytes from a range of digest_owners_sole alone; plan:\n%s", c.name, p)
			}
		}
		// The other users of a digest are found in the partial index.
		if strings.Contains(c.q, "usage_digests o ") && !strings.Contains(strings.Join(plan, "\n"), "usage_digests_used") {
			t.Errorf("%s does not probe usage_digests_used; plan:\n%s", c.name, strings.Join(plan, "\n"))
		}
	}
}
