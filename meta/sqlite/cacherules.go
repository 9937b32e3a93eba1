package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/pullthrough"
)

// pullthrough.Store: the cache_rules table.
var _ pullthrough.Store = (*DB)(nil)

// PutCacheRule implements pullthrough.Store.
func (db *DB) PutCacheRule(ctx context.Context, r pullthrough.Record) error {
	plain := 0
	if r.PlainHTTP {
		plain = 1
	}
	res, err := db.rw.ExecContext(ctx, `INSERT INTO cache_rules (name, source, upstream, username, secret, plain_http, tag_ttl, created)
VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`, r.Name, r.Source, r.Upstream, r.Username, r.Secret, plain, int64(r.TagTTL), r.Created.UnixNano())
	if err != nil {
		return fmt.Errorf("store cache rule: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return pullthrough.ErrExists
	}
	return nil
}

// CacheRules implements pullthrough.Store.
func (db *DB) CacheRules(ctx context.Context) ([]pullthrough.Record, error) {
	rows, err := db.ro.QueryContext(ctx, `SELECT name, source, upstream, username, secret, plain_http, tag_ttl, created FROM cache_rules ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("read cache rules: %w", err)
	}
	defer rows.Close()
	var out []pullthrough.Record
	for rows.Next() {
		var r pullthrough.Record
		var plain int
		var ttl, created int64
		if err := rows.Scan(&r.Name, &r.Source, &r.Upstream, &r.Username, &r.Secret, &plain, &ttl, &created); err != nil {
			return nil, fmt.Errorf("read cache rules: %w", err)
		}
		r.PlainHTTP, r.TagTTL, r.Created = plain != 0, pullthrough.Duration(ttl), time.Unix(0, created).UTC()
		r.HasPassword = r.Secret != nil
		out = append(out, r)
	}
	return out, rows.Err()
}

// DeleteCacheRule implements pullthrough.Store.
func (db *DB) DeleteCacheRule(ctx context.Context, name string) error {
	res, err := db.rw.ExecContext(ctx, `DELETE FROM cache_rules WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("delete cache rule: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return stowage.ErrNotFound
	}
	return nil
}
