// Package metrics is the server's Prometheus instrumentation: one registry
// per server (no global state, nothing registered in init), the HTTP request
// metrics, route templates for their labels, background-job progress,
// database pool statistics and build information.
//
// Other packages add their own metrics at wiring time: their constructor
// takes a prometheus.Registerer (Set.Registerer()) and registers on it, for
// example
//
//	deliveries := prometheus.NewCounterVec(prometheus.CounterOpts{
//		Name: "stowage_webhook_deliveries_total",
//		Help: "Webhook deliveries, by webhook and outcome.",
//	}, []string{"webhook", "outcome"})
//	reg.MustRegister(deliveries)
//
// Names start with stowage_, counters end in _total, units are base units
// (_seconds, _bytes), and label values come from a small fixed set (never a
// raw path, repository name or digest).
package metrics

import (
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Set is one server's metrics: a registry with the Go runtime, process,
// build and HTTP metrics, and the job metrics (Jobs).
type Set struct {
	reg  *prometheus.Registry
	http httpMetrics
	Jobs *Jobs
}

// New returns a Set whose build info names version.
func New(version string) *Set {
	reg := prometheus.NewRegistry()
	s := &Set{reg: reg, http: newHTTPMetrics(), Jobs: newJobs()}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	revision := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, kv := range bi.Settings {
			if kv.Key == "vcs.revision" {
				revision = kv.Value
			}
		}
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "stowage_build_info",
		Help:        "Always 1; the labels name the running build.",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision, "goversion": goVersion()},
	})
	build.Set(1)
	reg.MustRegister(build)
	s.http.register(reg)
	s.Jobs.register(reg)
	return s
}

func goVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		return bi.GoVersion
	}
	return "unknown"
}

// Registerer is where other packages register their metrics.
func (s *Set) Registerer() prometheus.Registerer { return s.reg }

// Gatherer reads every registered metric (tests use it too).
func (s *Set) Gatherer() prometheus.Gatherer { return s.reg }

// Handler serves the Prometheus exposition formats (the text format by
// default). A metric that cannot be gathered is left out of that scrape
// (and logged at warn level on log, if not nil); the rest is served.
func (s *Set) Handler(log *slog.Logger) http.Handler {
	opts := promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}
	if log != nil {
		opts.ErrorLog = errorLog{log}
	}
	return promhttp.HandlerFor(s.reg, opts)
}

type errorLog struct{ log *slog.Logger }

func (e errorLog) Println(v ...any) {
	e.log.Warn("metrics: " + strings.TrimSuffix(fmt.Sprintln(v...), "\n"))
}

// httpMetrics are the request metrics, by route template and method.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	in, out  *prometheus.CounterVec
	inFlight prometheus.Gauge
}

// DurationBuckets are the latency histogram's upper bounds in seconds:
// from a cached manifest HEAD (milliseconds) to a multi-gigabyte layer
// upload (minutes).
var DurationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}

func newHTTPMetrics() httpMetrics {
	rm := []string{"route", "method"}
	return httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stowage_http_requests_total",
			Help: "HTTP requests answered, by route template, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "stowage_http_request_duration_seconds",
			Help:    "Time from a request's arrival to the end of its answer, by route template and method.",
			Buckets: DurationBuckets,
		}, rm),
		in: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stowage_http_request_body_bytes_total",
			Help: "Bytes of request bodies read (pushed), by route template and method.",
		}, rm),
		out: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stowage_http_response_body_bytes_total",
			Help: "Bytes of response bodies written (pulled), by route template and method.",
		}, rm),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "stowage_http_requests_in_flight",
			Help: "Requests being served now.",
		}),
	}
}

func (h httpMetrics) register(reg prometheus.Registerer) {
	reg.MustRegister(h.requests, h.duration, h.in, h.out, h.inFlight)
}

// RequestStarted counts a request in flight until RequestDone.
func (s *Set) RequestStarted() { s.http.inFlight.Inc() }

// RequestDone records a finished request: its route template (Route), method,
// status code, body bytes read and written, and duration.
func (s *Set) RequestDone(route, method string, code int, in, out int64, d time.Duration) {
	s.http.inFlight.Dec()
	m := Method(method)
	s.http.requests.WithLabelValues(route, m, strconv.Itoa(code)).Inc()
	s.http.duration.WithLabelValues(route, m).Observe(d.Seconds())
	if in > 0 {
		s.http.in.WithLabelValues(route, m).Add(float64(in))
	}
	if out > 0 {
		s.http.out.WithLabelValues(route, m).Add(float64(out))
	}
}

// Method is a request method as a label value: the standard ones as they
// are, anything else "OTHER" (a client may send any token).
func Method(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "OTHER"
}
