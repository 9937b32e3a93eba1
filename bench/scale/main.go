// Command scale measures what Stowage's requests and passes cost as the
// registry grows: it builds a registry of N manifests in N/10 repositories
// (build.go) on SQLite or PostgreSQL, starts a real `stowage serve` on it and
// measures over HTTP and the CLI. scripts/bench-scale.sh runs it at several
// sizes and on both databases.
//
//	go run ./bench/scale --stowage bin/stowage --manifests 100000 --work DIR [--postgres URL] [--json out.json]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/meta/postgres"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/storage/fs"
)

func main() {
	var (
		bin, work, pg, jsonOut string
		n, samples             int
		keep, buildOnly        bool
	)
	flag.StringVar(&bin, "stowage", "bin/stowage", "the stowage binary to measure")
	flag.StringVar(&work, "work", "", "directory for the registry's data (emptied first)")
	flag.StringVar(&pg, "postgres", "", "postgres:// URL of an empty database (default: SQLite in --work)")
	flag.StringVar(&jsonOut, "json", "", "write the results here as JSON")
	flag.IntVar(&n, "manifests", 10000, "manifests to build (repositories: a tenth)")
	flag.IntVar(&samples, "samples", 1000, "requests per latency measurement")
	flag.BoolVar(&keep, "keep", false, "keep the data directory afterwards")
	flag.BoolVar(&buildOnly, "build-only", false, "only build the registry (and keep it), for looking at it")
	tableOf := flag.String("table", "", "print the --json files given (comma-separated, one per size) as a Markdown table, and exit")
	flag.Parse()
	if *tableOf != "" {
		if err := table(os.Stdout, strings.Split(*tableOf, ",")); err != nil {
			log.Fatal(err)
		}
		return
	}
	if work == "" {
		log.Fatal("--work is required")
	}
	ctx := context.Background()
	logf := func(f string, a ...any) { log.Printf(f, a...) }
	if err := os.RemoveAll(work); err != nil {
		log.Fatal(err)
	}
	storeDir, dataDir := filepath.Join(work, "storage"), filepath.Join(work, "data")
	os.MkdirAll(dataDir, 0o700)
	dbURL := filepath.Join(dataDir, "stowage.db")
	var db stowage.DB
	var closeDB func() error
	if pg != "" {
		dbURL = pg
		p, err := postgres.Open(ctx, pg, postgres.Options{})
		if err != nil {
			log.Fatal(err)
		}
		db, closeDB = p, func() error { p.Close(); return nil }
	} else {
		s, err := sqlite.Open(ctx, dbURL)
		if err != nil {
			log.Fatal(err)
		}
		db, closeDB = s, s.Close
	}
	// As `stowage serve` makes them (private), or its first start would
	// chmod every object and measure that.
	os.MkdirAll(storeDir, 0o700)
	store, err := fs.New(storeDir)
	if err != nil {
		log.Fatal(err)
	}
	store.NoSync = true
	l := newLayout(n)
	t0 := time.Now()
	if err := build(ctx, db, store, l, time.Now(), logf); err != nil {
		log.Fatal(err)
	}
	closeDB()
	if buildOnly {
		return
	}
	res := &results{DB: map[bool]string{true: "postgres", false: "sqlite"}[pg != ""], Manifests: n, Repos: l.repos, BigTags: l.big,
		BuildSeconds: time.Since(t0).Seconds(), Lines: map[string]*line{}}
	m := &measure{bin: bin, work: work, dataDir: dataDir, storeDir: storeDir, dbURL: dbURL, l: l, samples: samples, res: res, logf: logf}
	if err := m.run(ctx); err != nil {
		m.stop()
		log.Fatal(err)
	}
	m.stop()
	res.print(os.Stdout)
	if jsonOut != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(jsonOut, b, 0o644); err != nil {
			log.Fatal(err)
		}
	}
	if !keep {
		os.RemoveAll(work)
	}
}
