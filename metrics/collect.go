package metrics

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Cached is a collector whose values are costly to read (database queries):
// fn reads them at most once per ttl; scrapes in between get the values of
// the last read. A read that fails keeps the previous values (and is logged
// by the caller's fn if it wants). ttl <= 0 reads at every scrape.
type Cached struct {
	ttl     time.Duration
	timeout time.Duration
	fn      func(ctx context.Context, ch chan<- prometheus.Metric) error

	mu   sync.Mutex
	at   time.Time
	last []prometheus.Metric
}

// NewCached returns a Cached reading with fn, each read bounded by 10 s.
func NewCached(ttl time.Duration, fn func(ctx context.Context, ch chan<- prometheus.Metric) error) *Cached {
	return &Cached{ttl: ttl, timeout: 10 * time.Second, fn: fn}
}

// Describe sends nothing: the metrics are "unchecked" (their names depend
// on the configuration, e.g. mirrors and encryption).
func (c *Cached) Describe(chan<- *prometheus.Desc) {}

// Collect sends the cached values, reading them anew when they are older
// than the ttl.
func (c *Cached) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == nil || c.ttl <= 0 || time.Since(c.at) >= c.ttl {
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		buf := make(chan prometheus.Metric, 64)
		var got []prometheus.Metric
		done := make(chan struct{})
		go func() {
			for m := range buf {
				got = append(got, m)
			}
			close(done)
		}()
		err := c.fn(ctx, buf)
		close(buf)
		<-done
		cancel()
		if err == nil || c.last == nil {
			c.last, c.at = got, time.Now()
		}
	}
	for _, m := range c.last {
		ch <- m
	}
}

// Func is a collector that reads its values at every scrape with fn, for
// values already in memory (mirror copy states, pool statistics).
type Func func(ch chan<- prometheus.Metric)

// Describe sends nothing (unchecked collector).
func (f Func) Describe(chan<- *prometheus.Desc) {}

// Collect calls f.
func (f Func) Collect(ch chan<- prometheus.Metric) { f(ch) }

// Gauge returns a constant gauge sample of desc.
func Gauge(desc *prometheus.Desc, v float64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, labels...)
}

// Counter returns a constant counter sample of desc.
func Counter(desc *prometheus.Desc, v float64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(desc, prometheus.CounterValue, v, labels...)
}
