package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"reflect"
	"sort"
	"testing"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/meta/metatest"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/meta/tables"
)

func TestConformanceMemory(t *testing.T) {
	metatest.Run(t, func(t *testing.T) stowage.DB {
		db, err := sqlite.Open(context.Background(), ":memory:")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	})
}

// TestConformanceFile runs the suite on a real file, where reads and writes
// use separate connection pools (WAL).
func TestConformanceFile(t *testing.T) {
	metatest.Run(t, func(t *testing.T) stowage.DB {
		db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "stowage.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	})
}

func TestReopenKeepsData(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "stowage.db")
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(ctx, func(tx stowage.Tx) error { return tx.CreateRepository("kept", stowage.BlobRecord{}.Created) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db, err = sqlite.Open(ctx, path) // migrations must not run twice
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.View(ctx, func(tx stowage.Tx) error {
		if _, err := tx.GetRepository("kept"); err != nil {
			t.Error("data lost across reopen")
		}
		return nil
	})
}

// TestTablesListMatchesSchema: meta/tables (what migrate-metadata copies)
// names every table and column of the schema, and ReadTable reads them.
func TestTablesListMatchesSchema(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "stowage.db")
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	raw, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	rows, err := raw.Query(`SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p
		WHERE m.type = 'table' AND m.name NOT IN ('schema_migrations', 'sqlite_sequence') ORDER BY m.name, p.cid`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	schema := map[string][]string{}
	for rows.Next() {
		var tab, col string
		if err := rows.Scan(&tab, &col); err != nil {
			t.Fatal(err)
		}
		schema[tab] = append(schema[tab], col)
	}
	for _, tab := range tables.All {
		cols := append([]string(nil), tab.Columns...)
		got := append([]string(nil), schema[tab.Name]...)
		sort.Strings(cols)
		sort.Strings(got)
		if !reflect.DeepEqual(cols, got) {
			t.Errorf("table %s: schema columns %v, meta/tables lists %v", tab.Name, got, cols)
		}
		delete(schema, tab.Name)
		if err := db.ReadTable(ctx, tab, func([]any) error { return nil }); err != nil {
			t.Error(err)
		}
	}
	for _, tab := range tables.Derived {
		if _, ok := schema[tab]; !ok {
			t.Errorf("derived table %s is not in the schema", tab)
		}
		delete(schema, tab)
	}
	for tab := range schema {
		t.Errorf("table %s is missing from meta/tables", tab)
	}
}
