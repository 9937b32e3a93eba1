// Package fs implements stowage.Backend (and stowage.Appender) on a local
// directory. Objects are files at <root>/<key>; every write goes to a temporary
// file under <root>/tmp first and is renamed into place only when complete, so
// a crash at any instant leaves either no object or the whole object.
//
// Durability (unless NoSync): what a method acknowledges survives a power
// loss, not only a process crash.
//
//   - Put: write the temporary file, fsync it, rename it to its key, fsync
//     the key's directory. A directory created on the way (blobs/sha256/ab,
//     uploads/<id>) is made durable first: its parent is fsynced after the
//     mkdir, once per directory and process.
//   - Append: the bytes are fsynced before it returns (the engine then
//     records the new size and hash state, which describe them), and a file
//     it creates is made durable in its directory (once: an Append at
//     offset 0 to a file whose name this Backend made durable already,
//     the same file by os.SameFile, skips the directory fsync).
//   - Commit: the upload file is cut to size and fsynced, renamed to dst, and
//     dst's directory fsynced. The upload's directory is not: after a power
//     loss the source may reappear next to dst, as an orphan upload object.
//   - Delete: not made durable. A delete forgotten by a power loss leaves
//     the whole object, which no database row describes any more: an orphan
//     that the engine's orphan sweep removes. It never leaves part of one.
//
// The file system is a seam (FS): New uses the operating system's, and
// NewWithFS takes another, such as storage/fs/faultfs, which forgets every
// write not yet synced, so tests can cut power at every step
// (powerloss_test.go). docs/architecture.md ("Durability") builds the
// registry's guarantees on these.
package fs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/stowage/stowage"
)

// Backend stores objects as files under a root directory.
type Backend struct {
	root string
	fsys FS
	// dirs holds the directories under root known to be durable in their
	// parent (created or found, then the parent fsynced) by this Backend.
	dirs sync.Map
	// named holds the files Append created (path → os.FileInfo) whose name
	// it has made durable in their directory: the next Append at offset 0
	// to the same file (an encrypted upload rewrites its tail copy on every
	// chunk) needs no directory fsync. Delete and Commit drop the entry.
	named sync.Map
	// NoSync skips fsync. Data then survives a process crash (the page cache
	// outlives the process) but not a power loss. Default: sync.
	NoSync bool
}

var (
	_ stowage.Backend  = (*Backend)(nil)
	_ stowage.Appender = (*Backend)(nil)
)

// New returns a Backend rooted at dir, creating it if needed.
func New(dir string) (*Backend, error) { return NewWithFS(dir, OS) }

// NewWithFS returns a Backend rooted at dir on the file system fsys, creating
// dir if needed. Tests use it to run the real Backend on a file system that
// injects faults (storage/fs/faultfs).
func NewWithFS(dir string, fsys FS) (*Backend, error) {
	b := &Backend{root: filepath.Clean(dir), fsys: fsys}
	if err := b.mkdirRoot(b.root); err != nil {
		return nil, fmt.Errorf("storage directory %s: %w", dir, err)
	}
	if err := b.mkdirs(filepath.Join(b.root, "tmp")); err != nil {
		return nil, fmt.Errorf("storage directory %s: %w", dir, err)
	}
	return b, nil
}

// mkdirRoot creates dir and its missing parents, making each one it creates
// durable in its parent. Existing directories above the root are the
// operator's and left alone.
func (b *Backend) mkdirRoot(dir string) error {
	if fi, err := b.fsys.Stat(dir); err == nil {
		if fi.IsDir() {
			return nil
		}
		return fmt.Errorf("%s is not a directory", dir)
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := b.mkdirRoot(parent); err != nil {
			return err
		}
	}
	if err := b.fsys.Mkdir(dir, 0o700); err != nil && !errors.Is(err, iofs.ErrExist) {
		return err
	}
	return b.syncDir(parent)
}

// mkdirs creates dir (under root) and its missing parents, and makes each
// durable in its parent: a name renamed into a directory whose own entry a
// power loss forgets is lost with it. A directory found already there is
// treated the same (its creator may not have synced its parent yet, or a
// process crash may have come first), once per directory and Backend.
func (b *Backend) mkdirs(dir string) error {
	if dir == b.root {
		return nil
	}
	if _, ok := b.dirs.Load(dir); ok {
		return nil
	}
	parent := filepath.Dir(dir)
	if parent == dir {
		return fmt.Errorf("%s is not under the storage directory %s", dir, b.root)
	}
	if err := b.mkdirs(parent); err != nil {
		return err
	}
	if err := b.fsys.Mkdir(dir, 0o700); err != nil && !errors.Is(err, iofs.ErrExist) {
		return err
	}
	if err := b.syncDir(parent); err != nil {
		return err
	}
	b.dirs.Store(dir, struct{}{})
	return nil
}

