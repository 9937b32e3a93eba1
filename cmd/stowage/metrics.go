package main

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/gc"
	"github.com/stowage/stowage/internal/requestlog"
	"github.com/stowage/stowage/metrics"
	"github.com/stowage/stowage/mgmt"
	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/scrub"
	"github.com/stowage/stowage/storage/crypt"
	"github.com/stowage/stowage/storage/mirror"
)

// defaultMetricsTTL is how long /metrics reuses what it read from the
// database (blob totals, the last scrub, data keys): a scrape every few
// seconds costs at most one read per TTL.
const defaultMetricsTTL = 30 * time.Second

// The metrics read from the database, each scrape at most once per TTL.
var (
	descBlobs      = prometheus.NewDesc("stowage_blobs", "Live blobs stored (each digest once).", nil, nil)
	descBlobBytes  = prometheus.NewDesc("stowage_blob_bytes", "Bytes of live blobs (each digest once).", nil, nil)
	descHeld       = prometheus.NewDesc("stowage_storage_held_bytes", "Bytes the storage limit counts: blobs stored or being written (pending or live), each digest once.", nil, nil)
	descLimit      = prometheus.NewDesc("stowage_storage_limit_bytes", "The configured storage limit (absent when there is none).", nil, nil)
	descScrubBlobs = prometheus.NewDesc("stowage_scrub_last_blobs", "Blobs checked by the last scrub, by outcome.", []string{"outcome"}, nil)
	descScrubRep   = prometheus.NewDesc("stowage_scrub_last_repaired_copies", "Copies the last scrub rewrote from a good copy.", nil, nil)
	descScrubStart = prometheus.NewDesc("stowage_scrub_last_start_timestamp_seconds", "When the last scrub (on any node) started (Unix time).", nil, nil)
	descDataKeys   = prometheus.NewDesc("stowage_encryption_data_keys", "Data keys wrapped by each key-encryption key version.", []string{"key", "version", "current"}, nil)
)

// Read from memory at every scrape: the mirrors' copies.
var (
	descCopyState = prometheus.NewDesc("stowage_storage_copy_state", "1 for the state each mirror copy is in (healthy, degraded, down).", []string{"mirror", "copy", "state"}, nil)
	descCopyFails = prometheus.NewDesc("stowage_storage_copy_consecutive_failures", "Operations in a row that failed on a mirror copy.", []string{"mirror", "copy"}, nil)
	descPending   = prometheus.NewDesc("stowage_storage_pending_repairs", "Objects a mirror copy lacks (or still holds after a delete), queued for repair.", []string{"mirror"}, nil)
	descFaults    = prometheus.NewDesc("stowage_storage_read_faults_total", "Objects reads found missing or damaged on a mirror copy (each object at most once a minute), each queued for repair.", []string{"mirror", "copy", "kind"}, nil)
	descRepaired  = prometheus.NewDesc("stowage_storage_repaired_total", "Copies a mirror's repair queue and scrubs rewrote since the start.", []string{"mirror"}, nil)
	descLost      = prometheus.NewDesc("stowage_storage_lost_objects", "Objects no copy of a mirror holds good bytes of (restore them from a backup; stowage storage status names them).", []string{"mirror"}, nil)
)

// newMetrics returns the server's metrics: the HTTP and job metrics of
// package metrics, and what this registry adds (usage, storage copies, the
// last scrub, data keys, the database pools, job results).
func newMetrics(reg *stowage.Registry, db stowage.DB, topo *topology, keys *crypt.Manager, limit int64, ttl time.Duration) (*metrics.Set, *jobResults) {
	set := metrics.New(version)
	r := set.Registerer()
	r.MustRegister(metrics.NewCached(ttl, func(ctx context.Context, ch chan<- prometheus.Metric) error {
		return readRegistryMetrics(ctx, reg, db, keys, limit, ch)
	}))
	r.MustRegister(metrics.Func(func(ch chan<- prometheus.Metric) { mirrorMetrics(topo, ch) }))
	if stats := poolStats(db); stats != nil {
		r.MustRegister(metrics.NewPoolCollector(stats))
	}
	return set, newJobResults(set)
}

