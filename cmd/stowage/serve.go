package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/config"
	"github.com/stowage/stowage/gc"
	"github.com/stowage/stowage/internal/requestlog"
	"github.com/stowage/stowage/jobs"
	"github.com/stowage/stowage/mgmt"
	"github.com/stowage/stowage/ociapi"
	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/pullthrough"
	"github.com/stowage/stowage/recyclebin"
	"github.com/stowage/stowage/replication"
	"github.com/stowage/stowage/scrub"
	"github.com/stowage/stowage/storage/crypt"
	"github.com/stowage/stowage/ui"
)

const serveUsage = `Usage: stowage serve [flags]

Runs the registry. With no flags it listens on 127.0.0.1:5000 and keeps
everything under ./stowage-data: blobs in ./stowage-data/storage, metadata in
the embedded SQLite database ./stowage-data/stowage.db.

Configuration comes from, last wins: built-in defaults, the YAML file given
with --config (or STOWAGE_CONFIG), STOWAGE_* environment variables, then
these flags. 'stowage healthcheck' reads the same file and variables.

Environment: STOWAGE_ADDR, STOWAGE_DATA_DIR, STOWAGE_LOG_LEVEL,
STOWAGE_LOG_FORMAT, STOWAGE_DATABASE_SQLITE, STOWAGE_STORAGE_PATH,
STOWAGE_STORAGE_FSYNC, STOWAGE_SHUTDOWN_TIMEOUT, STOWAGE_ENCRYPTION (none or
service), STOWAGE_ENCRYPTION_KEY_FILE, STOWAGE_ENCRYPTION_KEY_ENV,
STOWAGE_ENCRYPTION_CACHE_TTL, STOWAGE_DATABASE (a postgres:// URL or a SQLite
path), STOWAGE_AUTH (on or off), STOWAGE_ADMIN_PASSWORD (the first admin's),
STOWAGE_TIER (basic, standard or premium), STOWAGE_STORAGE_LIMIT (e.g. 50GiB),
STOWAGE_TLS_CERT_FILE, STOWAGE_TLS_KEY_FILE.

Access control is off by default, which is allowed only on a loopback
address: on any other address serve refuses to start until auth is enabled
(or --insecure-open-registry is given). See docs/access.md and docs/limits.md.

Geo-replication: the replication section of the --config file joins this
deployment to others as one registry (region, peers, read_through); see
docs/replication.md.

Encryption at rest is on by default: every object is encrypted before it is
stored, with a key kept in ./stowage-data/keys/service.json (back it up: the
data cannot be read without it). See docs/encryption.md.

Flags:
`

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("serve", flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.Usage = func() { fmt.Fprint(stderr, serveUsage); fl.PrintDefaults() }
	cfgPath := fl.String("config", os.Getenv("STOWAGE_CONFIG"), "YAML configuration file (see docs/configuration.md; env STOWAGE_CONFIG)")
	addr := fl.String("addr", "", "listen address host:port (default 127.0.0.1:5000)")
	dataDir := fl.String("data-dir", "", "data directory (default ./stowage-data)")
	logLevel := fl.String("log-level", "", "debug, info, warn or error (default info)")
	insecureOpen := fl.Bool("insecure-open-registry", false, "allow listening on a non-loopback address WITHOUT authentication:\nanyone who can reach it can push, pull and delete (env STOWAGE_INSECURE_OPEN_REGISTRY=1)")
	if err := parseFlags(fl, args, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if tooManyArgs(fl, "serve", fl.Args(), stderr) {
		return 2
	}
	cfg := config.Default()
	if *cfgPath != "" {
		if err := cfg.Load(*cfgPath); err != nil {
			fmt.Fprintln(stderr, "stowage:", err)
			return 2
		}
	}
	if err := cfg.ApplyEnv(os.Getenv); err != nil {
		fmt.Fprintln(stderr, "stowage:", err)
		return 2
	}
	if *addr != "" {
		cfg.Addr = *addr
	}
	if *dataDir != "" {
		cfg.DataDir = *dataDir
	}
	if *logLevel != "" {
		cfg.Log.Level = *logLevel
	}
	cfg.InsecureOpen = *insecureOpen || os.Getenv("STOWAGE_INSECURE_OPEN_REGISTRY") == "1"
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(stderr, "stowage:", err)
		return 2
	}
	m := NewMain(cfg, stderr)
	if err := m.Run(ctx); err != nil {
		fmt.Fprintln(stderr, "stowage:", err)
		m.Close()
		return 1
	}
	<-ctx.Done()
	m.say("shutting down; waiting for in-flight requests\n")
	if err := m.Close(); err != nil {
		fmt.Fprintln(stderr, "stowage:", err)
		return 1
	}
	return 0
}

