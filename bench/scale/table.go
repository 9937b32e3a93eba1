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
		stopped := ""
		if r.Error != "" {
			stopped = " (run stopped early)"
		}
		fmt.Fprintf(w, " %s manifests, %s repos%s |", count(r.Manifests), count(r.Repos), stopped)
	}
	fmt.Fprintf(w, "\n|---|%s\n", strings.Repeat("---|", len(runs)))
	row := func(name string, cell func(r results) string) {
		fmt.Fprintf(w, "| %s |", name)
		for _, r := range runs {
			fmt.Fprintf(w, " %s |", cell(r))
		}
		fmt.Fprintln(w)
	}
	row("stowage measured (commit)", func(r results) string { return short(r.BinaryCommit, r.Binary) })
	row("registry built by (commit)", func(r results) string {
		if r.Build == nil {
			return "–"
		}
		s := short(r.Build.BuilderCommit, nil)
		if r.Reused {
			s += fmt.Sprintf(", kept, built %s", r.Build.Built.Format("15:04"))
		}
		return s
	})
	row("build (bench/scale, not measured against a goal)", func(r results) string { return fmt.Sprintf("%.0f s", r.BuildSeconds) })
	row("database / object files", func(r results) string {
		if r.Build == nil || r.Build.DBBytes == 0 {
			return "–"
		}
		return fmt.Sprintf("%s / %s in %s files", mib(r.Build.DBBytes), mib(r.Build.ObjectBytes), count(int(r.Build.ObjectFiles)))
	})
	// Every run's lines, in the order they were measured.
	var order []string
	seen := map[string]bool{}
	for _, r := range runs {
		for _, k := range r.Order {
			if !seen[k] {
				seen[k] = true
				order = append(order, k)
			}
		}
	}
	for _, k := range order {
		fmt.Fprintf(w, "| %s |", k)
		note := ""
		for _, r := range runs {
			l := r.Lines[k]
			switch {
			case l == nil:
				fmt.Fprint(w, " – |")
			case l.N == 0 && strings.HasPrefix(l.Note, "not supported"):
				fmt.Fprint(w, " not supported |")
				if note == "" {
					note = l.Note
				}
			case l.N == 0 && strings.Contains(l.Note, "TIMED OUT after "):
				_, after, _ := strings.Cut(l.Note, "TIMED OUT after ")
				fmt.Fprintf(w, " > %s (timed out) |", after)
			case l.N == 0:
				fmt.Fprintf(w, " %s |", l.Note)
			case l.N > 1:
				fmt.Fprintf(w, " %s / %s ms |", ms(l.P50), ms(l.P99))
			case strings.Contains(l.Note, "STOPPED"):
				got, _, _ := strings.Cut(l.Note, ", STOPPED")
				fmt.Fprintf(w, " > %s ms (stopped at the budget: %s) |", ms(l.P50), got)
			case strings.HasPrefix(l.Note, "migrated"):
				fmt.Fprintf(w, " %s ms (%s) |", ms(l.P50), l.Note)
			default:
				fmt.Fprintf(w, " %s ms |", ms(l.P50))
			}
			if l != nil && l.Note != "" && l.N > 0 && note == "" {
				note = l.Note
			}
		}
		if note != "" && !strings.Contains(note, "deleted") {
			fmt.Fprintf(w, " <!-- %s -->", note)
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

// short is a commit's first 10 characters (and "+modified"), else the
// binary's version answer's commit, else "?".
func short(commit string, version json.RawMessage) string {
	if commit == "" && version != nil {
		var v struct{ Commit string }
		json.Unmarshal(version, &v)
		commit = v.Commit
	}
	if commit == "" {
		return "?"
	}
	rest := ""
	if c, ok := strings.CutSuffix(commit, "+modified"); ok {
		commit, rest = c, "+modified"
	}
	return commit[:min(10, len(commit))] + rest
}

func mib(b int64) string {
	if b >= 10<<30 {
		return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
	}
	return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20))
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
