package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/feed"
)

// Feed returns the change feed's store.
func (db *DB) Feed() feed.Store { return feedStore{db} }

var (
	_ feed.Provider = (*DB)(nil)
	_ feed.Store    = feedStore{}
)

type feedStore struct{ db *DB }

// trimBatch bounds the rows one delete statement removes, so trimming a
// large backlog never holds the write lock for long.
const trimBatch = 5000

// Sequence does nothing: SQLite numbers events at insert, in the one
// writer's commit order.
func (feedStore) Sequence(context.Context) error { return nil }

func (s feedStore) Read(ctx context.Context, q feed.Query) ([]stowage.Event, int64, error) {
	q = q.Normalized()
	// One read transaction: the window's end and the newest seq must come
	// from the snapshot the events came from.
	tx, err := s.db.ro.BeginTx(ctx, &sql.TxOptions{ReadOnly: s.db.ro != s.db.rw})
	if err != nil {
		return nil, 0, err
	}
	defer tx.Rollback()
	window := sqlFeedWindow
	if q.Repo != "" {
		window = sqlFeedWindowRepo
	}
	kinds, _ := json.Marshal(q.Kinds)
	if q.Kinds == nil {
		kinds = []byte("[]")
	}
	args := []any{q.After, q.Scan, q.Repo, q.Actor, string(kinds), unixOrZero(q.Since), unixOrZero(q.Until), q.Limit}
	rows, err := tx.QueryContext(ctx, "WITH w AS ("+window+") "+sqlFeedFilter, args...)
	if err != nil {
		return nil, 0, err
	}
	evs, err := scanEvents(rows)
	if err != nil {
		return nil, 0, err
	}
	if len(evs) == q.Limit {
		return evs, evs[len(evs)-1].Seq, nil
	}
	var n, end int64
	if err := tx.QueryRowContext(ctx, "WITH w AS ("+window+") "+sqlFeedWindowEnd, args[:3]...).Scan(&n, &end); err != nil {
		return nil, 0, err
	}
	if n < int64(q.Scan) {
		// The window reached the end of the matching rows: everything up
		// to the newest event was examined.
		if err := tx.QueryRowContext(ctx, sqlFeedBounds).Scan(new(int64), &end); err != nil {
			return nil, 0, err
		}
	}
	return evs, max(end, q.After), nil
}

func (s feedStore) Bounds(ctx context.Context) (oldest, newest int64, err error) {
	err = s.db.ro.QueryRowContext(ctx, sqlFeedBounds).Scan(&oldest, &newest)
	return oldest, newest, err
}

func (s feedStore) Trim(ctx context.Context, olderThan time.Time, keep int64) (int64, error) {
	oldest, newest, err := s.Bounds(ctx)
	if err != nil || newest == 0 {
		return 0, err
	}
	cut := int64(0) // delete seq <= cut
	if !olderThan.IsZero() {
		var young int64
		err := s.db.ro.QueryRowContext(ctx, sqlFeedFirstYoung, olderThan.UnixNano()).Scan(&young)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			cut = newest
		case err != nil:
			return 0, err
		default:
			cut = young - 1
		}
	}
	if keep > 0 {
		cut = max(cut, newest-keep)
	}
	cut = min(cut, newest-1) // never the newest: the next seq is max(seq)+1
	var deleted int64
	for from := oldest - 1; from < cut; from += trimBatch {
		res, err := s.db.rw.ExecContext(ctx, sqlFeedTrim, min(from+trimBatch, cut))
		if err != nil {
			return deleted, err
		}
		n, _ := res.RowsAffected()
		deleted += n
	}
	return deleted, nil
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func scanEvents(rows *sql.Rows) ([]stowage.Event, error) {
	defer rows.Close()
	var out []stowage.Event
	for rows.Next() {
		var e stowage.Event
		var t int64
		var kind, digest, prev string
		if err := rows.Scan(&e.Seq, &t, &kind, &e.Actor, &e.Addr, &e.Repo, &digest, &e.Tag, &e.MediaType, &e.Size,
			&e.Reason, &prev, &e.Origin, &e.Detail); err != nil {
			return nil, err
		}
		e.Time, e.Kind, e.Digest, e.Previous = time.Unix(0, t).UTC(), stowage.EventKind(kind), stowage.Digest(digest), stowage.Digest(prev)
		out = append(out, e)
	}
	return out, rows.Err()
}
