// Package sqlite implements stowage.DB on an embedded SQLite database through
// modernc.org/sqlite, a pure-Go driver (no cgo).
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stowage/stowage"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

//go:embed migrations/*.sql
var migrations embed.FS

// DB is a stowage.DB on SQLite in WAL mode. Writes go through one connection
// (SQLite has one writer anyway, and this avoids lock upgrades and busy
// retries inside the process); reads use a pool and never block the writer.
type DB struct {
	rw *sql.DB
	ro *sql.DB

	// stmts caches prepared statements per pool and query text: parsing SQL
	// was a quarter of the cost of a manifest GET. database/sql prepares each
	// statement once per connection and reuses it inside transactions.
	mu    sync.Mutex
	stmts map[stmtKey]*sql.Stmt

	locks jobLocks // TryLock
}

type stmtKey struct {
	pool  *sql.DB
	query string
}

// prepareAll prepares every query on both pools. It runs at Open, before any
// transaction holds a connection (the writer pool has only one).
func (db *DB) prepareAll(ctx context.Context) error {
	db.stmts = map[stmtKey]*sql.Stmt{}
	for _, pool := range []*sql.DB{db.rw, db.ro} {
		for _, q := range slices.Concat(allQueries, deleteQueries) {
			k := stmtKey{pool, q}
			if _, ok := db.stmts[k]; ok {
				continue
			}
			st, err := pool.PrepareContext(ctx, q)
			if err != nil {
				return fmt.Errorf("prepare %q: %w", q, err)
			}
			db.stmts[k] = st
		}
	}
	return nil
}

// stmt returns the prepared statement for q on pool, or nil.
func (db *DB) stmt(pool *sql.DB, q string) *sql.Stmt {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.stmts[stmtKey{pool, q}]
}

// Open opens (creating if needed) the database at path and applies pending
// migrations. path ":memory:" gives a private in-memory database, for tests.
func Open(ctx context.Context, path string) (*DB, error) {
	if path == ":memory:" {
		// One connection, so every statement sees the same in-memory database.
		rw, err := sql.Open("sqlite", "file::memory:?_pragma=foreign_keys(0)")
		if err != nil {
			return nil, err
		}
		rw.SetMaxOpenConns(1)
		db := &DB{rw: rw, ro: rw}
		if err := db.migrate(ctx); err != nil {
			return nil, err
		}
		return db, db.prepareAll(ctx)
	}
	if err := privateFiles(path); err != nil {
		return nil, err
	}
	// synchronous=FULL: a commit returns only after the write-ahead log was
	// fsynced, so an acknowledged push, tag move or GC mark survives a power
	// loss. (NORMAL syncs only at checkpoints: a power loss could roll back a
	// committed 'deleting' mark whose object was already removed, or a push
	// the client was told succeeded.) docs/architecture.md, "Durability".
	q := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", "busy_timeout(10000)", "synchronous(FULL)", "cache_size(-32000)"} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	rw, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open metadata database %s: %w", path, err)
	}
	rw.SetMaxOpenConns(1)
	rw.SetConnMaxIdleTime(0)
	rq := url.Values{}
	for _, p := range []string{"busy_timeout(10000)", "query_only(1)", "cache_size(-16000)"} {
		rq.Add("_pragma", p)
	}
	ro, err := sql.Open("sqlite", "file:"+path+"?"+rq.Encode())
	if err != nil {
		rw.Close()
		return nil, fmt.Errorf("open metadata database %s: %w", path, err)
	}
	n := max(4, 2*runtime.GOMAXPROCS(0))
	ro.SetMaxOpenConns(n)
	ro.SetMaxIdleConns(n)
	db := &DB{rw: rw, ro: ro}
	if err := db.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("metadata database %s: %w", path, err)
	}
	if err := db.prepareAll(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("metadata database %s: %w", path, err)
	}
	return db, nil
}

// Close closes the database.
func (db *DB) Close() error {
	db.mu.Lock()
	for _, st := range db.stmts {
		st.Close()
	}
	db.stmts = nil
	db.mu.Unlock()
	err := db.rw.Close()
	if db.ro != db.rw {
		err = errors.Join(err, db.ro.Close())
	}
	return err
}

