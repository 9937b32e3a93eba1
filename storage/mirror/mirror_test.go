package mirror_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/storage/crypt"
	"github.com/stowage/stowage/storage/fs"
	"github.com/stowage/stowage/storage/mem"
	"github.com/stowage/stowage/storage/mirror"
	"github.com/stowage/stowage/storage/storagetest"
)

var ctx = context.Background()

func newFS(t *testing.T) *fs.Backend {
	b, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newMirror(t *testing.T, opt mirror.Options, backends ...stowage.Backend) stowage.Backend {
	var copies []mirror.Copy
	for i, b := range backends {
		copies = append(copies, mirror.Copy{Name: fmt.Sprint("c", i), Backend: b})
	}
	m, err := mirror.New(copies, opt)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestConformanceMem(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) stowage.Backend { return newMirror(t, mirror.Options{}, mem.New(), mem.New()) })
}

func TestConformanceFS(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) stowage.Backend {
		m := newMirror(t, mirror.Options{}, newFS(t), newFS(t))
		if _, ok := m.(stowage.Appender); !ok {
			t.Fatal("a mirror of two fs backends is not an Appender")
		}
		return m
	})
}

// Encrypted over mirrored disks: the usual composition.
func TestConformanceCryptOverMirror(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) stowage.Backend {
		db, err := sqlite.Open(ctx, ":memory:")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		k, err := crypt.OpenFileKeyring(filepath.Join(t.TempDir(), "k.json"), true)
		if err != nil {
			t.Fatal(err)
		}
		return crypt.New(newMirror(t, mirror.Options{}, newFS(t), newFS(t)), crypt.NewManager(db, k))
	})
}

// faulty wraps a backend with switchable faults.
type faulty struct {
	stowage.Backend
	down      atomic.Bool  // every operation fails
	stall     atomic.Bool  // writes block until their context ends
	hang      atomic.Bool  // every operation blocks until its context ends
	failAfter atomic.Int64 // reads fail after this many bytes (0: never)
}

// hung blocks until ctx ends, if f hangs.
func (f *faulty) hung(ctx context.Context) error {
	if !f.hang.Load() {
		return nil
	}
	<-ctx.Done()
	return ctx.Err()
}

var errDown = errors.New("connection refused (test: backend down)")

func (f *faulty) Open(ctx context.Context, key string, off int64) (io.ReadCloser, error) {
	if err := f.hung(ctx); err != nil {
		return nil, err
	}
	if f.down.Load() {
		return nil, errDown
	}
	rc, err := f.Backend.Open(ctx, key, off)
	if err != nil || f.failAfter.Load() == 0 {
		return rc, err
	}
	return &failingReader{rc, f.failAfter.Load()}, nil
}

type failingReader struct {
	io.ReadCloser
	left int64
}

func (r *failingReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, errors.New("connection reset (test)")
	}
	p = p[:min(int64(len(p)), r.left)]
	n, err := r.ReadCloser.Read(p)
	r.left -= int64(n)
	return n, err
}

func (f *faulty) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := f.hung(ctx); err != nil {
		return err
	}
	if f.down.Load() {
		return errDown
	}
	if f.stall.Load() {
		<-ctx.Done()
		return ctx.Err()
	}
	return f.Backend.Put(ctx, key, r, size)
}

func (f *faulty) Stat(ctx context.Context, key string) (stowage.ObjectInfo, error) {
	if err := f.hung(ctx); err != nil {
		return stowage.ObjectInfo{}, err
	}
	if f.down.Load() {
		return stowage.ObjectInfo{}, errDown
	}
	return f.Backend.Stat(ctx, key)
}

func (f *faulty) Delete(ctx context.Context, key string) error {
	if err := f.hung(ctx); err != nil {
		return err
	}
	if f.down.Load() {
		return errDown
	}
	return f.Backend.Delete(ctx, key)
}

