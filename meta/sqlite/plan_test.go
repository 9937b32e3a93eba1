package sqlite

import (
	"context"
	"path/filepath"
	"testing"
)

// The plan tests (gc_plan_test.go, delete_plan_test.go,
// usage_plan_test.go) pin what a query costs by its SQLite query plan.

// planDB opens an empty database with the whole schema in a temporary
// directory, closed when the test ends.
func planDB(t *testing.T) *DB {
	t.Helper()
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "stowage.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// queryPlan returns the steps of q's plan (EXPLAIN QUERY PLAN's details,
// in order).
func queryPlan(t *testing.T, db *DB, name, q string, args ...any) []string {
	t.Helper()
	rows, err := db.ro.QueryContext(context.Background(), "EXPLAIN QUERY PLAN "+q, args...)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return plan
}