func readRegistryMetrics(ctx context.Context, reg *stowage.Registry, db stowage.DB, keys *crypt.Manager, limit int64, ch chan<- prometheus.Metric) error {
	var count, bytes, held int64
	err := db.View(ctx, func(tx stowage.Tx) (err error) {
		if count, bytes, err = tx.Usage().BlobTotals(); err != nil {
			return err
		}
		held, err = tx.Usage().HeldBytes()
		return err
	})
	if err != nil {
		return err
	}
	ch <- metrics.Gauge(descBlobs, float64(count))
	ch <- metrics.Gauge(descBlobBytes, float64(bytes))
	ch <- metrics.Gauge(descHeld, float64(held))
	if limit > 0 {
		ch <- metrics.Gauge(descLimit, float64(limit))
	}
	if rep, err := scrub.New(reg.Parts()).Last(ctx); err == nil {
		for _, kv := range []struct {
			outcome string
			n       int64
		}{{"ok", rep.OK}, {"degraded", rep.Degraded}, {"lost", rep.Lost}, {"unreadable", rep.Unreadable}} {
			ch <- metrics.Gauge(descScrubBlobs, float64(kv.n), kv.outcome)
		}
		ch <- metrics.Gauge(descScrubRep, float64(rep.Repaired))
		if t, err := time.Parse(time.RFC3339, rep.Started); err == nil {
			ch <- metrics.Gauge(descScrubStart, float64(t.Unix()))
		}
	}
	if keys != nil {
		if st, err := keys.Status(ctx); err == nil {
			sort.Slice(st.DataKeys, func(i, j int) bool { return st.DataKeys[i].Version < st.DataKeys[j].Version })
			for _, d := range st.DataKeys {
				ch <- metrics.Gauge(descDataKeys, float64(d.Count), d.ID, fmt.Sprint(d.Version), fmt.Sprint(d.KeyVersion == st.Current))
			}
		}
	}
	return nil
}

func mirrorMetrics(topo *topology, ch chan<- prometheus.Metric) {
	for _, m := range topo.mirrors {
		st := m.m.Status()
		ch <- metrics.Gauge(descPending, float64(st.PendingRepairs), m.path)
		ch <- metrics.Counter(descRepaired, float64(st.Repaired), m.path)
		ch <- metrics.Gauge(descLost, float64(st.Lost), m.path)
		for _, c := range st.Copies {
			for _, s := range []string{mirror.Healthy, mirror.Degraded, mirror.Down} {
				v := 0.0
				if c.State == s {
					v = 1
				}
				ch <- metrics.Gauge(descCopyState, v, m.path, c.Name, s)
			}
			ch <- metrics.Gauge(descCopyFails, float64(c.Failures), m.path, c.Name)
			ch <- metrics.Counter(descFaults, float64(c.MissingFound), m.path, c.Name, "missing")
			ch <- metrics.Counter(descFaults, float64(c.CorruptFound), m.path, c.Name, "corrupt")
		}
	}
}

// observe wraps the server's handler: each request gets its id and log
// line (package requestlog) and is counted in the request metrics. Health
// probes and scrapes log at debug level.
func observe(log *slog.Logger, mset *metrics.Set, h http.Handler) http.Handler {
	return requestlog.Middleware(log, requestlog.Options{
		Route:   metrics.Route,
		Started: mset.RequestStarted,
		Done: func(i requestlog.Info) {
			mset.RequestDone(i.Route, i.Method, i.Status, i.BytesIn, i.BytesOut, i.Duration)
		},
		Quiet: map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true},
	}, h)
}

