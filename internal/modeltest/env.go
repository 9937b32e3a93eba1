package modeltest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/meta/postgres"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/storage/crypt"
	"github.com/stowage/stowage/storage/fs"
	"github.com/stowage/stowage/storage/fs/faultfs"
	"github.com/stowage/stowage/storage/mirror"
	"github.com/stowage/stowage/storage/shard"
)

// The engine under test is built the way cmd/stowage wires it (serve.go,
// storage.go, encryption.go): a metadata DB (SQLite file, or PostgreSQL),
// a storage tree of fs leaves (one dir, a mirror of two, or three shards),
// storage/crypt on top with a service keyring file, and one Registry per
// node. Every node has its own DB handle wrapper, crypt manager, storage
// tree and clock offset; they share the database and the directories.
//
// Two fault wrappers sit in each node's stack for the crash steps:
// faultStore right under crypt, faultDB between the DB and everything that
// writes to it. Disarmed, they pass everything through.
//
// With Config.PowerLoss the fs leaves run on storage/fs/faultfs (one
// in-memory file system per leaf directory, kept across restarts) instead
// of the OS's: a power-loss step forgets every write not yet synced, and a
// power-cut step stops the machine at the nth file system call of one leaf
// (then every leaf and the database refuse writes) and then loses power.
// The database is durable at commit (SQLite runs synchronous=FULL): it is
// closed and reopened, not reverted. Blobs are at most ~140 KiB, and a run
// holds a few dozen objects, so the memory stays in the low megabytes.

// Topology is the storage tree under crypt.
type Topology string

const (
	TopoFS     Topology = "fs"     // one directory
	TopoMirror Topology = "mirror" // two directories, every write to both
	TopoShard  Topology = "shard"  // three directories, rendezvous placement
)

// Config describes one run's engine.
type Config struct {
	Topology Topology
	// Skews are the clock offsets of the nodes (len = number of nodes).
	Skews []time.Duration
	// Postgres, if set, returns a connection string to an empty schema
	// (a fresh one per call); the run then uses PostgreSQL, not SQLite.
	Postgres func() string
	// PowerLoss puts the fs leaves on faultfs (in memory), so power-loss
	// and power-cut steps can forget unsynced writes; else they are
	// directories of the OS's file system, and those steps are restarts.
	PowerLoss bool
}

func (c Config) String() string {
	db := "sqlite"
	if c.Postgres != nil {
		db = "postgres"
	}
	fsys := "os"
	if c.PowerLoss {
		fsys = "faultfs"
	}
	return fmt.Sprintf("db=%s storage=%s fs=%s nodes=%d skews=%v", db, c.Topology, fsys, len(c.Skews), c.Skews)
}

// leafDirs are the fs roots a topology uses under dir.
func leafDirs(dir string, t Topology) []string {
	n := map[Topology]int{TopoFS: 1, TopoMirror: 2, TopoShard: 3}[t]
	var dirs []string
	for i := range n {
		dirs = append(dirs, filepath.Join(dir, fmt.Sprintf("store%d", i)))
	}
	return dirs
}

// openLeaf is the one place an fs leaf is made: on the OS's file system,
// or (Config.PowerLoss) on the leaf's faultfs, behind the machine switch.
func (e *engine) openLeaf(root string) (*fs.Backend, error) {
	var b *fs.Backend
	var err error
	if e.fss == nil {
		b, err = fs.New(root)
	} else {
		fsys := e.fss[root]
		if fsys == nil {
			fsys = faultfs.New()
			e.fss[root] = fsys
		}
		b, err = fs.NewWithFS(root, machineFS{fsys, e})
	}
	if err != nil {
		return nil, err
	}
	// As serve does at start: writes cut short by a crash are garbage.
	if _, err := b.CleanTemp(0); err != nil {
		return nil, err
	}
	return b, nil
}

// openStorage builds a node's storage tree (below crypt). It is the one
// function to swap for another storage layout.
func (e *engine) openStorage(dir string, t Topology) (stowage.Backend, error) {
	var leaves []stowage.Backend
	for _, d := range leafDirs(dir, t) {
		b, err := e.openLeaf(d)
		if err != nil {
			return nil, err
		}
		leaves = append(leaves, b)
	}
	switch t {
	case TopoMirror:
		return mirror.New([]mirror.Copy{{Name: "a", Backend: leaves[0]}, {Name: "b", Backend: leaves[1]}}, mirror.Options{})
	case TopoShard:
		var ss []shard.Shard
		for i, l := range leaves {
			ss = append(ss, shard.Shard{Name: fmt.Sprint("s", i), Backend: l})
		}
		return shard.New(ss, shard.Options{})
	}
	return leaves[0], nil
}

