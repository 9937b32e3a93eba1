// Package faultfs is an in-memory file system for storage/fs (it implements
// fs.FS) that simulates a power loss: it forgets every write that was not
// made durable, the way a machine that loses power forgets its page cache.
// A process crash (kill -9) keeps the page cache and is a weaker test; this
// is the one a storage layer's fsyncs must survive.
//
// The model is strict, like LevelDB's fault-injection Env and Pebble's strict
// MemFS:
//
//   - a file's contents and size are durable as of its last File.Sync;
//   - a name in a directory (a file or directory created, renamed in or out,
//     or removed) is durable as of the directory's last FS.SyncDir;
//   - PowerLoss reverts every directory to its entries at its last SyncDir,
//     recursively, and every file to its contents at its last Sync. A file
//     renamed from directory A to B with only B synced is then found in both
//     (the strictest reading of POSIX: nothing says the removal from A is
//     durable).
//
// To cut power in the middle of an operation, CrashAfter(n) lets n more
// mutating calls (OpenFile that creates or truncates, Write, Truncate, Sync,
// Mkdir, Rename, Remove, SyncDir) succeed and fails every later one with
// ErrCrashed, doing nothing, as a machine that stopped would; PowerLoss
// then reverts and powers back on. Ops counts the mutating calls so far, so
// a test can run an operation once to count its steps and then cut power
// before each of them:
//
//	fsys := faultfs.New()
//	b, _ := fs.NewWithFS("/data", fsys)
//	fsys.CrashAfter(3)
//	err := b.Put(ctx, key, r, n) // fails at its 4th step
//	fsys.PowerLoss()
//	b, _ = fs.NewWithFS("/data", fsys) // "reboot": open handles are dead
//
// A FS is safe for concurrent use. Handles opened before a PowerLoss fail
// with ErrCrashed afterwards.
package faultfs

import (
	"errors"
	"io"
	iofs "io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/stowage/stowage/storage/fs"
)

// ErrCrashed is returned by every mutating call after the crash point set by
// CrashAfter, and by handles opened before a PowerLoss.
var ErrCrashed = errors.New("faultfs: the machine is down (power cut)")

type node struct {
	dir     bool
	mode    os.FileMode
	modTime time.Time
	// files
	data, synced []byte
	// directories
	children, syncedChildren map[string]*node
}

func newDir(mode os.FileMode) *node {
	return &node{dir: true, mode: mode | os.ModeDir, modTime: time.Now(),
		children: map[string]*node{}, syncedChildren: map[string]*node{}}
}

// FS is the in-memory file system. The zero value is not usable: call New.
type FS struct {
	mu      sync.Mutex
	root    *node
	epoch   int // bumped by PowerLoss: older handles are dead
	ops     int
	crashAt int // mutating calls allowed before the crash; -1: no crash
}

var _ fs.FS = (*FS)(nil)

// New returns an empty file system holding only the root directory "/",
// which is durable. Relative names are taken from the root.
func New() *FS {
	return &FS{root: newDir(0o755), crashAt: -1}
}

// CrashAfter lets n more mutating calls succeed and fails the later ones
// with ErrCrashed (n < 0: never). PowerLoss clears it.
func (f *FS) CrashAfter(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n < 0 {
		f.crashAt = -1
	} else {
		f.crashAt = f.ops + n
	}
}

// Ops returns the number of mutating calls made so far (including those
// refused after a crash).
func (f *FS) Ops() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ops
}

// Crashed reports whether the crash point was reached.
func (f *FS) Crashed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.crashAt >= 0 && f.ops > f.crashAt
}

// PowerLoss forgets everything not durable (see the package comment),
// invalidates every open handle, and clears the crash point.
func (f *FS) PowerLoss() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.epoch++
	f.crashAt = -1
	seen := map[*node]bool{}
	var revert func(n *node)
	revert = func(n *node) {
		if seen[n] {
			return
		}
		seen[n] = true
		if !n.dir {
			n.data = slices.Clone(n.synced)
			return
		}
		n.children = maps(n.syncedChildren)
		for _, c := range n.children {
			revert(c)
		}
	}
	revert(f.root)
}