// Main is the wired program: Run starts it, Close stops it gracefully.
// Tests start it on 127.0.0.1:0 and read Addr.
type Main struct {
	Config config.Config
	Addr   string // the address actually listened on, after Run

	closeOnce sync.Once
	closeErr  error
	out       io.Writer
	log       *slog.Logger

	lock     *os.File
	stopJobs context.CancelFunc
	jobs     sync.WaitGroup
	db       stowage.DB
	keys     *crypt.Manager // nil with encryption: none
	topo     *topology
	cache    *pullthrough.Service
	srv      *http.Server
	served   chan error

	metricsTTL time.Duration // how long /metrics reuses database reads (tests: -1, none)
}

// NewMain returns a Main for a validated configuration.
func NewMain(cfg config.Config, out io.Writer) *Main {
	return &Main{Config: cfg, out: out, metricsTTL: defaultMetricsTTL}
}

// Run opens storage and metadata, and starts serving in the background.
func (m *Main) Run(ctx context.Context) (err error) {
	cfg := m.Config
	m.log = newLogger(cfg.Log, m.out)
	if err := checkExposure(cfg); err != nil {
		return err
	}
	// Listen (and load the certificate) before anything is created: a start
	// that fails there (the port in use) leaves no new data directory, key
	// file or database behind.
	ln, err := net.Listen("tcp", cfg.Addr)
	if errors.Is(err, syscall.EACCES) {
		return fmt.Errorf("listen on %s: %w: a port below 1024 needs the capability CAP_NET_BIND_SERVICE (under systemd: AmbientCapabilities=CAP_NET_BIND_SERVICE, CapabilityBoundingSet=CAP_NET_BIND_SERVICE and PrivateUsers=no, see docs/install.md), or use a port from 1024 up (e.g. 5000 behind a proxy)", cfg.Addr, err)
	}
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another registry running there? use --addr to pick another address)", cfg.Addr, err)
	}
	defer func() {
		if err != nil {
			ln.Close()
		}
	}()
	var tlsConfig *tls.Config
	if cfg.TLS.CertFile != "" {
		certs, err := newCertSource(cfg.TLS.CertFile, cfg.TLS.KeyFile, m.log)
		if err != nil {
			return err
		}
		// Renewed certificate files are picked up without a restart.
		tlsConfig = &tls.Config{GetCertificate: certs.GetCertificate, MinVersion: tls.VersionTLS12}
	}
	// A start that fails from here on removes what it created.
	fp := snapshotStart(cfg)
	defer func() {
		if err != nil {
			m.abortStart(fp)
		}
	}()
	// The data directory holds the metadata database (its settings hold
	// the token signing key and the password hashes) and the encryption
	// keys: nobody but the owner may read it.
	if err := privateDir(cfg.DataDir, m.log); err != nil {
		return err
	}
	lock, err := lockDir(cfg.DataDir)
	if err != nil {
		return err
	}
	m.lock = lock
	for _, dir := range fsRoots(cfg.Storage) {
		if err := privateDir(dir, m.log); err != nil {
			return fmt.Errorf("storage: %w", err)
		}
	}

	db, dbDesc, err := openDB(ctx, cfg.Database)
	if err != nil {
		return err
	}
	m.db = db
	topo := &topology{}
	store, desc, err := buildStorage(ctx, cfg.Storage, "storage", topo, storageEnv{log: m.log, db: db})
	if err != nil {
		return err
	}
	topo.desc = desc
	m.topo = topo
	fp.recording()
	plain := store // below encryption: what the readiness markers are written to
	store, keys, err := m.setupEncryption(ctx, db, store)
	if err != nil {
		return err
	}
	m.keys = keys
	topo.setTop(store)
	if keys == nil {
		topo.checkPlainReads()
	}
	authority, err := m.setupAuth(ctx, db)
	if err != nil {
		return err
	}
	lim, err := limitsFor(cfg, m)
	if err != nil {
		return err
	}
	opts := stowage.Options{Logger: m.log, Lease: time.Duration(cfg.GC.Lease), KeepReferrers: cfg.Delete.KeepReferrers,
		StorageLimit: cfg.StorageLimit(), RecordPulls: cfg.Events.Pulls}
	if cfg.Replication.Region != "" {
		opts.Changes = replication.Clocks{Region: cfg.Replication.Region} // every change's clock (docs/replication.md)
	}
	if keys != nil {
		opts.ManifestCacheTTL = keys.TTL()
	}
	if opts.NodeID, err = nodeID(cfg.DataDir); err != nil {
		return err
	}
	reg := stowage.NewRegistry(db, store, opts)
	// Upload leases this node held before a restart (a crash mid-PATCH)
	// would block those sessions for a while: end them now. SQLite has one
	// process, so every lease in it is this node's.
	if n, err := reg.ReleaseUploadLeases(ctx, cfg.Database.Kind() == "sqlite"); err != nil {
		return fmt.Errorf("release upload leases: %w", err)
	} else if n > 0 {
		m.log.Info("released upload leases held before the restart", "uploads", n)
	}
	gcOpts := gc.Options{Grace: time.Duration(cfg.GC.Grace), Lease: time.Duration(cfg.GC.Lease),
		UploadExpiry: time.Duration(cfg.GC.UploadExpiry)}
	mset, jr := newMetrics(reg, db, topo, keys, cfg.StorageLimit(), m.metricsTTL)
	collector, scrubber := meteredGC{gc.New(reg), jr}, meteredScrub{scrub.New(reg.Parts()), jr}

	events, err := openFeed(db, cfg.Events)
	if err != nil {
		return err
	}

	hooks, err := m.webhooks(db, events, ln.Addr().String())
	if err != nil {
		return err
	}
	webhookMetrics(mset.Registerer(), hooks)
	if m.cache, err = m.pullThrough(reg, db); err != nil { // cacherule.go
		return err
	}
	pol := meteredPolicies{policy.New(reg), jr}
	mux := http.NewServeMux()
	gcRec := ui.RecordGC(collector) // the overview shows the last collection
	oci := ociapi.New(reg, m.log).WithFiller(m.cache)
	mg := mgmt.New(reg, m.log).WithGC(gcRec, gcOpts).WithScrub(scrubber).WithKeys(managedKeys(keys)).WithTopology(topo).WithPolicies(pol, recyclebin.New(reg)).WithEvents(events).WithWebhooks(hooks).WithCacheRules(m.cache)
	repl, err := newReplication(cfg.Replication, reg, events, authority, m.log)
	if err != nil {
		return err
	}
	if repl != nil {
		mg.WithReplication(repl)
		if repl.ReadThrough != nil {
			oci.WithMiss(repl.ReadThrough)
		}
		replicationMetrics(mset.Registerer(), repl)
	}
	routes(mux, m.log, authority, lim, oci, mg, mgmt.NewACR(reg, m.log), mset.Handler(m.log))
	mux.HandleFunc("/healthz", healthz)
	ready := &readiness{db: db, store: plain, topo: topo, log: m.log}
	ready.check(ctx) // at start: writes the storage's readiness markers the first time
	mux.Handle("/readyz", ready)
	startUI, err := m.mountUI(mux, reg, authority, lim, pol, topo, scrubber, gcRec)
	if err != nil {
		return err
	}

	m.Addr = ln.Addr().String()
	m.srv = &http.Server{
		Handler:           observe(m.log, mset, mux),
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(m.log.Handler(), slog.LevelWarn),
	}
	m.srv.RegisterOnShutdown(events.Close) // long polls of GET /api/v1/events answer at once
	m.served = make(chan error, 1)
	scheme := "http"
	if tlsConfig != nil {
		m.srv.TLSConfig = tlsConfig
		ln, scheme = tls.NewListener(ln, m.srv.TLSConfig), "https"
	}
	go func() { m.served <- m.srv.Serve(ln) }()
	bg, cancel := context.WithCancel(context.Background())
	m.stopJobs = cancel
	startUI(bg)
	// Background jobs: with several nodes on one database, each scheduled
	// run happens on one node (package jobs); the others skip it.
	if cfg.GC.Interval > 0 {
		m.scheduled(bg, reg, "garbage collection", "gc", time.Duration(cfg.GC.Interval), func(ctx context.Context) error {
			sched := gcOpts
			sched.SweepEvery = time.Duration(cfg.GC.SweepInterval)
			_, err := gcRec.Collect(ctx, sched)
			return err
		})
	}
	m.jobs.Add(1)
	go func() { defer m.jobs.Done(); hooks.Run(bg) }() // webhook deliveries (webhook.go)
	// Every node looks every minute; one at a time runs what is due.
	m.every(bg, "scheduled purge", time.Minute, jr.metered("purge-schedule", pol.RunDuePurgePolicies))
	if topo.needsUpkeep() {
		m.scheduled(bg, reg, "storage upkeep", "storage-repair", time.Minute, jr.metered("storage-repair", topo.upkeep))
	}
	if cfg.Scrub.Interval > 0 {
		m.scheduled(bg, reg, "scrub", "scrub", time.Duration(cfg.Scrub.Interval), func(ctx context.Context) error {
			rep, err := scrubber.Run(ctx, scrub.Options{})
			if err == nil {
				m.log.Info("scrub done", "blobs", rep.Blobs, "ok", rep.OK, "repaired", rep.Repaired, "degraded", rep.Degraded, "lost", rep.Lost)
			}
			return err
		})
	}
	m.scheduled(bg, reg, "change feed retention", "feed-retention", feedTrimInterval, jr.metered("feed-retention", m.trimFeed(events)))
	if repl != nil {
		m.jobs.Add(1)
		go func() { defer m.jobs.Done(); repl.Run(bg) }()
	}
	if cfg.Retention.Interval > 0 {
		m.scheduled(bg, reg, "retention", "retention", time.Duration(cfg.Retention.Interval), func(ctx context.Context) error {
			run, err := pol.ApplyRetention(ctx, false)
			if err == nil && run.Manifests > 0 {
				m.log.Info("retention deleted untagged manifests", "manifests", run.Manifests, "bytes_freed_after_gc", run.BytesFreed)
			}
			return err
		})
	}

	abs, _ := filepath.Abs(cfg.DataDir)
	m.say("listening on %s://%s\n", scheme, m.Addr)
	m.say("data in %s (blobs: %s, metadata: %s)\n", abs, desc, dbDesc)
	if keys != nil {
		m.say("encryption at rest on (%s)\n", keys.Keys.Describe())
	} else {
		m.say("encryption at rest OFF (encryption: none)\n")
	}
	switch host, _, _ := net.SplitHostPort(m.Addr); {
	case authority != nil:
		m.say("access control on (users, scope maps and tokens: stowage user|scope-map|token; docs/access.md)\n")
	case isLoopback(host):
		m.say("access control OFF: open to every local user (fine on 127.0.0.1 for a quick start; turn it on with auth.enabled, see docs/access.md)\n")
	default:
		m.log.Warn("ACCESS CONTROL OFF on a non-loopback address (--insecure-open-registry): anyone who can reach it can push, pull and delete")
	}
	if limit := cfg.StorageLimit(); limit > 0 || lim != nil {
		tier := cfg.Tier
		if tier == "" {
			tier = "none"
		}
		m.say("limits: tier %s, storage %s, requests %s\n", tier, storageLimitText(limit), requestLimitText(lim))
	}
	return nil
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}

