package sqlite

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/meta/metatest"
)

// The usage queries before the kept sums (migration 0021), for the
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
			SELECT m.repo, 0, 0, 1, 0, NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo = m.repo AND t.digest = m.digest)
				AND NOT EXISTS (SELECT 1 FROM manifest_references p WHERE p.child = m.digest AND p.repo = m.repo)
				FROM manifests m
			UNION ALL
			SELECT repo, 0, 0, 0, 1, 0 FROM tags
			UNION ALL
			SELECT name, 0, 0, 0, 0, 0 FROM repositories
		)
		SELECT repo, sum(referenced), sum(uniq), sum(manifests), sum(tags), sum(untagged) FROM parts
		GROUP BY repo HAVING repo IN (SELECT name FROM repositories) ORDER BY repo`
	oldRepositoryUsageOf = `WITH refs AS (
			SELECT digest AS d FROM manifests WHERE repo = ?1
			UNION
			SELECT child FROM manifest_references WHERE repo = ?1 AND kind = 'blob'
		)
		SELECT r.name,
			coalesce((SELECT sum(b.size) FROM refs x JOIN blobs b ON b.digest = x.d), 0),
			coalesce((SELECT sum(b.size) FROM refs x JOIN blobs b ON b.digest = x.d
				WHERE NOT EXISTS (SELECT 1 FROM manifests o WHERE o.digest = x.d AND o.repo < ?1)
				AND NOT EXISTS (SELECT 1 FROM manifests o WHERE o.digest = x.d AND o.repo > ?1)
				AND NOT EXISTS (SELECT 1 FROM manifest_references o WHERE o.child = x.d AND o.repo < ?1 AND o.kind = 'blob')
				AND NOT EXISTS (SELECT 1 FROM manifest_references o WHERE o.child = x.d AND o.repo > ?1 AND o.kind = 'blob')), 0),
			(SELECT count(*) FROM manifests m WHERE m.repo = ?1),
			(SELECT count(*) FROM tags t WHERE t.repo = ?1),
			(SELECT count(*) FROM manifests m WHERE m.repo = ?1
				AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo = m.repo AND t.digest = m.digest)
				AND NOT EXISTS (SELECT 1 FROM manifest_references p WHERE p.child = m.digest AND p.repo = m.repo))
		FROM repositories r WHERE r.name = ?1`
	oldManifestUsage = `WITH holders AS (
			SELECT repo, digest AS holder, digest AS d FROM manifests WHERE repo = ?1
			UNION ALL
			SELECT repo, parent, child FROM manifest_references WHERE repo = ?1 AND kind = 'blob'
		)
		SELECT m.digest, m.media_type, m.created, coalesce(sum(b.size), 0),
			coalesce(sum(CASE WHEN NOT EXISTS (SELECT 1 FROM manifests o WHERE o.digest = h.d AND NOT (o.repo = h.repo AND o.digest = h.holder))
				AND NOT EXISTS (SELECT 1 FROM manifest_references o WHERE o.child = h.d AND o.kind = 'blob' AND NOT (o.repo = h.repo AND o.parent = h.holder))
				THEN b.size ELSE 0 END), 0),
			coalesce((SELECT group_concat(t.name, ',') FROM tags t WHERE t.repo = m.repo AND t.digest = m.digest), '')
		FROM manifests m
		JOIN holders h ON h.repo = m.repo AND h.holder = m.digest
		JOIN blobs b ON b.digest = h.d
		WHERE m.repo = ?1
		GROUP BY m.digest ORDER BY m.created DESC, m.digest`
	oldBlobTotals = `SELECT count(*), coalesce(sum(size), 0) FROM blobs WHERE state = 'live'`
)

// BenchmarkUsageScale builds a registry of STOWAGE_USAGE_SCALE manifests
// (default 50,000; bench/scale's shape: metatest.BuildUsageScale) in a
// temporary file and times the usage reads, old and new:
//
//	go test ./meta/sqlite -run '^$' -bench UsageScale -benchtime 20x
func BenchmarkUsageScale(b *testing.B) {
	n := 50_000
	if s := os.Getenv("STOWAGE_USAGE_SCALE"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(b.TempDir(), "stowage.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	t0 := time.Now()
	metatest.BuildUsageScale(b, db, n)
	b.Logf("built %d manifests in %v", n, time.Since(t0))
	rebuild(b, db)
	metatest.BenchUsage(b, db)
	raw := func(name, q string, args ...any) {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				rows, err := db.ro.QueryContext(ctx, q, args...)
				if err != nil {
					b.Fatal(err)
				}
				for rows.Next() {
				}
				rows.Close()
			}
		})
	}
	raw("before/registry-all-rows", oldRepositoryUsage)
	raw("before/blob-totals", oldBlobTotals)
	raw("before/repo-big-summary", oldRepositoryUsageOf, "big")
	raw("before/repo-big-manifests", oldManifestUsage, "big")
	raw("before/repo-small-summary", oldRepositoryUsageOf, "r/0000007")
}

// rebuild drops the kept usage and runs migrations 0021 and 0023 again
// (their grouped backfills), timing them, and checks they rebuilt what the
// triggers had kept.
func rebuild(b *testing.B, db *DB) {
	ctx := context.Background()
	var before []stowage.RepositoryUsage
	var beforeTot stowage.UsageTotals
	if err := db.View(ctx, func(tx stowage.Tx) (err error) {
		if beforeTot, err = tx.Usage().Totals(); err != nil {
			return err
		}
		before, err = tx.Usage().RepositoryUsage("", 0)
		return err
	}); err != nil {
		b.Fatal(err)
	}
	rows, err := db.rw.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'trigger' AND (sql LIKE '%usage%' OR sql LIKE '%digest_owners%')`)
	if err != nil {
		b.Fatal(err)
	}
	var drop []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			b.Fatal(err)
		}
		drop = append(drop, "DROP TRIGGER "+name)
	}
	rows.Close()
	drop = append(drop, "DROP TABLE digest_owners", "DROP TABLE usage_digests", "DROP TABLE repository_usage", "DROP TABLE usage_totals")
	for _, q := range drop {
		if _, err := db.rw.ExecContext(ctx, q); err != nil {
			b.Fatal(q, err)
		}
	}
	for _, m := range []string{"0021_usage_totals.sql", "0023_digest_owners.sql"} {
		body, err := migrations.ReadFile("migrations/" + m)
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		if _, err := db.rw.ExecContext(ctx, string(body)); err != nil {
			b.Fatal(err)
		}
		b.Logf("migration %s (backfill of %d repositories) took %v", m, len(before), time.Since(t0))
	}
	if err := db.View(ctx, func(tx stowage.Tx) error {
		tot, err := tx.Usage().Totals()
		if err != nil {
			return err
		}
		after, err := tx.Usage().RepositoryUsage("", 0)
		if err != nil {
			return err
		}
		if tot != beforeTot || !reflect.DeepEqual(after, before) {
			b.Errorf("the backfill differs from what the triggers kept: totals %+v, want %+v", tot, beforeTot)
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
}
