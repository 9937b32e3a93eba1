package main

import (
	"context"
	"fmt"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/config"
	"github.com/stowage/stowage/meta/postgres"
	"github.com/stowage/stowage/meta/sqlite"
)

// openDB opens the metadata database the configuration names, and says
// where it is (without a password) for the startup line.
func openDB(ctx context.Context, c config.Database) (stowage.DB, string, error) {
	if c.Kind() == "postgres" {
		db, err := postgres.Open(ctx, c.Postgres, postgres.Options{MaxConns: int32(c.MaxConns), NoMigrate: !c.MigrateOnStart()})
		if err != nil {
			return nil, "", err
		}
		return db, "PostgreSQL " + db.Where(), nil
	}
	db, err := sqlite.Open(ctx, c.SQLite)
	if err != nil {
		return nil, "", err
	}
	return db, fmt.Sprintf("SQLite %s", c.SQLite), nil
}