// Close stops accepting requests, waits for in-flight ones (up to the
// shutdown timeout), then closes the database.
func (m *Main) Close() error {
	m.closeOnce.Do(func() { m.closeErr = m.close() })
	return m.closeErr
}

// close stops what Run started; Close calls it once (a second Close,
// such as a test's cleanup after its own, returns the first one's answer
// instead of waiting for a server that already stopped).
func (m *Main) close() error {
	var errs []error
	if m.stopJobs != nil {
		m.stopJobs()
		m.jobs.Wait()
	}
	if m.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(m.Config.ShutdownTimeout))
		defer cancel()
		if err := m.srv.Shutdown(ctx); err != nil {
			// Past the timeout: cut the connections still open, which
			// cancels their requests (an admin's gc holding a job lock), so
			// they end and give their database connections back.
			errs = append(errs, fmt.Errorf("shutdown: %w (requests still running were cancelled)", err))
			m.srv.Close()
		}
		if err := <-m.served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	if m.cache != nil {
		m.cache.Close() // background copies of pull-through images
	}
	if m.keys != nil {
		if c, ok := m.keys.Keys.(io.Closer); ok {
			errs = append(errs, c.Close())
		}
	}
	if m.db != nil {
		errs = append(errs, m.db.Close())
	}
	if m.lock != nil {
		errs = append(errs, m.lock.Close())
	}
	return errors.Join(errs...)
}