func (f *faulty) List(ctx context.Context, prefix string, fn func(stowage.ObjectInfo) error) error {
	if err := f.hung(ctx); err != nil {
		return err
	}
	if f.down.Load() {
		return errDown
	}
	return f.Backend.List(ctx, prefix, fn)
}

// faultyApp is a faulty Appender.
type faultyApp struct{ *faulty }

func newFaultyFS(t *testing.T) faultyApp { return faultyApp{&faulty{Backend: newFS(t)}} }

func (f faultyApp) Append(ctx context.Context, key string, off int64, r io.Reader) (int64, error) {
	if err := f.hung(ctx); err != nil {
		return 0, err
	}
	if f.down.Load() {
		return 0, errDown
	}
	return f.Backend.(stowage.Appender).Append(ctx, key, off, r)
}

func (f faultyApp) Commit(ctx context.Context, src, dst string, size int64) error {
	if err := f.hung(ctx); err != nil {
		return err
	}
	if f.down.Load() {
		return errDown
	}
	return f.Backend.(stowage.Appender).Commit(ctx, src, dst, size)
}

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func read(b stowage.Backend, key string) ([]byte, error) {
	rc, err := b.Open(ctx, key, 0)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// TestFailover: reads succeed while one copy lacks the object, is down, or
// fails in the middle of a read.
func TestFailover(t *testing.T) {
	a, b := &faulty{Backend: mem.New()}, &faulty{Backend: mem.New()}
	m := newMirror(t, mirror.Options{}, a, b)
	data := random(3 << 20)
	if err := m.Put(ctx, "k", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		setup func()
	}{
		{"first copy lacks it", func() { a.Backend.Delete(ctx, "k") }},
		{"first copy down", func() { a.Backend.Put(ctx, "k", bytes.NewReader(data), -1); a.down.Store(true) }},
		{"second copy down", func() { a.down.Store(false); b.down.Store(true) }},
		{"first copy fails mid-read", func() { b.down.Store(false); a.failAfter.Store(1 << 20) }},
		{"both fail mid-read at different points", func() { b.failAfter.Store(2 << 20) }},
	}
	for _, c := range cases {
		c.setup()
		got, err := read(m, "k")
		if c.name == "both fail mid-read at different points" {
			if err == nil {
				t.Errorf("%s: read succeeded", c.name)
			}
			continue
		}
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: %d bytes, %v", c.name, len(got), err)
		}
	}
	a.failAfter.Store(0)
	b.failAfter.Store(0)
	a.down.Store(true)
	b.down.Store(true)
	_, err := read(m, "k")
	if stowage.ErrorCodeOf(err) != stowage.CodeUnavailable {
		t.Errorf("both copies down: %v, want UNAVAILABLE", err)
	}
	st := m.(interface{ Status() mirror.Status }).Status()
	if st.Copies[0].State == mirror.Healthy {
		t.Errorf("status after failures: %+v", st)
	}
}

// TestQuorum: with quorum 1 a write succeeds while a copy is down and the
// copy is repaired when it is back; with quorum 2 it fails clearly.
func TestQuorum(t *testing.T) {
	a, b := &faulty{Backend: mem.New()}, &faulty{Backend: mem.New()}
	m1 := newMirror(t, mirror.Options{WriteQuorum: 1}, a, b)
	m2 := newMirror(t, mirror.Options{WriteQuorum: 2}, a, b)
	b.down.Store(true)
	data := random(100_000)
	if err := m1.Put(ctx, "q1", bytes.NewReader(data), -1); err != nil {
		t.Fatalf("quorum 1 with one copy down: %v", err)
	}
	err := m2.Put(ctx, "q2", bytes.NewReader(data), -1)
	if stowage.ErrorCodeOf(err) != stowage.CodeUnavailable {
		t.Errorf("quorum 2 with one copy down: %v, want UNAVAILABLE", err)
	}
	b.down.Store(false)
	repair := m1.(interface {
		Repair(context.Context) (int, error)
	})
	if n, err := repair.Repair(ctx); err != nil || n != 1 {
		t.Errorf("Repair = %d, %v; want 1 object fixed", n, err)
	}
	if got, err := read(b.Backend, "q1"); err != nil || !bytes.Equal(got, data) {
		t.Errorf("after repair, the second copy: %d bytes, %v", len(got), err)
	}
}

