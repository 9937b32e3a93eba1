package sqlite

import "database/sql"

// PoolStats returns the statistics of the connection pools: "write" (one
// connection) and "read", for /metrics.
func (db *DB) PoolStats() map[string]sql.DBStats {
	return map[string]sql.DBStats{"write": db.rw.Stats(), "read": db.ro.Stats()}
}
