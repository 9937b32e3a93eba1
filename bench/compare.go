package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
)

// Compare mode: medians over rounds of the --json outputs of several
// registries, the ratio of the first (candidate) to the second (baseline),
// and optionally one set of Stowage's goals (goals.go). Output is Markdown, readable as is in a
// terminal, so scripts/bench.sh can paste it into docs/performance.md.

type series struct {
	name   string
	rounds int
	values map[string][]float64
	// byRound holds each round's metrics in argument order, nil for a
	// round whose file is missing, so two series run in the same rounds
	// can be paired round by round (see roundRatios).
	byRound []map[string]float64
}

func loadSeries(arg string) (series, error) {
	name, files, ok := strings.Cut(arg, "=")
	if !ok || name == "" || files == "" {
		return series{}, fmt.Errorf("compare argument %q: want NAME=file.json[,file.json...]", arg)
	}
	s := series{name: name, values: map[string][]float64{}}
	for _, f := range strings.Split(files, ",") {
		b, err := os.ReadFile(f)
		if err != nil {
			// A failed round leaves no file; its metrics count as missing.
			fmt.Fprintf(os.Stderr, "bench: compare: %v (round skipped)\n", err)
			s.rounds++
			s.byRound = append(s.byRound, nil)
			continue
		}
		var m map[string]float64
		if err := json.Unmarshal(b, &m); err != nil {
			return series{}, fmt.Errorf("%s: %w", f, err)
		}
		s.rounds++
		s.byRound = append(s.byRound, m)
		for k, v := range m {
			s.values[k] = append(s.values[k], v)
		}
	}
	return s, nil
}

// lowerIsBetter: times, latencies and memory; everything else is a rate.
func lowerIsBetter(metric string) bool {
	return strings.HasSuffix(metric, "_ms") || strings.HasSuffix(metric, "_MiB")
}

// metricOrder is scenario order, so the table reads like the run.
var metricOrder = []string{
	"push_mono_c1_MBps", "push_mono_c4_MBps", "push_chunked_c1_MBps", "push_chunked_c4_MBps",
	"pull_c1_MBps", "pull_c4_MBps", "small_push_ips",
	"manifest_get_rps", "manifest_get_p50_ms", "manifest_get_p99_ms",
	"blob_head_rps", "blob_head_p50_ms", "blob_head_p99_ms",
	"tag_push_tps", "tag_list_ms", "tag_list_n1000_ms", "catalog_ms", "peak_rss_MiB",
}

func (s series) median(metric string) float64 { return median(s.values[metric]) }

// runCompare prints the table and, when goalSet is not empty, the goals of
// that set (see goalSets). With spread, every cell also shows the lowest and
// highest round, and with two series a last column shows the ratio taken
// round by round (round i of the first over round i of the second: the
// servers of one round ran minutes apart, so pairing them cancels most of
// the drift of a shared machine's load).
func runCompare(w io.Writer, args []string, goalSet string, spread bool) error {
	if len(args) < 1 {
		return fmt.Errorf("compare: need NAME=files arguments")
	}
	var goals []goal
	if goalSet != "" {
		var ok bool
		if goals, ok = goalSets[goalSet]; !ok {
			return fmt.Errorf("compare: unknown goal set %q (known: %s)", goalSet, goalSetNames())
		}
		if len(args) != 2 {
			return fmt.Errorf("compare --goals needs exactly two series (candidate, baseline)")
		}
	}
	var all []series
	for _, a := range args {
		s, err := loadSeries(a)
		if err != nil {
			return err
		}
		all = append(all, s)
	}
	metrics := slices.Clone(metricOrder)
	var extra []string
	for _, s := range all {
		for k := range s.values {
			if !slices.Contains(metrics, k) && !slices.Contains(extra, k) {
				extra = append(extra, k)
			}
		}
	}
	slices.Sort(extra)
	metrics = append(metrics, extra...)

	head := "| metric |"
	sep := "|---|"
	for _, s := range all {
		head += fmt.Sprintf(" %s (median of %d) |", s.name, s.rounds)
		sep += "---:|"
	}
	two := len(all) == 2
	if two {
		head += fmt.Sprintf(" %s/%s | %s is |", all[0].name, all[1].name, all[0].name)
		sep += "---:|---|"
		if spread {
			head += " per-round ratio: median (min–max) |"
			sep += "---:|"
		}
	}
	fmt.Fprintln(w, head)
	fmt.Fprintln(w, sep)
	for _, m := range metrics {
		row := "| " + m + " |"
		seen := false
		for _, s := range all {
			row += " " + cell(s, m, spread) + " |"
			seen = seen || len(s.values[m]) > 0
		}
		if !seen {
			continue
		}
		if two {
			a, b := all[0].median(m), all[1].median(m)
			row += fmt.Sprintf(" %s | %s |", fmtRatio(a/b), advantage(m, a, b))
			if spread {
				row += " " + ratioSpread(roundRatios(all[0], all[1], m)) + " |"
			}
		}
		fmt.Fprintln(w, row)
	}
	if goals != nil {
		fmt.Fprintln(w)
		printGoals(w, all[0], all[1], goals)
	}
	return nil
}

func cell(s series, m string, spread bool) string {
	v := s.values[m]
	if len(v) == 0 {
		return "n/a"
	}
	out := fmtNum(median(v))
	if spread && len(v) > 1 {
		out += fmt.Sprintf(" (%s–%s)", fmtNum(slices.Min(v)), fmtNum(slices.Max(v)))
	}
	if len(v) < s.rounds {
		out += fmt.Sprintf(" (%d/%d rounds)", len(v), s.rounds)
	}
	return out
}

// roundRatios is a's metric over b's, round by round, for the rounds where
// both have it.
func roundRatios(a, b series, m string) []float64 {
	var out []float64
	for i := range min(len(a.byRound), len(b.byRound)) {
		x, okA := a.byRound[i][m]
		y, okB := b.byRound[i][m]
		if okA && okB && y != 0 {
			out = append(out, x/y)
		}
	}
	return out
}

func ratioSpread(rs []float64) string {
	switch len(rs) {
	case 0:
		return "n/a"
	case 1:
		return fmtRatio(rs[0])
	}
	return fmt.Sprintf("%s (%s–%s)", fmtRatio(median(rs)), fmtRatio(slices.Min(rs)), fmtRatio(slices.Max(rs)))
}

func fmtNum(v float64) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "n/a"
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

func fmtRatio(r float64) string {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", r)
}

// advantage states the comparison in the direction that reads naturally:
// for rates the candidate/baseline ratio, for times baseline/candidate.
func advantage(m string, a, b float64) string {
	if math.IsNaN(a/b) || math.IsInf(a/b, 0) || a == 0 {
		return "n/a"
	}
	switch {
	case strings.HasSuffix(m, "_MiB"):
		return fmt.Sprintf("%.2f× the memory (lower is better)", a/b)
	case lowerIsBetter(m):
		return fmt.Sprintf("%.2f× faster (baseline/candidate)", b/a)
	default:
		return fmt.Sprintf("%.2f× the throughput (higher is better)", a/b)
	}
}