// every runs a background job (garbage collection, retention) at an
// interval, online, until ctx ends; a failed run is logged and retried at
// the next tick.
func (m *Main) every(ctx context.Context, name string, interval time.Duration, run func(context.Context) error) {
	m.jobs.Add(1)
	go func() {
		defer m.jobs.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := run(ctx); err != nil && ctx.Err() == nil {
					m.log.Error("background job failed; it will run again at the next interval", "job", name, "err", err)
				}
			}
		}
	}()
}

// scheduled is every for a job that one node at a time runs, once per
// interval across the nodes sharing the database (jobs.RunScheduled).
func (m *Main) scheduled(ctx context.Context, reg *stowage.Registry, name, job string, interval time.Duration, run func(context.Context) error) {
	m.every(ctx, name, interval, func(ctx context.Context) error {
		ran, err := jobs.RunScheduled(ctx, reg.Parts().DB, reg.Parts().Now, job, interval, run)
		if !ran && err == nil {
			m.log.Debug("scheduled job skipped: another node runs it", "job", name)
		}
		return err
	})
}

// lockDir takes an exclusive lock on the data directory, so two servers never
// share one embedded database.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, "LOCK")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if errors.Is(err, os.ErrPermission) {
		return nil, lockDenied(dir, path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("data directory %s is in use by another stowage process (stop it, or use --data-dir)", dir)
	}
	return f, nil
}

