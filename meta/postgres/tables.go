package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/stowage/stowage/meta/tables"
)

// Whole-database access for stowage migrate-metadata: bulk loading (COPY)
// into an empty database in one transaction, and reading tables back to
// verify them.

func knownTable(t tables.Table) error {
	if _, ok := tables.Lookup(t.Name); !ok {
		return fmt.Errorf("unknown table %q", t.Name)
	}
	return nil
}

// ReadTable calls fn with every row of t (its columns in t.Columns order;
// integers as int64, text as string, bytea as []byte, NULL as nil), in key
// order, from one snapshot.
func (db *DB) ReadTable(ctx context.Context, t tables.Table, fn func(row []any) error) error {
	if err := knownTable(t); err != nil {
		return err
	}
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	q := fmt.Sprintf("SELECT %s FROM %s ORDER BY %s", strings.Join(t.Columns, ", "), t.Name, strings.Join(t.Key, ", "))
	rows, err := tx.Query(ctx, q)
	if err != nil {
		return fmt.Errorf("read %s: %w", t.Name, err)
	}
	defer rows.Close()
	for rows.Next() {
		row, err := rows.Values()
		if err != nil {
			return fmt.Errorf("read %s: %w", t.Name, err)
		}
		for i, v := range row {
			switch x := v.(type) {
			case int32:
				row[i] = int64(x)
			case int16:
				row[i] = int64(x)
			}
		}
		if err := fn(row); err != nil {
			return err
		}
	}
	return rows.Err()
}

// CountRows counts the rows of t.
func (db *DB) CountRows(ctx context.Context, t tables.Table) (int64, error) {
	if err := knownTable(t); err != nil {
		return 0, err
	}
	var n int64
	err := db.pool.QueryRow(ctx, "SELECT COUNT(*) FROM "+t.Name).Scan(&n)
	return n, err
}

// Loader copies rows into the database inside one transaction (Load).
type Loader struct {
	tx  pgx.Tx
	ctx context.Context
}

// Copy bulk-loads rows into t with COPY: next returns each row (values in
// t.Columns order), and ok false after the last. It returns the rows copied.
func (l *Loader) Copy(t tables.Table, next func() (row []any, ok bool, err error)) (int64, error) {
	if err := knownTable(t); err != nil {
		return 0, err
	}
	var rowErr error
	src := pgx.CopyFromFunc(func() ([]any, error) {
		row, ok, err := next()
		if err != nil {
			rowErr = err
			return nil, err
		}
		if !ok {
			return nil, nil
		}
		return row, nil
	})
	n, err := l.tx.CopyFrom(l.ctx, pgx.Identifier{t.Name}, t.Columns, src)
	if rowErr != nil {
		return n, rowErr
	}
	if err != nil {
		return n, fmt.Errorf("copy into %s: %w", t.Name, err)
	}
	return n, nil
}

// sqlResetDerived empties what the triggers keep from the tables
// (tables.Derived that are sums of them) to their state on an empty
// database: no per-repository or per-digest rows, every shard row at
// zero.
const sqlResetDerived = `TRUNCATE usage_digests, repository_usage, digest_owners, gc_queue;
	UPDATE held_bytes SET bytes = 0, blobs = 0, live_bytes = 0;
	UPDATE usage_totals SET repositories = 0, referenced_bytes = 0, manifests = 0, tags = 0, untagged = 0`

// ErrNotEmpty is Load's answer when the database already holds metadata.
var ErrNotEmpty = errors.New("the PostgreSQL database already holds registry metadata")

// Load runs fn in one transaction that it commits if fn returns nil, so a
// failed copy leaves the database as it was. Unless replace is set, the
// database must hold no metadata (ErrNotEmpty, naming a table that has
// rows); with replace, every table is emptied first. After fn, identity
// sequences move past the copied IDs.
func (db *DB) Load(ctx context.Context, replace bool, fn func(*Loader) error) error {
	return pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		if replace {
			names := make([]string, len(tables.All))
			for i, t := range tables.All {
				names[i] = t.Name
			}
			if _, err := tx.Exec(ctx, "TRUNCATE "+strings.Join(names, ", ")+" RESTART IDENTITY"); err != nil {
				return fmt.Errorf("empty the target database: %w", err)
			}
			// TRUNCATE fires no row triggers: the sums they keep would
			// still count the old rows, and the copy's triggers add the new
			// ones on top. Start them from zero, as on an empty database.
			if _, err := tx.Exec(ctx, sqlResetDerived); err != nil {
				return fmt.Errorf("empty the target database's kept sums: %w", err)
			}
		} else {
			for _, t := range tables.All {
				var any bool
				if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM "+t.Name+")").Scan(&any); err != nil {
					return err
				}
				if any {
					return fmt.Errorf("%w (table %s has rows)", ErrNotEmpty, t.Name)
				}
			}
		}
		if err := fn(&Loader{tx: tx, ctx: ctx}); err != nil {
			return err
		}
		for _, t := range []string{"recycle_bin", "events"} { // events: new appends must not reuse a copied id
			if _, err := tx.Exec(ctx, `SELECT setval(pg_get_serial_sequence('`+t+`', 'id'),
				COALESCE((SELECT MAX(id) FROM `+t+`), 1), (SELECT MAX(id) FROM `+t+`) IS NOT NULL)`); err != nil {
				return err
			}
		}
		return nil
	})
}

// SchemaVersion is the schema version the database is at, and the newest
// this binary knows.
func (db *DB) SchemaVersion(ctx context.Context) (current, known int, err error) {
	names, err := migrationFiles()
	if err != nil {
		return 0, 0, err
	}
	var exists bool
	if err := db.pool.QueryRow(ctx, sqlMigrationsExist).Scan(&exists); err != nil {
		return 0, 0, err
	}
	if exists {
		if err := db.pool.QueryRow(ctx, sqlSchemaVersion).Scan(&current); err != nil {
			return 0, 0, err
		}
	}
	return current, len(names), nil
}
