package postgres_test

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stowage/stowage/meta/metatest"
	"github.com/stowage/stowage/meta/postgres"
	"github.com/stowage/stowage/meta/postgres/pgtest"
)

// The usage queries before the kept sums (migration 0015), for the
// comparison BenchmarkUsageScale prints.
const (
	oldRepositoryUsage = `WITH refs AS (
			SELECT repo, d, count(*) OVER (PARTITION BY d) AS n FROM (
				SELECT repo, digest AS d FROM manifests
				UNION
				SELECT repo, child FROM manifest_references WHERE kind = 'blob') u
		), parts AS (
			SELECT x.repo AS repo, b.size AS referenced, CASE WHEN x.n = 1 THEN b.size ELSE 0 END AS uniq,
				0 AS manifests, 0 AS tags, 0 AS untagged
				FROM refs x JOIN blobs b ON b.digest = x.d
			UNION ALL
			SELECT m.repo, 0::bigint, 0::bigint, 1, 0, CASE WHEN NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo = m.repo AND t.digest = m.digest)
				AND NOT EXISTS (SELECT 1 FROM manifest_references p WHERE p.child = m.digest AND p.repo = m.repo) THEN 1 ELSE 0 END
				FROM manifests m
			UNION ALL
			SELECT repo, 0::bigint, 0::bigint, 0, 1, 0 FROM tags
			UNION ALL
			SELECT name, 0::bigint, 0::bigint, 0, 0, 0 FROM repositories
		)
		SELECT repo, sum(referenced)::bigint, sum(uniq)::bigint, sum(manifests)::bigint, sum(tags)::bigint, sum(untagged)::bigint FROM parts
		GROUP BY repo HAVING repo IN (SELECT name FROM repositories) ORDER BY repo COLLATE "C"`
	oldRepositoryUsageOf = `WITH refs AS (
			SELECT digest AS d FROM manifests WHERE repo = $1
			UNION
			SELECT child FROM manifest_references WHERE repo = $1 AND kind = 'blob'
		)
		SELECT r.name,
			COALESCE((SELECT sum(b.size) FROM refs x JOIN blobs b ON b.digest = x.d), 0)::bigint,
			COALESCE((SELECT sum(b.size) FROM refs x JOIN blobs b ON b.digest = x.d
				WHERE NOT EXISTS (SELECT 1 FROM manifests o WHERE o.digest = x.d AND o.repo <> $1)
				AND NOT EXISTS (SELECT 1 FROM manifest_references o WHERE o.child = x.d AND o.repo < $1 AND o.kind = 'blob')
				AND NOT EXISTS (SELECT 1 FROM manifest_references o WHERE o.child = x.d AND o.repo > $1 AND o.kind = 'blob')), 0)::bigint,
			(SELECT count(*) FROM manifests m WHERE m.repo = $1),
			(SELECT count(*) FROM tags t WHERE t.repo = $1),
			(SELECT count(*) FROM manifests m WHERE m.repo = $1
				AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo = m.repo AND t.digest = m.digest)
				AND NOT EXISTS (SELECT 1 FROM manifest_references p WHERE p.child = m.digest AND p.repo = m.repo))
		FROM repositories r WHERE r.name = $1`
	oldManifestUsage = `WITH holders AS (
			SELECT repo, digest AS holder, digest AS d FROM manifests WHERE repo = $1
			UNION ALL
			SELECT repo, parent, child FROM manifest_references WHERE repo = $1 AND kind = 'blob'
		)
		SELECT m.digest, m.media_type, m.created, COALESCE(sum(b.size), 0)::bigint,
			COALESCE(sum(CASE WHEN NOT EXISTS (SELECT 1 FROM manifests o WHERE o.digest = h.d AND NOT (o.repo = h.repo AND o.digest = h.holder))
				AND NOT EXISTS (SELECT 1 FROM manifest_references o WHERE o.child = h.d AND o.kind = 'blob' AND NOT (o.repo = h.repo AND o.parent = h.holder))
				THEN b.size ELSE 0 END), 0)::bigint,
			COALESCE((SELECT array_agg(t.name ORDER BY t.name) FROM tags t WHERE t.repo = m.repo AND t.digest = m.digest), '{}')
		FROM manifests m
		JOIN holders h ON h.repo = m.repo AND h.holder = m.digest
		JOIN blobs b ON b.digest = h.d
		WHERE m.repo = $1
		GROUP BY m.repo, m.digest ORDER BY m.created DESC, m.digest`
	oldBlobTotals = `SELECT count(*), COALESCE(sum(size), 0)::bigint FROM blobs WHERE state = 'live'`
)

// BenchmarkUsageScale builds a registry of STOWAGE_USAGE_SCALE manifests
// (default 50,000; bench/scale's shape) in a fresh schema and times the
// usage reads, old and new:
//
//	STOWAGE_TEST_POSTGRES=… go test ./meta/postgres -run '^$' -bench UsageScale -benchtime 10x
func BenchmarkUsageScale(b *testing.B) {
	n := 50_000
	if s := os.Getenv("STOWAGE_USAGE_SCALE"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	cs := pgtest.Schema(b, "stowage_bench")
	db, err := postgres.Open(ctx, cs, postgres.Options{MaxConns: 8})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	t0 := time.Now()
	metatest.BuildUsageScale(b, db, n)
	b.Logf("built %d manifests in %v", n, time.Since(t0))
	conn, err := pgx.Connect(ctx, cs)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "ANALYZE"); err != nil {
		b.Fatal(err)
	}
	// The big repository's row: its unique bytes must be an index-only
	// scan of its range of digest_owners_sole (migration 0017).
	rows, err := conn.Query(ctx, "EXPLAIN (ANALYZE, BUFFERS) "+postgres.SQLRepositoryUsageOf, "big")
	if err != nil {
		b.Fatal(err)
	}
	var plan []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			b.Fatal(err)
		}
		plan = append(plan, line)
	}
	rows.Close()
	b.Logf("RepositoryUsageOf(big):\n%s", strings.Join(plan, "\n"))
	metatest.BenchUsage(b, db)
	raw := func(name, q string, args ...any) {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				rows, err := conn.Query(ctx, q, args...)
				if err != nil {
					b.Fatal(err)
				}
				for rows.Next() {
				}
				rows.Close()
				if rows.Err() != nil {
					b.Fatal(rows.Err())
				}
			}
		})
	}
	raw("before/registry-all-rows", oldRepositoryUsage)
	raw("before/blob-totals", oldBlobTotals)
	raw("before/repo-big-summary", oldRepositoryUsageOf, "big")
	raw("before/repo-big-manifests", oldManifestUsage, "big")
	raw("before/repo-small-summary", oldRepositoryUsageOf, "r/0000007")
}
