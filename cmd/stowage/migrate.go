package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/config"
	"github.com/stowage/stowage/meta/postgres"
	"github.com/stowage/stowage/meta/sqlite"
)

const migrateUsage = `Usage: stowage migrate [--config FILE] [--data-dir DIR] [--database URL|PATH]

Applies the metadata database's pending schema migrations and prints the
schema version before and after. The database is the one serve would use
(--config, STOWAGE_DATABASE, or the embedded SQLite database of the data
directory); --database names another. It creates none: a data directory
or SQLite file that does not exist is refused (stowage serve creates it).

PostgreSQL: safe while nodes run (an advisory lock makes concurrent
migrations take turns), but nodes of an older version may not understand a
newer schema: upgrade the binaries first, or stop the nodes. serve migrates
at start unless database.migrate is false; with migrate: false, run this
before starting upgraded nodes.
SQLite: the registry must be stopped (the data directory is locked).

Flags:
`

// loadConfig builds the configuration the way serve does: defaults, the
// file, STOWAGE_* variables, then the flags given.
func loadConfig(path, dataDir string) (config.Config, error) {
	cfg := config.Default()
	if path != "" {
		if err := cfg.Load(path); err != nil {
			return cfg, err
		}
	}
	if err := cfg.ApplyEnv(os.Getenv); err != nil {
		return cfg, err
	}
	if dataDir != "" {
		cfg.DataDir = dataDir
	}
	return cfg, cfg.Validate()
}

func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.Usage = func() { fmt.Fprint(stderr, migrateUsage); fl.PrintDefaults() }
	cfgPath := fl.String("config", "", "YAML configuration file (the nodes' configuration)")
	dataDir := fl.String("data-dir", "", "data directory (default ./stowage-data)")
	database := fl.String("database", "", "a postgres:// connection string or a SQLite file (default: the configuration's)")
	output := outputFlag(fl)
	if err := parseFlags(fl, args, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if tooManyArgs(fl, "migrate", fl.Args(), stderr) {
		return 2
	}
	if badOutput(stderr, "migrate", *output) {
		return 2
	}
	cfg, err := loadConfig(*cfgPath, *dataDir)
	if err != nil {
		fmt.Fprintln(stderr, "stowage migrate:", err)
		return 2
	}
	if *database != "" {
		if isPostgres(*database) {
			cfg.Database.Postgres = *database
		} else {
			cfg.Database.Postgres, cfg.Database.SQLite = "", *database
		}
	}
	rep, err := migrate(ctx, cfg, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "stowage migrate:", err)
		return 1
	}
	if *output == "json" {
		return printJSON(stdout, rep)
	}
	fmt.Fprint(stdout, rep)
	return 0
}

// migrateReport is what `stowage migrate` prints (--output json: the fields).
type migrateReport struct {
	Database string `json:"database"` // sqlite or postgres
	Where    string `json:"where"`    // the file, or the server and database (no password)
	Before   int    `json:"versionBefore"`
	After    int    `json:"versionAfter"`
	Known    int    `json:"versionKnown"` // the newest version this binary knows
	Applied  int    `json:"applied"`
}

func (r migrateReport) String() string {
	name := map[string]string{"sqlite": "SQLite", "postgres": "PostgreSQL"}[r.Database]
	return fmt.Sprintf("%s %s\nschema version before: %d (this binary: %d)\nschema version after:  %d (%d migrations applied)\n",
		name, r.Where, r.Before, r.Known, r.After, r.Applied)
}

func isPostgres(s string) bool {
	return len(s) > 11 && (s[:11] == "postgres://" || len(s) > 13 && s[:13] == "postgresql://")
}

// migrate applies the pending migrations; log gets warnings (a data
// directory others may read). On an error, the report says what was known.
func migrate(ctx context.Context, cfg config.Config, log io.Writer) (migrateReport, error) {
	if cfg.Database.Kind() == "postgres" {
		db, err := postgres.Open(ctx, cfg.Database.Postgres, postgres.Options{MaxConns: 2, NoMigrate: true, AnyVersion: true})
		if err != nil {
			return migrateReport{}, err
		}
		defer db.Close()
		rep := migrateReport{Database: "postgres", Where: db.Where()}
		if rep.Before, rep.Known, err = db.SchemaVersion(ctx); err != nil {
			return rep, err
		}
		if err := db.Migrate(ctx); err != nil {
			return rep, fmt.Errorf("PostgreSQL %s at schema version %d (this binary: %d): %w", rep.Where, rep.Before, rep.Known, err)
		}
		if rep.After, _, err = db.SchemaVersion(ctx); err != nil {
			return rep, err
		}
		rep.Applied = rep.After - rep.Before
		return rep, nil
	}
	rep := migrateReport{Database: "sqlite", Where: cfg.Database.SQLite}
	// migrate upgrades a database; serve is what creates one. A wrong or
	// missing --data-dir (or the wrong working directory) would otherwise
	// get a new empty database and exit 0 (outside review).
	if _, err := os.Stat(cfg.Database.SQLite); errors.Is(err, fs.ErrNotExist) {
		where := cfg.Database.SQLite
		if abs, err := filepath.Abs(where); err == nil {
			where = abs
		}
		return rep, &stowage.Error{Code: stowage.CodeNameUnknown, Message: fmt.Sprintf("no database at %s: migrate upgrades an existing database and creates none (stowage serve does). "+
			"Point it at the registry's: --data-dir DIR (its data_dir), --config FILE (its configuration) or --database PATH", where)}
	}
	if err := privateDir(cfg.DataDir, slog.New(slog.NewTextHandler(log, nil))); err != nil {
		return rep, err
	}
	lock, err := lockDir(cfg.DataDir)
	if err != nil {
		return rep, fmt.Errorf("%w: stop the registry before migrating its SQLite database", err)
	}
	defer lock.Close()
	if rep.Before, err = sqlite.FileSchemaVersion(ctx, cfg.Database.SQLite); err != nil {
		return rep, err
	}
	db, err := sqlite.Open(ctx, cfg.Database.SQLite) // migrates
	if err != nil {
		return rep, err
	}
	defer db.Close()
	if rep.After, rep.Known, err = db.SchemaVersion(ctx); err != nil {
		return rep, err
	}
	rep.Applied = rep.After - rep.Before
	return rep, nil
}
