// Command scale measures what Stowage's requests and passes cost as the
// registry grows: it builds a registry of N manifests in N/10 repositories
// (build.go) on SQLite or PostgreSQL, starts a real `stowage serve` on it and
// measures over HTTP and the CLI. scripts/bench-scale.sh runs it at several
// sizes and on both databases.
//
//	go run ./bench/scale --stowage bin/stowage --manifests 100000 --work DIR [--postgres URL] [--json out.json]
//
// A large registry can be built once and measured later, by other binaries:
//
//	scale --build-only --manifests 1000000 --work KEPT [--postgres URL_A]
//	scale --reuse KEPT --work DIR [--postgres URL_B] --stowage NEW --json out.json
//
// --build-only keeps KEPT (its build.json says what was built, when, by
// which commit, and its sizes). --reuse measures a copy, so the kept
// registry survives the retention and GC passes: SQLite's data directory is
// copied and the object files hard-linked (objects are never changed in
// place); on PostgreSQL the database of URL_B is dropped and made again
// from URL_A's as a template (CREATE DATABASE … TEMPLATE). The first start of
// the measured binary on the copy may migrate it: it is its own figure,
// "first start", apart from "start" and "restart".
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/meta/postgres"
	"github.com/stowage/stowage/meta/sqlite"
	storagefs "github.com/stowage/stowage/storage/fs"
)

// buildRecord is what a build wrote (build.json in its directory).
type buildRecord struct {
	DB            string    `json:"db"`
	Manifests     int       `json:"manifests"`
	Repos         int       `json:"repositories"`
	BigTags       int       `json:"bigRepoTags"`
	BuildSeconds  float64   `json:"buildSeconds"`
	Built         time.Time `json:"built"` // the "now" of the build's timestamps
	BuilderCommit string    `json:"builderCommit"`
	SchemaVersion int       `json:"schemaVersion"`
	Postgres      string    `json:"postgres,omitempty"` // the database's name (the URL is in the kept directory only)
	DBBytes       int64     `json:"dbBytes"`
	ObjectFiles   int64     `json:"objectFiles"`
	ObjectBytes   int64     `json:"objectBytes"`
	Batch         int       `json:"batch"`
	Writers       int       `json:"objectWriters"`

	pgURL string
}

func main() {
	var (
		bin, work, pg, jsonOut, reuse, skip string
		commit                              string
		n, samples                          int
		keep, buildOnly, copyOnly, copied   bool
		opt                                 buildOptions
		slow                                time.Duration
	)
	flag.StringVar(&bin, "stowage", "bin/stowage", "the stowage binary to measure")
	flag.StringVar(&work, "work", "", "directory for the registry's data (emptied first)")
	flag.StringVar(&pg, "postgres", "", "postgres:// URL of an empty database (default: SQLite in --work); with --reuse: the database to make the copy in (dropped first)")
	flag.StringVar(&jsonOut, "json", "", "write the results here as JSON")
	flag.IntVar(&n, "manifests", 10000, "manifests to build (repositories: a tenth)")
	flag.IntVar(&samples, "samples", 1000, "requests per latency measurement")
	flag.BoolVar(&keep, "keep", false, "keep the data directory afterwards")
	flag.BoolVar(&buildOnly, "build-only", false, "only build the registry and keep it (--work), for --reuse later")
	flag.StringVar(&reuse, "reuse", "", "measure a copy of the registry a --build-only run kept in this directory, instead of building")
	flag.StringVar(&commit, "commit", "", "the commit the measured binary was built from, for the record (default: what `stowage version` says)")
	flag.BoolVar(&copyOnly, "copy-only", false, "with --reuse: only make the copy in --work (and --postgres), for a later --copied run")
	flag.BoolVar(&copied, "copied", false, "with --reuse: --work (and --postgres) already hold a fresh copy made by --copy-only")
	flag.StringVar(&skip, "skip", "", "groups not to measure, comma-separated: manifests,listings,usage,paged,delete,push,passes")
	flag.DurationVar(&slow, "slow-timeout", 20*time.Minute, "a request taking longer is recorded as timed out, not waited for")
	flag.IntVar(&opt.batch, "batch", 4000, "build: manifests per transaction")
	flag.IntVar(&opt.writers, "writers", 3, "build: goroutines writing object files")
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
	if reuse != "" && filepath.Clean(reuse) == filepath.Clean(work) {
		log.Fatal("--reuse and --work must differ: the measurement changes its copy")
	}
	if (copyOnly || copied) && reuse == "" {
		log.Fatal("--copy-only and --copied go with --reuse")
	}
	if !copied {
		if err := os.RemoveAll(work); err != nil {
			log.Fatal(err)
		}
	}
	storeDir, dataDir := filepath.Join(work, "storage"), filepath.Join(work, "data")
	os.MkdirAll(dataDir, 0o700)
	dbURL := filepath.Join(dataDir, "stowage.db")
	if pg != "" {
		dbURL = pg
	}
	var rec *buildRecord
	var err error
	copySeconds := 0.0
	switch {
	case copied:
		if rec, err = readBuild(reuse, pg); err != nil {
			log.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(work, "storage")); err != nil {
			log.Fatalf("--copied: %v (make the copy with --copy-only first)", err)
		}
		n = rec.Manifests
	case reuse != "":
		t0 := time.Now()
		if rec, err = copyBuild(ctx, reuse, work, pg, logf); err != nil {
			log.Fatal(err)
		}
		copySeconds = time.Since(t0).Seconds()
		n = rec.Manifests
		if copyOnly {
			return
		}
	default:
		if rec, err = buildNew(ctx, work, storeDir, dbURL, pg != "", n, opt, logf); err != nil {
			log.Fatal(err)
		}
		if buildOnly {
			b, _ := json.MarshalIndent(rec, "", "  ")
			fmt.Printf("%s\n", b)
			return
		}
	}
	l := newLayout(n)
	res := &results{DB: rec.DB, Manifests: n, Repos: l.repos, BigTags: l.big, BuildSeconds: rec.BuildSeconds,
		Build: rec, Reused: reuse != "", CopySeconds: copySeconds, Binary: binaryVersion(bin), BinaryCommit: commit, Measured: time.Now().UTC(),
		Lines: map[string]*line{}}
	m := &measure{bin: bin, work: work, dataDir: dataDir, storeDir: storeDir, dbURL: dbURL, pg: pg != "", l: l, samples: samples,
		res: res, logf: logf, slow: slow, skip: map[string]bool{}}
	for _, s := range strings.Split(skip, ",") {
		if s != "" {
			m.skip[s] = true
		}
	}
	save := func() error {
		if jsonOut == "" {
			return nil
		}
		b, _ := json.MarshalIndent(res, "", "  ")
		return os.WriteFile(jsonOut, b, 0o644)
	}
	m.save = func() {
		res.Error = "incomplete: the run was stopped after the last line"
		save()
		res.Error = ""
	}
	runErr := m.run(ctx)
	m.stop()
	res.print(os.Stdout)
	if runErr != nil {
		res.Error = runErr.Error()
	}
	if err := save(); err != nil {
		log.Fatal(err)
	}
	if runErr != nil {
		log.Fatal(runErr)
	}
	if !keep {
		os.RemoveAll(work)
	}
}

