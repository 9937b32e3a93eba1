package stowage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Background jobs (garbage collection, retention, scheduled purges) change
// many rows in batches. When several `stowage serve` nodes share one
// database, each such job runs on one node at a time: it holds a job lock
// (DB's Locker: an advisory lock on PostgreSQL) while it runs. Scheduled
// runs also record when they last ran, so that of the nodes whose timers
// fire, one runs the job per interval and the others skip it.
//
// Lock names: "gc" (every collection, scheduled or asked for), "retention",
// "purge", and "schedule:<job>" around a scheduled run.

// jobWaitMax is the longest pause between attempts to take a busy lock.
const jobWaitMax = 2 * time.Second

// processLocks backs job locks for a DB without Locker (used by one
// process): per DB value and name.
var processLocks = struct {
	mu   sync.Mutex
	held map[string]bool
}{held: map[string]bool{}}

// tryJobLock takes the job lock name, or returns ErrLocked.
func (r *Registry) tryJobLock(ctx context.Context, name string) (context.Context, func(), error) {
	if l, ok := r.db.(Locker); ok {
		return l.TryLock(ctx, name)
	}
	key := fmt.Sprintf("%p/%s", r.db, name)
	processLocks.mu.Lock()
	defer processLocks.mu.Unlock()
	if processLocks.held[key] {
		return nil, nil, ErrLocked
	}
	processLocks.held[key] = true
	held, cancel := context.WithCancel(ctx)
	var once sync.Once
	return held, func() {
		once.Do(func() {
			cancel()
			processLocks.mu.Lock()
			delete(processLocks.held, key)
			processLocks.mu.Unlock()
		})
	}, nil
}

// exclusive runs fn holding the job lock name. With wait it waits until the
// lock is free (calling waiting once, if not nil, when it has to); without,
// it returns ErrLocked at once. fn's context ends if the lock is lost.
func (r *Registry) exclusive(ctx context.Context, name string, wait bool, waiting func(), fn func(context.Context) error) error {
	pause := 50 * time.Millisecond
	for {
		held, release, err := r.tryJobLock(ctx, name)
		if err == nil {
			defer release()
			err = fn(held)
			if err != nil && ctx.Err() == nil && held.Err() != nil {
				return fmt.Errorf("job %s stopped: %w: %w", name, context.Cause(held), err)
			}
			return err
		}
		if !errors.Is(err, ErrLocked) || !wait {
			return err
		}
		if waiting != nil {
			waiting()
			waiting = nil
			r.log.Info("waiting for the same job on another node to finish", "job", name)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
		pause = min(2*pause, jobWaitMax)
	}
}

// settingJobRun records when a scheduled job last ran (any node), per job.
const settingJobRun = "jobs.last_run."

// RunScheduled runs a scheduled job unless another node is running it now
// or one ran it less than 3/4 of interval ago, so that when every node's
// timer fires, one node runs it per interval. It reports whether it ran.
func (r *Registry) RunScheduled(ctx context.Context, job string, interval time.Duration, fn func(context.Context) error) (bool, error) {
	ran := false
	err := r.exclusive(ctx, "schedule:"+job, false, nil, func(ctx context.Context) error {
		var last time.Time
		err := r.db.View(ctx, func(tx Tx) error {
			v, err := tx.Settings().GetSetting(settingJobRun + job)
			if errors.Is(err, ErrNotFound) {
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
		start := r.now()
		if !last.IsZero() && start.Sub(last) < interval*3/4 {
			return nil // another node ran it recently
		}
		ran = true
		// Recorded first: a failed run is retried at the next interval,
		// not at once by every other node.
		b, _ := json.Marshal(start.UTC())
		if err := r.db.Update(ctx, func(tx Tx) error { return tx.Settings().PutSetting(settingJobRun+job, string(b), start) }); err != nil {
			return err
		}
		return fn(ctx)
	})
	if errors.Is(err, ErrLocked) {
		return false, nil // running on another node now
	}
	return ran, err
}
