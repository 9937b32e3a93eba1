package stowage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Background jobs (garbage collection, retention, scheduled purges) change
// many rows in batches. When several `stowage serve` nodes share one
// database, each such job runs on one node at a time: it holds a job lock
// (DB's Locker: an advisory lock on PostgreSQL) while it runs. Package jobs
// runs jobs under these locks and schedules them across nodes.
//
// Lock names: "gc" (every collection, scheduled or asked for), "retention",
// "purge", and "schedule:<job>" around a scheduled run.

// processLocks backs job locks for a DB without Locker (used by one
// process): per DB value and name.
var processLocks = struct {
	mu   sync.Mutex
	held map[string]bool
}{held: map[string]bool{}}

// TryJobLock takes the job lock name on db (its Locker, shared by every
// node; in-process for a DB without one), or returns ErrLocked. See package
// jobs for running jobs under it.
func TryJobLock(ctx context.Context, db DB, name string) (context.Context, func(), error) {
	if l, ok := db.(Locker); ok {
		return l.TryLock(ctx, name)
	}
	key := fmt.Sprintf("%p/%s", db, name)
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

// jobWaitMax is the longest pause between attempts to take a busy lock.
const jobWaitMax = 2 * time.Second

// ExclusiveJob runs fn holding the job lock name. With wait it waits until the
// lock is free (calling waiting once, if not nil, when it has to); without,
// it returns ErrLocked at once. fn's context ends if the lock is lost.
func ExclusiveJob(ctx context.Context, db DB, log *slog.Logger, name string, wait bool, waiting func(), fn func(context.Context) error) error {
	pause := 50 * time.Millisecond
	for {
		held, release, err := TryJobLock(ctx, db, name)
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
			log.Info("waiting for the same job on another node to finish", "job", name)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
		pause = min(2*pause, jobWaitMax)
	}
}