func (b *Backend) syncDir(dir string) error {
	if b.NoSync {
		return nil
	}
	return b.fsys.SyncDir(dir)
}

func (b *Backend) path(key string) (string, error) {
	if key == "" || strings.HasPrefix(key, "/") || strings.Contains(key, "..") || strings.HasPrefix(key, "tmp/") {
		return "", fmt.Errorf("invalid storage key %q", key)
	}
	return filepath.Join(b.root, filepath.FromSlash(key)), nil
}

// CleanTemp removes temporary files older than age, left by writes that a
// crash interrupted. They were never visible as objects.
func (b *Backend) CleanTemp(age time.Duration) (int, error) {
	dir := filepath.Join(b.root, "tmp")
	entries, err := b.fsys.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil || time.Since(fi.ModTime()) < age {
			continue
		}
		if b.fsys.Remove(filepath.Join(dir, e.Name())) == nil {
			n++
		}
	}
	return n, nil
}

// Open returns the file positioned at offset. The file is returned as is (on
// the OS file system an *os.File), so that net/http can send it with
// sendfile(2).
func (b *Backend) Open(ctx context.Context, key string, offset int64) (io.ReadCloser, error) {
	p, err := b.path(key)
	if err != nil {
		return nil, err
	}
	f, err := b.fsys.OpenFile(p, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	if offset > 0 {
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

// Put writes r to a temporary file, syncs it, and renames it to key.
func (b *Backend) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	p, err := b.path(key)
	if err != nil {
		return err
	}
	tmp, err := b.createTemp()
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			b.fsys.Remove(tmp.Name())
		}
	}()
	if size > 0 {
		// Reserve the space up front: fewer extents, and ENOSPC before any copying.
		_ = fallocate(tmp, size)
	}
	var w io.Writer = tmp
	if !b.NoSync {
		w = &writeback{f: tmp}
	}
	if _, err := copyTo(w, ctxReader{ctx, r}); err != nil {
		return err
	}
	if err := b.sync(tmp); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := b.rename(tmp.Name(), p); err != nil {
		return err
	}
	ok = true
	return nil
}

