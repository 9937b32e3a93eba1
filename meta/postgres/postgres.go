// Package postgres implements stowage.DB on PostgreSQL through pgx, for
// registries that outgrow one machine: several stateless `stowage serve`
// nodes share one database and one object store.
//
// # Isolation
//
// Update runs at SERIALIZABLE, and retries serialization failures (SQLSTATE
// 40001), deadlocks (40P01) and locks not waited for (55P03, migration
// 0017). The registry's invariants are read-then-write
// decisions spread over several rows, which only serializable isolation
// keeps once transactions run side by side (SQLite has one writer, so every
// Update there is serial):
//
//   - The GC fence. The collector's batch reads "no manifest references d"
//     and writes blobs.state = 'deleting'; a manifest PUT reads "d is live in
//     the repository" (checkRefs) and writes a manifest_references row. Each
//     writes only what the other read, so under READ COMMITTED or REPEATABLE
//     READ (snapshot isolation) both commit: a write skew that leaves a
//     manifest referencing a deleted blob. SERIALIZABLE (SSI) aborts one.
//   - Read-modify-write of counters and lists (tag immutability, quotas,
//     "the n-th tag"), where two transactions insert different rows after
//     reading the same range: no row conflict, again a write skew.
//   - tags_version, bumped by a trigger in the same transaction, stays a
//     true version: two tag writes of one repository serialize on its row.
//
// View runs at REPEATABLE READ, READ ONLY: one snapshot for all of fn's
// reads, like a SQLite read transaction, that never blocks writers and never
// fails with a serialization error (a SERIALIZABLE READ ONLY transaction can,
// and View does not retry; DEFERRABLE would wait instead). Decisions are
// taken in Update, which re-reads what it relies on, as Registry does.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stowage/stowage"
)

//go:embed migrations/*.sql
var migrations embed.FS

// migrateLock is the pg_advisory_lock key held while migrating, so that
// nodes starting together migrate one after the other ("stowmigr").
const migrateLock int64 = 0x73746f776d696772

// Update's retry policy: attempts in all, and the backoff between them
// (exponential with jitter, capped). Under SSI a retried transaction does
// not fail again because of the transaction that won, so a few attempts
// suffice even with many concurrent writers of the same rows.
const (
	updateAttempts = 30
	backoffMin     = 2 * time.Millisecond
	backoffMax     = 250 * time.Millisecond
	// escalateAfter: a transaction that lost this many times in a row
	// (typically a long one, such as deleting a repository of hundreds of
	// manifests, while small pushes keep committing) runs its next attempts
	// alone among writers (sqlWritersExclusive): readers go on, other
	// writers wait for it, so it cannot keep losing to them. Found by an
	// outside review: two of three such deletes failed after 30 attempts
	// under 8 pushing clients and a feed reader.
	escalateAfter = 6
)

// Writers and the escalated writer meet on one advisory lock, the first
// lock any writing transaction takes: every Update holds it shared for its
// transaction (taken with BEGIN, in the same round trip), and an escalated
// one holds it exclusively, taken on its connection before BEGIN, so its
// snapshot comes after every writer before it committed. Since it is taken
// before any row or table lock, the escalated writer can never be part of a
// deadlock. (It used to LOCK TABLE the eleven image tables one after
// another, EXCLUSIVE: a writer holding a row in the seventh table, and
// wanting one in the first, deadlocked with it, and PostgreSQL detects a
// deadlock only after deadlock_timeout, 1 s by default: 20 such waits in a
// 20 s multi-node GC stress run, and pushes that outlived a 2 s lease.)
const (
	writersKey          = `hashtextextended('stowage:writers:' || current_schema(), 0)`
	sqlBeginWrite       = `BEGIN ISOLATION LEVEL SERIALIZABLE READ WRITE; SELECT pg_advisory_xact_lock_shared(` + writersKey + `)`
	sqlWritersExclusive = `SELECT pg_advisory_lock(` + writersKey + `)`
	sqlWritersRelease   = `SELECT pg_advisory_unlock(` + writersKey + `)`
)

