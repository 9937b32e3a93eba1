package stowage

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"
)

// Parts is what the capability packages built beside the core (gc, scrub,
// policy, recyclebin, feed, ...) share with it: the database, the storage,
// the clock, the log and the lease. They take it from the Registry they
// extend, so every part of one registry sees the same database and clock.
type Parts struct {
	DB    DB
	Store Backend
	Log   *slog.Logger
	Now   func() time.Time
	// Lease is how long a blob a client has just seen or uploaded is safe
	// from garbage collection (Options.Lease).
	Lease time.Duration
}

// Parts returns the registry's parts.
func (r *Registry) Parts() Parts {
	return Parts{DB: r.db, Store: r.store, Log: r.log, Now: r.now, Lease: r.lease}
}

// GetSetting reads the JSON setting key into v (v unchanged if unset).
func GetSetting(tx Tx, key string, v any) error {
	s, err := tx.Settings().GetSetting(key)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return json.Unmarshal([]byte(s), v)
}

// PutSetting writes v as the JSON setting key.
func PutSetting(tx Tx, key string, v any, now time.Time) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Settings().PutSetting(key, string(b), now)
}

// EachRepository calls fn for every repository (list-locked ones too), in
// pages, each page read in its own transaction.
func EachRepository(ctx context.Context, db DB, fn func(string) error) error {
	last := ""
	for {
		var names []string
		err := db.View(ctx, func(tx Tx) (err error) {
			names, err = tx.Repositories().ListRepositories(last, 1000, true)
			return err
		})
		if err != nil || len(names) == 0 {
			return err
		}
		for _, n := range names {
			if err := fn(n); err != nil {
				return err
			}
		}
		last = names[len(names)-1]
	}
}
