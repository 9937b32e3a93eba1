package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/stowage/stowage/config"
	"github.com/stowage/stowage/meta/postgres"
	"github.com/stowage/stowage/meta/sqlite"
)

const migrateUsage = `Usage: stowage migrate [--config FILE] [--data-dir DIR] [--database URL|PATH]

Applies the metadata database's pending schema migrations and prints the
schema version before and after. The database is the one serve would use
(--config, STOWAGE_DATABASE, or the embedded SQLite database of the data
directory); --database names another.

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
	if err := parseFlags(fl, args, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fl.NArg() > 0 {
		fmt.Fprintf(stderr, "stowage migrate: unexpected argument %q (see stowage migrate --help)\n", fl.Arg(0))
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
	if err := migrate(ctx, cfg, stdout); err != nil {
		fmt.Fprintln(stderr, "stowage migrate:", err)
		return 1
	}
	return 0
}

func isPostgres(s string) bool {
	return len(s) > 11 && (s[:11] == "postgres://" || len(s) > 13 && s[:13] == "postgresql://")
}

func migrate(ctx context.Context, cfg config.Config, out io.Writer) error {
	if cfg.Database.Kind() == "postgres" {
		db, err := postgres.Open(ctx, cfg.Database.Postgres, postgres.Options{MaxConns: 2, NoMigrate: true, AnyVersion: true})
		if err != nil {
			return err
		}
		defer db.Close()
		before, known, err := db.SchemaVersion(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "PostgreSQL %s\nschema version before: %d (this binary: %d)\n", db.Where(), before, known)
		if err := db.Migrate(ctx); err != nil {
			return err
		}
		after, _, err := db.SchemaVersion(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "schema version after:  %d (%d migrations applied)\n", after, after-before)
		return nil
	}
	if err := privateDir(cfg.DataDir, slog.New(slog.NewTextHandler(out, nil))); err != nil {
		return err
	}
	lock, err := lockDir(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("%w: stop the registry before migrating its SQLite database", err)
	}
	defer lock.Close()
	before, err := sqlite.FileSchemaVersion(ctx, cfg.Database.SQLite)
	if err != nil {
		return err
	}
	db, err := sqlite.Open(ctx, cfg.Database.SQLite) // migrates
	if err != nil {
		return err
	}
	defer db.Close()
	after, known, err := db.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "SQLite %s\nschema version before: %d (this binary: %d)\nschema version after:  %d (%d migrations applied)\n",
		cfg.Database.SQLite, before, known, after, after-before)
	return nil
}