// clock is the run's base time; each node reads it plus its offset.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// node is one Registry over the shared database and directories.
type node struct {
	reg   *stowage.Registry
	store stowage.Backend // crypt over faults over the topology
	plain stowage.Backend // the topology, for listing
	fst   *faultStore
	fdb   *faultDB
	id    string
	skew  time.Duration
}

// engine is everything the run drives: reopened at every restart.
type engine struct {
	cfg   Config
	dir   string
	pgURL string
	clock *clock
	db    stowage.DB
	keys  crypt.Keys
	nodes []*node
	// fss are the leaves' file systems by root (Config.PowerLoss; else
	// nil): the disks, which outlive restarts.
	fss map[string]*faultfs.FS
	// powerLosses counts the power losses so far (see
	// defectPowerLossDataKey).
	powerLosses int
}

const lease = time.Hour

func newEngine(ctx context.Context, cfg Config, dir string, start time.Time) (*engine, error) {
	e := &engine{cfg: cfg, dir: dir, clock: &clock{t: start}}
	if cfg.PowerLoss {
		e.fss = map[string]*faultfs.FS{}
	}
	if cfg.Postgres != nil {
		e.pgURL = cfg.Postgres()
	}
	return e, e.open(ctx)
}

func (e *engine) open(ctx context.Context) error {
	var err error
	if e.pgURL != "" {
		e.db, err = postgres.Open(ctx, e.pgURL, postgres.Options{MaxConns: 4})
	} else {
		e.db, err = sqlite.Open(ctx, filepath.Join(e.dir, "meta.db"))
	}
	if err != nil {
		return err
	}
	// As the service key (cmd/stowage/encryption.go): a keyring file in the
	// data dir, created at the first start.
	if e.keys, err = crypt.OpenFileKeyring(filepath.Join(e.dir, "keys", "service.json"), true); err != nil {
		return err
	}
	e.nodes = nil
	for i, skew := range e.cfg.Skews {
		plain, err := e.openStorage(e.dir, e.cfg.Topology)
		if err != nil {
			return err
		}
		n := &node{id: fmt.Sprint("node", i), skew: skew, plain: plain}
		n.fst = newFaultStore(plain)
		n.fdb = newFaultDB(e.db)
		n.fdb.down = e.down
		proc := new(atomic.Bool)
		n.fst.proc, n.fdb.proc = proc, proc
		n.store = crypt.New(n.fst, crypt.NewManager(n.fdb, e.keys))
		now := func() time.Time { return e.clock.now().Add(skew) }
		var rdb stowage.DB = n.fdb
		if l, ok := e.db.(stowage.Locker); ok {
			rdb = lockerDB{n.fdb, l}
		}
		n.reg = stowage.NewRegistry(rdb, n.store, stowage.Options{Now: now, Lease: lease, NodeID: n.id})
		// As serve does: end the upload leases held before the restart.
		if _, err := n.reg.ReleaseUploadLeases(ctx, e.pgURL == ""); err != nil {
			return err
		}
		e.nodes = append(e.nodes, n)
	}
	return nil
}

// reopen is a process restart of every node: in-flight work is abandoned,
// what was committed stays.
func (e *engine) reopen(ctx context.Context) error {
	if err := e.close(); err != nil {
		return err
	}
	return e.open(ctx)
}

// powerLoss is a power cut of the machine and its restart: the database
// closed (what it committed stays), every leaf's unsynced writes
// forgotten, every node rebuilt. On the OS's file system it is a restart.
func (e *engine) powerLoss(ctx context.Context) error {
	e.powerLosses++
	if err := e.close(); err != nil {
		return err
	}
	for _, fsys := range e.fss {
		fsys.PowerLoss()
	}
	return e.open(ctx)
}

// leafFS is the file system of leaf i (modulo the topology's leaves), nil
// on the OS's.
func (e *engine) leafFS(i int) *faultfs.FS {
	if e.fss == nil {
		return nil
	}
	dirs := leafDirs(e.dir, e.cfg.Topology)
	return e.fss[dirs[i%len(dirs)]]
}

// down reports whether the machine has stopped: a leaf reached the crash
// point of a power-cut step. Until the power loss that follows, no leaf
// and no database transaction takes a write.
func (e *engine) down() bool {
	for _, fsys := range e.fss {
		if fsys.Crashed() {
			return true
		}
	}
	return false
}

