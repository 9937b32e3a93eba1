package sqlite

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestUsagePlansStayInTheRepository pins the cost of one repository's
// usage: its query plans read that repository's rows and probe indexes for
// each digest, and never scan a whole table (which made `stowage usage
// REPO` take seconds at 100,000 repositories: docs/performance.md, "Cost at
// scale"). Only the CTE of the repository's own digests may be scanned.
func TestUsagePlansStayInTheRepository(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "stowage.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, c := range []struct {
		name, q string
		scans   []string // SCAN targets allowed: the repository's own CTE rows
	}{
		{"RepositoryUsageOf", sqlRepositoryUsageOf, []string{"x"}},
		{"ManifestUsage", sqlManifestUsage, []string{"h"}},
	} {
		rows, err := db.ro.QueryContext(ctx, "EXPLAIN QUERY PLAN "+c.q, "some/repo")
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		for _, step := range plan {
			f := strings.Fields(step)
			if len(f) < 2 || f[0] != "SCAN" {
				continue
			}
			ok := false
			for _, s := range c.scans {
				ok = ok || f[1] == s
			}
			if !ok {
				t.Errorf("%s scans %q (a whole table or index, whatever the repository); plan:\n%s", c.name, step, strings.Join(plan, "\n"))
			}
		}
	}
}
