package sqlite

import (
	"context"
	"errors"
	"sync"

	"github.com/stowage/stowage"
)

// jobLocks are the names TryLock holds. A SQLite database belongs to one
// process (stowage serve locks its data directory), so locks are in-process.
type jobLocks struct {
	mu   sync.Mutex
	held map[string]bool
}

var _ stowage.Locker = (*DB)(nil)

// TryLock implements stowage.Locker within this process.
func (db *DB) TryLock(ctx context.Context, name string) (context.Context, func(), error) {
	db.locks.mu.Lock()
	defer db.locks.mu.Unlock()
	if db.locks.held[name] {
		return nil, nil, stowage.ErrLocked
	}
	if db.locks.held == nil {
		db.locks.held = map[string]bool{}
	}
	db.locks.held[name] = true
	held, cancel := context.WithCancelCause(ctx)
	var once sync.Once
	return held, func() {
		once.Do(func() {
			cancel(errors.New("lock released"))
			db.locks.mu.Lock()
			delete(db.locks.held, name)
			db.locks.mu.Unlock()
		})
	}, nil
}
