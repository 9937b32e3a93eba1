package sqlite

import (
	"context"
	"fmt"
	"time"
)

// The repair queue of storage mirrors (storage/mirror.RepairQueue), in the
// table mirror_repairs. Every node of a registry works it.

// AddRepair implements mirror.RepairQueue.
func (db *DB) AddRepair(ctx context.Context, mirror, key string, present bool, due time.Time) error {
	_, err := db.rw.ExecContext(ctx, `INSERT INTO mirror_repairs (mirror, key, present, due, seq) VALUES (?, ?, ?, ?, 1)
		ON CONFLICT (mirror, key) DO UPDATE SET present = excluded.present, due = excluded.due, seq = mirror_repairs.seq + 1`,
		mirror, key, boolInt(present), due.UnixNano())
	if err != nil {
		return fmt.Errorf("queue repair of %s: %w", key, err)
	}
	return nil
}

// DueRepairs implements mirror.RepairQueue.
func (db *DB) DueRepairs(ctx context.Context, mirror string, now, retry time.Time, limit int, fn func(key string, present bool, seq int64)) error {
	type due struct {
		key     string
		present bool
		seq     int64
	}
	var out []due
	tx, err := db.rw.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT key, present, seq FROM mirror_repairs WHERE mirror = ? AND due <= ? ORDER BY due, key LIMIT ?`,
		mirror, now.UnixNano(), limit)
	if err != nil {
		return err
	}
	for rows.Next() {
		var d due
		var p int
		if err := rows.Scan(&d.key, &p, &d.seq); err != nil {
			rows.Close()
			return err
		}
		d.present = p != 0
		out = append(out, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, d := range out {
		if _, err := tx.ExecContext(ctx, `UPDATE mirror_repairs SET due = ? WHERE mirror = ? AND key = ?`, retry.UnixNano(), mirror, d.key); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	for _, d := range out {
		fn(d.key, d.present, d.seq)
	}
	return nil
}

// RepairDone implements mirror.RepairQueue.
func (db *DB) RepairDone(ctx context.Context, mirror, key string, seq int64) error {
	_, err := db.rw.ExecContext(ctx, `DELETE FROM mirror_repairs WHERE mirror = ? AND key = ? AND seq = ?`, mirror, key, seq)
	return err
}

// PendingRepairs implements mirror.RepairQueue.
func (db *DB) PendingRepairs(ctx context.Context, mirror string) (int, error) {
	var n int
	err := db.ro.QueryRowContext(ctx, `SELECT COUNT(*) FROM mirror_repairs WHERE mirror = ?`, mirror).Scan(&n)
	return n, err
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
