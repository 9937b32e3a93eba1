package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/auth"
	"github.com/stowage/stowage/config"
	"github.com/stowage/stowage/feed"
	"github.com/stowage/stowage/metrics"
	"github.com/stowage/stowage/recyclebin"
	"github.com/stowage/stowage/replication"
)

// newReplication builds a region's replication from its configuration
// (nil when replication.region is not set). Peer passwords come from the
// environment variables the configuration names.
func newReplication(c config.Replication, reg *stowage.Registry, f *feed.Feed, authority *auth.Authority, log *slog.Logger) (*replication.Service, error) {
	if c.Region == "" {
		return nil, nil
	}
	opts := replication.Options{Region: c.Region, ReadThrough: c.ReadThroughOn(), Concurrency: c.Concurrency,
		Bandwidth: int64(c.Bandwidth), Log: log}
	if authority != nil {
		opts.Identities = authority // users, tokens and scope maps are the same in every region
	}
	opts.Restore = restoreFromBin(recyclebin.New(reg)) // restores replicate (docs/replication.md)
	// The replicators' own reader of the feed, looking for new events
	// every 100 ms (the shared one's 500 ms was most of the lag).
	if s, ok := feed.Of(reg.DB()); ok {
		cursors, _ := feed.CursorsOf(reg.DB())
		f = feed.New(s, feed.Options{Poll: 100 * time.Millisecond, Cursors: cursors})
	}
	for _, p := range c.Peers {
		pw := ""
		if p.PasswordEnv != "" {
			pw = os.Getenv(p.PasswordEnv)
			if pw == "" {
				return nil, fmt.Errorf("replication peer %s: the environment variable %s (password_env) is empty: set it to the password of %s on %s", p.Name, p.PasswordEnv, p.Username, p.URL)
			}
		}
		opts.Peers = append(opts.Peers, replication.Peer{Name: p.Name, URL: p.URL, Username: p.Username, Password: pw, CACert: p.CACert})
	}
	return replication.New(reg, f, opts)
}

const replicationUsage = `Usage: stowage replication status [REPO:TAG|REPO@DIGEST] [flags]

Geo-replication (docs/replication.md). Without an argument: per peer, the
replicator's state (shipping, retrying, stopped), its lag in events (changes
made in this region not yet shipped) and in seconds (age of the oldest of
them), the backlog in bytes (the images those pushes would send at most),
and the last error and when. With REPO:TAG or REPO@DIGEST: which regions
hold it, at which digest, and whether complete (the manifest and every
blob and child manifest it references).

A back-fill of a peer (POST /api/v1/replication/backfill?peer=NAME) shows
its progress under the table.
`

func runReplication(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	sub, rest, code, ok := subcommand("replication", args, replicationUsage, stderr)
	if !ok {
		return code
	}
	if sub != "status" {
		return unknownSub(stderr, "replication", sub, replicationUsage)
	}
	var output *string
	fl, reg, ok := parseAdmin("replication status", replicationUsage, rest, stderr, func(fl *flag.FlagSet) { output = outputFlag(fl) })
	if !ok {
		return exitCode(fl, ok)
	}
	if fl.NArg() > 1 {
		fmt.Fprintln(stderr, "stowage replication status: at most one REPO:TAG or REPO@DIGEST")
		return 2
	}
	c := newClient(*reg, stdout, stderr)
	if fl.NArg() == 1 {
		var out struct {
			Repository string                 `json:"repository"`
			Reference  string                 `json:"reference"`
			Regions    []replication.Location `json:"regions"`
		}
		if err := c.do(ctx, http.MethodGet, "/api/v1/replication/status?ref="+url.QueryEscape(fl.Arg(0)), &out); err != nil {
			return fail(stderr, err)
		}
		if *output == "json" {
			return printJSON(stdout, out)
		}
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "REGION\tDIGEST\tCOMPLETE\tNOTE")
		for _, l := range out.Regions {
			d, note, complete := string(l.Digest), l.Error, "no"
			if d == "" && note == "" {
				d, note = "-", "not there"
			}
			if l.Complete {
				complete = "yes"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", l.Region, d, complete, note)
		}
		tw.Flush()
		return 0
	}
	var st replication.Status
	if err := c.do(ctx, http.MethodGet, "/api/v1/replication/status", &st); err != nil {
		return fail(stderr, err)
	}
	if *output == "json" {
		return printJSON(stdout, st)
	}
	if st.Region == "" {
		fmt.Fprintln(stdout, "replication is not configured on this registry (replication.region and peers; see docs/replication.md)")
		return 0
	}
	rt := "on"
	if !st.ReadThrough {
		rt = "off"
	}
	fmt.Fprintf(stdout, "region %s, read-through %s\n", st.Region, rt)
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PEER\tSTATE\tLAG (EVENTS)\tLAG (S)\tBACKLOG\tLAST ERROR")
	for _, p := range st.Peers {
		lag := fmt.Sprint(p.LagEvents)
		if !p.LagExact {
			lag = ">" + lag
		}
		last := "-"
		if p.LastError != "" {
			last = fmt.Sprintf("%s (%s ago)", strings.ReplaceAll(p.LastError, "\n", "; "), time.Since(p.LastErrorAt).Round(time.Second))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f\t%d B\t%s\n", p.Name, p.State, lag, p.LagSeconds, p.BacklogBytes, last)
	}
	tw.Flush()
	for _, p := range st.Peers {
		if b := p.Backfill; b != nil {
			state := "done"
			if b.Running {
				state = "running (" + b.Current + ")"
			} else if b.LastError != "" {
				state = "stopped: " + b.LastError
			}
			fmt.Fprintf(stdout, "back-fill of %s: %s; %d repositories, %d checked, %d shipped (%d applied)\n", p.Name, state, b.Repos, b.Checked, b.Shipped, b.Applied)
		}
	}
	return 0
}

// replicationMetrics exports the replicators' gauges per peer
// (docs/observability.md), read at most every 5 s.
func replicationMetrics(reg prometheus.Registerer, repl *replication.Service) {
	descs := make([]*prometheus.Desc, len(replication.Gauges))
	for i, g := range replication.Gauges {
		descs[i] = prometheus.NewDesc(g.Name, g.Help, []string{"region", "peer"}, nil)
	}
	reg.MustRegister(metrics.NewCached(5*time.Second, func(ctx context.Context, ch chan<- prometheus.Metric) error {
		st, err := repl.Status(ctx)
		if err != nil {
			return err
		}
		for i, g := range replication.Gauges {
			for _, p := range st.Peers {
				ch <- metrics.Gauge(descs[i], g.Value(p), st.Region, p.Name)
			}
		}
		return nil
	}))
}

// restoreFromBin restores repo@d from bin, its newest entry; false when
// the bin holds none.
func restoreFromBin(bin *recyclebin.Bin) func(ctx context.Context, repo string, d stowage.Digest) (bool, error) {
	return func(ctx context.Context, repo string, d stowage.Digest) (bool, error) {
		es, err := bin.List(ctx, repo)
		if err != nil {
			return false, err
		}
		for _, e := range es { // newest first
			if e.Manifest.Digest == d {
				_, err := bin.Restore(ctx, e.ID)
				return err == nil, err
			}
		}
		return false, nil
	}
}
