// Package storagetest is the one conformance suite every stowage.Backend
// passes. A backend's test is one line: storagetest.Run(t, newBackend).
package storagetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/stowage/stowage"
)

// Run runs the suite. newBackend returns a fresh, empty backend per subtest.
func Run(t *testing.T, newBackend func(t *testing.T) stowage.Backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b stowage.Backend)
	}{
		{"PutOpen", testPutOpen},
		{"OpenOffset", testOpenOffset},
		{"Missing", testMissing},
		{"EmptyObject", testEmptyObject},
		{"Replace", testReplace},
		{"FailedPutLeavesNothing", testFailedPut},
		{"FailedReplaceKeepsOld", testFailedReplace},
		{"Delete", testDelete},
		{"List", testList},
		{"Concurrent", testConcurrent},
		{"Appender", testAppender},
		{"AppenderTornTail", testAppenderTornTail},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newBackend(t)) })
	}
}

var ctx = context.Background()

func random(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func put(t *testing.T, b stowage.Backend, key string, data []byte) {
	t.Helper()
	if err := b.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put(%s): %v", key, err)
	}
}

func read(t *testing.T, b stowage.Backend, key string, off int64) []byte {
	t.Helper()
	rc, err := b.Open(ctx, key, off)
	if err != nil {
		t.Fatalf("Open(%s, %d): %v", key, off, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return data
}

func testPutOpen(t *testing.T, b stowage.Backend) {
	for _, size := range []int{1, 1000, 1 << 20, 3<<20 + 7} {
		data := random(t, size)
		key := stowage.BlobKey(stowage.Digest("sha256:" + strings.Repeat("ab", 32)))
		put(t, b, key, data)
		if got := read(t, b, key, 0); !bytes.Equal(got, data) {
			t.Fatalf("size %d: read back %d bytes, differing from what was put", size, len(got))
		}
		fi, err := b.Stat(ctx, key)
		if err != nil || fi.Size != int64(size) {
			t.Fatalf("Stat = %+v, %v; want size %d", fi, err, size)
		}
	}
}

func testOpenOffset(t *testing.T, b stowage.Backend) {
	data := random(t, 100_000)
	put(t, b, "blobs/x/ab/offset", data)
	for _, off := range []int64{0, 1, 4095, 4096, 99_999, 100_000} {
		if got := read(t, b, "blobs/x/ab/offset", off); !bytes.Equal(got, data[off:]) {
			t.Errorf("Open at %d: got %d bytes, want %d", off, len(got), len(data)-int(off))
		}
	}
}

func testMissing(t *testing.T, b stowage.Backend) {
	if _, err := b.Open(ctx, "blobs/no/ne/missing", 0); !stowage.IsNotExist(err) {
		t.Errorf("Open of a missing key: err = %v, want fs.ErrNotExist", err)
	}
	if _, err := b.Stat(ctx, "blobs/no/ne/missing"); !stowage.IsNotExist(err) {
		t.Errorf("Stat of a missing key: err = %v, want fs.ErrNotExist", err)
	}
	if err := b.Delete(ctx, "blobs/no/ne/missing"); err != nil {
		t.Errorf("Delete of a missing key: %v, want nil", err)
	}
}

func testEmptyObject(t *testing.T, b stowage.Backend) {
	put(t, b, "blobs/e/mp/empty", nil)
	if got := read(t, b, "blobs/e/mp/empty", 0); len(got) != 0 {
		t.Errorf("empty object read back %d bytes", len(got))
	}
	if fi, err := b.Stat(ctx, "blobs/e/mp/empty"); err != nil || fi.Size != 0 {
		t.Errorf("Stat = %+v, %v", fi, err)
	}
}

func testReplace(t *testing.T, b stowage.Backend) {
	put(t, b, "blobs/r/ep/key", []byte("first"))
	put(t, b, "blobs/r/ep/key", []byte("second"))
	if got := read(t, b, "blobs/r/ep/key", 0); string(got) != "second" {
		t.Errorf("after replace: %q", got)
	}
}

// failingReader yields some bytes, then fails: a client that hangs up, or a
// verifying reader that found a digest mismatch at EOF.
type failingReader struct {
	data []byte
	err  error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, f.err
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

var errBoom = errors.New("boom")

func testFailedPut(t *testing.T, b stowage.Backend) {
	err := b.Put(ctx, "blobs/f/ai/led", &failingReader{data: random(t, 300_000), err: errBoom}, 400_000)
	if err == nil {
		t.Fatal("Put with a failing reader returned nil")
	}
	if _, err := b.Stat(ctx, "blobs/f/ai/led"); !stowage.IsNotExist(err) {
		t.Errorf("a failed Put left an object behind (Stat err = %v)", err)
	}
	var keys []string
	b.List(ctx, "blobs/", func(oi stowage.ObjectInfo) error { keys = append(keys, oi.Key); return nil })
	if len(keys) != 0 {
		t.Errorf("a failed Put left listed objects: %v", keys)
	}
}

func testFailedReplace(t *testing.T, b stowage.Backend) {
	put(t, b, "blobs/k/ee/p", []byte("good"))
	if err := b.Put(ctx, "blobs/k/ee/p", &failingReader{data: []byte("bad bytes"), err: errBoom}, -1); err == nil {
		t.Fatal("Put with a failing reader returned nil")
	}
	if got := read(t, b, "blobs/k/ee/p", 0); string(got) != "good" {
		t.Errorf("a failed replace changed the object to %q", got)
	}
}

func testDelete(t *testing.T, b stowage.Backend) {
	put(t, b, "blobs/d/el/x", []byte("x"))
	if err := b.Delete(ctx, "blobs/d/el/x"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Stat(ctx, "blobs/d/el/x"); !stowage.IsNotExist(err) {
		t.Errorf("after Delete, Stat err = %v", err)
	}
}

func testList(t *testing.T, b stowage.Backend) {
	want := []string{"blobs/sha256/aa/aa1", "blobs/sha256/aa/aa2", "blobs/sha256/bb/bb1", "uploads/u1/data"}
	for _, k := range want {
		put(t, b, k, []byte(k))
	}
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"blobs/", want[:3]},
		{"blobs/sha256/aa/", want[:2]},
		{"blobs/sha256/aa/aa1", want[:1]},
		{"uploads/", want[3:]},
		{"nothing/", nil},
	} {
		var got []string
		err := b.List(ctx, tc.prefix, func(oi stowage.ObjectInfo) error {
			if oi.Size != int64(len(oi.Key)) {
				t.Errorf("List(%s): %s has size %d, want %d", tc.prefix, oi.Key, oi.Size, len(oi.Key))
			}
			got = append(got, oi.Key)
			return nil
		})
		if err != nil {
			t.Fatalf("List(%s): %v", tc.prefix, err)
		}
		sort.Strings(got)
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("List(%s) = %v, want %v", tc.prefix, got, tc.want)
		}
	}
	stop := errors.New("stop")
	if err := b.List(ctx, "blobs/", func(stowage.ObjectInfo) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("List did not return the callback's error: %v", err)
	}
}

// testConcurrent: many writers of the same content-addressed key and readers
// at once; every read sees a whole object.
func testConcurrent(t *testing.T, b stowage.Backend) {
	data := random(t, 256<<10)
	key := "blobs/c/on/current"
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := b.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
				t.Error(err)
			}
		}()
		go func() {
			defer wg.Done()
			rc, err := b.Open(ctx, key, 0)
			if stowage.IsNotExist(err) {
				return
			}
			if err != nil {
				t.Error(err)
				return
			}
			defer rc.Close()
			got, err := io.ReadAll(rc)
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("concurrent reader saw %d bytes (err %v), want the whole object", len(got), err)
			}
		}()
	}
	wg.Wait()
}

