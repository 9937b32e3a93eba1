package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

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

const (
	sequenceBatch = 1000 // rows numbered per sequencer transaction
	sequenceMax   = 100  // batches per Sequence call, so one call is bounded
	trimBatch     = 5000 // rows deleted per statement
)

// Sequence numbers the committed events that have no seq yet.
//
// Why: a BIGSERIAL id is taken at insert and the transaction commits later,
// so ids commit out of order (7 may commit after 8). A reader paging by id
// that has seen 8 would never see 7. Instead, each batch runs in its own
// READ COMMITTED transaction that first locks the feed_state row (one
// sequencer at a time, across nodes) and then, in one statement whose
// snapshot is taken after the lock was granted, numbers the rows committed
// so far from next_seq upwards, in id order. Rows still uncommitted are
// invisible to it and get numbers from a later batch, above every number
// given now. So seq only grows in commit-visibility order, and a reader
// that read up to N finds nothing new below N.
func (s feedStore) Sequence(ctx context.Context) error {
	var pending bool
	if err := s.db.pool.QueryRow(ctx, sqlFeedUnsequenced).Scan(&pending); err != nil || !pending {
		return err // nothing to number: no lock taken (readers poll often)
	}
	for range sequenceMax {
		var n int64
		err := pgx.BeginTxFunc(ctx, s.db.pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
			var next, top int64
			if err := tx.QueryRow(ctx, sqlFeedLock).Scan(&next); err != nil {
				return err
			}
			// Above every seq present too: events copied in with their seq
			// (migrate-metadata) must stay below new ones.
			if err := tx.QueryRow(ctx, sqlFeedMaxSeq).Scan(&top); err != nil {
				return err
			}
			next = max(next, top+1)
			if err := tx.QueryRow(ctx, sqlFeedSequence, next, sequenceBatch).Scan(&n); err != nil {
				return err
			}
			if n == 0 {
				return nil
			}
			_, err := tx.Exec(ctx, sqlFeedSetNext, next+n)
			return err
		})
		if err != nil {
			return err
		}
		if n < sequenceBatch {
			return nil
		}
	}
	return nil
}

func (s feedStore) Read(ctx context.Context, q feed.Query) ([]stowage.Event, int64, error) {
	q = q.Normalized()
	// One snapshot: the window's end and the newest seq must describe the
	// rows the events came from.
	tx, err := s.db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, 0, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	window := sqlFeedWindow
	if q.Repo != "" {
		window = sqlFeedWindowRep
	}
	kinds := make([]string, len(q.Kinds))
	for i, k := range q.Kinds {
		kinds[i] = string(k)
	}
	args := []any{q.After, q.Scan, q.Repo, q.Actor, kinds, unixOrZero(q.Since), unixOrZero(q.Until), q.Limit}
	rows, err := tx.Query(ctx, "WITH w AS ("+window+") "+sqlFeedFilter, args...)
	if err != nil {
		return nil, 0, err
	}
	evs, err := pgx.CollectRows(rows, scanEvent)
	if err != nil {
		return nil, 0, err
	}
	if len(evs) == q.Limit {
		return evs, evs[len(evs)-1].Seq, nil
	}
	var n, end int64
	if err := tx.QueryRow(ctx, "WITH w AS ("+window+") "+sqlFeedWindowEnd, args[:3]...).Scan(&n, &end); err != nil {
		return nil, 0, err
	}
	if n < int64(q.Scan) {
		// The window reached the end: every sequenced row was examined.
		// Rows numbered later get numbers above the newest seen here.
		if err := tx.QueryRow(ctx, sqlFeedBounds).Scan(new(int64), &end); err != nil {
			return nil, 0, err
		}
	}
	return evs, max(end, q.After), nil
}

func (s feedStore) Bounds(ctx context.Context) (oldest, newest int64, err error) {
	err = s.db.pool.QueryRow(ctx, sqlFeedBounds).Scan(&oldest, &newest)
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
		err := s.db.pool.QueryRow(ctx, sqlFeedFirstYoung, olderThan.UnixNano()).Scan(&young)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
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
	cut = min(cut, newest-1) // never the newest (as on SQLite, where it numbers the next)
	var deleted int64
	for from := oldest - 1; from < cut; from += trimBatch {
		tag, err := s.db.pool.Exec(ctx, sqlFeedTrim, min(from+trimBatch, cut))
		if err != nil {
			return deleted, err
		}
		deleted += tag.RowsAffected()
	}
	return deleted, nil
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func scanEvent(row pgx.CollectableRow) (stowage.Event, error) {
	var e stowage.Event
	var t int64
	var kind, digest, prev string
	err := row.Scan(&e.Seq, &t, &kind, &e.Actor, &e.Addr, &e.Repo, &digest, &e.Tag, &e.MediaType, &e.Size,
		&e.Reason, &prev, &e.Origin, &e.Detail)
	e.Time, e.Kind, e.Digest, e.Previous = time.Unix(0, t).UTC(), stowage.EventKind(kind), stowage.Digest(digest), stowage.Digest(prev)
	return e, err
}