// migrate applies the embedded migrations that are newer than the database,
// in order, one transaction each. A database newer than this binary is refused.
func (db *DB) migrate(ctx context.Context) error {
	if _, err := db.rw.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	var current int
	if err := db.rw.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return err
	}
	names, err := migrationNames()
	if err != nil {
		return err
	}
	vacuum := false
	if current > len(names) {
		return fmt.Errorf("database schema version %d is newer than this stowage binary understands (%d): upgrade stowage", current, len(names))
	}
	for i, name := range names {
		version := i + 1
		if version <= current {
			continue
		}
		body, err := migrations.ReadFile(name)
		if err != nil {
			return err
		}
		tx, err := db.rw.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, string(body)); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %s: %w", name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied) VALUES (?, ?)`, version, time.Now().UnixNano()); err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migration %s: %w", name, err)
		}
		vacuum = vacuum || vacuumAfter[strings.TrimPrefix(name, "migrations/")]
	}
	if vacuum {
		// Rewrite the file and empty the WAL, so values a migration removed
		// are gone from the disk, not only from the tables.
		if _, err := db.rw.ExecContext(ctx, `VACUUM`); err != nil {
			return fmt.Errorf("vacuum after migrations: %w", err)
		}
		if _, err := db.rw.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
			return fmt.Errorf("checkpoint after migrations: %w", err)
		}
	}
	return nil
}

// vacuumAfter names the migrations that remove data which must not linger
// in free pages (image content that encryption at rest covers).
var vacuumAfter = map[string]bool{"0012_image_content_out_of_metadata.sql": true}

// Compact rewrites the database file and empties the write-ahead log, so
// that values overwritten or deleted earlier are gone from the disk, not
// only from the tables (SQLite leaves them in free space). It takes the
// write lock for as long as the file takes to copy.
func (db *DB) Compact(ctx context.Context) error {
	if _, err := db.rw.ExecContext(ctx, `VACUUM`); err != nil {
		return fmt.Errorf("vacuum: %w", err)
	}
	var busy, logFrames, done int
	if err := db.rw.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &logFrames, &done); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if busy != 0 {
		return errors.New("checkpoint: readers kept the write-ahead log from being emptied; try again")
	}
	return nil
}

// View runs fn in a read transaction on the reader pool.
func (db *DB) View(ctx context.Context, fn func(stowage.Tx) error) error {
	tx, err := db.ro.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin read: %w", err)
	}
	defer tx.Rollback()
	return fn(&Tx{db: db, pool: db.ro, tx: tx, ctx: ctx})
}

// Update runs fn in a write transaction, retrying when the database is busy
// (another process holding the write lock beyond busy_timeout).
func (db *DB) Update(ctx context.Context, fn func(stowage.Tx) error) error {
	const attempts = 5
	var err error
	for i := 0; i < attempts; i++ {
		if err = db.update(ctx, fn); err == nil || !isBusy(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(i+1) * 20 * time.Millisecond):
		}
	}
	return err
}

func (db *DB) update(ctx context.Context, fn func(stowage.Tx) error) error {
	tx, err := db.rw.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin write: %w", err)
	}
	if err := fn(&Tx{db: db, pool: db.rw, tx: tx, ctx: ctx}); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

func isBusy(err error) bool {
	s := err.Error()
	return strings.Contains(s, "SQLITE_BUSY") || strings.Contains(s, "database is locked")
}

// migrationNames lists the embedded migrations in order; file N's name
// starts with N (0001_...), with no gaps. The version recorded for a
// migration is its position, so a gap (a branch's 0018 merged before the
// 0015 of another) would record 0018 as 15 and later skip the real 0015:
// refused here, at every open, so it cannot reach a database.
func migrationNames() ([]string, error) {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	for i, name := range names {
		base := strings.TrimPrefix(name, "migrations/")
		n, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil || n != i+1 {
			return nil, fmt.Errorf("migration %s is out of sequence (want number %d)", base, i+1)
		}
	}
	return names, nil
}
