package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stowage/stowage"
)

// Job locks are session-level advisory locks, each held by a connection of
// its own, opened for the lock and outside the pool (a lock is held for as
// long as its job runs, and the feed readers — replication, webhooks —
// run for the life of the process: holding pool connections, four of them
// took a default pool of four, and every request then waited for a
// connection for good). Each held lock is one more connection to count
// against max_connections. If the node dies, or
// its connection breaks, PostgreSQL frees the lock at once, and another node
// takes over at its next attempt. Their key is a hash of the schema and the
// lock's name, so registries in different schemas of one database do not
// share locks. Session-level locks need a session of their own: behind a
// pooler (PgBouncer), use session pooling for the stowage nodes.
const (
	sqlTryJobLock = `SELECT pg_try_advisory_lock(hashtextextended('stowage:' || current_schema() || ':' || $1::text, 0))`
	sqlJobUnlock  = `SELECT pg_advisory_unlock(hashtextextended('stowage:' || current_schema() || ':' || $1::text, 0))`
)

// lockCheckInterval is how often a held lock's connection is checked: a
// broken one ends the holder's context, since the lock went with it.
var lockCheckInterval = 5 * time.Second

var _ stowage.Locker = (*DB)(nil)

// TryLock implements stowage.Locker with an advisory lock.
func (db *DB) TryLock(ctx context.Context, name string) (context.Context, func(), error) {
	c, err := pgx.ConnectConfig(ctx, db.pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, nil, fmt.Errorf("lock %q: connecting to PostgreSQL at %s: %w", name, db.host, err)
	}
	closeConn := func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer ccancel()
		c.Close(cctx)
	}
	var ok bool
	if err := c.QueryRow(ctx, sqlTryJobLock, name).Scan(&ok); err != nil {
		closeConn()
		return nil, nil, fmt.Errorf("lock %q: %w", name, err)
	}
	if !ok {
		closeConn()
		return nil, nil, stowage.ErrLocked
	}
	held, cancel := context.WithCancelCause(ctx)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // watch the session that holds the lock
		defer wg.Done()
		t := time.NewTicker(lockCheckInterval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-held.Done():
				return
			case <-t.C:
				pctx, pcancel := context.WithTimeout(context.Background(), lockCheckInterval)
				err := c.Ping(pctx)
				pcancel()
				if err != nil {
					cancel(fmt.Errorf("lock %q lost: its database connection failed: %w", name, err))
					return
				}
			}
		}
	}()
	var once sync.Once
	release := func() {
		once.Do(func() {
			close(stop)
			wg.Wait()
			cancel(errors.New("lock released"))
			uctx, ucancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer ucancel()
			// Unlocked first (quick to see in pg_locks), then closed:
			// closing the session frees every lock it holds anyway.
			c.QueryRow(uctx, sqlJobUnlock, name).Scan(new(bool))
			c.Close(uctx)
		})
	}
	return held, release, nil
}
