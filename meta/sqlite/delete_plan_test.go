package sqlite

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestDeletePlansDoNotWalkTheRepository pins the cost of deleting one
// manifest: every query a delete runs per manifest or per digest seeks an
// index for it, and none scans a table or walks a whole repository (the
// old plan of sqlReferrers walked every manifest of the repository, once
// per deleted manifest: quadratic, docs/performance.md "Deletes at scale").
func TestDeletePlansDoNotWalkTheRepository(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "stowage.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	walk := `SELECT ` + manifestColumns + ` FROM manifests WHERE repo = ? AND subject = ? AND subject <> '' ORDER BY digest`
	for _, c := range []struct {
		name, q string
		walks   bool // the test's own check: this plan must be caught
	}{
		{"Referrers", sqlReferrers, false},
		{"ReferrersPage", sqlReferrersPage, false},
		{"GetManifest", sqlGetManifest, false},
		{"ManifestRefs", sqlManifestRefs, false},
		{"ManifestParents", sqlManifestParents, false},
		{"TagsOf", sqlTagsOf, false},
		{"GetTagRecord", sqlGetTagRecord, false},
		{"DeleteManifest", sqlDeleteManifest, false},
		{"DeleteManifestRefs", sqlDeleteManifestRefs, false},
		{"DeleteTag", sqlDeleteTag, false},
		{"BlobReferenced", sqlBlobReferenced, false},
		{"MarkUnreferenced", sqlMarkUnreferenced, false},
		{"UnreferencedBlobs", sqlUnreferencedBlobs, false},
		{"SetUntaggedSince", sqlSetUntaggedSince, false},
		{"unhinted referrers (must be caught)", walk, true},
	} {
		n := strings.Count(c.q, "?")
		if strings.Contains(c.q, "?2") {
			n = 2
		}
		args := make([]any, n)
		for i := range args {
			args[i] = "x"
		}
		rows, err := db.ro.QueryContext(ctx, "EXPLAIN QUERY PLAN "+c.q, args...)
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
		bad := ""
		for _, step := range plan {
			f := strings.Fields(step)
			switch {
			case len(f) >= 2 && f[0] == "SCAN" && f[1] != "json_each" && f[1] != "CONSTANT":
				bad = step
			case strings.HasSuffix(step, "(repo=?)"):
				bad = step
			}
		}
		if (bad != "") != c.walks {
			t.Errorf("%s: plan step %q (want a seek for the manifest or digest, not a walk of a table or repository); plan:\n%s", c.name, bad, strings.Join(plan, "\n"))
		}
	}
}