// privateDir creates dir with mode 0700, or makes an existing one private:
// when group or others may use it (a data directory made by an older
// version, 0755), it takes their access away from it and from everything in
// it, once (afterwards the directory is 0700 and is not walked again), and
// says so in the log. Files are created 0600 and directories 0700 below it.
func privateDir(dir string, log *slog.Logger) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("directory %s: %w", dir, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("directory %s: %w", dir, err)
	}
	if err := checkOwner(dir, fi, log); err != nil {
		return err
	}
	if fi.Mode().Perm()&0o077 == 0 {
		return nil
	}
	was := fi.Mode().Perm()
	n := 0
	err = filepath.WalkDir(dir, func(path string, d iofs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&iofs.ModeSymlink != 0 {
			return nil // chmod would follow it; what it points to is not ours to change
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if perm := info.Mode().Perm(); perm&0o077 != 0 {
			if err := os.Chmod(path, perm&^0o077); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("directory %s is open to other users (mode %#o) and could not be made private: %w; "+
			"run 'chmod -R go-rwx %s' as its owner", dir, was, err, dir)
	}
	log.Warn("made a directory private: it was open to other local users, who could read the metadata database (token signing key, password hashes) and the blobs",
		"dir", dir, "mode_was", fmt.Sprintf("%#o", was), "entries_changed", n)
	return nil
}

// currentUID is the user stowage runs as (a variable for tests).
var currentUID = os.Geteuid

// checkOwner refuses a directory another user owns, naming the owner and
// the two fixes: stowage could not make it private nor, once private, write
// in it. Root can, but what it creates there its owner could not read:
// root gets a warning.
func checkOwner(dir string, fi iofs.FileInfo, log *slog.Logger) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	uid := currentUID()
	if !ok || int(st.Uid) == uid {
		return nil
	}
	owner, ownerLabel := userName(int(st.Uid))
	me, meLabel := userName(uid)
	if uid == 0 {
		log.Warn("running as root in a directory another user owns: files created now will be root's, and that user's stowage could not read them", "dir", dir, "owner", ownerLabel)
		return nil
	}
	return fmt.Errorf("directory %s belongs to user %s, but stowage runs as %s: run stowage as %s (e.g. sudo -u %s stowage serve …), or give the directory to %s: sudo chown -R %s %s",
		dir, ownerLabel, meLabel, owner, owner, me, me, dir)
}

// userName returns a user's name for a command line (the uid if it has
// none) and a label for a message: "stowage (uid 998)".
func userName(uid int) (name, label string) {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username, fmt.Sprintf("%s (uid %d)", u.Username, uid)
	}
	return strconv.Itoa(uid), fmt.Sprintf("uid %d", uid)
}

