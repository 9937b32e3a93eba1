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
// repository_usage_size from the top (under a LIMIT) may be scanned.
func TestUsagePlansStayInTheRepository(t *testing.T) {
	db := planDB(t)
	for _, c := range []struct {
		name, q string
		args    []any
		scans   []string // SCAN targets allowed
		must    []string // steps the plan must have
	}{
		{"RepositoryUsageOf", sqlRepositoryUsageOf, []any{"some/repo"}, nil, nil},
		{"RepositoryKept", sqlRepositoryKept, []any{"some/repo"}, nil, nil},
		{"RepositoryUsage page", sqlRepositoryUsage, []any{"some/repo", 100}, nil, nil},
		{"LargestRepositories", sqlLargestRepositories, []any{15}, []string{"repository_usage", "top"}, nil},
		// The page's references: one primary key range per manifest of the
		// page, not every reference of the repository.
		{"ManifestUsage page", sqlManifestUsage, []any{"some/repo", "sha256:x", int64(1 << 60), 100}, []string{"page", "p", "h"},
			[]string{"SEARCH r USING PRIMARY KEY (repo=? AND parent=?)"}},
		{"Totals", sqlUsageTotals, nil, []string{"usage_totals"}, nil},
		{"BlobTotals", sqlBlobTotals, nil, []string{"usage_totals"}, nil},
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
		// The other users of a digest are found in the partial index.
		if strings.Contains(c.q, "usage_digests o ") && !strings.Contains(strings.Join(plan, "\n"), "usage_digests_used") {
			t.Errorf("%s does not probe usage_digests_used; plan:\n%s", c.name, strings.Join(plan, "\n"))
		}
	}
}