func testAppender(t *testing.T, b stowage.Backend) {
	a, ok := b.(stowage.Appender)
	if !ok {
		t.Skip("backend has no Appender")
	}
	data := random(t, 5<<20+3)
	key := "uploads/0123/data"
	var off int64
	for _, n := range []int{1 << 20, 1, 3 << 20, 1<<20 + 2} {
		got, err := a.Append(ctx, key, off, bytes.NewReader(data[off:off+int64(n)]))
		if err != nil {
			t.Fatal(err)
		}
		off += int64(n)
		if got != off {
			t.Fatalf("Append returned size %d, want %d", got, off)
		}
	}
	dst := "blobs/ap/pe/nded"
	if err := a.Commit(ctx, key, dst, off); err != nil {
		t.Fatal(err)
	}
	if got := read(t, b, dst, 0); !bytes.Equal(got, data) {
		t.Fatal("committed object differs from the appended bytes")
	}
	if _, err := b.Stat(ctx, key); !stowage.IsNotExist(err) {
		t.Errorf("the upload object survived Commit (Stat err = %v)", err)
	}
}

// testAppenderTornTail: a failed append leaves bytes past the recorded
// offset; the next append at that offset must cut them off.
func testAppenderTornTail(t *testing.T, b stowage.Backend) {
	a, ok := b.(stowage.Appender)
	if !ok {
		t.Skip("backend has no Appender")
	}
	key := "uploads/torn/data"
	if _, err := a.Append(ctx, key, 0, strings.NewReader("hello ")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Append(ctx, key, 6, &failingReader{data: []byte("GARBAGE"), err: errBoom}); err == nil {
		t.Fatal("Append with a failing reader returned nil")
	}
	n, err := a.Append(ctx, key, 6, strings.NewReader("world"))
	if err != nil || n != 11 {
		t.Fatalf("Append after a torn write = %d, %v; want 11", n, err)
	}
	if got := read(t, b, key, 0); string(got) != "hello world" {
		t.Errorf("after a torn tail and retry: %q, want %q", got, "hello world")
	}
	if _, err := a.Append(ctx, key, 100, strings.NewReader("x")); err == nil {
		t.Error("Append past the end of the object succeeded; want an error")
	}
	// A failed append that is not retried: Commit must still cut its tail.
	if _, err := a.Append(ctx, key, 11, &failingReader{data: []byte("TAIL"), err: errBoom}); err == nil {
		t.Fatal("Append with a failing reader returned nil")
	}
	if err := a.Commit(ctx, key, "blobs/to/rn/committed", 11); err != nil {
		t.Fatal(err)
	}
	if got := read(t, b, "blobs/to/rn/committed", 0); string(got) != "hello world" {
		t.Errorf("Commit after a torn tail stored %q, want %q", got, "hello world")
	}
	if err := a.Commit(ctx, "uploads/short/data", "blobs/sh/or/t", 5); err == nil {
		t.Error("Commit of a missing upload object succeeded")
	}
}
