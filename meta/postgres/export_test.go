package postgres

import (
	"time"

	"github.com/stowage/stowage"
)

// SetLockCheckInterval shortens how often held job locks check their
// connection, for tests; it returns the old value.
func SetLockCheckInterval(d time.Duration) time.Duration {
	old := lockCheckInterval
	lockCheckInterval = d
	return old
}

// Exec runs q in tx, for tests of what a statement does on the server.
func Exec(tx stowage.Tx, q string) error {
	_, err := tx.(*Tx).exec(q)
	return err
}

// SQLRepositoryUsageOf is the query of RepositoryUsageOf, for the plan the
// usage benchmark logs.
const SQLRepositoryUsageOf = sqlRepositoryUsageOf
