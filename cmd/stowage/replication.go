package main

import (
	"context"
	"errors"
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
		Bandwidth: int64(c.Bandwidth), Log: log, Timeouts: replication.Timeouts{Connect: time.Duration(c.Timeouts.Connect),
			Response: time.Duration(c.Timeouts.Response), Idle: time.Duration(c.Timeouts.Idle), DownFor: time.Duration(c.Timeouts.DownFor)}}
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
       stowage replication backfill PEER [--detach] [flags]

Geo-replication (docs/replication.md).

status: without an argument, per peer, the replicator's state (shipping,
retrying, stopped), its lag in events (changes made in this region not yet
shipped) and in seconds (age of the oldest of them), the backlog in bytes
(the images those pushes would send at most), and the last error and when;
a back-fill's progress under the table. With REPO:TAG or REPO@DIGEST:
which regions hold it, at which digest, and whether complete (the manifest
and every blob and child manifest it references).

backfill PEER: walks this region's catalog online and ships to PEER every
tag and untagged manifest it lacks (blobs it has are skipped; what PEER
changed later stays), for a region added to a registry that already holds
data. Pulls in PEER are served meanwhile (read-through). It runs on the
registry; this command starts it and follows it: a progress bar on a
terminal (repositories, objects checked and shipped, bytes, ETA), one
summary line otherwise; it exits 1 if the back-fill fails. Ctrl-C stops
following, not the back-fill: it goes on in the registry (see status).
--detach starts it and returns. A back-fill of PEER already running is
followed, not started twice. The registry starts one by itself when a
peer's cursor fell behind the change feed's retention.
`

func runReplication(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	sub, rest, code, ok := subcommand("replication", args, replicationUsage, stderr)
	if !ok {
		return code
	}
	switch sub {
	case "status":
		return runReplicationStatus(ctx, rest, stdout, stderr)
	case "backfill":
		return runReplicationBackfill(ctx, rest, stdout, stderr)
	}
	return unknownSub(stderr, "replication", sub, replicationUsage)
}

func runReplicationStatus(ctx context.Context, rest []string, stdout, stderr io.Writer) int {
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
			if l.Locked != "" {
				note = strings.TrimSpace("locked: " + l.Locked + " " + note)
			}
			if d == "" && note == "" {
				d, note = "-", "not there"
			} else if d == "" {
				d = "-"
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
				state = "running"
				if b.Current != "" {
					state += " (" + b.Current + ")"
				}
			} else if b.LastError != "" {
				state = "stopped: " + b.LastError
			}
			why := ""
			if b.Trigger != "requested" {
				why = " (" + fillWhy(b) + ")"
			}
			fmt.Fprintf(stdout, "back-fill of %s: %s%s; %s\n", p.Name, state, why, fillCounts(b))
		}
	}
	for _, p := range st.Peers {
		if p.Parked > 0 {
			fmt.Fprintf(stdout, "%s refused %d changes for good, passed over (last %s ago: %s); once the cause is gone: stowage replication backfill %s\n",
				p.Name, p.Parked, time.Since(p.LastParkedAt).Round(time.Second), strings.ReplaceAll(p.LastParked, "\n", "; "), p.Name)
		}
	}
	return 0
}

// fillWhy says what started a back-fill.
func fillWhy(b *replication.BackfillStatus) string {
	switch b.Trigger {
	case "behind-retention":
		return "automatic: " + b.Missed + " were deleted by the feed's retention before they were shipped"
	case "new-peer":
		return "automatic: new peer, " + b.Missed + " no longer in the feed"
	case "resumed":
		return "automatic, resumed after a restart"
	case "":
		return "requested"
	}
	return b.Trigger
}

func fillCounts(b *replication.BackfillStatus) string {
	skipped := ""
	if b.Skipped > 0 {
		skipped = fmt.Sprintf(", %d skipped (read-locked)", b.Skipped)
	}
	if b.Refused > 0 {
		skipped += fmt.Sprintf(", %d refused by the peer (last: %s)", b.Refused, b.LastRefused)
	}
	return fmt.Sprintf("%d/%d repositories, %d checked, %d shipped (%d applied)%s, %s", b.Repos, b.ReposTotal, b.Checked, b.Shipped, b.Applied, skipped, bytesStr(b.Bytes))
}

// backfillResult is `replication backfill --output json`.
type backfillResult struct {
	Peer     string                      `json:"peer"`
	Backfill *replication.BackfillStatus `json:"backfill"`
}

// fillPoll is how often `replication backfill` reads the progress.
var fillPoll = 500 * time.Millisecond

func runReplicationBackfill(ctx context.Context, rest []string, stdout, stderr io.Writer) int {
	var output *string
	var detach *bool
	fl, reg, ok := parseAdmin("replication backfill", replicationUsage, rest, stderr, func(fl *flag.FlagSet) {
		output = outputFlag(fl)
		detach = fl.Bool("detach", false, "start the back-fill and return (follow it with replication status)")
	})
	if !ok {
		return exitCode(fl, ok)
	}
	if fl.NArg() != 1 {
		return shortUsage(stderr, "replication backfill", "Usage: stowage replication backfill PEER [--detach] [flags]\n", "want the PEER to back-fill (a name in replication status)")
	}
	peer := fl.Arg(0)
	c := newClient(*reg, stdout, stderr)
	status := func() (*replication.BackfillStatus, error) {
		var st replication.Status
		if err := c.do(ctx, http.MethodGet, "/api/v1/replication/status", &st); err != nil {
			return nil, err
		}
		if st.Region == "" {
			return nil, errors.New("replication is not configured on this registry (replication.region and peers; see docs/replication.md)")
		}
		var names []string
		for _, p := range st.Peers {
			if p.Name == peer {
				return p.Backfill, nil
			}
			names = append(names, p.Name)
		}
		return nil, fmt.Errorf("region %s has no peer named %q (its peers: %s)", st.Region, peer, strings.Join(names, ", "))
	}
	b, err := status()
	if err != nil {
		return fail(stderr, err)
	}
	if b != nil && b.Running {
		fmt.Fprintf(stderr, "a back-fill of %s is running (since %s): following it\n", peer, b.Started.Format(time.RFC3339))
	} else if err := c.do(ctx, http.MethodPost, "/api/v1/replication/backfill?peer="+url.QueryEscape(peer), nil); err != nil {
		return fail(stderr, err)
	}
	if b, err = status(); err != nil {
		return fail(stderr, err)
	}
	if !*detach {
		bar := &fillBar{w: stderr, tty: isTerminal(stderr)}
		if bar.tty {
			fmt.Fprintf(stderr, "back-filling %s (Ctrl-C stops following, not the back-fill)\n", peer)
		}
		interrupted := func() int {
			bar.done()
			fmt.Fprintf(stderr, "stopped following; the back-fill of %s goes on in the registry: see stowage replication status\n", peer)
			return 130
		}
		for b != nil && b.Running {
			bar.show(b)
			select {
			case <-ctx.Done():
				return interrupted()
			case <-time.After(fillPoll):
			}
			if b, err = status(); ctx.Err() != nil {
				return interrupted()
			} else if err != nil {
				bar.done()
				return fail(stderr, fmt.Errorf("reading the back-fill's progress: %w (it goes on in the registry: see stowage replication status)", err))
			}
		}
		bar.done()
	}
	if b == nil {
		return fail(stderr, errors.New("the registry accepted the back-fill but does not report it: is another node of it answering? see stowage replication status there"))
	}
	if *output == "json" {
		if code := printJSON(stdout, backfillResult{Peer: peer, Backfill: b}); code != 0 || b.LastError == "" || b.Running {
			return code
		}
		return 1
	}
	switch {
	case b.Running:
		fmt.Fprintf(stdout, "back-fill of %s started (%s); follow it with: stowage replication status\n", peer, fillCounts(b))
	case b.LastError != "":
		fmt.Fprintf(stdout, "back-fill of %s failed after %s: %s\n", peer, b.Finished.Sub(b.Started).Round(time.Millisecond), fillCounts(b))
		return fail(stderr, errors.New(b.LastError))
	default:
		fmt.Fprintf(stdout, "back-fill of %s done in %s: %s\n", peer, b.Finished.Sub(b.Started).Round(time.Millisecond), fillCounts(b))
	}
	return 0
}

// fillBar draws a back-fill's progress on a terminal: repositories walked
// of those there, objects checked and shipped, bytes, and an ETA from the
// rate seen while following. Not on a terminal it draws nothing (the
// command's result line says it all).
type fillBar struct {
	w     io.Writer
	tty   bool
	drawn bool
	t0    time.Time
	r0    int
}

func (f *fillBar) show(b *replication.BackfillStatus) {
	if !f.tty {
		return
	}
	if f.t0.IsZero() {
		f.t0, f.r0 = time.Now(), b.Repos
	}
	const width = 30
	fill := 0
	if b.ReposTotal > 0 {
		fill = min(b.Repos, b.ReposTotal) * width / b.ReposTotal
	}
	eta := ""
	if done := b.Repos - f.r0; done > 0 && b.ReposTotal > b.Repos {
		left := time.Duration(float64(time.Since(f.t0)) * float64(b.ReposTotal-b.Repos) / float64(done))
		eta = "  ETA " + left.Round(time.Second).String()
	}
	fmt.Fprintf(f.w, "\r[%s%s] %d/%d repositories  %d checked, %d shipped, %s%s   ", strings.Repeat("#", fill), strings.Repeat(".", width-fill),
		b.Repos, b.ReposTotal, b.Checked, b.Shipped, bytesStr(b.Bytes), eta)
	f.drawn = true
}

func (f *fillBar) done() {
	if f.drawn {
		fmt.Fprintln(f.w)
		f.drawn = false
	}
}

// replicationMetrics exports the replicators' gauges per peer
// (docs/observability.md), read at most every 5 s.
func replicationMetrics(reg prometheus.Registerer, repl *replication.Service) {
	descs := make([]*prometheus.Desc, len(replication.Gauges))
	for i, g := range replication.Gauges {
		descs[i] = prometheus.NewDesc(g.Name, g.Help, []string{"region", "peer"}, nil)
	}
	autoFills := prometheus.NewDesc("stowage_replication_auto_backfills_total",
		"Back-fills of the peer this process started by itself: its cursor fell behind the change feed's retention, or it joined a trimmed feed.", []string{"region", "peer"}, nil)
	parked := prometheus.NewDesc("stowage_replication_parked_total",
		"Changes this process passed over because the peer refused them for good (a limit there, a manifest it cannot take); a back-fill ships them again once the cause is gone.", []string{"region", "peer"}, nil)
	filling := prometheus.NewDesc("stowage_replication_backfill_running", "1 while a back-fill of the peer runs in this process.", []string{"region", "peer"}, nil)
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
		for _, p := range st.Peers {
			ch <- metrics.Counter(autoFills, float64(p.AutoBackfills), st.Region, p.Name)
			ch <- metrics.Counter(parked, float64(p.Parked), st.Region, p.Name)
			running := 0.0
			if p.Backfill != nil && p.Backfill.Running {
				running = 1
			}
			ch <- metrics.Gauge(filling, running, st.Region, p.Name)
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
