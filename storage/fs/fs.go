// Package fs implements stowage.Backend (and stowage.Appender) on a local
// directory. Objects are files at <root>/<key>; every write goes to a temporary
// file under <root>/tmp first and is renamed into place only when complete, so
// a crash at any instant leaves either no object or the whole object.
package fs

import (
	"context"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/stowage/stowage"
)

// Backend stores objects as files under a root directory.
type Backend struct {
	root string
	// NoSync skips fsync. Data then survives a process crash (the page cache
	// outlives the process) but not a power loss. Default: sync.
	NoSync bool
}

var (
	_ stowage.Backend  = (*Backend)(nil)
	_ stowage.Appender = (*Backend)(nil)
)

// New returns a Backend rooted at dir, creating it if needed.
func New(dir string) (*Backend, error) {
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o700); err != nil {
		return nil, fmt.Errorf("storage directory %s: %w", dir, err)
	}
	return &Backend{root: dir}, nil
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
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil || time.Since(fi.ModTime()) < age {
			continue
		}
		if os.Remove(filepath.Join(dir, e.Name())) == nil {
			n++
		}
	}
	return n, nil
}

// Open returns the file positioned at offset. The *os.File is returned as is,
// so that net/http can send it with sendfile(2).
func (b *Backend) Open(ctx context.Context, key string, offset int64) (io.ReadCloser, error) {
	p, err := b.path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
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
	tmp, err := os.CreateTemp(filepath.Join(b.root, "tmp"), "put-*")
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
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

// rename moves a complete file into place and makes the rename durable.
func (b *Backend) rename(from, to string) error {
	dir := filepath.Dir(to)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.Rename(from, to); err != nil {
		return err
	}
	if b.NoSync {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (b *Backend) sync(f *os.File) error {
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
	fi, err := os.Stat(p)
	if err != nil {
		return stowage.ObjectInfo{}, err
	}
	return stowage.ObjectInfo{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// Delete removes the file; a missing file is not an error. An upload
// directory left empty is removed too.
func (b *Backend) Delete(ctx context.Context, key string) error {
	p, err := b.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, iofs.ErrNotExist) {
		return err
	}
	if strings.HasPrefix(key, "uploads/") {
		os.Remove(filepath.Dir(p)) // fails harmlessly if not empty
	}
	return nil
}

// List walks the files whose keys start with prefix.
func (b *Backend) List(ctx context.Context, prefix string, fn func(stowage.ObjectInfo) error) error {
	dir := prefix
	if !strings.HasSuffix(dir, "/") {
		dir = path.Dir(dir)
	}
	start := filepath.Join(b.root, filepath.FromSlash(dir))
	err := filepath.WalkDir(start, func(p string, d iofs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, iofs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(b.root, p)
		key := filepath.ToSlash(rel)
		if d.IsDir() {
			if key == "tmp" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			if errors.Is(err, iofs.ErrNotExist) {
				return nil
			}
			return err
		}
		return fn(stowage.ObjectInfo{Key: key, Size: fi.Size(), ModTime: fi.ModTime()})
	})
	return err
}

// Append writes r at offset off of the file at key, after cutting off any
// torn tail a failed earlier append left.
func (b *Backend) Append(ctx context.Context, key string, off int64, r io.Reader) (int64, error) {
	p, err := b.path(key)
	if err != nil {
		return 0, err
	}
	flags := os.O_WRONLY
	if off == 0 {
		flags |= os.O_CREATE
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return 0, err
		}
	}
	f, err := os.OpenFile(p, flags, 0o600)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
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
	n, err := copyTo(f, ctxReader{ctx, r})
	if err != nil {
		return off + n, err
	}
	// No fsync here: a chunk is not a push. Commit syncs the whole file once
	// before the blob is acknowledged, which costs one flush instead of one
	// per chunk.
	return off + n, f.Close()
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
	f, err := os.OpenFile(ps, os.O_WRONLY, 0)
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
		os.Remove(filepath.Dir(ps))
	}
	return nil
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

// writeback starts the disk write of every 8 MiB as soon as it is written,
// overlapping it with receiving the rest; the final fsync then waits only
// for the tail instead of the whole blob.
type writeback struct {
	f                *os.File
	written, started int64
}

func (w *writeback) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.written += int64(n)
	if w.written-w.started >= 8<<20 {
		startWriteback(w.f, w.started, w.written-w.started)
		w.started = w.written
	}
	return n, err
}