// buildNew builds a registry of n manifests in work and records it in
// work/build.json.
func buildNew(ctx context.Context, work, storeDir, dbURL string, isPG bool, n int, opt buildOptions, logf func(string, ...any)) (*buildRecord, error) {
	var db stowage.DB
	var closeDB func() error
	if isPG {
		p, err := postgres.Open(ctx, dbURL, postgres.Options{})
		if err != nil {
			return nil, err
		}
		db, closeDB = p, func() error { p.Close(); return nil }
	} else {
		s, err := sqlite.Open(ctx, dbURL)
		if err != nil {
			return nil, err
		}
		db, closeDB = s, s.Close
	}
	// As `stowage serve` makes them (private), or its first start would
	// chmod every object and measure that.
	os.MkdirAll(storeDir, 0o700)
	store, err := storagefs.New(storeDir)
	if err != nil {
		return nil, err
	}
	store.NoSync = true
	l := newLayout(n)
	commit := builderCommit() // before the build: the tree may change while it runs
	now := time.Now()
	if err := build(ctx, db, store, l, now, opt, logf); err != nil {
		closeDB()
		return nil, err
	}
	secs := time.Since(now).Seconds()
	if err := closeDB(); err != nil {
		return nil, err
	}
	rec := &buildRecord{DB: "sqlite", Manifests: n, Repos: l.repos, BigTags: l.big, BuildSeconds: secs, Built: now.UTC(),
		BuilderCommit: commit, Batch: opt.batch, Writers: opt.writers}
	if isPG {
		rec.DB, rec.pgURL, rec.Postgres = "postgres", dbURL, dbName(dbURL)
	}
	if err := rec.measureSizes(work); err != nil {
		return nil, err
	}
	if rec.SchemaVersion, err = schemaVersion(ctx, rec.dbURL(work)); err != nil {
		return nil, err
	}
	b, _ := json.MarshalIndent(rec, "", "  ")
	if err := os.WriteFile(filepath.Join(work, "build.json"), b, 0o644); err != nil {
		return nil, err
	}
	if isPG {
		// The URL (with its password) only in the kept directory, for --reuse.
		if err := os.WriteFile(filepath.Join(work, "postgres.url"), []byte(dbURL), 0o600); err != nil {
			return nil, err
		}
	}
	logf("built: %s", b)
	return rec, nil
}

func (r *buildRecord) dbURL(work string) string {
	if r.pgURL != "" {
		return r.pgURL
	}
	return filepath.Join(work, "data", "stowage.db")
}

