package sqlite

import (
	"strings"
	"testing"
)

// TestDeletePlansDoNotWalkTheRepository pins the cost of deleting one
// manifest: every query a delete runs per manifest or per digest seeks an
// index for it, and none scans a table or walks a whole repository (the
// old plan of sqlReferrers walked every manifest of the repository, once
// per deleted manifest: quadratic, docs/performance.md "Deletes at scale").
func TestDeletePlansDoNotWalkTheRepository(t *testing.T) {
	db := planDB(t)
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
		plan := queryPlan(t, db, c.name, c.q, args...)
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
