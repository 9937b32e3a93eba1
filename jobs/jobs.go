// Package jobs runs background jobs (garbage collection, retention,
// scheduled purges, scrub) one node at a time under the database's job locks
// (stowage.TryJobLock), and schedules them so that of the nodes whose timers
// fire, one runs each job per interval.
package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/stowage/stowage"
)

// settingJobRun records when a scheduled job last ran (any node), per job.
const settingJobRun = "jobs.last_run."

// RunScheduled runs a scheduled job unless another node is running it now
// or one ran it less than 3/4 of interval ago, so that when every node's
// timer fires, one node runs it per interval. It reports whether it ran.
func RunScheduled(ctx context.Context, db stowage.DB, now func() time.Time, job string, interval time.Duration, fn func(context.Context) error) (bool, error) {
	ran := false
	err := stowage.ExclusiveJob(ctx, db, slog.New(slog.DiscardHandler), "schedule:"+job, false, nil, func(ctx context.Context) error {
		var last time.Time
		err := db.View(ctx, func(tx stowage.Tx) error {
			v, err := tx.Settings().GetSetting(settingJobRun + job)
			if errors.Is(err, stowage.ErrNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			return json.Unmarshal([]byte(v), &last)
		})
		if err != nil {
			return err
		}
		start := now()
		if !last.IsZero() && start.Sub(last) < interval*3/4 {
			return nil // another node ran it recently
		}
		ran = true
		// Recorded first: a failed run is retried at the next interval,
		// not at once by every other node.
		b, _ := json.Marshal(start.UTC())
		if err := db.Update(ctx, func(tx stowage.Tx) error { return tx.Settings().PutSetting(settingJobRun+job, string(b), start) }); err != nil {
			return err
		}
		return fn(ctx)
	})
	if errors.Is(err, stowage.ErrLocked) {
		return false, nil // running on another node now
	}
	return ran, err
}