// poolStats returns the pool statistics of the databases that report them
// (nil for another DB).
func poolStats(db stowage.DB) func() map[string]metrics.PoolStats {
	switch d := db.(type) {
	case interface{ PoolStats() map[string]sql.DBStats }:
		return func() map[string]metrics.PoolStats {
			out := map[string]metrics.PoolStats{}
			for name, s := range d.PoolStats() {
				out[name] = metrics.PoolStats{InUse: int64(s.InUse), Idle: int64(s.Idle), Max: int64(s.MaxOpenConnections),
					Waits: s.WaitCount, WaitTime: s.WaitDuration}
			}
			return out
		}
	case interface {
		PoolStat() *pgxpool.Stat
		Retries() (serialization, deadlocks, alone int64)
	}:
		return func() map[string]metrics.PoolStats {
			s := d.PoolStat()
			var r metrics.Retries
			r.Serialization, r.Deadlock, r.Alone = d.Retries()
			return map[string]metrics.PoolStats{"main": {InUse: int64(s.AcquiredConns()), Idle: int64(s.IdleConns()),
				Max: int64(s.MaxConns()), Waits: s.EmptyAcquireCount(), WaitTime: s.EmptyAcquireWaitTime(), Retries: &r}}
		}
	}
	return nil
}

// jobResults are what garbage collections, retention and purges did on this
// node, and the decorators that record them: the scheduled runs and those
// asked for through the API go through the same decorators.
type jobResults struct {
	jobs                                                     *metrics.Jobs
	gcBlobs, gcBytes, gcUploads, gcOrphans, gcOrphanBytes    prometheus.Counter
	gcLastBlobs, gcLastBytes, gcWaitingBlobs, gcWaitingBytes prometheus.Gauge
	policyManifests, policyTags                              *prometheus.CounterVec
	policyLastManifests, policyLastBytes                     *prometheus.GaugeVec
}

func newJobResults(set *metrics.Set) *jobResults {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	}
	pol := []string{"policy"}
	j := &jobResults{
		jobs:           set.Jobs,
		gcBlobs:        c("stowage_gc_blobs_deleted_total", "Blobs garbage collections on this node deleted."),
		gcBytes:        c("stowage_gc_bytes_freed_total", "Bytes of the blobs garbage collections on this node deleted."),
		gcUploads:      c("stowage_gc_uploads_expired_total", "Idle upload sessions garbage collections on this node ended."),
		gcOrphans:      c("stowage_gc_orphan_objects_deleted_total", "Storage objects no database row knew (crash leftovers) that garbage collections deleted."),
		gcOrphanBytes:  c("stowage_gc_orphan_bytes_freed_total", "Bytes of those orphan objects."),
		gcLastBlobs:    g("stowage_gc_last_blobs_deleted", "Blobs the last garbage collection on this node deleted."),
		gcLastBytes:    g("stowage_gc_last_bytes_freed", "Bytes the last garbage collection on this node freed (blobs and orphan objects)."),
		gcWaitingBlobs: g("stowage_gc_waiting_blobs", "Unreferenced blobs the last garbage collection kept for their grace period or lease."),
		gcWaitingBytes: g("stowage_gc_waiting_bytes", "Bytes of those blobs."),
		policyManifests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stowage_policy_manifests_deleted_total",
			Help: "Manifests retention and purges on this node deleted, by policy (retention, purge)."}, pol),
		policyTags: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stowage_policy_tags_deleted_total",
			Help: "Tags retention and purges on this node deleted, by policy (retention, purge)."}, pol),
		policyLastManifests: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "stowage_policy_last_manifests_deleted",
			Help: "Manifests the last run of the policy on this node deleted."}, pol),
		policyLastBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "stowage_policy_last_bytes_freed",
			Help: "Bytes the next garbage collection frees because of the last run of the policy on this node."}, pol),
	}
	for _, job := range []string{"gc", "scrub", "retention", "purge"} {
		set.Jobs.Declare(job)
	}
	set.Registerer().MustRegister(j.gcBlobs, j.gcBytes, j.gcUploads, j.gcOrphans, j.gcOrphanBytes,
		j.gcLastBlobs, j.gcLastBytes, j.gcWaitingBlobs, j.gcWaitingBytes,
		j.policyManifests, j.policyTags, j.policyLastManifests, j.policyLastBytes)
	return j
}