// Options configures the connection pool. Zero values keep pgxpool's
// defaults or what the connection string says (pool_max_conns=...).
type Options struct {
	// MaxConns is the most connections this process opens (pgxpool's default:
	// the larger of 4 and the number of CPUs). Every node has its own pool:
	// keep nodes × MaxConns below the server's max_connections.
	MaxConns int32
	// MinConns are kept open even when idle.
	MinConns int32
	// MaxConnLifetime and MaxConnIdleTime recycle connections (defaults 1h
	// and 30m), e.g. to rebalance across a proxy.
	MaxConnLifetime time.Duration
	MaxConnIdleTime time.Duration
	// ConnectTimeout bounds each connection attempt when the connection
	// string has no connect_timeout. Default 10s.
	ConnectTimeout time.Duration
	// NoMigrate leaves the schema alone: Open then fails unless the database
	// is exactly at this binary's version (see DB.Migrate).
	NoMigrate bool
	// AnyVersion, with NoMigrate, opens a database at any schema version
	// (for stowage migrate, which reports and then applies them).
	AnyVersion bool
}

// DB is a stowage.DB on a PostgreSQL connection pool.
type DB struct {
	pool *pgxpool.Pool
	host string // where, for messages
	// Update's retries since Open, by cause, and its attempts run alone
	// (Retries; /metrics).
	serialization, deadlocks, alone atomic.Int64
}

var _ stowage.DB = (*DB)(nil)

// Open connects to the PostgreSQL database that connString names (a URL,
// postgres://user:password@host:port/dbname?sslmode=..., or key=value
// pairs, as libpq takes), checks that it is reachable, and applies pending
// migrations (unless opts.NoMigrate). Its errors say what to fix.
func Open(ctx context.Context, connString string, opts Options) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(connString)
	if err != nil {
		// pgconn's message names the problem; the string itself may hold a password.
		return nil, fmt.Errorf("invalid PostgreSQL connection string (want postgres://user:password@host:port/dbname): %w", err)
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	if opts.MinConns > 0 {
		cfg.MinConns = opts.MinConns
	}
	if cfg.MinConns > cfg.MaxConns {
		cfg.MinConns = cfg.MaxConns
	}
	if opts.MaxConnLifetime > 0 {
		cfg.MaxConnLifetime = opts.MaxConnLifetime
	}
	if opts.MaxConnIdleTime > 0 {
		cfg.MaxConnIdleTime = opts.MaxConnIdleTime
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 10 * time.Second
		if opts.ConnectTimeout > 0 {
			cfg.ConnConfig.ConnectTimeout = opts.ConnectTimeout
		}
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL connection pool: %w", err)
	}
	db := &DB{pool: pool, host: where(cfg.ConnConfig)}
	// pgxpool connects lazily: connect now, so a wrong address, password or
	// database name fails at startup with a message, not at the first push.
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, connectError(cfg.ConnConfig, err)
	}
	switch {
	case opts.NoMigrate && opts.AnyVersion:
		err = nil
	case opts.NoMigrate:
		err = db.checkVersion(ctx)
	default:
		err = db.Migrate(ctx)
	}
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("metadata database %s: %w", db.host, err)
	}
	return db, nil
}

// Close closes every connection of the pool.
func (db *DB) Close() error {
	db.pool.Close()
	return nil
}

// where names the server and database for messages (never the password).
func where(c *pgx.ConnConfig) string {
	host := c.Host
	if strings.HasPrefix(host, "/") {
		host = "unix socket " + host
	} else {
		host = net.JoinHostPort(host, strconv.Itoa(int(c.Port)))
	}
	return fmt.Sprintf("%s database %q (user %q)", host, c.Database, c.User)
}

