// Command bench benchmarks any OCI distribution registry over plain HTTP.
//
//	go run ./bench --url http://127.0.0.1:5000 [--only push-mono,pull] [--json out.json] [--pid N]
//	go run ./bench --compare [--spread] [--goals [--goal-set encryption]] NAME=a.json,b.json NAME=c.json,d.json
//
// It talks the wire protocol with raw net/http so the same numbers mean the
// same thing for every registry. Throughput uses MB = 10^6 bytes.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// config is everything the scenarios need; filled from flags.
type config struct {
	prefix      string
	blobSize    int           // bytes, big-blob scenarios
	chunkSize   int           // bytes per PATCH
	iters       int           // big blobs per worker
	images      int           // small-push count
	duration    time.Duration // manifest-get, blob-head
	tags        int
	repos       int
	listings    int // tag-list, catalog repetitions (median)
	scenarioTTL time.Duration
	pid         int
	diskDir     string // disk: where to measure the durable write limit
	// manifests, manifests-cold: the many-manifests set and where it is kept
	manifests, manifestRepos int
	manifestsFile            string
	jsonMerge                bool
}

// state carries data between scenarios (e.g. pull reads what push-mono
// wrote) so each scenario can also run alone: it creates what is missing.
type state struct {
	bigBlobs []blob // pushed monolithically to repo(prefix, "big"); data nil'ed after push
	tagsDone bool   // tag-push finished, tags repo holds cfg.tags tags
	hot      *image // pushed once, read by manifest-get and blob-head

	manifests []manifestRef // pushed by manifests in this process
}

type bench struct {
	cfg config
	c   *client
	src *randomSource
	res *results
	st  state
}

func (b *bench) repo(name string) string { return b.cfg.prefix + "/" + name }

type scenario struct {
	name string
	run  func(b *bench, ctx context.Context) error
}

// scenarios in execution order; order matters only for sharing setup.
var scenarios = []scenario{
	{"disk", (*bench).diskWrite},
	{"push-mono", (*bench).pushMono},
	{"push-chunked", (*bench).pushChunked},
	{"pull", (*bench).pull},
	{"small-push", (*bench).smallPush},
	{"manifest-get", (*bench).manifestGet},
	{"blob-head", (*bench).blobHead},
	{"tag-push", (*bench).tagPush},
	{"tag-list", (*bench).tagList},
	{"catalog", (*bench).catalog},
	{"manifests", (*bench).manifestsWarm},
	{"manifests-cold", (*bench).manifestsCold},
	{"rss", (*bench).rss},
}

