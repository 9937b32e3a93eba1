package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/transfer"
)

const exportUsage = `Usage: stowage export -o DIR | FILE.tar | - [--filter REPO_REGEX:TAG_REGEX …] [--ago 30d] [--untagged] [--since MARKER]

Writes images to an OCI image layout: a directory (-o DIR), a tar of one
(-o FILE.tar), or that tar on standard output (-o -). Skopeo, crane, oras
and 'stowage import' read it.

What goes is chosen as 'stowage purge' chooses (both expressions match in
full; no --filter: every repository and tag): tags whose repository and tag
match a --filter and were last pushed longer ago than --ago; with --untagged
also the untagged manifests. Each image goes with every platform of an
index and its referrers (signatures, SBOMs); each blob is written once
however many images share it, and verified by digest as it is read.

The layout holds a marker, stowage-export.json (also written to --marker
FILE): '--since MARKER' then exports only what changed after that export
(tags moved, new manifests, new referrers; blobs exported then are left out,
an import finds them in the registry).

An export into a directory that was interrupted resumes when run again: blobs
already there are verified and kept, a partial one is continued.
`

func runExport(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var filters multiFlag
	var out, ago, since, markerOut, output *string
	var untagged *bool
	var parallel *int
	fl, reg, ok := parseAdmin("export", exportUsage, args, stderr, func(fl *flag.FlagSet) {
		out = fl.String("o", "", "where to write: a directory, FILE.tar, or - (a tar on standard output)")
		fl.Var(&filters, "filter", "REPO_REGEX:TAG_REGEX (repeatable; default: every repository and tag)")
		ago = fl.String("ago", "0s", "only tags last pushed longer ago than this (e.g. 30d, 12h)")
		untagged = fl.Bool("untagged", false, "also export manifests without tags")
		since = fl.String("since", "", "a previous export's marker (DIR/stowage-export.json): export only what changed after it")
		markerOut = fl.String("marker", "", "also write this export's marker to FILE (for the next --since)")
		parallel = fl.Int("parallel", 4, "images read and blobs fetched at once (blobs: into a directory only)")
		output = fl.String("output", "table", "the report: table or json")
	})
	if !ok {
		return exitCode(fl, ok)
	}
	if !noArguments(fl, "export", stderr) {
		return 2
	}
	if *out == "" {
		fmt.Fprintln(stderr, "stowage export: -o DIR, -o FILE.tar or -o - is needed: where to write the layout")
		return 2
	}
	age, err := policy.ParseAge(*ago)
	if err != nil {
		fmt.Fprintf(stderr, "stowage export: --ago: %v\n", err)
		return 2
	}
	if len(filters) == 0 {
		filters = multiFlag{".*:.*"}
	}
	opts := transfer.ExportOptions{Ago: age, Untagged: *untagged, Parallel: *parallel}
	for _, f := range filters {
		pf, err := stowage.ParsePurgeFilter(f)
		if err != nil {
			fmt.Fprintf(stderr, "stowage export: --filter: %v\n", err)
			return 2
		}
		opts.Filters = append(opts.Filters, pf)
	}
	if *since != "" {
		b, err := os.ReadFile(*since)
		if err == nil {
			opts.Since, err = transfer.ParseMarker(b)
		}
		if err != nil {
			fmt.Fprintf(stderr, "stowage export: --since %s: %v\n", *since, err)
			return 2
		}
	}
	// The report goes to stdout, unless the tar does.
	report := stdout
	if *out == "-" {
		report = stderr
	}
	sink, finish, err := openSink(*out, stdout)
	if err != nil {
		return fail(stderr, err)
	}
	bar := newBytesBar(stderr, "export")
	opts.Progress = bar.show
	c := newClient(*reg, stdout, stderr)
	rep, marker, err := transfer.Export(ctx, c.transfer(), sink, opts)
	bar.done()
	err = finish(err)
	if err != nil {
		if *out != "-" && !strings.HasSuffix(*out, ".tar") {
			err = fmt.Errorf("%w\n  run the same command again to resume: what is in %s is kept", err, *out)
		}
		return fail(stderr, err)
	}
	if *markerOut != "" {
		b, _ := json.Marshal(marker)
		if err := os.WriteFile(*markerOut, b, 0o644); err != nil {
			return fail(stderr, err)
		}
	}
	if *output == "json" {
		return printJSON(report, rep)
	}
	fmt.Fprintf(report, "exported %d images (%d referrers, %d manifests, %d blobs, %s; %s fetched", rep.Images, rep.Referrers, rep.Manifests, rep.Blobs, bytesStr(rep.Bytes), bytesStr(rep.Fetched))
	if opts.Since != nil {
		fmt.Fprintf(report, "; %d unchanged since the marker, %d repositories without changes in the feed not read", rep.Unchanged, rep.ReposSkipped)
	}
	fmt.Fprintf(report, ") to %s in %.1fs, %.1f MB/s; marker at change feed seq %d\n", *out, rep.Seconds, rep.MBPerSecond, rep.Seq)
	return 0
}

