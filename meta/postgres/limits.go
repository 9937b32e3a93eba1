package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
)

// The token buckets of limits.Store, in the rate_buckets table. A take is
// one statement: the refill, the give-back and the take are computed from
// the row under its lock (INSERT ... ON CONFLICT DO UPDATE), so nodes never
// take the same token twice. SET expressions all see the row as it was.
const (
	qTakeTokens = `INSERT INTO rate_buckets AS b (key, tokens, took, at, full_at)
VALUES ($1, $2::int - LEAST($6::int, $2::int), LEAST($6::int, $2::int), $4::bigint, $4::bigint + $2::bigint * $3::bigint)
ON CONFLICT (key) DO UPDATE SET
	took = LEAST($6::int, floor(LEAST($2::int, b.tokens + GREATEST(0, $4::bigint - b.at)::float8 / $3::bigint + $5::int))::int),
	tokens = LEAST($2::int, b.tokens + GREATEST(0, $4::bigint - b.at)::float8 / $3::bigint + $5::int)
		- LEAST($6::int, floor(LEAST($2::int, b.tokens + GREATEST(0, $4::bigint - b.at)::float8 / $3::bigint + $5::int))::int),
	at = GREATEST(b.at, $4::bigint),
	full_at = GREATEST(b.at, $4::bigint) + $2::bigint * $3::bigint
RETURNING took, tokens`
	qReadTokens  = `SELECT tokens, at FROM rate_buckets WHERE key = $1`
	qSweepTokens = `DELETE FROM rate_buckets WHERE full_at <= $1`
)

// TakeTokens implements limits.Store.
func (db *DB) TakeTokens(ctx context.Context, key string, capacity int, every time.Duration, now time.Time, give, want int) (int, float64, error) {
	if every <= 0 {
		every = 1
	}
	if give == 0 && want == 0 {
		var tokens float64
		var at int64
		err := db.pool.QueryRow(ctx, qReadTokens, key).Scan(&tokens, &at)
		if errors.Is(err, pgx.ErrNoRows) {
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
	err := db.pool.QueryRow(ctx, qTakeTokens, key, capacity, int64(every), now.UnixNano(), max(give, 0), max(want, 0)).Scan(&took, &left)
	if err != nil {
		return 0, 0, fmt.Errorf("take from rate bucket: %w", err)
	}
	return took, left, nil
}

// SweepTokens implements limits.Store.
func (db *DB) SweepTokens(ctx context.Context, now time.Time) (int, error) {
	tag, err := db.pool.Exec(ctx, qSweepTokens, now.UnixNano())
	if err != nil {
		return 0, fmt.Errorf("sweep rate buckets: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
