package sqlite

import (
	"strings"
	"testing"
)

// TestGCPlansArePaged pins the cost of garbage collection's queries: a
// page of collectable blobs walks the primary key from `after` and stops at
// its limit (no temporary B-tree sorting every blob past `after`, which made
// a collection of k blobs read the table k/256 times: docs/performance.md,
// "Cost at scale"); the batch queries (the orphan sweep's check, the
// collector's fence, the rows' deletion) search an index for each digest
// they are given, never scanning a table.
func TestGCPlansArePaged(t *testing.T) {
	db := planDB(t)
	for _, c := range []struct {
		name, q string
		args    []any
		want    string // a step the plan must have (* : any words, e.g. COVERING)
	}{
		{"CollectableBlobs", sqlCollectableBlobs, []any{1, 1, "sha256:", 256}, "SEARCH b USING PRIMARY KEY (digest>?)"},
		{"BlobsInState", sqlBlobsInState, []any{"deleting", "", 256}, "SEARCH blobs USING * INDEX blobs_state (state=? AND digest>?)"},
		{"ExistingBlobs", sqlExistingBlobs, []any{`["sha256:00"]`}, "SEARCH blobs USING PRIMARY KEY (digest=?)"},
		{"MarkCollectable", sqlMarkCollectable, []any{`["sha256:00"]`, 1, 1}, "SEARCH b USING * INDEX blobs_state (state=? AND digest=?)"},
		{"DeleteBlobRows links", sqlDeleteBlobsLinks, []any{`["sha256:00"]`}, "SEARCH repository_blobs USING * INDEX repository_blobs_digest (digest=?)"},
		{"DeleteBlobRows", sqlDeleteBlobsRows, []any{`["sha256:00"]`}, "SEARCH blobs USING PRIMARY KEY (digest=?)"},
		{"RecycleOnlyBlobs", sqlRecycleOnlyBlobs, []any{"", 4096}, "SEARCH x USING * INDEX recycle_refs_digest (digest>?)"},
		{"QueuedBlobs", sqlQueuedBlobs, []any{"", 1024}, "SEARCH q USING PRIMARY KEY (digest>?)"},
		{"QueuedBlobs' rows", sqlQueuedBlobs, []any{"", 1024}, "SEARCH b USING PRIMARY KEY (digest=?) LEFT-JOIN"},
		{"Dequeue", sqlDequeue, []any{`["sha256:00"]`}, "SEARCH gc_queue USING PRIMARY KEY (digest=?)"},
		{"Enqueue", sqlEnqueue, []any{`["sha256:00"]`}, "SCAN json_each VIRTUAL TABLE INDEX 1:"},
	} {
		plan := queryPlan(t, db, c.name, c.q, c.args...)
		found := false
		for _, step := range plan {
			found = found || matchStep(step, c.want)
			if f := strings.Fields(step); strings.HasPrefix(step, "USE TEMP B-TREE") || len(f) > 1 && f[0] == "SCAN" && f[1] != "json_each" {
				t.Errorf("%s: %q (a pass over a whole table, or a sort, per page); plan:\n%s", c.name, step, strings.Join(plan, "\n"))
			}
		}
		if !found {
			t.Errorf("%s: no step %q; plan:\n%s", c.name, c.want, strings.Join(plan, "\n"))
		}
	}
}

// matchStep reports whether a plan step matches pattern, where the word *
// stands for any words ("USING * INDEX" matches "USING INDEX" and "USING
// COVERING INDEX").
func matchStep(step, pattern string) bool {
	before, after, ok := strings.Cut(pattern, " * ")
	if !ok {
		return step == pattern
	}
	rest, found := strings.CutPrefix(step, before+" ")
	if !found {
		return false
	}
	return strings.HasSuffix(rest, " "+after) || rest == after
}
