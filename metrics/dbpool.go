package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// PoolStats is what a database connection pool reports: database/sql's
// DBStats and pgxpool's Stat both map onto it.
type PoolStats struct {
	InUse, Idle, Max int64
	// Waits counts acquisitions that had to wait for a connection, WaitTime
	// their total wait, since the pool opened.
	Waits    int64
	WaitTime time.Duration
	// Retries (PostgreSQL only, else nil): transactions run again after a
	// serialization failure or a deadlock, and attempts run alone among
	// writers after losing several times.
	Retries *Retries
}

// Retries is what PostgreSQL's Update reports (postgres.DB.Retries).
type Retries struct{ Serialization, Deadlock, Alone int64 }

var (
	poolConns    = prometheus.NewDesc("stowage_db_pool_connections", "Open connections of a metadata database pool, by state (in_use, idle).", []string{"pool", "state"}, nil)
	poolMax      = prometheus.NewDesc("stowage_db_pool_max_connections", "Most connections the pool opens (0: no limit).", []string{"pool"}, nil)
	poolWaits    = prometheus.NewDesc("stowage_db_pool_waits_total", "Connection acquisitions that waited because none was free.", []string{"pool"}, nil)
	poolWaitTime = prometheus.NewDesc("stowage_db_pool_wait_seconds_total", "Total time spent waiting for a free connection.", []string{"pool"}, nil)
	txRetries    = prometheus.NewDesc("stowage_db_transaction_retries_total", "Write transactions run again, by cause (serialization: PostgreSQL's SERIALIZABLE aborted one of two concurrent writers; deadlock: should stay 0, each cost a writer deadlock_timeout).", []string{"pool", "cause"}, nil)
	txAlone      = prometheus.NewDesc("stowage_db_transactions_alone_total", "Write transaction attempts run alone among writers after losing to them several times in a row.", []string{"pool"}, nil)
)

// NewPoolCollector returns a collector of the pools stats returns, by pool
// name (SQLite has "read" and "write", PostgreSQL "main").
func NewPoolCollector(stats func() map[string]PoolStats) prometheus.Collector {
	return Func(func(ch chan<- prometheus.Metric) {
		for name, s := range stats() {
			ch <- Gauge(poolConns, float64(s.InUse), name, "in_use")
			ch <- Gauge(poolConns, float64(s.Idle), name, "idle")
			ch <- Gauge(poolMax, float64(s.Max), name)
			ch <- Counter(poolWaits, float64(s.Waits), name)
			ch <- Counter(poolWaitTime, s.WaitTime.Seconds(), name)
			if r := s.Retries; r != nil {
				ch <- Counter(txRetries, float64(r.Serialization), name, "serialization")
				ch <- Counter(txRetries, float64(r.Deadlock), name, "deadlock")
				ch <- Counter(txAlone, float64(r.Alone), name)
			}
		}
	})
}