// createTemp creates a new file under <root>/tmp (os.CreateTemp, on fsys).
func (b *Backend) createTemp() (File, error) {
	for range 10 {
		var r [8]byte
		rand.Read(r[:])
		f, err := b.fsys.OpenFile(filepath.Join(b.root, "tmp", "put-"+hex.EncodeToString(r[:])), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if !errors.Is(err, iofs.ErrExist) {
			return f, err
		}
	}
	return nil, fmt.Errorf("cannot create a temporary file in %s", filepath.Join(b.root, "tmp"))
}

// rename moves a complete (synced) file into place and makes the rename
// durable: the directory is made durable first, then fsynced after the
// rename.
func (b *Backend) rename(from, to string) error {
	dir := filepath.Dir(to)
	if err := b.mkdirs(dir); err != nil {
		return err
	}
	if err := b.fsys.Rename(from, to); err != nil {
		return err
	}
	return b.syncDir(dir)
}

func (b *Backend) sync(f File) error {
	if b.NoSync {
		return nil
	}
	return f.Sync()
}

// Stat returns the file's size.
func (b *Backend) Stat(ctx context.Context, key string) (stowage.ObjectInfo, error) {
	p, err := b.path(key)
	if err != nil {
		return stowage.ObjectInfo{}, err
	}
	fi, err := b.fsys.Stat(p)
	if err != nil {
		return stowage.ObjectInfo{}, err
	}
	return stowage.ObjectInfo{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// Delete removes the file; a missing file is not an error. An upload
// directory left empty is removed too. Neither removal is made durable (see
// the package comment): a power loss may bring the whole object back.
func (b *Backend) Delete(ctx context.Context, key string) error {
	p, err := b.path(key)
	if err != nil {
		return err
	}
	b.named.Delete(p)
	if err := b.fsys.Remove(p); err != nil && !errors.Is(err, iofs.ErrNotExist) {
		return err
	}
	if strings.HasPrefix(key, "uploads/") {
		b.forget(filepath.Dir(p))
	}
	return nil
}

// List walks the files whose keys start with prefix.
func (b *Backend) List(ctx context.Context, prefix string, fn func(stowage.ObjectInfo) error) error {
	dir := prefix
	if !strings.HasSuffix(dir, "/") {
		dir = path.Dir(dir)
	}
	dir = strings.TrimSuffix(dir, "/")
	if dir == "." {
		dir = ""
	}
	return b.walk(ctx, dir, prefix, fn)
}

// walk calls fn for the files under the directory of key dir ("" for the
// root) whose keys start with prefix, in lexical order, skipping tmp/ and
// directories that cannot hold such keys.
func (b *Backend) walk(ctx context.Context, dir, prefix string, fn func(stowage.ObjectInfo) error) error {
	entries, err := b.fsys.ReadDir(filepath.Join(b.root, filepath.FromSlash(dir)))
	if err != nil {
		if errors.Is(err, iofs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil // nothing there, or a file: no key under it
		}
		return err
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		key := e.Name()
		if dir != "" {
			key = dir + "/" + key
		}
		if e.IsDir() {
			if key == "tmp" || !strings.HasPrefix(key+"/", prefix) && !strings.HasPrefix(prefix, key+"/") {
				continue
			}
			if err := b.walk(ctx, key, prefix, fn); err != nil {
				return err
			}
			continue
		}
		if !strings.HasPrefix(key, prefix) {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			if errors.Is(err, iofs.ErrNotExist) {
				continue
			}
			return err
		}
		if err := fn(stowage.ObjectInfo{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}); err != nil {
			return err
		}
	}
	return nil
}

// Append writes r at offset off of the file at key, after cutting off any
// torn tail a failed earlier append left, and syncs the file before it
// returns: the caller records the new size (and the hash state of the bytes)
// in the database next, and a record must never describe bytes a power loss
// can take back. A file it creates is made durable in its directory too.
func (b *Backend) Append(ctx context.Context, key string, off int64, r io.Reader) (int64, error) {
	p, err := b.path(key)
	if err != nil {
		return 0, err
	}
	flags := os.O_WRONLY
	if off == 0 {
		flags |= os.O_CREATE
		if err := b.mkdirs(filepath.Dir(p)); err != nil {
			return 0, err
		}
	}
	f, err := b.fsys.OpenFile(p, flags, 0o600)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	named := false
	if off == 0 {
		prev, ok := b.named.Load(p)
		named = ok && os.SameFile(prev.(os.FileInfo), fi)
	}
	if fi.Size() < off {
		return 0, fmt.Errorf("upload object %s has %d bytes, expected at least %d", key, fi.Size(), off)
	}
	if fi.Size() > off {
		if err := f.Truncate(off); err != nil {
			return 0, err
		}
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return 0, err
	}
	var w io.Writer = f
	if !b.NoSync {
		w = &writeback{f: f, written: off, started: off}
	}
	n, err := copyTo(w, ctxReader{ctx, r})
	if err != nil {
		return off + n, err
	}
	if err := b.sync(f); err != nil {
		return off + n, err
	}
	if err := f.Close(); err != nil {
		return off + n, err
	}
	if off == 0 && !named {
		// The file may be new: make its name durable.
		if err := b.syncDir(filepath.Dir(p)); err != nil {
			return off + n, err
		}
		b.named.Store(p, fi)
	}
	return off + n, nil
}

// Commit cuts the upload file to size, syncs it and renames it to its final
// key: the bytes are not copied.
func (b *Backend) Commit(ctx context.Context, src, dst string, size int64) error {
	ps, err := b.path(src)
	if err != nil {
		return err
	}
	pd, err := b.path(dst)
	if err != nil {
		return err
	}
	b.named.Delete(ps) // renamed away below (or already gone)
	f, err := b.fsys.OpenFile(ps, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	err = func() error {
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		if fi.Size() < size {
			return fmt.Errorf("upload object %s has %d bytes, expected %d", src, fi.Size(), size)
		}
		if fi.Size() > size {
			if err := f.Truncate(size); err != nil {
				return err
			}
		}
		return b.sync(f)
	}()
	if err != nil {
		return err
	}
	if err := b.rename(ps, pd); err != nil {
		return err
	}
	if strings.HasPrefix(src, "uploads/") {
		b.forget(filepath.Dir(ps))
	}
	return nil
}

// forget removes an upload's directory if it is empty (it fails harmlessly
// if not), and drops it from the directories known durable.
func (b *Backend) forget(dir string) {
	b.dirs.Delete(dir)
	b.fsys.Remove(dir)
}

// ctxReader stops a long copy when the request is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// copyTo copies r to w through a 1 MiB buffer: far fewer syscalls than the
// 32 KiB io.Copy would use for the large bodies blobs are.
func copyTo(w io.Writer, r io.Reader) (int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	return io.CopyBuffer(struct{ io.Writer }{w}, r, *bp)
}

// writebackStep is how much a write accumulates before writeback asks the
// kernel to start writing it to disk. The bench's disk scenario writes with
// the same step, so that it measures the limit of this very write pattern.
const writebackStep = 1 << 20

// writeback starts the disk write of every writebackStep as soon as they
// are written, overlapping it with receiving the rest; the final fsync then
// waits only for the tail instead of the whole blob. The step is small so
// that a chunk of an upload overlaps too: with 8 MiB steps an 8 MiB PATCH
// started no writeback before its end, and its fsync waited for all of it.
type writeback struct {
	f                File
	written, started int64
}

func (w *writeback) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.written += int64(n)
	if w.written-w.started >= writebackStep {
		startWriteback(w.f, w.started, w.written-w.started)
		w.started = w.written
	}
	return n, err
}