// connectError explains a failed connection: what went wrong and what to do.
func connectError(c *pgx.ConnConfig, err error) error {
	host := c.Host
	if !strings.HasPrefix(host, "/") {
		host = net.JoinHostPort(host, strconv.Itoa(int(c.Port)))
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "28P01": // invalid_password
			return fmt.Errorf("PostgreSQL at %s refused user %q: password authentication failed: fix the user and password in the database connection string: %w", host, c.User, err)
		case "28000": // invalid_authorization_specification: no pg_hba.conf entry, role missing, ...
			return fmt.Errorf("PostgreSQL at %s does not let user %q connect to database %q (%s): check that the role exists and that pg_hba.conf on the server allows it from this host: %w", host, c.User, c.Database, pe.Message, err)
		case "3D000": // invalid_catalog_name
			return fmt.Errorf("database %q does not exist on the PostgreSQL server at %s: create it (createdb -O %s %s, or CREATE DATABASE) or fix the database name in the connection string: %w", c.Database, host, c.User, c.Database, err)
		case "53300": // too_many_connections
			return fmt.Errorf("PostgreSQL at %s has no connection left (max_connections): lower the pool size of the stowage nodes or raise max_connections: %w", host, err)
		case "57P03": // cannot_connect_now
			return fmt.Errorf("PostgreSQL at %s is not accepting connections yet (starting up, shutting down or in recovery): retry when it is up: %w", host, err)
		}
		return fmt.Errorf("PostgreSQL at %s refused the connection: %w", host, err)
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return fmt.Errorf("cannot resolve the PostgreSQL host %q: fix the host in the database connection string: %w", c.Host, err)
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("cannot reach PostgreSQL at %s: check that the server is running and listening there (listen_addresses, port, firewall) and the host and port in the database connection string: %w", host, err)
	}
	return fmt.Errorf("cannot connect to PostgreSQL at %s: %w", host, err)
}

// migrationFiles lists the embedded migrations in order; file N's name
// starts with N (0001_...), with no gaps.
func migrationFiles() ([]string, error) {
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

// Migrate applies the embedded migrations the database does not have yet,
// each in its own transaction, and refuses a database whose schema is newer
// than this binary. It holds an advisory lock meanwhile, so nodes that start
// together migrate once: the others wait, then find nothing to do.
func (db *DB) Migrate(ctx context.Context) (err error) {
	names, err := migrationFiles()
	if err != nil {
		return err
	}
	c, err := db.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	if _, err := c.Exec(ctx, sqlAdvisoryLock, migrateLock); err != nil {
		c.Release()
		return fmt.Errorf("wait for the migration lock: %w", err)
	}
	defer func() {
		// A session lock: if unlocking fails, closing the session frees it.
		if _, uerr := c.Exec(context.WithoutCancel(ctx), sqlAdvisoryUnlock, migrateLock); uerr != nil {
			c.Hijack().Close(context.WithoutCancel(ctx))
			return
		}
		c.Release()
	}()
	if _, err := c.Exec(ctx, sqlCreateMigrations); err != nil {
		return schemaError("create schema_migrations", err)
	}
	var current int
	if err := c.QueryRow(ctx, sqlSchemaVersion).Scan(&current); err != nil {
		return err
	}
	if current > len(names) {
		return newerError(current, len(names))
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
		err = pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, string(body)); err != nil { // no arguments: one simple-protocol batch
				return err
			}
			_, err := tx.Exec(ctx, sqlRecordMigration, version, time.Now().UnixNano())
			return err
		})
		if err != nil {
			return schemaError("migration "+strings.TrimPrefix(name, "migrations/"), err)
		}
	}
	return nil
}

func newerError(current, known int) error {
	return fmt.Errorf("database schema version %d is newer than this stowage binary understands (%d): upgrade stowage", current, known)
}