func maps(m map[string]*node) map[string]*node {
	c := make(map[string]*node, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// step counts a mutating call and tells whether it may run. f.mu is held.
func (f *FS) step() error {
	f.ops++
	if f.crashAt >= 0 && f.ops > f.crashAt {
		return ErrCrashed
	}
	return nil
}

func split(name string) []string {
	p := path.Clean("/" + filepath.ToSlash(name))
	if p == "/" {
		return nil
	}
	return strings.Split(p[1:], "/")
}

// lookup returns the node at name, or nil. f.mu is held.
func (f *FS) lookup(name string) (*node, error) {
	n := f.root
	for _, c := range split(name) {
		if !n.dir {
			return nil, syscall.ENOTDIR
		}
		n = n.children[c]
		if n == nil {
			return nil, iofs.ErrNotExist
		}
	}
	return n, nil
}

// parent returns the directory holding name and name's last element.
func (f *FS) parent(name string) (*node, string, error) {
	parts := split(name)
	if len(parts) == 0 {
		return nil, "", syscall.EINVAL // the root has no parent entry
	}
	d, err := f.lookup(strings.Join(parts[:len(parts)-1], "/"))
	if err != nil {
		return nil, "", err
	}
	if !d.dir {
		return nil, "", syscall.ENOTDIR
	}
	return d, parts[len(parts)-1], nil
}

func pathErr(op, name string, err error) error {
	return &os.PathError{Op: op, Path: name, Err: err}
}

// OpenFile opens or creates a file; O_RDONLY, O_WRONLY, O_RDWR, O_CREATE,
// O_EXCL, O_TRUNC and O_APPEND are honoured. Directories cannot be opened.
func (f *FS) OpenFile(name string, flag int, perm os.FileMode) (fs.File, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	mutating := flag&(os.O_CREATE|os.O_TRUNC) != 0
	if mutating {
		if err := f.step(); err != nil {
			return nil, pathErr("open", name, err)
		}
	}
	d, base, err := f.parent(name)
	if err != nil {
		return nil, pathErr("open", name, err)
	}
	n := d.children[base]
	switch {
	case n == nil && flag&os.O_CREATE == 0:
		return nil, pathErr("open", name, iofs.ErrNotExist)
	case n == nil:
		n = &node{mode: perm, modTime: time.Now()}
		d.children[base] = n
		d.modTime = n.modTime
	case flag&(os.O_CREATE|os.O_EXCL) == os.O_CREATE|os.O_EXCL:
		return nil, pathErr("open", name, iofs.ErrExist)
	case n.dir:
		return nil, pathErr("open", name, syscall.EISDIR)
	}
	writable := flag&(os.O_WRONLY|os.O_RDWR) != 0
	if flag&os.O_TRUNC != 0 && writable {
		n.data = nil
		n.modTime = time.Now()
	}
	return &file{fs: f, n: n, name: name, epoch: f.epoch, flag: flag,
		readable: flag&os.O_WRONLY == 0, writable: writable}, nil
}

// Mkdir creates a directory; its parent must exist.
func (f *FS) Mkdir(name string, perm os.FileMode) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.step(); err != nil {
		return pathErr("mkdir", name, err)
	}
	d, base, err := f.parent(name)
	if err != nil {
		if errors.Is(err, syscall.EINVAL) {
			err = iofs.ErrExist // the root
		}
		return pathErr("mkdir", name, err)
	}
	if d.children[base] != nil {
		return pathErr("mkdir", name, iofs.ErrExist)
	}
	d.children[base] = newDir(perm)
	d.modTime = time.Now()
	return nil
}

// Rename moves a file or directory, replacing a file at newpath.
func (f *FS) Rename(oldpath, newpath string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.step(); err != nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
	}
	od, ob, err := f.parent(oldpath)
	if err != nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
	}
	n := od.children[ob]
	if n == nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: iofs.ErrNotExist}
	}
	nd, nb, err := f.parent(newpath)
	if err != nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
	}
	if t := nd.children[nb]; t == n {
		return nil
	} else if t != nil && (t.dir || n.dir) {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: syscall.EEXIST}
	}
	delete(od.children, ob)
	nd.children[nb] = n
	od.modTime, nd.modTime = time.Now(), time.Now()
	return nil
}

// Remove removes a file or an empty directory.
func (f *FS) Remove(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.step(); err != nil {
		return pathErr("remove", name, err)
	}
	d, base, err := f.parent(name)
	if err != nil {
		return pathErr("remove", name, err)
	}
	n := d.children[base]
	if n == nil {
		return pathErr("remove", name, iofs.ErrNotExist)
	}
	if n.dir && len(n.children) > 0 {
		return pathErr("remove", name, syscall.ENOTEMPTY)
	}
	delete(d.children, base)
	d.modTime = time.Now()
	return nil
}

// Stat describes the file or directory at name.
func (f *FS) Stat(name string) (os.FileInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.lookup(name)
	if err != nil {
		return nil, pathErr("stat", name, err)
	}
	return n.info(path.Base("/" + filepath.ToSlash(name))), nil
}

