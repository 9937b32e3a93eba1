package sqlite

import (
	"context"
	"strings"
	"time"

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
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (day) DO UPDATE SET physical_bytes = excluded.physical_bytes,
		logical_bytes = excluded.logical_bytes, blobs = excluded.blobs, repositories = excluded.repositories,
		manifests = excluded.manifests, tags = excluded.tags, recorded = excluded.recorded`
	sqlUsageDays = `SELECT * FROM (SELECT day, physical_bytes, logical_bytes, blobs, repositories, manifests, tags, recorded
		FROM usage_history WHERE day >= ? AND day <= ? ORDER BY day DESC LIMIT ?) ORDER BY day`
)

func (s historyStore) PutUsageDay(ctx context.Context, d history.Day) error {
	_, err := s.db.rw.ExecContext(ctx, sqlPutUsageDay, d.Day, d.PhysicalBytes, d.LogicalBytes, d.Blobs, d.Repositories, d.Manifests, d.Tags, d.Recorded.UnixNano())
	return err
}

// sizeBatch bounds the rows of one insert statement.
const sizeBatch = 500

func (s historyStore) PutRepositorySizes(ctx context.Context, sizes []usage.RepositorySpace) error {
	tx, err := s.db.rw.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM usage_repositories`); err != nil {
		return err
	}
	for start := 0; start < len(sizes); start += sizeBatch {
		batch := sizes[start:min(start+sizeBatch, len(sizes))]
		var b strings.Builder
		args := make([]any, 0, 3*len(batch))
		b.WriteString(`INSERT INTO usage_repositories (name, referenced_bytes, unique_bytes) VALUES `)
		for i, r := range batch {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString("(?, ?, ?)")
			args = append(args, r.Name, r.ReferencedBytes, r.UniqueBytes)
		}
		if _, err := tx.ExecContext(ctx, b.String(), args...); err != nil {
			return err
		}
	}
	return tx.Commit()
}

func (s historyStore) UsageDays(ctx context.Context, from, to string, limit int) ([]history.Day, error) {
	if limit <= 0 {
		limit = -1
	}
	rows, err := s.db.ro.QueryContext(ctx, sqlUsageDays, from, to, limit)
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
		// ?NNN: SQLite's numbered parameters, the same numbers as $NNN.
		rows, err := s.db.ro.QueryContext(ctx, strings.ReplaceAll(text, "$", "?"), args...)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var out []rank.Row
		for rows.Next() {
			var r rank.Row
			var updated int64
			if err := rows.Scan(&r.Name, &updated, &r.ReferencedBytes, &r.Tags, &r.Manifests, &r.RecordedBytes); err != nil {
				return nil, err
			}
			r.Updated, r.Unmeasured = time.Unix(0, updated).UTC(), r.RecordedBytes < 0
			out = append(out, r)
		}
		return out, rows.Err()
	})
}

func (s rankStore) SharedBy(ctx context.Context, d stowage.Digest, limit int) ([]rank.Holder, error) {
	rows, err := s.db.ro.QueryContext(ctx, strings.ReplaceAll(rank.SQLSharedBy, "$", "?"), string(d), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []rank.Holder
	for rows.Next() {
		var h rank.Holder
		if err := rows.Scan(&h.Repo, &h.Manifest); err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, rows.Err()
}
