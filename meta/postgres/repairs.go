package postgres

import (
	"context"
	"fmt"
	"time"
)

// The repair queue of storage mirrors (storage/mirror.RepairQueue), in the
// table mirror_repairs. Every node of a registry works it: a claim takes
// rows no other node is claiming (SKIP LOCKED) and moves their due time on.

// AddRepair implements mirror.RepairQueue.
func (db *DB) AddRepair(ctx context.Context, mirror, key string, present bool, due time.Time) error {
	_, err := db.pool.Exec(ctx, `INSERT INTO mirror_repairs (mirror, key, present, due, seq) VALUES ($1, $2, $3, $4, 1)
		ON CONFLICT (mirror, key) DO UPDATE SET present = excluded.present, due = excluded.due, seq = mirror_repairs.seq + 1`,
		mirror, key, boolInt(present), due.UnixNano())
	if err != nil {
		return fmt.Errorf("queue repair of %s: %w", key, err)
	}
	return nil
}

// DueRepairs implements mirror.RepairQueue.
func (db *DB) DueRepairs(ctx context.Context, mirror string, now, retry time.Time, limit int, fn func(key string, present bool, seq int64)) error {
	rows, err := db.pool.Query(ctx, `UPDATE mirror_repairs r SET due = $3
		FROM (SELECT key FROM mirror_repairs WHERE mirror = $1 AND due <= $2 ORDER BY due, key LIMIT $4 FOR UPDATE SKIP LOCKED) d
		WHERE r.mirror = $1 AND r.key = d.key
		RETURNING r.key, r.present, r.seq`, mirror, now.UnixNano(), retry.UnixNano(), limit)
	if err != nil {
		return err
	}
	type due struct {
		key     string
		present int
		seq     int64
	}
	var out []due
	for rows.Next() {
		var d due
		if err := rows.Scan(&d.key, &d.present, &d.seq); err != nil {
			rows.Close()
			return err
		}
		out = append(out, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, d := range out {
		fn(d.key, d.present != 0, d.seq)
	}
	return nil
}

// RepairDone implements mirror.RepairQueue.
func (db *DB) RepairDone(ctx context.Context, mirror, key string, seq int64) error {
	_, err := db.pool.Exec(ctx, `DELETE FROM mirror_repairs WHERE mirror = $1 AND key = $2 AND seq = $3`, mirror, key, seq)
	return err
}

// PendingRepairs implements mirror.RepairQueue.
func (db *DB) PendingRepairs(ctx context.Context, mirror string) (int, error) {
	var n int
	err := db.pool.QueryRow(ctx, `SELECT COUNT(*) FROM mirror_repairs WHERE mirror = $1`, mirror).Scan(&n)
	return n, err
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
