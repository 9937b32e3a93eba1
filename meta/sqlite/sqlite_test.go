package sqlite_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/feed"
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
	if err := db.Update(ctx, func(tx stowage.Tx) error {
		return tx.Repositories().CreateRepository("kept", stowage.BlobRecord{}.Created)
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db, err = sqlite.Open(ctx, path) // migrations must not run twice
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.View(ctx, func(tx stowage.Tx) error {
		if _, err := tx.Repositories().GetRepository("kept"); err != nil {
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

// TestUpgradeRemovesImageContent: a database from before migration 0012
// held annotations, artifact types and platforms copied out of manifests
// (also inside soft-deleted manifests' records). The upgrade removes them,
// and vacuums, so none of it is left anywhere in the files.
func TestUpgradeRemovesImageContent(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "stowage.db")
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	raw.SetMaxOpenConns(1)
	names, _ := filepath.Glob("migrations/*.sql")
	sort.Strings(names)
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := raw.Exec(q, args...); err != nil {
			t.Fatalf("%.60s: %v", q, err)
		}
	}
	exec(`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied INTEGER NOT NULL)`)
	for i, name := range names {
		if filepath.Base(name) >= "0012" {
			break
		}
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		exec(string(b))
		exec(`INSERT INTO schema_migrations (version, applied) VALUES (?, 0)`, i+1)
	}
	const ann, at, arch = "marker-annotation-5e1f", "application/marker-type-77ab", "marker-arch-19c0"
	d := "sha256:" + strings.Repeat("ab", 32)
	exec(`INSERT INTO manifests (repo, digest, media_type, artifact_type, size, subject, annotations, created, architecture, os)
		VALUES ('r', ?, 'application/vnd.oci.image.manifest.v1+json', ?, 10, '', ?, 1, ?, 'linux')`, d, at, `{"k":"`+ann+`"}`, arch)
	rec := `{"Repo":"r","Digest":"` + d + `","MediaType":"application/vnd.oci.image.manifest.v1+json","ArtifactType":"` + at +
		`","Size":10,"Subject":"","Annotations":{"k":"` + ann + `"},"Created":"2026-01-01T00:00:00Z","Locks":0,"Architecture":"` + arch + `","OS":"linux"}`
	exec(`INSERT INTO recycle_bin (repo, digest, record, refs, tags, deleted, expires) VALUES ('r', ?, ?, 'null', '["v1"]', 1, 2)`, d+"0", rec)
	if err := raw.Close(); err != nil {
		t.Fatal(err)
	}

	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	err = db.View(ctx, func(tx stowage.Tx) error {
		m, err := tx.Manifests().GetManifest("r", stowage.Digest(d))
		if err != nil || m.Size != 10 || m.MediaType != stowage.MediaTypeOCIManifest {
			t.Errorf("manifest after the upgrade = %+v, %v", m, err)
		}
		bin, err := tx.Recycle().ListRecycled("r")
		if err != nil || len(bin) != 1 || bin[0].Manifest.Size != 10 || fmt.Sprint(bin[0].Tags) != "[v1]" {
			t.Errorf("recycle bin after the upgrade = %+v, %v", bin, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		files, _ := filepath.Glob(path + "*")
		for _, f := range files {
			b, _ := os.ReadFile(f)
			for _, m := range []string{ann, at, arch} {
				if bytes.Contains(b, []byte(m)) {
					t.Errorf("%s: %s still holds %q", when, f, m)
				}
			}
		}
	}
	check("open")
	db.Close()
	check("closed")
}

// TestFeed runs the change feed's suite on a file (separate read and write
// pools, as in production). Under the race detector the pure-Go SQLite is
// some 50 times slower: fewer concurrent transactions (the case that matters
// there is PostgreSQL's, which keeps its full size).
func TestFeed(t *testing.T) {
	txs := 0
	if raceEnabled {
		txs = 25
	}
	metatest.RunFeed(t, txs, func(t *testing.T) (stowage.DB, feed.Store) {
		db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "stowage.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db, db.Feed()
	})
}
