package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"os"
	"strconv"

	"github.com/stowage/stowage/meta/postgres"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/meta/tables"
)

const migrateMetadataUsage = `Usage: stowage migrate-metadata --to postgres://USER:PASSWORD@HOST:PORT/DB [flags]

Copies a registry's metadata from its embedded SQLite database into
PostgreSQL, so that it can run as several nodes (docs/scale-out.md): every
table, with the settings (access control, quotas, policies, the encryption
setting), the wrapped data keys, the recycle bin and uploads in progress.
Blobs stay where they are: point the nodes at the same storage.

The registry must be stopped while it runs (a short write pause: it locks
the data directory, and refuses if serve holds it). The copy is one
PostgreSQL transaction, so a failed run leaves the target unchanged; then a
verification pass compares every table's row count and checksum.

The target must hold no registry metadata (it may be an empty database, or
one a node has only migrated); --force empties it first.

Steps:
  1. stop stowage serve
  2. stowage migrate-metadata --data-dir DIR --to postgres://...
  3. start the nodes with database: postgres://... and the same storage;
     give every node the key in DIR/keys/service.json (docs/scale-out.md)

Flags:
`

func runMigrateMetadata(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("migrate-metadata", flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.Usage = func() { fmt.Fprint(stderr, migrateMetadataUsage); fl.PrintDefaults() }
	cfgPath := fl.String("config", "", "the registry's YAML configuration file (for its data directory and SQLite path)")
	dataDir := fl.String("data-dir", "", "the registry's data directory (default ./stowage-data)")
	from := fl.String("from", "", "the SQLite database (default <data-dir>/stowage.db, or the configuration's)")
	to := fl.String("to", "", "the PostgreSQL connection string (default STOWAGE_DATABASE_POSTGRES)")
	force := fl.Bool("force", false, "empty the target database first if it holds metadata (DESTROYS what it holds)")
	output := outputFlag(fl)
	if err := parseFlags(fl, args, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if tooManyArgs(fl, "migrate-metadata", fl.Args(), stderr) {
		return 2
	}
	if badOutput(stderr, "migrate-metadata", *output) {
		return 2
	}
	// The source is the SQLite database: whatever the environment says
	// about the database names the target, not the source.
	cfg, err := loadConfig(*cfgPath, *dataDir)
	if err != nil {
		fmt.Fprintln(stderr, "stowage migrate-metadata:", err)
		return 2
	}
	target := *to
	if target == "" {
		target = cfg.Database.Postgres
	}
	if target == "" {
		fmt.Fprintln(stderr, "stowage migrate-metadata: no target: give --to postgres://USER:PASSWORD@HOST:PORT/DB (or set STOWAGE_DATABASE_POSTGRES)")
		return 2
	}
	source := *from
	if source == "" {
		source = cfg.Database.SQLite
	}
	if _, err := os.Stat(source); err != nil {
		fmt.Fprintf(stderr, "stowage migrate-metadata: the SQLite database %s: %v (give the registry's --data-dir, or --from)\n", source, err)
		return 2
	}
	m := metadataMigration{out: stdout, bar: newProgressBar(stderr)}
	if *output == "json" {
		m.out = io.Discard
	}
	if err := m.run(ctx, cfg.DataDir, source, target, *force); err != nil {
		fmt.Fprintln(stderr, "stowage migrate-metadata:", err)
		return 1
	}
	if *output == "json" {
		return printJSON(stdout, m.report)
	}
	return 0
}

type metadataMigration struct {
	out    io.Writer
	bar    *progressBar
	report migrationReport
}

// migrationReport is `stowage migrate-metadata --output json`.
type migrationReport struct {
	Source   string        `json:"source"` // the SQLite file
	Target   string        `json:"target"` // the PostgreSQL database, without its password
	Rows     int64         `json:"rows"`
	Tables   []tableReport `json:"tables"`
	Verified bool          `json:"verified"`
	KeyFile  string        `json:"keyFile"` // every node needs this key
}

type tableReport struct {
	Name     string `json:"name"`
	Rows     int64  `json:"rows"`
	Checksum string `json:"checksum"` // SHA-256 of the rows, in key order
}

func (m *metadataMigration) run(ctx context.Context, dataDir, source, target string, force bool) error {
	// 1. The write pause: no server may write the SQLite database meanwhile.
	lock, err := lockDir(dataDir)
	if err != nil {
		return fmt.Errorf("%w: stop the registry first; the copy needs a write pause", err)
	}
	defer lock.Close()
	src, err := sqlite.Open(ctx, source) // brings an older registry's schema up to date
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := postgres.Open(ctx, target, postgres.Options{MaxConns: 4})
	if err != nil {
		return err
	}
	defer dst.Close()
	fmt.Fprintf(m.out, "copying metadata from SQLite %s\n                   to PostgreSQL %s\n", source, dst.Where())
	m.report = migrationReport{Source: source, Target: dst.Where(), Tables: []tableReport{}, KeyFile: ServiceKeyPath(dataDir)}

	// 2. Count, for the progress bar and the verification.
	counts := map[string]int64{}
	var total int64
	for _, t := range tables.All {
		n, err := src.CountRows(ctx, t)
		if err != nil {
			return err
		}
		counts[t.Name] = n
		total += n
	}

	// 3. Copy, in one transaction.
	var done int64
	err = dst.Load(ctx, force, func(l *postgres.Loader) error {
		done = 0
		for _, t := range tables.All {
			n, err := copyTable(ctx, src, l, t, func(n int64) {
				if n%2000 == 0 {
					m.bar.show(t.Name, done+n, total)
				}
			})
			if err != nil {
				return err
			}
			done += n
			m.bar.show(t.Name, done, total)
		}
		return nil
	})
	m.bar.done()
	if errors.Is(err, postgres.ErrNotEmpty) {
		return fmt.Errorf("%w: nothing was copied. Copy into an empty database, or give --force to replace what it holds (which destroys it)", err)
	}
	if err != nil {
		return fmt.Errorf("copy failed; the PostgreSQL database is unchanged: %w", err)
	}
	fmt.Fprintf(m.out, "copied %d rows in %d tables\n", done, len(tables.All))
	m.report.Rows = done

	// 4. Verify: every table's count and checksum, read back from both.
	fmt.Fprintf(m.out, "verifying:\n  %-22s %10s  %-16s %s\n", "table", "rows", "checksum", "")
	var bad []string
	for _, t := range tables.All {
		sn, ssum, err := tableChecksum(ctx, src.ReadTable, t)
		if err != nil {
			return err
		}
		dn, dsum, err := tableChecksum(ctx, dst.ReadTable, t)
		if err != nil {
			return err
		}
		status := "ok"
		if sn != dn || ssum != dsum || sn != counts[t.Name] {
			status = fmt.Sprintf("MISMATCH: PostgreSQL has %d rows, checksum %s", dn, dsum[:16])
			bad = append(bad, t.Name)
		}
		fmt.Fprintf(m.out, "  %-22s %10d  %-16s %s\n", t.Name, sn, ssum[:16], status)
		m.report.Tables = append(m.report.Tables, tableReport{t.Name, sn, ssum})
	}
	if len(bad) > 0 {
		return fmt.Errorf("verification failed for %v: do not start nodes on this database; run again with --force, and report it if it persists", bad)
	}
	m.report.Verified = true
	fmt.Fprintf(m.out, "verified: every table matches.\nnext: start the nodes with `database: postgres://…` and this registry's storage; every node needs the same encryption key (copy %s, see docs/scale-out.md)\n",
		ServiceKeyPath(dataDir))
	return nil
}

// copyTable streams t's rows from src into the loader.
func copyTable(ctx context.Context, src *sqlite.DB, l *postgres.Loader, t tables.Table, progress func(int64)) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rows := make(chan []any, 256)
	readErr := make(chan error, 1)
	go func() {
		defer close(rows)
		readErr <- src.ReadTable(ctx, t, func(row []any) error {
			select {
			case rows <- row:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	var n int64
	copied, err := l.Copy(t, func() ([]any, bool, error) {
		row, ok := <-rows
		if !ok {
			if err := <-readErr; err != nil {
				return nil, false, err
			}
			return nil, false, nil
		}
		n++
		progress(n)
		return row, true, nil
	})
	if err != nil {
		cancel()
		for range rows { // let the reader finish
		}
		return copied, err
	}
	return copied, nil
}

// tableChecksum counts t's rows and hashes them in key order, with a
// canonical encoding of each value, so the same rows give the same sum in
// SQLite and PostgreSQL (text and bytes hash alike; NULL differs from "").
func tableChecksum(ctx context.Context, read func(context.Context, tables.Table, func([]any) error) error, t tables.Table) (int64, string, error) {
	h := sha256.New()
	var n int64
	err := read(ctx, t, func(row []any) error {
		n++
		for _, v := range row {
			hashValue(h, v)
		}
		return nil
	})
	if err != nil {
		return 0, "", fmt.Errorf("verify %s: %w", t.Name, err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

func hashValue(h hash.Hash, v any) {
	var buf [9]byte
	switch x := v.(type) {
	case nil:
		h.Write([]byte{'N'})
	case int64:
		buf[0] = 'I'
		binary.BigEndian.PutUint64(buf[1:], uint64(x))
		h.Write(buf[:])
	case int32:
		hashValue(h, int64(x))
	case int:
		hashValue(h, int64(x))
	case string:
		buf[0] = 'S'
		binary.BigEndian.PutUint64(buf[1:], uint64(len(x)))
		h.Write(buf[:])
		io.WriteString(h, x)
	case []byte:
		hashValue(h, string(x))
	case float64:
		io.WriteString(h, "F"+strconv.FormatFloat(x, 'g', -1, 64))
	default:
		fmt.Fprintf(h, "?%T:%v", x, x)
	}
}
