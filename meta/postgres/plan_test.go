package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/stowage/stowage/meta/metatest"
	"github.com/stowage/stowage/meta/postgres"
	"github.com/stowage/stowage/meta/postgres/pgtest"
)

// TestPointLookupsStayPointLookups: a row found by its whole primary key is
// found by an index condition on every key column, in the generic plan.
// pgx prepares each statement once per connection and PL/pgSQL each
// trigger statement once per session, and after five executions PostgreSQL
// may keep a generic plan, which estimates "digest = $2" at one row like
// any other digest: where a table keyed by (repo, digest) also had an
// index on digest alone, it chose that index as readily as the key and
// filtered the repository out of the digest's range. For a layer or an
// image many repositories share that range is every one of them: deleting
// a reference to the base layer of a 1,000,000-manifest registry read
// 100,000 entries of usage_digests_digest, and a retention pass there did
// not finish in 16 minutes (migration 0018). The same plan served a
// manifest GET by digest through manifests_digest.
//
// The registry is bench/scale's shape (a base layer every repository
// shares) and analyzed, as a running server's tables are.
func TestPointLookupsStayPointLookups(t *testing.T) {
	ctx := context.Background()
	cs := pgtest.Schema(t, "plans")
	db, err := postgres.Open(ctx, cs, postgres.Options{MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	metatest.BuildUsageScale(t, db, 3000)
	conn, err := pgx.Connect(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "ANALYZE"); err != nil {
		t.Fatal(err)
	}
	// Every table's primary key, columns in key order, and its size: a
	// table of a few pages is rightly read whole.
	rows, err := conn.Query(ctx, `SELECT c.relname, array_agg(a.attname::text ORDER BY k.ord), max(c.reltuples)
		FROM pg_index i
		JOIN pg_class c ON c.oid = i.indrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
		CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
		JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
		WHERE i.indisprimary
		GROUP BY c.relname ORDER BY c.relname`)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string][]string{}
	var tables []string
	for rows.Next() {
		var table string
		var cols []string
		var size float64
		if err := rows.Scan(&table, &cols, &size); err != nil {
			t.Fatal(err)
		}
		if size < 100 {
			continue
		}
		keys[table] = cols
		tables = append(tables, table)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"manifests", "usage_digests", "repository_blobs", "manifest_references", "tags"} {
		if len(keys[want]) < 2 {
			t.Fatalf("table %s: primary key %v, want a key of two columns or more and 100 rows (did the schema or the builder change?)", want, keys[want])
		}
	}
	if _, err := conn.Exec(ctx, "SET plan_cache_mode = force_generic_plan"); err != nil {
		t.Fatal(err)
	}
	for _, table := range tables {
		cols := keys[table]
		if len(cols) < 2 {
			continue // a one-column key has nothing to filter
		}
		var where, args []string
		for i, c := range cols {
			where = append(where, fmt.Sprintf("%s = $%d", c, i+1))
			args = append(args, "NULL")
		}
		cond := strings.Join(where, " AND ")
		for _, stmt := range []string{
			"SELECT * FROM " + table + " WHERE " + cond,
			"UPDATE " + table + " SET " + cols[0] + " = " + cols[0] + " WHERE " + cond,
			"DELETE FROM " + table + " WHERE " + cond,
		} {
			name := "p_" + table
			if _, err := conn.Exec(ctx, "PREPARE "+name+" AS "+stmt); err != nil {
				t.Fatalf("%s: %v", stmt, err)
			}
			var plan []string
			r, err := conn.Query(ctx, "EXPLAIN EXECUTE "+name+"("+strings.Join(args, ", ")+")")
			if err != nil {
				t.Fatalf("%s: %v", stmt, err)
			}
			for r.Next() {
				var line string
				if err := r.Scan(&line); err != nil {
					t.Fatal(err)
				}
				plan = append(plan, line)
			}
			if err := r.Err(); err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Exec(ctx, "DEALLOCATE "+name); err != nil {
				t.Fatal(err)
			}
			text := strings.Join(plan, "\n")
			if strings.Contains(text, "Filter:") || !strings.Contains(text, "Index") {
				t.Errorf("%s\nis not a lookup on every key column in its generic plan:\n%s", stmt, text)
			}
		}
	}
}
