package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

// table prints the results of runs (JSON files from --json, one per size)
// as a Markdown table: a row per figure, a column per run; repeated
// requests as "p50 / p99 ms", single passes as their duration, and the
// server's peak RSS after the last figure.
func table(w io.Writer, files []string) error {
	var runs []results
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		var r results
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		runs = append(runs, r)
	}
	if len(runs) == 0 {
		return nil
	}
	fmt.Fprintf(w, "| %s |", runs[0].DB)
	for _, r := range runs {
		fmt.Fprintf(w, " %s manifests, %s repos |", count(r.Manifests), count(r.Repos))
	}
	fmt.Fprintf(w, "\n|---|%s\n", strings.Repeat("---|", len(runs)))
	fmt.Fprint(w, "| build (bench/scale, not measured against a goal) |")
	for _, r := range runs {
		fmt.Fprintf(w, " %.0f s |", r.BuildSeconds)
	}
	fmt.Fprintln(w)
	for _, k := range runs[0].Order {
		fmt.Fprintf(w, "| %s |", k)
		for _, r := range runs {
			l := r.Lines[k]
			switch {
			case l == nil:
				fmt.Fprint(w, " – |")
			case l.N > 1:
				fmt.Fprintf(w, " %s / %s ms |", ms(l.P50), ms(l.P99))
			default:
				fmt.Fprintf(w, " %s ms |", ms(l.P50))
			}
		}
		if l := runs[0].Lines[k]; l != nil && l.Note != "" && !strings.Contains(l.Note, "deleted") {
			fmt.Fprintf(w, " <!-- %s -->", l.Note)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprint(w, "| peak RSS (VmHWM) at the end |")
	for _, r := range runs {
		peak := 0.0
		for _, l := range r.Lines {
			peak = max(peak, l.PeakMB)
		}
		fmt.Fprintf(w, " %.0f MiB |", peak)
	}
	fmt.Fprintln(w)
	return nil
}

func ms(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func count(n int) string {
	switch {
	case n >= 1000000 && n%1000000 == 0:
		return fmt.Sprintf("%dM", n/1000000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}
