package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeRound writes one round's --json output and returns its path.
func writeRound(t *testing.T, name string, m map[string]float64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name+".json")
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func blobMetrics(scale float64) map[string]float64 {
	return map[string]float64{
		"push_mono_c1_MBps": 500 * scale, "push_mono_c4_MBps": 600 * scale,
		"push_chunked_c1_MBps": 400 * scale, "push_chunked_c4_MBps": 450 * scale,
		"pull_c1_MBps": 1000 * scale, "pull_c4_MBps": 2000 * scale,
	}
}

func compareOut(t *testing.T, goalSet string, args ...string) string {
	t.Helper()
	var sb strings.Builder
	if err := runCompare(&sb, args, goalSet, false); err != nil {
		t.Fatalf("runCompare(%q): %v", goalSet, err)
	}
	return sb.String()
}

func TestCompareEncryptionGoals(t *testing.T) {
	enc := blobMetrics(0.9)
	enc["pull_c4_MBps"] = 2000 * 0.7 // the one miss
	plain := blobMetrics(1)
	// Medians over rounds: the middle round decides.
	out := compareOut(t, "encryption",
		"encrypted="+writeRound(t, "e1", enc)+","+writeRound(t, "e2", blobMetrics(0.1))+","+writeRound(t, "e3", blobMetrics(5)),
		"unencrypted="+writeRound(t, "u1", plain))
	for _, want := range []string{
		"| encrypted (median of 3) | unencrypted (median of 1) | encrypted/unencrypted |",
		"| push_mono_c1_MBps | 450 | 500 | 0.90 |",
		"| goal (encrypted vs unencrypted) | measured | status |",
		"| 64 MiB monolithic push ≥ 80% of unencrypted (concurrency 1) | 0.90 of unencrypted | met |",
		"| pull ≥ 80% of unencrypted (concurrency 4) | 0.70 of unencrypted | not met |",
		"5 of 6 goals met.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "manifest GET") {
		t.Errorf("encryption goals include distribution's:\n%s", out)
	}
}

func TestCompareDistributionGoalsUnchanged(t *testing.T) {
	out := compareOut(t, "distribution",
		"stowage="+writeRound(t, "s", blobMetrics(3)), "distribution="+writeRound(t, "d", blobMetrics(1)))
	for _, want := range []string{
		"| goal (stowage vs distribution) | measured | status |",
		"| 64 MiB monolithic push ≥ 3× (concurrency 1) | 3.00× | met |",
		"| manifest GET req/s ≥ 8× | n/a | not measured |",
		"of 16 goals met.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestCompareWithoutGoals(t *testing.T) {
	a, b, c := writeRound(t, "a", blobMetrics(1)), writeRound(t, "b", blobMetrics(1)), writeRound(t, "c", blobMetrics(1))
	out := compareOut(t, "", "a="+a, "b="+b, "c="+c)
	if strings.Contains(out, "goal") || strings.Contains(out, "a/b") {
		t.Errorf("three series without --goals: want no goals and no ratio column:\n%s", out)
	}
}

func TestCompareGoalErrors(t *testing.T) {
	a := writeRound(t, "a", blobMetrics(1))
	var sb strings.Builder
	if err := runCompare(&sb, []string{"x=" + a, "y=" + a}, "nope", false); err == nil || !strings.Contains(err.Error(), "encryption") {
		t.Errorf("unknown goal set: err = %v, want one naming the known sets", err)
	}
	if err := runCompare(&sb, []string{"x=" + a, "y=" + a, "z=" + a}, "encryption", false); err == nil {
		t.Error("goals over three series: want an error")
	}
}

func TestFmtFactor(t *testing.T) {
	for _, c := range []struct {
		f, want float64
		out     string
	}{
		{0.7955, 0.8, "0.795"},
		{0.8, 0.8, "0.80"},
		{0.8031, 0.8, "0.803"},
		{0.86, 0.8, "0.86"},
		{2.2222, 3, "2.22"},
	} {
		if got := fmtFactor(c.f, c.want); got != c.out {
			t.Errorf("fmtFactor(%v, %v) = %q, want %q", c.f, c.want, got, c.out)
		}
	}
}

// TestCompareSpread: cells show the lowest and highest round, and the last
// column pairs rounds by position, also when a round's file is missing (a
// failed run must not shift the pairing by one).
func TestCompareSpread(t *testing.T) {
	tp := func(name string, v float64) string {
		return writeRound(t, name, map[string]float64{"tag_push_tps": v})
	}
	missing := filepath.Join(t.TempDir(), "missing.json")
	// Round ratios: 90/100 = 0.90, round 2 missing on the candidate, 120/100 = 1.20, 95/100 = 0.95.
	cand := "after=" + strings.Join([]string{tp("a1", 90), missing, tp("a3", 120), tp("a4", 95)}, ",")
	base := "before=" + strings.Join([]string{tp("b1", 100), tp("b2", 500), tp("b3", 100), tp("b4", 100)}, ",")
	var sb strings.Builder
	if err := runCompare(&sb, []string{cand, base}, "", true); err != nil {
		t.Fatal(err)
	}
	out := sb.String()
	for _, want := range []string{
		"| after/before | after is | per-round ratio: median (min–max) |",
		// Medians: after 95 of {90,120,95}; before 100 of {100,500,100,100}.
		"| tag_push_tps | 95.0 (90.0–120) (3/4 rounds) | 100 (100–500) | 0.95 | 0.95× the throughput (higher is better) | 0.95 (0.90–1.20) |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	sb.Reset()
	if err := runCompare(&sb, []string{cand, base}, "", false); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sb.String(), "per-round") || strings.Contains(sb.String(), "–") {
		t.Errorf("without spread: want the plain table:\n%s", sb.String())
	}
}
