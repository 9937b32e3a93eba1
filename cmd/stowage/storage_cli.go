package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/stowage/stowage/mgmt"
	"github.com/stowage/stowage/scrub"
	"github.com/stowage/stowage/storage/shard"
)

const scrubUsage = `Usage: stowage scrub [flags]

Reads every stored blob back (through decryption, from every copy a mirror
keeps), checks it against its digest and size, and rewrites a missing or
corrupt copy from a good one. Runs online, with a progress bar; the
registry also scrubs in the background (scrub.interval, default weekly).
Exits with status 1 if a blob has no good copy left, or could not be
checked (storage or key unavailable).
`

func runScrub(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var output *string
	var last *bool
	fl, reg, ok := parseAdmin("scrub", scrubUsage, args, stderr, func(fl *flag.FlagSet) {
		output = fl.String("output", "table", "table or json")
		last = fl.Bool("last", false, "show the last scrub's report instead of running one")
	})
	if !ok {
		return exitCode(fl, ok)
	}
	if !noArguments(fl, "scrub", stderr) {
		return 2
	}
	c := newClient(*reg, stdout, stderr)
	var rep scrub.Report
	var err error
	if *last {
		err = c.do(ctx, http.MethodGet, "/api/v1/scrub", &rep)
	} else {
		err = c.job(ctx, "/api/v1/scrub", &rep)
	}
	if err != nil {
		return fail(stderr, err)
	}
	if *output == "json" {
		printJSON(stdout, rep)
	} else {
		fmt.Fprintf(stdout, "scrub of %d blobs (%s, %d copies) started %s, took %s: %d ok, %d repaired copies, %d degraded, %d lost\n",
			rep.Blobs, bytesStr(rep.Bytes), rep.Copies, rep.Started, rep.Duration, rep.OK, rep.Repaired, rep.Degraded, rep.Lost)
		for _, p := range rep.Problems {
			var parts []string
			if len(p.Result.Missing) > 0 {
				parts = append(parts, "missing on "+strings.Join(p.Result.Missing, ", "))
			}
			if len(p.Result.Corrupt) > 0 {
				parts = append(parts, "corrupt on "+strings.Join(p.Result.Corrupt, ", "))
			}
			if len(p.Result.Repaired) > 0 {
				parts = append(parts, "repaired on "+strings.Join(p.Result.Repaired, ", "))
			}
			parts = append(parts, p.Result.Errors...)
			fmt.Fprintf(stdout, "  %-10s %s: %s\n", p.Status, p.Digest, strings.Join(parts, "; "))
		}
	}
	if rep.Unreadable > 0 {
		fmt.Fprintf(stderr, "stowage scrub: %d blobs could not be checked (storage or encryption key unavailable); run it again when they are back\n", rep.Unreadable)
	}
	if rep.Lost > 0 || rep.Unreadable > 0 {
		return 1
	}
	return 0
}

const storageUsage = `Usage: stowage storage status | rebalance [--dry-run] [flags]

  status     the storage topology and the health of every mirror copy
             (healthy, degraded, down), with pending repairs, the copies
             repaired (by the repair queue and by scrubs), and the objects
             reads found missing or damaged on each copy
  rebalance  after adding a shard: move every object that is not on the
             shard it belongs on, online, with a progress bar (reads keep
             working during the move); --dry-run only counts them
`

func runStorage(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	sub, args, code, ok := subcommand("storage", args, storageUsage, stderr)
	if !ok {
		return code
	}
	var dry *bool
	var output *string
	fl, reg, ok := parseAdmin("storage "+sub, storageUsage, args, stderr, func(fl *flag.FlagSet) {
		dry = fl.Bool("dry-run", false, "rebalance: only count misplaced objects")
		output = outputFlag(fl)
	})
	if !ok {
		return exitCode(fl, ok)
	}
	c := newClient(*reg, stdout, stderr)
	switch sub {
	case "status":
		if !noArguments(fl, "storage status", stderr) {
			return 2
		}
		var st mgmt.TopologyStatus
		if err := c.do(ctx, http.MethodGet, "/api/v1/storage", &st); err != nil {
			return fail(stderr, err)
		}
		if *output == "json" {
			return printJSON(stdout, st)
		}
		fmt.Fprintf(stdout, "storage: %s\n", st.Description)
		for _, m := range st.Mirrors {
			fmt.Fprintf(stdout, "mirror %s (write quorum %d, %d repairs pending, %d repaired):\n", m.Path, m.WriteQuorum, m.PendingRepairs, m.Repaired)
			for _, cp := range m.Copies {
				line := fmt.Sprintf("  %-16s %s", cp.Name, cp.State)
				if cp.LastError != "" && cp.State != "healthy" {
					line += fmt.Sprintf(" (%d failures in a row; last: %s at %s)", cp.Failures, cp.LastError, cp.LastErrorAt.Format("15:04:05"))
				}
				if cp.MissingFound+cp.CorruptFound > 0 {
					line += fmt.Sprintf("; reads found objects missing: %d, damaged: %d (each queued for repair)", cp.MissingFound, cp.CorruptFound)
				}
				fmt.Fprintln(stdout, line)
			}
			if m.Lost > 0 {
				fmt.Fprintf(stdout, "  lost: %d objects have no good copy left (every copy damaged or missing); restore them from a backup:\n", m.Lost)
				for _, k := range m.LostObjects {
					fmt.Fprintf(stdout, "    %s\n", k)
				}
				if m.Lost > len(m.LostObjects) {
					fmt.Fprintf(stdout, "    … and %d more\n", m.Lost-len(m.LostObjects))
				}
			}
		}
		for _, s := range st.ShardSets {
			fmt.Fprintf(stdout, "shards %s: %s\n", s.Path, strings.Join(s.Shards, ", "))
		}
		return 0
	case "rebalance":
		q := ""
		if *dry {
			q = "?dry_run=true"
		}
		var p shard.RebalanceProgress
		if err := c.job(ctx, "/api/v1/storage/rebalance"+q, &p); err != nil {
			return fail(stderr, err)
		}
		if *output == "json" {
			return printJSON(stdout, struct {
				shard.RebalanceProgress
				DryRun bool `json:"dryRun"`
			}{p, *dry})
		}
		verb := "moved"
		if *dry {
			verb = "would move"
		}
		fmt.Fprintf(stdout, "scanned %d objects: %d were away from their shard; %s %d (%s copied)\n", p.Scanned, p.Misplaced, verb, max(p.Moved, map[bool]int64{true: p.Misplaced}[*dry]), bytesStr(p.Bytes))
		return 0
	}
	return unknownSub(stderr, "storage", sub, storageUsage)
}