func (e *engine) close() error {
	if e.db == nil {
		return nil
	}
	err := e.db.Close()
	e.db = nil
	return err
}

// ---- faults ----

// errInjected is what an injected fault returns.
var errInjected = errors.New("modeltest: injected fault (simulated crash)")

// fault counts writes; the nth fails, and after it every write fails (the
// process is dead until reopen): every write of the node, to storage and
// to the database (proc, shared by the node's two faults). With after,
// the nth write takes effect and then reports failure (a crash after the
// effect, before the caller learned of it).
type fault struct {
	mu    sync.Mutex
	n     int // writes left before the fault; 0: disarmed
	after bool
	dead  bool
	fired bool
	proc  *atomic.Bool // the node's process is dead
}

func (f *fault) arm(n int, after bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n, f.after, f.dead, f.fired = n, after, false, false
	if f.proc != nil {
		f.proc.Store(false)
	}
}

// hit counts one write: proceed (run it), fail (report errInjected).
func (f *fault) hit() (proceed, fail bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dead || f.proc != nil && f.proc.Load() {
		return false, true
	}
	if f.n == 0 {
		return true, false
	}
	f.n--
	if f.n > 0 {
		return true, false
	}
	f.dead, f.fired = true, true
	if f.proc != nil {
		f.proc.Store(true)
	}
	return f.after, true
}

// faultStore injects a failure into the nth write (Put, Append, Commit,
// Delete). A failing Append writes part of its bytes first (a torn tail).
type faultStore struct {
	stowage.Backend
	app stowage.Appender
	fault
	// beforeDelete, if set, runs before each Delete (a race step puts a
	// push there).
	beforeDelete func(key string)
}

func newFaultStore(inner stowage.Backend) *faultStore {
	s := &faultStore{Backend: inner}
	s.app, _ = inner.(stowage.Appender)
	return s
}

func (s *faultStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	proceed, fail := s.hit()
	if proceed {
		if err := s.Backend.Put(ctx, key, r, size); err != nil || !fail {
			return err
		}
	}
	if fail {
		return errInjected
	}
	return nil
}

func (s *faultStore) Delete(ctx context.Context, key string) error {
	if s.beforeDelete != nil {
		s.beforeDelete(key)
	}
	proceed, fail := s.hit()
	if proceed {
		if err := s.Backend.Delete(ctx, key); err != nil || !fail {
			return err
		}
	}
	if fail {
		return errInjected
	}
	return nil
}

func (s *faultStore) Append(ctx context.Context, key string, off int64, r io.Reader) (int64, error) {
	proceed, fail := s.hit()
	if !fail {
		return s.app.Append(ctx, key, off, r)
	}
	if proceed {
		// Torn: half of the chunk lands, then the writer dies.
		b, _ := io.ReadAll(r)
		s.app.Append(ctx, key, off, io.MultiReader(bytes.NewReader(b[:len(b)/2]), errReader{}))
	}
	return 0, errInjected
}

func (s *faultStore) Commit(ctx context.Context, src, dst string, size int64) error {
	proceed, fail := s.hit()
	if proceed {
		if err := s.app.Commit(ctx, src, dst, size); err != nil || !fail {
			return err
		}
	}
	if fail {
		return errInjected
	}
	return nil
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errInjected }

// faultDB injects a failure into the nth Update.
type faultDB struct {
	stowage.DB
	fault
	// down, if set, reports that the machine stopped (a power cut): every
	// Update fails, doing nothing.
	down func() bool
}

func newFaultDB(inner stowage.DB) *faultDB { return &faultDB{DB: inner} }

func (d *faultDB) Update(ctx context.Context, fn func(stowage.Tx) error) error {
	return d.write(func() error { return d.DB.Update(ctx, fn) })
}

// write runs one write transaction, unless the fault says otherwise.
func (d *faultDB) write(tx func() error) error {
	if d.down != nil && d.down() {
		return errInjected
	}
	proceed, fail := d.hit()
	if proceed {
		if err := tx(); err != nil || !fail {
			return err
		}
	}
	if fail {
		return errInjected
	}
	return nil
}

// The key store (crypt.KeyStore) of the inner database: each write is a
// write transaction, faulted like Update; reads pass.

func (d *faultDB) keys() crypt.KeyStore { return d.DB.(crypt.KeyStore) }