// ReadDir lists a directory, sorted by name.
func (f *FS) ReadDir(name string) ([]os.DirEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.lookup(name)
	if err != nil {
		return nil, pathErr("readdirent", name, err)
	}
	if !n.dir {
		return nil, pathErr("readdirent", name, syscall.ENOTDIR)
	}
	out := make([]os.DirEntry, 0, len(n.children))
	for k, c := range n.children {
		out = append(out, iofs.FileInfoToDirEntry(c.info(k)))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out, nil
}

// SyncDir makes the directory's current entries durable.
func (f *FS) SyncDir(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.step(); err != nil {
		return pathErr("sync", name, err)
	}
	n, err := f.lookup(name)
	if err != nil {
		return pathErr("sync", name, err)
	}
	if !n.dir {
		return pathErr("sync", name, syscall.ENOTDIR)
	}
	n.syncedChildren = maps(n.children)
	return nil
}

func (n *node) info(name string) os.FileInfo {
	return fileInfo{name: name, size: int64(len(n.data)), mode: n.mode, modTime: n.modTime}
}

type fileInfo struct {
	name    string
	size    int64
	mode    os.FileMode
	modTime time.Time
}

func (i fileInfo) Name() string       { return i.name }
func (i fileInfo) Size() int64        { return i.size }
func (i fileInfo) Mode() os.FileMode  { return i.mode }
func (i fileInfo) ModTime() time.Time { return i.modTime }
func (i fileInfo) IsDir() bool        { return i.mode.IsDir() }
func (i fileInfo) Sys() any           { return nil }

// file is an open handle.
type file struct {
	fs                 *FS
	n                  *node
	name               string
	epoch, flag        int
	off                int64
	readable, writable bool
	closed             bool
}

// check returns an error if the handle is dead. f.fs.mu is held.
func (h *file) check(op string) error {
	if h.closed {
		return pathErr(op, h.name, os.ErrClosed)
	}
	if h.epoch != h.fs.epoch {
		return pathErr(op, h.name, ErrCrashed)
	}
	return nil
}

func (h *file) Name() string { return h.name }

func (h *file) Read(p []byte) (int, error) {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	if err := h.check("read"); err != nil {
		return 0, err
	}
	if !h.readable {
		return 0, pathErr("read", h.name, syscall.EBADF)
	}
	if h.off >= int64(len(h.n.data)) {
		return 0, io.EOF
	}
	k := copy(p, h.n.data[h.off:])
	h.off += int64(k)
	return k, nil
}

func (h *file) Write(p []byte) (int, error) {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	if err := h.check("write"); err != nil {
		return 0, err
	}
	if err := h.fs.step(); err != nil {
		return 0, pathErr("write", h.name, err)
	}
	if !h.writable {
		return 0, pathErr("write", h.name, syscall.EBADF)
	}
	if h.flag&os.O_APPEND != 0 {
		h.off = int64(len(h.n.data))
	}
	if end := h.off + int64(len(p)); end > int64(len(h.n.data)) {
		h.n.data = append(h.n.data, make([]byte, end-int64(len(h.n.data)))...)
	}
	copy(h.n.data[h.off:], p)
	h.off += int64(len(p))
	h.n.modTime = time.Now()
	return len(p), nil
}

func (h *file) Seek(offset int64, whence int) (int64, error) {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	if err := h.check("seek"); err != nil {
		return 0, err
	}
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += h.off
	case io.SeekEnd:
		offset += int64(len(h.n.data))
	default:
		return 0, pathErr("seek", h.name, syscall.EINVAL)
	}
	if offset < 0 {
		return 0, pathErr("seek", h.name, syscall.EINVAL)
	}
	h.off = offset
	return offset, nil
}

func (h *file) Stat() (os.FileInfo, error) {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	if err := h.check("stat"); err != nil {
		return nil, err
	}
	return h.n.info(path.Base("/" + filepath.ToSlash(h.name))), nil
}

func (h *file) Sync() error {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	if err := h.check("sync"); err != nil {
		return err
	}
	if err := h.fs.step(); err != nil {
		return pathErr("sync", h.name, err)
	}
	h.n.synced = slices.Clone(h.n.data)
	return nil
}

func (h *file) Truncate(size int64) error {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	if err := h.check("truncate"); err != nil {
		return err
	}
	if err := h.fs.step(); err != nil {
		return pathErr("truncate", h.name, err)
	}
	if !h.writable || size < 0 {
		return pathErr("truncate", h.name, syscall.EINVAL)
	}
	if size <= int64(len(h.n.data)) {
		h.n.data = h.n.data[:size:size]
	} else {
		h.n.data = append(h.n.data, make([]byte, size-int64(len(h.n.data)))...)
	}
	h.n.modTime = time.Now()
	return nil
}

func (h *file) Close() error {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	if h.closed {
		return pathErr("close", h.name, os.ErrClosed)
	}
	h.closed = true
	return nil
}
