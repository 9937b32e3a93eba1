package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stowage/stowage/feed"
)

// FeedCursors returns the store of the change feed's durable readers.
func (db *DB) FeedCursors() feed.CursorStore { return cursorStore{db} }

var _ feed.CursorProvider = (*DB)(nil)

type cursorStore struct{ db *DB }

func (s cursorStore) Cursors(ctx context.Context) ([]feed.Cursor, error) {
	rows, err := s.db.pool.Query(ctx, `SELECT name, seq, updated FROM feed_cursors ORDER BY name COLLATE "C"`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (feed.Cursor, error) {
		var c feed.Cursor
		var t int64
		err := r.Scan(&c.Name, &c.Seq, &t)
		c.Updated = time.Unix(0, t).UTC()
		return c, err
	})
}

func (s cursorStore) Cursor(ctx context.Context, name string) (feed.Cursor, bool, error) {
	c := feed.Cursor{Name: name}
	var t int64
	err := s.db.pool.QueryRow(ctx, `SELECT seq, updated FROM feed_cursors WHERE name = $1`, name).Scan(&c.Seq, &t)
	if errors.Is(err, pgx.ErrNoRows) {
		return feed.Cursor{}, false, nil
	}
	if err != nil {
		return feed.Cursor{}, false, err
	}
	c.Updated = time.Unix(0, t).UTC()
	return c, true, nil
}

func (s cursorStore) SaveCursor(ctx context.Context, name string, seq int64, now time.Time) error {
	_, err := s.db.pool.Exec(ctx, `INSERT INTO feed_cursors (name, seq, updated) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO UPDATE SET seq = excluded.seq, updated = excluded.updated`, name, seq, now.UnixNano())
	return err
}

func (s cursorStore) DeleteCursor(ctx context.Context, name string) error {
	_, err := s.db.pool.Exec(ctx, `DELETE FROM feed_cursors WHERE name = $1`, name)
	return err
}