// schemaError explains the usual reason a migration fails on a fresh
// database: since PostgreSQL 15 only the database owner may create tables
// in schema public.
func schemaError(what string, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42501" { // insufficient_privilege
		return fmt.Errorf("%s: the database user may not create tables here (%s): make it the database's owner (ALTER DATABASE ... OWNER TO ...) or GRANT CREATE ON SCHEMA public TO it: %w", what, pe.Message, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// checkVersion fails unless the schema is exactly this binary's.
func (db *DB) checkVersion(ctx context.Context) error {
	names, err := migrationFiles()
	if err != nil {
		return err
	}
	var exists bool
	if err := db.pool.QueryRow(ctx, sqlMigrationsExist).Scan(&exists); err != nil {
		return err
	}
	current := 0
	if exists {
		if err := db.pool.QueryRow(ctx, sqlSchemaVersion).Scan(&current); err != nil {
			return err
		}
	}
	switch {
	case current > len(names):
		return newerError(current, len(names))
	case current < len(names):
		return fmt.Errorf("database schema version %d is older than this stowage binary's (%d): run stowage migrate", current, len(names))
	}
	return nil
}

// View runs fn in a read-only REPEATABLE READ transaction: one snapshot.
func (db *DB) View(ctx context.Context, fn func(stowage.Tx) error) error {
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("begin read: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	return fn(&Tx{tx: tx, ctx: ctx})
}

// Update runs fn in a SERIALIZABLE transaction and commits it if fn returns
// nil, retrying the whole of fn when PostgreSQL reports a serialization
// failure or a deadlock (see the package comment).
func (db *DB) Update(ctx context.Context, fn func(stowage.Tx) error) error {
	var err error
	for attempt := 0; attempt < updateAttempts; attempt++ {
		if attempt >= escalateAfter {
			db.alone.Add(1)
		}
		if err = db.update(ctx, fn, attempt >= escalateAfter); err == nil || !retryable(err) {
			return err
		}
		if deadlock(err) {
			db.deadlocks.Add(1)
		} else {
			db.serialization.Add(1)
		}
		backoff := min(backoffMax, backoffMin<<attempt)
		backoff = backoff/2 + rand.N(backoff/2+1) // jitter: conflicting writers spread out
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
	}
	return fmt.Errorf("transaction still conflicting after %d attempts: %w", updateAttempts, err)
}

func (db *DB) update(ctx context.Context, fn func(stowage.Tx) error, exclusive bool) error {
	if exclusive {
		return db.updateAlone(ctx, fn)
	}
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{BeginQuery: sqlBeginWrite})
	if err != nil {
		return fmt.Errorf("begin write: %w", err)
	}
	return db.run(ctx, tx, fn)
}

// updateAlone runs fn as the only writer (see sqlWritersExclusive).
func (db *DB) updateAlone(ctx context.Context, fn func(stowage.Tx) error) error {
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("begin write: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, sqlWritersExclusive); err != nil {
		return fmt.Errorf("begin write alone: %w", err)
	}
	defer func() {
		// A session lock outlives a failed unlock only with its connection:
		// close it then, so the other writers are not locked out.
		if _, err := conn.Exec(context.WithoutCancel(ctx), sqlWritersRelease); err != nil {
			conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}()
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.Serializable, AccessMode: pgx.ReadWrite})
	if err != nil {
		return fmt.Errorf("begin write: %w", err)
	}
	return db.run(ctx, tx, fn)
}

// run runs fn in tx and commits it if fn returns nil.
func (db *DB) run(ctx context.Context, tx pgx.Tx, fn func(stowage.Tx) error) error {
	defer tx.Rollback(context.WithoutCancel(ctx)) // after Commit: a no-op
	t := &Tx{tx: tx, ctx: ctx}
	err := fn(t)
	if t.err != nil && (err == nil || !errors.Is(err, t.err) && retryable(t.err)) {
		// A statement failed, so the transaction is aborted, and fn did not
		// return that failure (it swallowed or replaced it): report it, so a
		// serialization failure is retried and nothing claims to be written.
		return fmt.Errorf("transaction aborted by an earlier statement: %w", t.err)
	}
	if err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// retryable reports a serialization failure, a deadlock, or a lock not
// waited for (55P03: the usage triggers do not wait for a digest's row
// that another transaction holds, migration 0017): running the transaction
// again may succeed.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01" || pe.Code == "55P03")
}

func deadlock(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "40P01"
}

// Retries reports, since Open, the transactions Update ran again after a
// serialization failure (or a lock not waited for, counted with them) and
// after a deadlock, and the attempts it ran
// alone among writers (escalateAfter). Deadlocks should stay at zero: the
// schema's writers lock rows in one order (migration 0015's header), and
// each costs a writer deadlock_timeout (1 s by default) of waiting.
func (db *DB) Retries() (serialization, deadlocks, alone int64) {
	return db.serialization.Load(), db.deadlocks.Load(), db.alone.Load()
}

// Where names the server and database (never the password), for messages.
func (db *DB) Where() string { return db.host }