// TestStalledCopy: a copy whose writes hang is dropped after the timeout.
func TestStalledCopy(t *testing.T) {
	a, b := &faulty{Backend: mem.New()}, &faulty{Backend: mem.New()}
	m := newMirror(t, mirror.Options{WriteQuorum: 1, Timeout: 200 * time.Millisecond}, a, b)
	b.stall.Store(true)
	data := random(2 << 20)
	start := time.Now()
	if err := m.Put(ctx, "s", bytes.NewReader(data), -1); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("write with a stalled copy took %v", d)
	}
	if got, _ := read(m, "s"); !bytes.Equal(got, data) {
		t.Error("read after a write with a stalled copy")
	}
}

// TestScrubRepairsCorruptCopy: through encryption, a flipped byte in one
// copy is found by scrub and rewritten from the other; reads meanwhile fail
// over to the good copy.
func TestScrubRepairsCorruptCopy(t *testing.T) {
	db, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	k, _ := crypt.OpenFileKeyring(filepath.Join(t.TempDir(), "k.json"), true)
	da, db2 := t.TempDir(), t.TempDir()
	a, _ := fs.New(da)
	b, _ := fs.New(db2)
	m := newMirror(t, mirror.Options{}, a, b)
	c := crypt.New(m, crypt.NewManager(db, k))
	data := random(1 << 20)
	sum := sha256.Sum256(data)
	if err := c.Put(ctx, "blobs/x", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	// Damage the first copy (the one reads start with) in the middle.
	p := filepath.Join(da, "blobs", "x")
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)/2] ^= 0xff
	os.WriteFile(p, raw, 0o644)
	if got, err := read(c, "blobs/x"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read with one damaged copy: %d bytes, %v", len(got), err)
	}
	check := func(r io.Reader) error {
		h := sha256.New()
		if _, err := io.Copy(h, r); err != nil {
			return err
		}
		if !bytes.Equal(h.Sum(nil), sum[:]) {
			return errors.New("digest mismatch")
		}
		return nil
	}
	res, err := c.(stowage.Scrubber).ScrubObject(ctx, "blobs/x", check)
	if err != nil || res.Copies != 2 || res.Good != 1 || len(res.Corrupt) != 1 || len(res.Repaired) != 1 {
		t.Fatalf("scrub: %+v, %v", res, err)
	}
	res, err = c.(stowage.Scrubber).ScrubObject(ctx, "blobs/x", check)
	if err != nil || res.Good != 2 {
		t.Errorf("second scrub: %+v, %v", res, err)
	}
	// A missing copy is found and repaired too.
	os.Remove(filepath.Join(db2, "blobs", "x"))
	res, _ = c.(stowage.Scrubber).ScrubObject(ctx, "blobs/x", check)
	if len(res.Missing) != 1 || len(res.Repaired) != 1 {
		t.Errorf("scrub with a missing copy: %+v", res)
	}
}

// TestConcurrentWritesAndReads under the race detector.
func TestConcurrentWritesAndReads(t *testing.T) {
	m := newMirror(t, mirror.Options{}, mem.New(), mem.New(), mem.New())
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				key := fmt.Sprint("k", w, "/", i)
				data := random(10_000 + i)
				if err := m.Put(ctx, key, bytes.NewReader(data), -1); err != nil {
					t.Error(err)
					return
				}
				if got, err := read(m, key); err != nil || !bytes.Equal(got, data) {
					t.Errorf("%s: %v", key, err)
				}
			}
		}()
	}
	wg.Wait()
}
