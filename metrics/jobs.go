package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Jobs tracks background jobs (garbage collection, scrub, retention, …) run
// on this node: whether one runs, its progress, and how the runs ended. The
// label job is a fixed name ("gc", "scrub", "retention", …).
type Jobs struct {
	running     *prometheus.GaugeVec
	runs        *prometheus.CounterVec
	lastSuccess *prometheus.GaugeVec
	lastEnd     *prometheus.GaugeVec
	lastDur     *prometheus.GaugeVec
	done, total *prometheus.GaugeVec
	now         func() time.Time
}

func newJobs() *Jobs {
	job := []string{"job"}
	g := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, job)
	}
	return &Jobs{
		running:     g("stowage_job_running", "1 while the job runs on this node."),
		runs:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stowage_job_runs_total", Help: "Job runs on this node that ended, by result (success or failure)."}, []string{"job", "result"}),
		lastSuccess: g("stowage_job_last_success_timestamp_seconds", "When the job last ended successfully on this node (Unix time)."),
		lastEnd:     g("stowage_job_last_end_timestamp_seconds", "When the job last ended on this node, successfully or not (Unix time)."),
		lastDur:     g("stowage_job_last_duration_seconds", "How long the job's last run on this node took."),
		done:        g("stowage_job_progress_done", "Items the running job has done (blobs for gc and scrub); the last run's count once it ended."),
		total:       g("stowage_job_progress_total", "Items the running job knows of so far (0 while it counts or cannot tell)."),
		now:         time.Now,
	}
}

func (j *Jobs) register(reg prometheus.Registerer) {
	reg.MustRegister(j.running, j.runs, j.lastSuccess, j.lastEnd, j.lastDur, j.done, j.total)
}

// Run is one run of a job, from Jobs.Start to End.
type Run struct {
	j     *Jobs
	job   string
	start time.Time
}

// Declare makes job's series exist before its first run (running 0, no
// runs), so an alert on a job that never succeeded has a series to see.
func (j *Jobs) Declare(job string) {
	j.running.WithLabelValues(job)
	j.runs.WithLabelValues(job, "success")
	j.runs.WithLabelValues(job, "failure")
}

// Start records that job started on this node.
func (j *Jobs) Start(job string) *Run {
	j.Declare(job)
	j.running.WithLabelValues(job).Set(1)
	j.done.WithLabelValues(job).Set(0)
	j.total.WithLabelValues(job).Set(0)
	return &Run{j: j, job: job, start: j.now()}
}

// Progress records done of total items (total 0: not known yet).
func (r *Run) Progress(done, total int64) {
	r.j.done.WithLabelValues(r.job).Set(float64(done))
	r.j.total.WithLabelValues(r.job).Set(float64(total))
}

// End records the run's end; err nil is a success.
func (r *Run) End(err error) {
	end := r.j.now()
	r.j.running.WithLabelValues(r.job).Set(0)
	r.j.lastDur.WithLabelValues(r.job).Set(end.Sub(r.start).Seconds())
	r.j.lastEnd.WithLabelValues(r.job).Set(float64(end.UnixNano()) / 1e9)
	if err != nil {
		r.j.runs.WithLabelValues(r.job, "failure").Inc()
		return
	}
	r.j.runs.WithLabelValues(r.job, "success").Inc()
	r.j.lastSuccess.WithLabelValues(r.job).Set(float64(end.UnixNano()) / 1e9)
}