// openSink opens the export's destination; finish closes it, and for a
// tar file renames FILE.tar.partial to FILE.tar only when the export
// succeeded (a partial tar never looks complete).
func openSink(out string, stdout io.Writer) (transfer.Sink, func(error) error, error) {
	switch {
	case out == "-":
		s := transfer.NewTarSink(stdout)
		return s, func(err error) error {
			if cerr := s.Close(); err == nil {
				err = cerr
			}
			return err
		}, nil
	case strings.HasSuffix(out, ".tar"):
		f, err := os.Create(out + ".partial")
		if err != nil {
			return nil, nil, err
		}
		s := transfer.NewTarSink(f)
		return s, func(err error) error {
			if cerr := s.Close(); err == nil {
				err = cerr
			}
			if cerr := f.Sync(); err == nil {
				err = cerr
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				os.Remove(f.Name())
				return err
			}
			return os.Rename(f.Name(), out)
		}, nil
	default:
		s, err := transfer.NewDirSink(out)
		if err != nil {
			return nil, nil, err
		}
		return s, func(err error) error {
			if err == nil {
				err = s.Close()
			}
			return err
		}, nil
	}
}

// transfer returns the client export and import use: the OCI API with the
// admin's credentials and TLS settings.
func (c *client) transfer() *transfer.Client {
	return &transfer.Client{Base: c.base, Do: func(req *http.Request) (*http.Response, error) {
		if c.setupErr != nil {
			return nil, c.setupErr
		}
		if u := os.Getenv("STOWAGE_USERNAME"); u != "" {
			req.SetBasicAuth(u, os.Getenv("STOWAGE_PASSWORD"))
		}
		resp, err := c.http.Do(req)
		if err != nil {
			return nil, fmt.Errorf("cannot reach the registry at %s: %w (is 'stowage serve' running? use --registry)", c.base, err)
		}
		if resp.StatusCode == http.StatusUnauthorized && os.Getenv("STOWAGE_USERNAME") == "" {
			resp.Body.Close()
			return nil, fmt.Errorf("the registry at %s asks for credentials: set STOWAGE_USERNAME and STOWAGE_PASSWORD", c.base)
		}
		return resp, nil
	}}
}

// bytesBar draws a transfer's progress on a terminal: bytes, rate, ETA.
// Elsewhere it draws nothing (the command prints one summary line).
type bytesBar struct {
	w     io.Writer
	tty   bool
	verb  string
	start time.Time
	drawn bool
}

func newBytesBar(w io.Writer, verb string) *bytesBar {
	return &bytesBar{w: w, tty: isTerminal(w), verb: verb, start: time.Now()}
}

func (b *bytesBar) show(p transfer.Progress) {
	if !b.tty {
		return
	}
	el := time.Since(b.start).Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(p.Done) / el
	}
	eta := "--:--"
	if rate > 0 && p.Total >= p.Done {
		s := int(float64(p.Total-p.Done) / rate)
		eta = fmt.Sprintf("%d:%02d", s/60, s%60)
	}
	const width = 30
	fill := 0
	if p.Total > 0 {
		fill = int(min(p.Done, p.Total) * width / p.Total)
	}
	fmt.Fprintf(b.w, "\r%s %-9s [%s%s] %s / %s  %.1f MB/s  ETA %s ", b.verb, p.Phase, strings.Repeat("#", fill), strings.Repeat(".", width-fill),
		bytesStr(p.Done), bytesStr(p.Total), rate/1e6, eta)
	b.drawn = true
}

func (b *bytesBar) done() {
	if b.drawn {
		fmt.Fprintln(b.w)
	}
}
