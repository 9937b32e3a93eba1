package postgres

import "time"

// SetLockCheckInterval shortens how often held job locks check their
// connection, for tests; it returns the old value.
func SetLockCheckInterval(d time.Duration) time.Duration {
	old := lockCheckInterval
	lockCheckInterval = d
	return old
}
