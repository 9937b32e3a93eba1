package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/stowage/stowage/meta/tables"
)

// ReadTable calls fn with every row of t (its columns in t.Columns order,
// as int64, string, []byte or nil), in key order, from one read
// transaction. For whole-database tools (stowage migrate-metadata).
func (db *DB) ReadTable(ctx context.Context, t tables.Table, fn func(row []any) error) error {
	if _, ok := tables.Lookup(t.Name); !ok {
		return fmt.Errorf("unknown table %q", t.Name)
	}
	tx, err := db.ro.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	q := fmt.Sprintf("SELECT %s FROM %s ORDER BY %s", strings.Join(t.Columns, ", "), t.Name, strings.Join(t.Key, ", "))
	rows, err := tx.QueryContext(ctx, q)
	if err != nil {
		return fmt.Errorf("read %s: %w", t.Name, err)
	}
	defer rows.Close()
	for rows.Next() {
		row := make([]any, len(t.Columns))
		ptrs := make([]any, len(row))
		for i := range row {
			ptrs[i] = &row[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return fmt.Errorf("read %s: %w", t.Name, err)
		}
		if err := fn(row); err != nil {
			return err
		}
	}
	return rows.Err()
}

// CountRows counts the rows of t.
func (db *DB) CountRows(ctx context.Context, t tables.Table) (int64, error) {
	if _, ok := tables.Lookup(t.Name); !ok {
		return 0, fmt.Errorf("unknown table %q", t.Name)
	}
	var n int64
	err := db.ro.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+t.Name).Scan(&n)
	return n, err
}

// SchemaVersion is the schema version the database is at, and the newest
// this binary knows (Open migrates, so they are equal once open).
func (db *DB) SchemaVersion(ctx context.Context) (current, known int, err error) {
	names, err := migrationNames()
	if err != nil {
		return 0, 0, err
	}
	err = db.ro.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current)
	return current, len(names), err
}

// FileSchemaVersion reads the schema version of the database file at path
// without migrating it (0 if the file does not exist or has no schema yet).
func FileSchemaVersion(ctx context.Context, path string) (int, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	q := url.Values{}
	q.Add("_pragma", "query_only(1)")
	q.Add("_pragma", "busy_timeout(10000)")
	raw, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return 0, err
	}
	defer raw.Close()
	var exists int
	if err := raw.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'`).Scan(&exists); err != nil {
		return 0, fmt.Errorf("metadata database %s: %w", path, err)
	}
	if exists == 0 {
		return 0, nil
	}
	var v int
	err = raw.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v)
	return v, err
}