func main() {
	var (
		cfg                   config
		url, only, jsonOut    string
		goalSet               string
		blobMiB, chunkMiB     int
		quick, compare, goals bool
		spread                bool
		reqTimeout            time.Duration
	)
	flag.StringVar(&url, "url", "http://127.0.0.1:5000", "registry base URL (plain HTTP, no auth)")
	flag.StringVar(&only, "only", "", "comma-separated scenarios to run (default all): "+scenarioNames())
	flag.StringVar(&jsonOut, "json", "", "write metric name → number as JSON to this file")
	flag.StringVar(&cfg.prefix, "prefix", randomName(), "repository prefix, unique per run")
	flag.IntVar(&blobMiB, "blob-mib", 64, "big blob size in MiB (push-mono, push-chunked, pull)")
	flag.IntVar(&chunkMiB, "chunk-mib", 8, "PATCH chunk size in MiB (push-chunked)")
	flag.IntVar(&cfg.iters, "iters", 3, "big blobs pushed/pulled per worker")
	flag.IntVar(&cfg.images, "images", 300, "small images pushed by small-push")
	flag.DurationVar(&cfg.duration, "duration", 5*time.Second, "duration of manifest-get and blob-head")
	flag.IntVar(&cfg.tags, "tags", 10000, "tags pushed by tag-push and listed by tag-list")
	flag.IntVar(&cfg.repos, "repos", 2000, "repositories created for catalog")
	flag.IntVar(&cfg.listings, "listings", 5, "full listings timed by tag-list and catalog (median reported)")
	flag.DurationVar(&cfg.scenarioTTL, "timeout", 15*time.Minute, "hard time limit per scenario")
	flag.DurationVar(&reqTimeout, "request-timeout", 2*time.Minute, "hard time limit per HTTP request")
	flag.IntVar(&cfg.pid, "pid", 0, "registry PID; rss reports its peak RSS (VmHWM)")
	flag.StringVar(&cfg.diskDir, "disk-dir", "", "disk: a directory on the registry's data file system, to measure its durable write limit (each blob written and fsynced as storage/fs writes one); unset: disk is skipped")
	flag.IntVar(&cfg.manifests, "manifests", 2000, "manifests: distinct small images pushed, then read at random (warm); manifests-cold reads them after a restart")
	flag.IntVar(&cfg.manifestRepos, "manifest-repos", 200, "manifests: repositories the images are spread over")
	flag.StringVar(&cfg.manifestsFile, "manifests-file", "", "manifests writes the pushed set here; manifests-cold, run by a later process against the restarted server, reads it")
	flag.BoolVar(&cfg.jsonMerge, "json-merge", false, "keep the metrics already in the --json file that this run does not measure")
	flag.BoolVar(&quick, "quick", false, "smoke-run sizes: 16 MiB blobs, 1000 tags, 200 repos, 2s durations, 60 images")
	flag.BoolVar(&compare, "compare", false, "compare mode: args are NAME=file.json,file.json ... (first = candidate, second = baseline)")
	flag.BoolVar(&goals, "goals", false, "compare mode: also evaluate Stowage's goals (candidate vs baseline)")
	flag.BoolVar(&spread, "spread", false, "compare mode: show each median's lowest and highest round, and with two series the ratio round by round")
	flag.StringVar(&goalSet, "goal-set", "distribution", "compare mode: which goals --goals evaluates: "+goalSetNames())
	flag.Parse()

	if compare {
		if !goals {
			goalSet = ""
		}
		if err := runCompare(os.Stdout, flag.Args(), goalSet, spread); err != nil {
			fatalf("%v", err)
		}
		return
	}
	if flag.NArg() > 0 {
		fatalf("unexpected arguments %q", flag.Args())
	}
	if quick {
		// Quick only shrinks what the user did not set explicitly.
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		quickDefault(set, "blob-mib", &blobMiB, 16)
		quickDefault(set, "tags", &cfg.tags, 1000)
		quickDefault(set, "repos", &cfg.repos, 200)
		quickDefault(set, "images", &cfg.images, 60)
		quickDefault(set, "manifests", &cfg.manifests, 400)
		quickDefault(set, "manifest-repos", &cfg.manifestRepos, 40)
		if !set["duration"] {
			cfg.duration = 2 * time.Second
		}
	}
	cfg.blobSize, cfg.chunkSize = blobMiB<<20, chunkMiB<<20
	if cfg.blobSize <= 0 || cfg.chunkSize <= 0 || cfg.iters <= 0 || cfg.images <= 0 ||
		cfg.tags <= 0 || cfg.repos <= 0 || cfg.manifests <= 0 || cfg.manifestRepos <= 0 || cfg.listings <= 0 || cfg.duration <= 0 {
		fatalf("sizes, counts and durations must be positive")
	}
	selected, err := selectScenarios(only)
	if err != nil {
		fatalf("%v", err)
	}
	c, err := newClient(url, reqTimeout)
	if err != nil {
		fatalf("%v", err)
	}
	b := &bench{cfg: cfg, c: c, src: newRandomSource(), res: newResults()}
	fmt.Fprintf(os.Stderr, "bench: %s, prefix %s, blobs %d MiB\n", url, cfg.prefix, blobMiB)

	var failed []string
	for _, s := range selected {
		fmt.Fprintf(os.Stderr, "== %s\n", s.name)
		if err := b.checkAlive(); err != nil {
			// A crashed registry would fail every remaining scenario slowly.
			fmt.Fprintf(os.Stderr, "!! %v; skipping the remaining scenarios\n", err)
			failed = append(failed, "registry exited")
			break
		}
		ctx, cancel := context.WithTimeout(context.Background(), cfg.scenarioTTL)
		err := s.run(b, ctx)
		if err != nil && ctx.Err() != nil {
			err = fmt.Errorf("exceeded --timeout %s: %w", cfg.scenarioTTL, err)
		}
		cancel()
		if err != nil {
			// Abort this scenario only: the others still tell us something.
			fmt.Fprintf(os.Stderr, "!! %s FAILED: %v\n", s.name, err)
			failed = append(failed, s.name)
		}
	}
	b.res.printTable(os.Stderr)
	if jsonOut != "" && cfg.jsonMerge {
		if err := b.res.mergeJSON(jsonOut); err != nil {
			fatalf("--json-merge: %v", err)
		}
	}
	if jsonOut != "" {
		if err := b.res.writeJSON(jsonOut); err != nil {
			fatalf("writing %s: %v", jsonOut, err)
		}
	}
	if len(failed) > 0 {
		fatalf("failed scenarios: %s", strings.Join(failed, ", "))
	}
}

func quickDefault(set map[string]bool, name string, p *int, v int) {
	if !set[name] {
		*p = v
	}
}

func scenarioNames() string {
	var n []string
	for _, s := range scenarios {
		n = append(n, s.name)
	}
	return strings.Join(n, ",")
}

func selectScenarios(only string) ([]scenario, error) {
	if only == "" {
		return scenarios, nil
	}
	want := strings.Split(only, ",")
	for _, w := range want {
		if !slices.ContainsFunc(scenarios, func(s scenario) bool { return s.name == strings.TrimSpace(w) }) {
			return nil, fmt.Errorf("unknown scenario %q (known: %s)", w, scenarioNames())
		}
	}
	var out []scenario
	for _, s := range scenarios {
		if slices.ContainsFunc(want, func(w string) bool { return strings.TrimSpace(w) == s.name }) {
			out = append(out, s)
		}
	}
	return out, nil
}

func (b *bench) rss(ctx context.Context) error {
	if b.cfg.pid == 0 {
		fmt.Fprintln(os.Stderr, "  (skipped: no --pid)")
		return nil
	}
	mib, err := peakRSSMiB(b.cfg.pid)
	if err != nil {
		return err
	}
	b.res.add("peak_rss_MiB", mib, "MiB")
	return nil
}

// checkAlive fails when --pid was given and that process has exited.
func (b *bench) checkAlive() error {
	if b.cfg.pid == 0 {
		return nil
	}
	// A dead child not yet reaped by its parent is a zombie: /proc/PID
	// still exists, so look at its state too.
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", b.cfg.pid))
	if err != nil || strings.Contains(string(st), "State:\tZ") {
		return fmt.Errorf("registry process %d has exited", b.cfg.pid)
	}
	return nil
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
	os.Exit(1)
}
