package main

import (
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
)

// Stowage's performance goals, in sets chosen with --goal-set: against CNCF
// distribution (the default), and encrypted against unencrypted Stowage.
// Each is a ratio that must reach want (a floor), or stay at or under it
// for a ceiling; factors are oriented so the printed number reads like the
// goal text.
type goal struct {
	desc    string
	factor  func(cand, base series) float64
	want    float64
	shown   string // how the measured factor is described
	ceiling bool
}

// faster: baseline/candidate for times; higher: candidate/baseline for
// rates; self: a ratio between two of the candidate's own metrics.
func higher(m string) func(c, b series) float64 {
	return func(c, b series) float64 { return c.median(m) / b.median(m) }
}

func faster(m string) func(c, b series) float64 {
	return func(c, b series) float64 { return b.median(m) / c.median(m) }
}

func selfRatio(num, den string) func(c, b series) float64 {
	return func(c, _ series) float64 { return c.median(num) / c.median(den) }
}

var distributionGoals = []goal{
	{"manifest GET req/s ≥ 8×", higher("manifest_get_rps"), 8, "×", false},
	{"manifest GET p99 ≤ 1/8 of distribution's", faster("manifest_get_p99_ms"), 8, "× lower", false},
	{"blob HEAD req/s ≥ 6×", higher("blob_head_rps"), 6, "×", false},
	{"64 MiB monolithic push ≥ 3× (concurrency 1)", higher("push_mono_c1_MBps"), 3, "×", false},
	{"64 MiB monolithic push ≥ 3× (concurrency 4)", higher("push_mono_c4_MBps"), 3, "×", false},
	{"64 MiB chunked push ≥ 2× (concurrency 1)", higher("push_chunked_c1_MBps"), 2, "×", false},
	{"64 MiB chunked push ≥ 2× (concurrency 4)", higher("push_chunked_c4_MBps"), 2, "×", false},
	{"chunked ≥ 80% of monolithic, Stowage (concurrency 1)", selfRatio("push_chunked_c1_MBps", "push_mono_c1_MBps"), 0.8, " of monolithic", false},
	{"chunked ≥ 80% of monolithic, Stowage (concurrency 4)", selfRatio("push_chunked_c4_MBps", "push_mono_c4_MBps"), 0.8, " of monolithic", false},
	{"pull ≥ 1.1× (concurrency 1)", higher("pull_c1_MBps"), 1.1, "×", false},
	{"pull ≥ 1.1× (concurrency 4)", higher("pull_c4_MBps"), 1.1, "×", false},
	{"small-image push ≥ 2×", higher("small_push_ips"), 2, "×", false},
	{"tag push ≥ 1.5×", higher("tag_push_tps"), 1.5, "×", false},
	{"full tag list (no n) ≥ 1.5× faster", faster("tag_list_ms"), 1.5, "× faster", false},
	{"full catalog ≥ 10× faster", faster("catalog_ms"), 10, "× faster", false},
	// RSS is the one ceiling: Stowage may use a little more memory.
	{"peak RSS ≤ 1.2× distribution's", higher("peak_rss_MiB"), 1.2, "× distribution's", true},
}

// encryptionGoals (issue 4): encryption at rest may cost at most 20% of the
// big-blob push and pull throughput. Candidate = Stowage's default
// (encrypted), baseline = the same binary with STOWAGE_ENCRYPTION=none.
var encryptionGoals = []goal{
	{"64 MiB monolithic push ≥ 80% of unencrypted (concurrency 1)", higher("push_mono_c1_MBps"), 0.8, " of unencrypted", false},
	{"64 MiB monolithic push ≥ 80% of unencrypted (concurrency 4)", higher("push_mono_c4_MBps"), 0.8, " of unencrypted", false},
	{"64 MiB chunked push ≥ 80% of unencrypted (concurrency 1)", higher("push_chunked_c1_MBps"), 0.8, " of unencrypted", false},
	{"64 MiB chunked push ≥ 80% of unencrypted (concurrency 4)", higher("push_chunked_c4_MBps"), 0.8, " of unencrypted", false},
	{"pull ≥ 80% of unencrypted (concurrency 1)", higher("pull_c1_MBps"), 0.8, " of unencrypted", false},
	{"pull ≥ 80% of unencrypted (concurrency 4)", higher("pull_c4_MBps"), 0.8, " of unencrypted", false},
}

// durableGoals (issue 18): a durable push runs at the disk's speed,
// measured in the same run (scenario disk: a blob written and fsynced as storage/fs does).
// They read the candidate's own metrics: bench --compare --goals
// --goal-set durable stowage=R1.json,... stowage=R1.json,...
var durableGoals = []goal{
	{"64 MiB monolithic push ≥ 90% of the disk's durable write (concurrency 1)", selfRatio("push_mono_c1_MBps", "disk_write_c1_MBps"), 0.9, " of the disk", false},
	{"64 MiB monolithic push ≥ 90% of the disk's durable write (concurrency 4)", selfRatio("push_mono_c4_MBps", "disk_write_c4_MBps"), 0.9, " of the disk", false},
	{"64 MiB chunked push ≥ 90% of the disk's durable write (concurrency 1)", selfRatio("push_chunked_c1_MBps", "disk_write_c1_MBps"), 0.9, " of the disk", false},
	{"64 MiB chunked push ≥ 90% of the disk's durable write (concurrency 4)", selfRatio("push_chunked_c4_MBps", "disk_write_c4_MBps"), 0.9, " of the disk", false},
}

// goalSets are the values of --goal-set.
var goalSets = map[string][]goal{
	"distribution": distributionGoals,
	"encryption":   encryptionGoals,
	"durable":      durableGoals,
}

func goalSetNames() string {
	names := slices.Sorted(maps.Keys(goalSets))
	return strings.Join(names, ", ")
}

func printGoals(w io.Writer, cand, base series, goals []goal) {
	fmt.Fprintf(w, "| goal (%s vs %s) | measured | status |\n|---|---:|---|\n", cand.name, base.name)
	met := 0
	for _, g := range goals {
		f := g.factor(cand, base)
		status := "not met"
		switch {
		case math.IsNaN(f) || math.IsInf(f, 0) || f == 0:
			status = "not measured"
		case f >= g.want && !g.ceiling, f <= g.want && g.ceiling:
			status = "met"
			met++
		}
		measured := "n/a"
		if status != "not measured" {
			measured = fmtFactor(f, g.want) + g.shown
		}
		fmt.Fprintf(w, "| %s | %s | %s |\n", g.desc, measured, status)
	}
	fmt.Fprintf(w, "\n%d of %d goals met.\n", met, len(goals))
}

// fmtFactor prints f with two decimals, or three when two would read as the
// goal itself (0.795 against 0.80 is a miss, and must not print as 0.80).
func fmtFactor(f, want float64) string {
	s := fmt.Sprintf("%.2f", f)
	if f != want && s == fmt.Sprintf("%.2f", want) {
		s = fmt.Sprintf("%.3f", f)
	}
	return s
}
