package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/usage"
	"github.com/stowage/stowage/usage/history"
	"github.com/stowage/stowage/usage/rank"
)

// The web UI's stores: the daily usage history (usage/history) and pages
// of repositories in the order a person asks for (usage/rank).

var (
	_ history.Provider = (*DB)(nil)
	_ rank.Provider    = (*DB)(nil)
)

// UsageHistory returns the daily usage history's store.
func (db *DB) UsageHistory() history.Store { return historyStore{db} }

// Rank returns the store that pages repositories.
func (db *DB) Rank() rank.Store { return rankStore{db} }

type historyStore struct{ db *DB }

const (
	sqlPutUsageDay = `INSERT INTO usage_history (day, physical_bytes, logical_bytes, blobs, repositories, manifests, tags, recorded)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (day) DO UPDATE SET physical_bytes = excluded.physical_bytes,
		logical_bytes = excluded.logical_bytes, blobs = excluded.blobs, repositories = excluded.repositories,
		manifests = excluded.manifests, tags = excluded.tags, recorded = excluded.recorded`
	sqlUsageDays = `SELECT * FROM (SELECT day, physical_bytes, logical_bytes, blobs, repositories, manifests, tags, recorded
		FROM usage_history WHERE day >= $1 AND day <= $2 ORDER BY day DESC LIMIT $3) d ORDER BY day`
)

func (s historyStore) PutUsageDay(ctx context.Context, d history.Day) error {
	_, err := s.db.pool.Exec(ctx, sqlPutUsageDay, d.Day, d.PhysicalBytes, d.LogicalBytes, d.Blobs, d.Repositories, d.Manifests, d.Tags, d.Recorded.UnixNano())
	return err
}

// PutRepositorySizes replaces the recorded sizes in one transaction
// (COPY for the rows).
func (s historyStore) PutRepositorySizes(ctx context.Context, sizes []usage.RepositorySpace) error {
	return pgx.BeginFunc(ctx, s.db.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM usage_repositories`); err != nil {
			return err
		}
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"usage_repositories"}, []string{"name", "referenced_bytes", "unique_bytes"},
			pgx.CopyFromSlice(len(sizes), func(i int) ([]any, error) {
				return []any{sizes[i].Name, sizes[i].ReferencedBytes, sizes[i].UniqueBytes}, nil
			}))
		return err
	})
}

func (s historyStore) UsageDays(ctx context.Context, from, to string, limit int) ([]history.Day, error) {
	var lim any = limit
	if limit <= 0 {
		lim = nil // LIMIT NULL: no limit
	}
	rows, err := s.db.pool.Query(ctx, sqlUsageDays, from, to, lim)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []history.Day
	for rows.Next() {
		var d history.Day
		var rec int64
		if err := rows.Scan(&d.Day, &d.PhysicalBytes, &d.LogicalBytes, &d.Blobs, &d.Repositories, &d.Manifests, &d.Tags, &rec); err != nil {
			return nil, err
		}
		d.Recorded = time.Unix(0, rec).UTC()
		out = append(out, d)
	}
	return out, rows.Err()
}

type rankStore struct{ db *DB }

func (s rankStore) RepositoryPage(ctx context.Context, q rank.Query) ([]rank.Row, error) {
	return rank.Page(ctx, q, func(ctx context.Context, text string, args []any) ([]rank.Row, error) {
		rows, err := s.db.pool.Query(ctx, text, args...)
		if err != nil {
			return nil, err
		}
		return pgx.CollectRows(rows, func(row pgx.CollectableRow) (rank.Row, error) {
			var r rank.Row
			var updated int64
			err := row.Scan(&r.Name, &updated, &r.ReferencedBytes, &r.Tags, &r.Manifests, &r.RecordedBytes)
			r.Updated, r.Unmeasured = time.Unix(0, updated).UTC(), r.RecordedBytes < 0
			return r, err
		})
	})
}

func (s rankStore) SharedBy(ctx context.Context, d stowage.Digest, limit int) ([]rank.Holder, error) {
	rows, err := s.db.pool.Query(ctx, rank.SQLSharedBy, string(d), limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (rank.Holder, error) {
		var h rank.Holder
		err := row.Scan(&h.Repo, &h.Manifest)
		return h, err
	})
}
