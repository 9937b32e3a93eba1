package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"
)

// The token buckets of limits.Store, in the rate_buckets table. A take is
// one statement: the refill, the give-back and the take are computed by
// SQLite from the stored row, under the database's write lock, so
// processes sharing the file never take the same token twice. SET
// expressions all see the row as it was.
const (
	qTakeTokens = `INSERT INTO rate_buckets (key, tokens, took, at, full_at)
VALUES (?1, ?2 - MIN(?6, ?2), MIN(?6, ?2), ?4, ?4 + ?2 * ?3)
ON CONFLICT (key) DO UPDATE SET
	took = MIN(?6, CAST(MIN(?2, tokens + MAX(0, ?4 - at) * 1.0 / ?3 + ?5) AS INTEGER)),
	tokens = MIN(?2, tokens + MAX(0, ?4 - at) * 1.0 / ?3 + ?5)
		- MIN(?6, CAST(MIN(?2, tokens + MAX(0, ?4 - at) * 1.0 / ?3 + ?5) AS INTEGER)),
	at = MAX(at, ?4),
	full_at = MAX(at, ?4) + ?2 * ?3
RETURNING took, tokens`
	qReadTokens  = `SELECT tokens, at FROM rate_buckets WHERE key = ?`
	qSweepTokens = `DELETE FROM rate_buckets WHERE full_at <= ?`
)

// TakeTokens implements limits.Store.
func (db *DB) TakeTokens(ctx context.Context, key string, capacity int, every time.Duration, now time.Time, give, want int) (int, float64, error) {
	if every <= 0 {
		every = 1
	}
	if give == 0 && want == 0 {
		var tokens float64
		var at int64
		err := db.ro.QueryRowContext(ctx, qReadTokens, key).Scan(&tokens, &at)
		if errors.Is(err, sql.ErrNoRows) {
			return 0, float64(capacity), nil
		}
		if err != nil {
			return 0, 0, fmt.Errorf("read rate bucket: %w", err)
		}
		level := tokens
		if el := now.UnixNano() - at; el > 0 {
			level += float64(el) / float64(every)
		}
		return 0, math.Min(level, float64(capacity)), nil
	}
	var took int
	var left float64
	err := db.rw.QueryRowContext(ctx, qTakeTokens, key, capacity, int64(every), now.UnixNano(), max(give, 0), max(want, 0)).Scan(&took, &left)
	if err != nil {
		return 0, 0, fmt.Errorf("take from rate bucket: %w", err)
	}
	return took, left, nil
}

// SweepTokens implements limits.Store.
func (db *DB) SweepTokens(ctx context.Context, now time.Time) (int, error) {
	res, err := db.rw.ExecContext(ctx, qSweepTokens, now.UnixNano())
	if err != nil {
		return 0, fmt.Errorf("sweep rate buckets: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}