// measureSizes records the database's size and the object files'.
func (r *buildRecord) measureSizes(work string) error {
	err := filepath.WalkDir(filepath.Join(work, "storage"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		r.ObjectFiles++
		r.ObjectBytes += fi.Size()
		return nil
	})
	if err != nil {
		return err
	}
	if r.pgURL != "" {
		out, err := psql(r.pgURL, "SELECT pg_database_size(current_database())")
		if err != nil {
			return err
		}
		r.DBBytes, err = strconv.ParseInt(out, 10, 64)
		return err
	}
	r.DBBytes = 0
	entries, err := os.ReadDir(filepath.Join(work, "data"))
	if err != nil {
		return err
	}
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && strings.HasPrefix(e.Name(), "stowage.db") {
			r.DBBytes += fi.Size()
		}
	}
	return nil
}

// copyBuild makes work a copy of the kept build in from: the data directory
// copied, the object files hard-linked, and on PostgreSQL the database
// pgTo made again from the build's as a template.
func copyBuild(ctx context.Context, from, work, pgTo string, logf func(string, ...any)) (*buildRecord, error) {
	rec, err := readBuild(from, pgTo)
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	if err := copyTree(filepath.Join(from, "data"), filepath.Join(work, "data"), false); err != nil {
		return nil, err
	}
	if err := copyTree(filepath.Join(from, "storage"), filepath.Join(work, "storage"), true); err != nil {
		return nil, err
	}
	logf("copied %s to %s (objects hard-linked) in %s", from, work, time.Since(t0).Round(time.Millisecond))
	if pgTo != "" {
		src, err := os.ReadFile(filepath.Join(from, "postgres.url"))
		if err != nil {
			return nil, err
		}
		srcName, dstName := dbName(string(src)), dbName(pgTo)
		if srcName == dstName {
			return nil, fmt.Errorf("--postgres names the kept database %s: give another one to copy it to", srcName)
		}
		t0 := time.Now()
		admin := withDB(pgTo, "postgres")
		if _, err := psql(admin, fmt.Sprintf(`DROP DATABASE IF EXISTS %q WITH (FORCE)`, dstName)); err != nil {
			return nil, err
		}
		if _, err := psql(admin, fmt.Sprintf(`CREATE DATABASE %q TEMPLATE %q STRATEGY FILE_COPY`, dstName, srcName)); err != nil {
			return nil, err
		}
		logf("copied database %s to %s in %s", srcName, dstName, time.Since(t0).Round(time.Millisecond))
	}
	return rec, nil
}

// readBuild reads the record of the build kept in from.
func readBuild(from, pgTo string) (*buildRecord, error) {
	b, err := os.ReadFile(filepath.Join(from, "build.json"))
	if err != nil {
		return nil, fmt.Errorf("--reuse %s: %w (not a --build-only directory?)", from, err)
	}
	rec := &buildRecord{}
	if err := json.Unmarshal(b, rec); err != nil {
		return nil, err
	}
	if (rec.DB == "postgres") != (pgTo != "") {
		return nil, fmt.Errorf("--reuse %s: a %s build; --postgres must be given exactly for a postgres build", from, rec.DB)
	}
	return rec, nil
}

// copyTree copies directory from to to; link: hard-link the files instead.
func copyTree(from, to string, link bool) error {
	return filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(dst, fi.Mode().Perm())
		}
		if link {
			return os.Link(p, dst)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, fi.Mode().Perm())
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}

// psql runs one statement with the psql client and returns its output.
func psql(u, q string) (string, error) {
	out, err := exec.Command("psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", u, "-c", q).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("psql %s: %v: %s", q, err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

func dbName(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return ""
	}
	return strings.TrimPrefix(p.Path, "/")
}

func withDB(u, name string) string {
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	p.Path = "/" + name
	return p.String()
}

// schemaVersion reads the database's schema version without migrating it.
func schemaVersion(ctx context.Context, dbURL string) (int, error) {
	if strings.HasPrefix(dbURL, "postgres") {
		out, err := psql(dbURL, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
		if err != nil {
			return 0, err
		}
		return strconv.Atoi(out)
	}
	db, err := sql.Open("sqlite", "file:"+dbURL) // the driver meta/sqlite registers; a read

	if err != nil {
		return 0, err
	}
	defer db.Close()
	var v int
	err = db.QueryRowContext(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").Scan(&v)
	return v, err
}

// builtFrom is set by scripts/bench-scale.sh: the commit it builds from.
var builtFrom string

// builderCommit is the commit this program was built from.
func builderCommit() string {
	rev, dirty := "", false
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	if rev == "" {
		// Built without VCS stamping (GOFLAGS=-buildvcs=false): what the
		// script passed (-ldflags -X main.builtFrom=COMMIT), else unknown;
		// the working directory's git says nothing about this binary.
		if builtFrom != "" {
			return builtFrom
		}
		return "unknown"
	}
	if dirty {
		rev += "+modified"
	}
	return rev
}

// binaryVersion is `stowage version --output json` of the measured binary.
func binaryVersion(bin string) json.RawMessage {
	out, err := exec.Command(bin, "version", "--output", "json").Output()
	if err != nil || !json.Valid(out) {
		b, _ := json.Marshal(map[string]string{"error": fmt.Sprint(err)})
		return b
	}
	return json.RawMessage(out)
}
