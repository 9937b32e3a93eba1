package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// results collects metric name → value in the order they were produced,
// for the human table, and as a map for --json.
type results struct {
	names  []string
	values map[string]float64
	units  map[string]string
}

func newResults() *results {
	return &results{values: map[string]float64{}, units: map[string]string{}}
}

func (r *results) add(name string, v float64, unit string) {
	if _, ok := r.values[name]; !ok {
		r.names = append(r.names, name)
	}
	r.values[name] = math.Round(v*1000) / 1000
	r.units[name] = unit
	fmt.Fprintf(os.Stderr, "  %-24s %12.3f %s\n", name, r.values[name], unit)
}

func (r *results) printTable(w io.Writer) {
	fmt.Fprintf(w, "\n%-24s %12s  %s\n", "metric", "value", "unit")
	fmt.Fprintf(w, "%s\n", strings.Repeat("-", 48))
	for _, n := range r.names {
		fmt.Fprintf(w, "%-24s %12.3f  %s\n", n, r.values[n], r.units[n])
	}
}

func (r *results) writeJSON(path string) error {
	b, err := json.MarshalIndent(r.values, "", "  ") // map keys come out sorted
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// runWorkers runs n workers and returns the first error; the shared
// context is cancelled on that error so the scenario aborts promptly
// instead of piling up more failing requests.
func runWorkers(ctx context.Context, n int, work func(ctx context.Context, worker int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := work(ctx, w); err != nil {
				once.Do(func() { first = err; cancel() })
			}
		}()
	}
	wg.Wait()
	return first
}

// maxLatencyRequests bounds a timed loop in count too, whatever the
// registry speed (memory for the latency samples stays bounded).
const maxLatencyRequests = 20_000_000

// latencyLoop issues op from conc workers until dur elapses and returns
// the request rate and every request's latency, sorted.
func latencyLoop(ctx context.Context, conc int, dur time.Duration, op func(ctx context.Context) error) (float64, []time.Duration, error) {
	per := make([][]time.Duration, conc)
	perWorkerMax := maxLatencyRequests / conc
	start := time.Now()
	deadline := start.Add(dur)
	err := runWorkers(ctx, conc, func(ctx context.Context, w int) error {
		lat := make([]time.Duration, 0, 4096)
		for len(lat) < perWorkerMax {
			t0 := time.Now()
			if t0.After(deadline) {
				break
			}
			if err := op(ctx); err != nil {
				return err
			}
			lat = append(lat, time.Since(t0))
		}
		per[w] = lat
		return nil
	})
	elapsed := time.Since(start)
	if err != nil {
		return 0, nil, err
	}
	all := slices.Concat(per...)
	slices.Sort(all)
	return float64(len(all)) / elapsed.Seconds(), all, nil
}

// percentileMs is the nearest-rank percentile of sorted latencies, in ms.
func percentileMs(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	i = max(0, min(i, len(sorted)-1))
	return float64(sorted[i]) / float64(time.Millisecond)
}

// median of a small sample (5 listings, 3 rounds); mean of the middle two
// for even counts.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// peakRSSMiB reads VmHWM (the resident-set high-water mark the kernel
// keeps for the whole life of the process) from /proc/PID/status.
func peakRSSMiB(pid int) (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			fields := strings.Fields(rest) // "123456 kB"
			if len(fields) < 1 {
				break
			}
			kb, err := strconv.ParseFloat(fields[0], 64)
			if err != nil {
				return 0, fmt.Errorf("parsing %q: %w", line, err)
			}
			return kb / 1024, nil
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}
