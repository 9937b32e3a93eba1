package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/stowage/stowage/feed"
)

// FeedCursors returns the store of the change feed's durable readers.
func (db *DB) FeedCursors() feed.CursorStore { return cursorStore{db} }

var _ feed.CursorProvider = (*DB)(nil)

type cursorStore struct{ db *DB }

func (s cursorStore) Cursors(ctx context.Context) ([]feed.Cursor, error) {
	rows, err := s.db.ro.QueryContext(ctx, `SELECT name, seq, updated FROM feed_cursors ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []feed.Cursor
	for rows.Next() {
		var c feed.Cursor
		var t int64
		if err := rows.Scan(&c.Name, &c.Seq, &t); err != nil {
			return nil, err
		}
		c.Updated = time.Unix(0, t).UTC()
		out = append(out, c)
	}
	return out, rows.Err()
}

func (s cursorStore) Cursor(ctx context.Context, name string) (feed.Cursor, bool, error) {
	c := feed.Cursor{Name: name}
	var t int64
	err := s.db.ro.QueryRowContext(ctx, `SELECT seq, updated FROM feed_cursors WHERE name = ?`, name).Scan(&c.Seq, &t)
	if errors.Is(err, sql.ErrNoRows) {
		return feed.Cursor{}, false, nil
	}
	if err != nil {
		return feed.Cursor{}, false, err
	}
	c.Updated = time.Unix(0, t).UTC()
	return c, true, nil
}

func (s cursorStore) SaveCursor(ctx context.Context, name string, seq int64, now time.Time) error {
	_, err := s.db.rw.ExecContext(ctx, `INSERT INTO feed_cursors (name, seq, updated) VALUES (?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET seq = excluded.seq, updated = excluded.updated`, name, seq, now.UnixNano())
	return err
}

func (s cursorStore) DeleteCursor(ctx context.Context, name string) error {
	_, err := s.db.rw.ExecContext(ctx, `DELETE FROM feed_cursors WHERE name = ?`, name)
	return err
}