// metered returns run recorded as a run of job.
func (j *jobResults) metered(job string, run func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		r := j.jobs.Start(job)
		err := run(ctx)
		r.End(err)
		return err
	}
}

// meteredGC is the collector, recording each collection (dry runs are not).
type meteredGC struct {
	c *gc.Collector
	j *jobResults
}

func (m meteredGC) Collect(ctx context.Context, opts gc.Options) (gc.Report, error) {
	if opts.DryRun {
		return m.c.Collect(ctx, opts)
	}
	run := m.j.jobs.Start("gc")
	progress := opts.Progress
	opts.Progress = func(phase string, done, total int64) {
		if phase == "blobs" {
			run.Progress(done, total)
		}
		if progress != nil {
			progress(phase, done, total)
		}
	}
	rep, err := m.c.Collect(ctx, opts)
	run.End(err)
	// What was deleted is deleted, even when the run failed later.
	m.j.gcBlobs.Add(float64(rep.BlobsDeleted))
	m.j.gcBytes.Add(float64(rep.BytesFreed))
	m.j.gcUploads.Add(float64(rep.UploadsExpired))
	m.j.gcOrphans.Add(float64(rep.OrphansDeleted))
	m.j.gcOrphanBytes.Add(float64(rep.OrphanBytes))
	if err == nil {
		m.j.gcLastBlobs.Set(float64(rep.BlobsDeleted))
		m.j.gcLastBytes.Set(float64(rep.BytesFreed + rep.OrphanBytes))
		var w gc.Waiting
		if rep.Waiting != nil {
			w = *rep.Waiting
		}
		m.j.gcWaitingBlobs.Set(float64(w.Blobs))
		m.j.gcWaitingBytes.Set(float64(w.Bytes))
	}
	return rep, err
}

// meteredScrub is the scrubber, recording each scrub's run and progress
// (its results are read from the database: stowage_scrub_last_*).
type meteredScrub struct {
	*scrub.Runner
	j *jobResults
}

func (m meteredScrub) Run(ctx context.Context, opts scrub.Options) (scrub.Report, error) {
	run := m.j.jobs.Start("scrub")
	progress := opts.Progress
	opts.Progress = func(done, total int64) {
		run.Progress(done, total)
		if progress != nil {
			progress(done, total)
		}
	}
	rep, err := m.Runner.Run(ctx, opts)
	run.End(err)
	return rep, err
}

// meteredPolicies is the policy runner, recording retention runs and purges
// (dry runs are not).
type meteredPolicies struct {
	*policy.Runner
	j *jobResults
}

var _ mgmt.Policies = meteredPolicies{}

func (m meteredPolicies) ApplyRetention(ctx context.Context, dryRun bool) (policy.Run, error) {
	if dryRun {
		return m.Runner.ApplyRetention(ctx, true)
	}
	run := m.j.jobs.Start("retention")
	res, err := m.Runner.ApplyRetention(ctx, false)
	run.End(err)
	m.j.policyRun("retention", res, err)
	return res, err
}

func (m meteredPolicies) Purge(ctx context.Context, opts policy.PurgeOptions) (policy.Run, error) {
	if opts.DryRun {
		return m.Runner.Purge(ctx, opts)
	}
	run := m.j.jobs.Start("purge")
	progress := opts.Progress
	opts.Progress = func(done, total int64) {
		run.Progress(done, total)
		if progress != nil {
			progress(done, total)
		}
	}
	res, err := m.Runner.Purge(ctx, opts)
	run.End(err)
	m.j.policyRun("purge", res, err)
	return res, err
}

func (j *jobResults) policyRun(name string, res policy.Run, err error) {
	j.policyManifests.WithLabelValues(name).Add(float64(res.Manifests))
	j.policyTags.WithLabelValues(name).Add(float64(res.Tags))
	if err == nil {
		j.policyLastManifests.WithLabelValues(name).Set(float64(res.Manifests))
		j.policyLastBytes.WithLabelValues(name).Set(float64(res.BytesFreed))
	}
}