// fsRoots lists the directories of the filesystem backends of a storage
// configuration (nested in mirrors and shards too).
func fsRoots(s config.Storage) []string {
	var out []string
	switch {
	case s.Filesystem != nil:
		out = append(out, s.Filesystem.Path)
	case s.Mirror != nil:
		for _, c := range s.Mirror.Copies {
			out = append(out, fsRoots(c.Storage)...)
		}
	case s.Shard != nil:
		for _, c := range s.Shard.Shards {
			out = append(out, fsRoots(c.Storage)...)
		}
	}
	return out
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	// Records logged with a request's context carry its id (request_id).
	if c.Format == "json" {
		return slog.New(requestlog.Handler(slog.NewJSONHandler(w, opts)))
	}
	return slog.New(requestlog.Handler(slog.NewTextHandler(w, opts)))
}

// nodeID returns this node's name among the nodes sharing a database,
// kept in <data_dir>/node-id (created at first start), so it survives
// restarts.
func nodeID(dataDir string) (string, error) {
	path := filepath.Join(dataDir, "node-id")
	if b, err := os.ReadFile(path); err == nil {
		if id := strings.TrimSpace(string(b)); id != "" {
			return id, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("node id: %w", err)
	}
	var b [8]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	if err := os.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("node id: %w", err)
	}
	return id, nil
}

// say tells the operator about the server's setup: a "stowage: …" line,
// or with JSON logs an info record, so every line of a JSON log parses.
func (m *Main) say(format string, args ...any) {
	msg := strings.TrimSuffix(fmt.Sprintf(format, args...), "\n")
	if m.Config.Log.Format == "json" && m.log != nil {
		m.log.Info(msg)
		return
	}
	fmt.Fprintln(m.out, "stowage: "+msg)
}
