// Package mem implements stowage.Backend (and stowage.Appender) in memory,
// for tests and for throwaway registries.
package mem

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"sync"
	"time"

	"github.com/stowage/stowage"
)

type object struct {
	data    []byte
	modTime time.Time
}

// Backend keeps objects in a map.
type Backend struct {
	mu      sync.RWMutex
	objects map[string]object
}

var (
	_ stowage.Backend  = (*Backend)(nil)
	_ stowage.Appender = (*Backend)(nil)
)

// New returns an empty Backend.
func New() *Backend { return &Backend{objects: map[string]object{}} }

func notExist(key string) error { return fmt.Errorf("object %s: %w", key, fs.ErrNotExist) }

func (b *Backend) get(key string) (object, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	o, ok := b.objects[key]
	return o, ok
}

func (b *Backend) Open(ctx context.Context, key string, offset int64) (io.ReadCloser, error) {
	o, ok := b.get(key)
	if !ok {
		return nil, notExist(key)
	}
	if offset > int64(len(o.data)) {
		offset = int64(len(o.data))
	}
	return io.NopCloser(bytes.NewReader(o.data[offset:])), nil
}

// Put reads everything first and stores it only if reading succeeded.
func (b *Backend) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	var buf bytes.Buffer
	if size > 0 {
		buf.Grow(int(size))
	}
	if _, err := buf.ReadFrom(r); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.objects[key] = object{data: buf.Bytes(), modTime: time.Now()}
	return nil
}

func (b *Backend) Stat(ctx context.Context, key string) (stowage.ObjectInfo, error) {
	o, ok := b.get(key)
	if !ok {
		return stowage.ObjectInfo{}, notExist(key)
	}
	return stowage.ObjectInfo{Key: key, Size: int64(len(o.data)), ModTime: o.modTime}, nil
}

func (b *Backend) Delete(ctx context.Context, key string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.objects, key)
	return nil
}

func (b *Backend) List(ctx context.Context, prefix string, fn func(stowage.ObjectInfo) error) error {
	b.mu.RLock()
	var infos []stowage.ObjectInfo
	for k, o := range b.objects {
		if strings.HasPrefix(k, prefix) {
			infos = append(infos, stowage.ObjectInfo{Key: k, Size: int64(len(o.data)), ModTime: o.modTime})
		}
	}
	b.mu.RUnlock()
	for _, fi := range infos {
		if err := fn(fi); err != nil {
			return err
		}
	}
	return nil
}

// Append builds a new slice, so readers of the old object are never disturbed.
func (b *Backend) Append(ctx context.Context, key string, off int64, r io.Reader) (int64, error) {
	o, ok := b.get(key)
	if !ok && off > 0 {
		return 0, notExist(key)
	}
	if int64(len(o.data)) < off {
		return 0, fmt.Errorf("upload object %s has %d bytes, expected at least %d", key, len(o.data), off)
	}
	var buf bytes.Buffer
	buf.Write(o.data[:off])
	_, err := buf.ReadFrom(r)
	b.mu.Lock()
	defer b.mu.Unlock()
	// Keep what arrived even on error, as a disk would; the caller records
	// only the offset it trusts, and the next Append cuts the rest.
	b.objects[key] = object{data: buf.Bytes(), modTime: time.Now()}
	return int64(buf.Len()), err
}

func (b *Backend) Commit(ctx context.Context, src, dst string, size int64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	o, ok := b.objects[src]
	if !ok {
		return notExist(src)
	}
	if int64(len(o.data)) < size {
		return fmt.Errorf("upload object %s has %d bytes, expected %d", src, len(o.data), size)
	}
	o.data = o.data[:size:size]
	b.objects[dst] = o
	delete(b.objects, src)
	return nil
}