func (d *faultDB) PutDataKey(ctx context.Context, k stowage.DataKey) error {
	return d.write(func() error { return d.keys().PutDataKey(ctx, k) })
}

func (d *faultDB) GetDataKey(ctx context.Context, id string) (stowage.DataKey, error) {
	return d.keys().GetDataKey(ctx, id)
}

func (d *faultDB) MoveDataKeys(ctx context.Context, from, to string) error {
	return d.write(func() error { return d.keys().MoveDataKeys(ctx, from, to) })
}

func (d *faultDB) DeleteDataKeys(ctx context.Context, obj string) error {
	return d.write(func() error { return d.keys().DeleteDataKeys(ctx, obj) })
}

func (d *faultDB) DeleteDataKey(ctx context.Context, id string) error {
	return d.write(func() error { return d.keys().DeleteDataKey(ctx, id) })
}

func (d *faultDB) DeleteDataKeyOf(ctx context.Context, id, obj string) error {
	return d.write(func() error { return d.keys().DeleteDataKeyOf(ctx, id, obj) })
}

func (d *faultDB) DataKeysNotWrappedBy(ctx context.Context, kv stowage.KeyVersion, after string, limit int) ([]stowage.DataKey, error) {
	return d.keys().DataKeysNotWrappedBy(ctx, kv, after, limit)
}

func (d *faultDB) RewrapDataKeys(ctx context.Context, keys []stowage.DataKey, old []stowage.KeyVersion) (n int64, err error) {
	err = d.write(func() (err error) { n, err = d.keys().RewrapDataKeys(ctx, keys, old); return err })
	return n, err
}

func (d *faultDB) CountDataKeys(ctx context.Context) ([]stowage.KeyVersionCount, error) {
	return d.keys().CountDataKeys(ctx)
}

func (d *faultDB) SampleDataKey(ctx context.Context, kv stowage.KeyVersion) (stowage.DataKey, error) {
	return d.keys().SampleDataKey(ctx, kv)
}

func (d *faultDB) Setting(ctx context.Context, name string) (string, error) {
	return d.keys().Setting(ctx, name)
}

func (d *faultDB) UpdateSetting(ctx context.Context, name string, fn func(string, bool) (string, error)) error {
	return d.write(func() error { return d.keys().UpdateSetting(ctx, name, fn) })
}

// lockerDB adds the Locker capability when the inner DB has it
// (PostgreSQL), so job locks stay cross-node.
type lockerDB struct {
	*faultDB
	stowage.Locker
}

// machineFS is a leaf's faultfs with the machine's power switch: once any
// leaf reached its crash point (faultfs.CrashAfter), every leaf refuses
// writes, as the one machine they are on has stopped.
type machineFS struct {
	*faultfs.FS
	e *engine
}

func (m machineFS) stopped(op, name string) error {
	if m.e.down() {
		return &os.PathError{Op: op, Path: name, Err: faultfs.ErrCrashed}
	}
	return nil
}

func (m machineFS) OpenFile(name string, flag int, perm os.FileMode) (fs.File, error) {
	if flag&(os.O_CREATE|os.O_TRUNC) != 0 {
		if err := m.stopped("open", name); err != nil {
			return nil, err
		}
	}
	f, err := m.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return machineFile{f, m}, nil
}

func (m machineFS) Mkdir(name string, perm os.FileMode) error {
	if err := m.stopped("mkdir", name); err != nil {
		return err
	}
	return m.FS.Mkdir(name, perm)
}

func (m machineFS) Rename(oldpath, newpath string) error {
	if err := m.stopped("rename", oldpath); err != nil {
		return err
	}
	return m.FS.Rename(oldpath, newpath)
}

func (m machineFS) Remove(name string) error {
	if err := m.stopped("remove", name); err != nil {
		return err
	}
	return m.FS.Remove(name)
}

func (m machineFS) SyncDir(name string) error {
	if err := m.stopped("sync", name); err != nil {
		return err
	}
	return m.FS.SyncDir(name)
}

type machineFile struct {
	fs.File
	m machineFS
}

func (f machineFile) Write(p []byte) (int, error) {
	if err := f.m.stopped("write", f.Name()); err != nil {
		return 0, err
	}
	return f.File.Write(p)
}

func (f machineFile) Sync() error {
	if err := f.m.stopped("sync", f.Name()); err != nil {
		return err
	}
	return f.File.Sync()
}

func (f machineFile) Truncate(size int64) error {
	if err := f.m.stopped("truncate", f.Name()); err != nil {
		return err
	}
	return f.File.Truncate(size)
}
