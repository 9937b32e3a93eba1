package crypt_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/storage/crypt"
	"github.com/stowage/stowage/storage/fs"
	"github.com/stowage/stowage/storage/mem"
	"github.com/stowage/stowage/storage/storagetest"
)

var ctx = context.Background()

func openDB(t *testing.T) *sqlite.DB {
	db, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func keyFile(t *testing.T) *crypt.FileKeyring {
	k, err := crypt.OpenFileKeyring(filepath.Join(t.TempDir(), "keys", "service.json"), true)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newCrypt returns an encrypting backend over inner with its own DB and key.
func newCrypt(t *testing.T, inner stowage.Backend) (stowage.Backend, *crypt.Manager) {
	m := crypt.NewManager(openDB(t), keyFile(t))
	return crypt.New(inner, m), m
}

func newFS(t *testing.T) (*fs.Backend, string) {
	dir := t.TempDir()
	b, err := fs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return b, dir
}

func TestConformanceOverMem(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) stowage.Backend { b, _ := newCrypt(t, mem.New()); return b })
}

// Over fs the decorator is an Appender too, so the suite's append cases run.
func TestConformanceOverFS(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) stowage.Backend {
		inner, _ := newFS(t)
		b, _ := newCrypt(t, inner)
		if _, ok := b.(stowage.Appender); !ok {
			t.Fatal("crypt over fs is not an Appender")
		}
		return b
	})
}

func read(b stowage.Backend, key string, off int64) ([]byte, error) {
	rc, err := b.Open(ctx, key, off)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// TestNoPlaintextAtRest: a marker in the data, put whole or appended in
// chunks, never appears in storage.
func TestNoPlaintextAtRest(t *testing.T) {
	inner, dir := newFS(t)
	b, _ := newCrypt(t, inner)
	marker := []byte("STOWAGE-SECRET-MARKER-7c1f")
	data := bytes.Repeat(append(marker, ' '), 20_000)
	if err := b.Put(ctx, "blobs/sha256/ab/marker", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	app := b.(stowage.Appender)
	var off int64
	for off < int64(len(data)) {
		end := min(off+int64(mrand.IntN(100_000)+1), int64(len(data)))
		n, err := app.Append(ctx, "uploads/u1/data", off, bytes.NewReader(data[off:end]))
		if err != nil || n != end {
			t.Fatalf("Append at %d: %d, %v", off, n, err)
		}
		off = n
	}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			raw, _ := os.ReadFile(p)
			if bytes.Contains(raw, marker) {
				t.Errorf("%s holds the plaintext marker", p)
			}
		}
		return nil
	})
	if err := app.Commit(ctx, "uploads/u1/data", "blobs/sha256/cd/marker", off); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"blobs/sha256/ab/marker", "blobs/sha256/cd/marker"} {
		if got, err := read(b, key, 0); err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s round trip: %d bytes, %v", key, len(got), err)
		}
	}
}

// TestTamper: flipping any byte, truncating, or splicing segments from
// another object makes reads fail with an integrity error, never return
// wrong bytes.
func TestTamper(t *testing.T) {
	inner := mem.New()
	b, _ := newCrypt(t, inner)
	data := random(3*crypt.SegmentSize + 1234)
	put := func(key string) []byte {
		if err := b.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
		rc, _ := inner.Open(ctx, key, 0)
		raw, _ := io.ReadAll(rc)
		return raw
	}
	raw := put("k/orig")
	other := put("k/other")
	const hdr, seg = 25, crypt.SegmentSize + 28
	cases := map[string][]byte{}
	for _, pos := range []int{0, 10, 24, 25, 30, 50, hdr + seg + 5, len(raw) / 2, len(raw) - 1} {
		c := bytes.Clone(raw)
		c[pos] ^= 0x01
		cases[fmt.Sprint("flip at ", pos)] = c
	}
	cases["truncated at a segment boundary"] = raw[:hdr+3*seg]
	cases["truncated inside a segment"] = raw[:len(raw)-5]
	cases["final segment dropped"] = raw[:hdr+3*seg]
	cases["extra bytes"] = append(bytes.Clone(raw), 0)
	swapped := bytes.Clone(raw)
	copy(swapped[hdr:hdr+seg], raw[hdr+seg:hdr+2*seg])
	copy(swapped[hdr+seg:hdr+2*seg], raw[hdr:hdr+seg])
	cases["segments reordered"] = swapped
	spliced := bytes.Clone(raw)
	copy(spliced[hdr+seg:hdr+2*seg], other[hdr+seg:hdr+2*seg])
	cases["segment from another object"] = spliced
	for name, c := range cases {
		inner.Put(ctx, "k/bad", bytes.NewReader(c), int64(len(c)))
		got, err := read(b, "k/bad", 0)
		if err == nil {
			t.Errorf("%s: read succeeded (%d bytes)", name, len(got))
			continue
		}
		if !bytes.HasPrefix(data, got) {
			t.Errorf("%s: returned bytes that are not the plaintext", name)
		}
		if !errors.Is(err, crypt.ErrIntegrity) {
			t.Errorf("%s: err = %v, want ErrIntegrity", name, err)
		}
		if code := stowage.ErrorCodeOf(err); code != stowage.CodeInternal {
			t.Errorf("%s: code %s", name, code)
		}
	}
}

// TestFailedPutLeavesNoDataKey: a write that fails (here, its reader) does
// not leave a data key record behind to be counted and rewrapped forever.
func TestFailedPutLeavesNoDataKey(t *testing.T) {
	b, m := newCrypt(t, mem.New())
	b.Put(ctx, "good", bytes.NewReader([]byte("x")), -1)
	if err := b.Put(ctx, "bad", &failAfter{bytes.NewReader(random(200_000)), 100_000}, -1); err == nil {
		t.Fatal("a Put with a failing reader succeeded")
	}
	st, _ := m.Status(ctx)
	if len(st.DataKeys) != 1 || st.DataKeys[0].Count != 1 {
		t.Errorf("data keys after one good and one failed Put: %+v", st.DataKeys)
	}
}

// TestTamperedEndFailsBeforeTheLastByte: a client that stops reading at the
// size it expects (as an HTTP handler copying Content-Length bytes does)
// still gets an error when the object's final segment is damaged, even when
// that segment is empty (sizes that are multiples of the segment size).
func TestTamperedEndFailsBeforeTheLastByte(t *testing.T) {
	inner := mem.New()
	b, _ := newCrypt(t, inner)
	for _, size := range []int{crypt.SegmentSize, 3 * crypt.SegmentSize, 3*crypt.SegmentSize + 10} {
		data := random(size)
		b.Put(ctx, "k", bytes.NewReader(data), -1)
		rc, _ := inner.Open(ctx, "k", 0)
		raw, _ := io.ReadAll(rc)
		raw[len(raw)-1] ^= 1
		inner.Put(ctx, "k", bytes.NewReader(raw), -1)
		var got []byte
		r, err := b.Open(ctx, "k", 0)
		if err == nil {
			got = make([]byte, size)
			_, err = io.ReadFull(r, got)
			r.Close()
		}
		if err == nil {
			t.Errorf("size %d: read all %d bytes of an object with a damaged end", size, size)
		}
	}
}

// TestRangeReads: reads from random offsets equal the plaintext.
func TestRangeReads(t *testing.T) {
	b, _ := newCrypt(t, mem.New())
	for _, size := range []int{0, 1, crypt.SegmentSize - 1, crypt.SegmentSize, crypt.SegmentSize + 1, 2 * crypt.SegmentSize, 5*crypt.SegmentSize + 77} {
		data := random(size)
		if err := b.Put(ctx, "k", bytes.NewReader(data), -1); err != nil {
			t.Fatal(err)
		}
		if fi, err := b.Stat(ctx, "k"); err != nil || fi.Size != int64(size) {
			t.Errorf("size %d: Stat = %d, %v", size, fi.Size, err)
		}
		offsets := []int{0, size}
		for i := 0; i < 20 && size > 0; i++ {
			offsets = append(offsets, mrand.IntN(size))
		}
		for _, off := range offsets {
			got, err := read(b, "k", int64(off))
			if err != nil || !bytes.Equal(got, data[off:]) {
				t.Errorf("size %d, offset %d: %d bytes, %v", size, off, len(got), err)
			}
		}
	}
}

// failAfter fails after n bytes, like a client that goes away.
type failAfter struct {
	r io.Reader
	n int
}

func (f *failAfter) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("client went away")
	}
	p = p[:min(len(p), f.n)]
	n, err := f.r.Read(p)
	f.n -= n
	return n, err
}

// TestAppendResume: chunks that straddle segment boundaries, a chunk that
// fails part-way (then is resent), and a commit at a size the data does
// not end at.
func TestAppendResume(t *testing.T) {
	inner, _ := newFS(t)
	b, _ := newCrypt(t, inner)
	app := b.(stowage.Appender)
	data := random(4*crypt.SegmentSize + 999)
	cuts := []int64{0, 10, crypt.SegmentSize, crypt.SegmentSize + 1, 3*crypt.SegmentSize - 7, 4 * crypt.SegmentSize, int64(len(data))}
	for i := 0; i+1 < len(cuts); i++ {
		off, end := cuts[i], cuts[i+1]
		if i == 3 { // off = SegmentSize+1, so the resumed append needs the prefix
			// A kill while the last append wrote its tail copy (after the
			// append itself), then an attempt that fails part-way.
			inner.Append(ctx, "uploads/u/data.tail", 0, bytes.NewReader(random(30)))
		}
		if off > 0 {
			// A failed attempt first: it must not spoil what is stored.
			if _, err := app.Append(ctx, "uploads/u/data", off, &failAfter{bytes.NewReader(data[off:end]), int(end-off) / 2}); err == nil {
				t.Fatalf("failing append at %d succeeded", off)
			}
		}
		if i == 1 || i == 4 {
			tear(t, inner, "uploads/u/data") // as a kill -9 mid-append would
		}
		if n, err := app.Append(ctx, "uploads/u/data", off, bytes.NewReader(data[off:end])); err != nil || n != end {
			t.Fatalf("append [%d,%d): %d, %v", off, end, n, err)
		}
	}
	// A crash while the last segment was being sealed again tears it: Commit
	// must still commit the acknowledged bytes.
	tear(t, inner, "uploads/u/data")
	if err := app.Commit(ctx, "uploads/u/data", "blobs/x", int64(len(data))+1); err == nil {
		t.Error("Commit past the data's end succeeded")
	}
	if err := app.Commit(ctx, "uploads/u/data", "blobs/x", int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if got, err := read(b, "blobs/x", 0); err != nil || !bytes.Equal(got, data) {
		t.Errorf("committed upload: %d bytes, %v", len(got), err)
	}
	if got, err := read(b, "blobs/x", 3*crypt.SegmentSize); err != nil || !bytes.Equal(got, data[3*crypt.SegmentSize:]) {
		t.Errorf("committed upload from an offset: %d bytes, %v", len(got), err)
	}
}

// tear overwrites the final segment of a stored upload object with garbage,
// as an append killed while it sealed that segment again would.
func tear(t *testing.T, inner *fs.Backend, key string) {
	fi, err := inner.Stat(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	const hdr, seg = 25, crypt.SegmentSize + 28
	final := hdr + (fi.Size-hdr)/seg*seg
	if _, err := inner.Append(ctx, key, min(final+int64(mrand.IntN(28)), fi.Size), bytes.NewReader(random(100))); err != nil {
		t.Fatal(err)
	}
}

// TestRotation: rotating keeps every object readable without rewriting it,
// leaves no data key on the old version, and the old version can then be
// retired; a version still in use cannot.
func TestRotation(t *testing.T) {
	inner := mem.New()
	b, m := newCrypt(t, inner)
	for i := range 10 {
		b.Put(ctx, fmt.Sprint("obj/", i), bytes.NewReader([]byte(fmt.Sprint("object ", i))), -1)
	}
	before := map[string][]byte{}
	inner.List(ctx, "", func(oi stowage.ObjectInfo) error {
		raw, _ := read(inner, oi.Key, 0)
		before[oi.Key] = raw
		return nil
	})
	st, _ := m.Status(ctx)
	old := st.Current
	if len(st.DataKeys) != 1 || st.DataKeys[0].Count != 10 {
		t.Fatalf("status before rotation: %+v", st)
	}
	if err := m.Retire(ctx, old); err == nil {
		t.Error("retired the current version")
	}
	var last crypt.RotateProgress
	p, err := m.Rotate(ctx, crypt.RotateOptions{NewVersion: true, Batch: 3, Progress: func(p crypt.RotateProgress) { last = p }})
	if err != nil || p.Rewrapped != 10 || !p.Done || !last.Done || p.Current == old {
		t.Fatalf("Rotate = %+v, %v", p, err)
	}
	st, _ = m.Status(ctx)
	if len(st.DataKeys) != 1 || st.DataKeys[0].KeyVersion != p.Current || len(st.Versions) != 2 {
		t.Errorf("status after rotation: %+v", st)
	}
	for key, raw := range before {
		if now, _ := read(inner, key, 0); !bytes.Equal(now, raw) {
			t.Errorf("%s was rewritten by the rotation", key)
		}
	}
	// The old version stays in the key file as the root that wraps the new
	// one (kept in the database): it cannot be retired. A version rotated
	// away from in the database can.
	if err := m.Retire(ctx, old); err == nil || !strings.Contains(err.Error(), "root") {
		t.Errorf("Retire of the key file's root after rotation = %v, want refused", err)
	}
	second := p.Current
	if p, err = m.Rotate(ctx, crypt.RotateOptions{NewVersion: true}); err != nil || p.Rewrapped != 10 {
		t.Fatalf("second Rotate = %+v, %v", p, err)
	}
	if err := m.Retire(ctx, second); err != nil {
		t.Fatalf("Retire after rotation: %v", err)
	}
	if st, _ = m.Status(ctx); len(st.Versions) != 2 || st.Versions[1] != p.Current {
		t.Errorf("versions after retirement: %+v, want %s and %s", st.Versions, old, p.Current)
	}
	m.Forget()
	for i := range 10 {
		if got, err := read(b, fmt.Sprint("obj/", i), 0); err != nil || string(got) != fmt.Sprint("object ", i) {
			t.Errorf("obj/%d after rotation and retirement: %q, %v", i, got, err)
		}
	}
}

// TestRotationUnderLoad: puts and reads run while rotations run; none fails,
// and afterwards every data key is on the current version.
func TestRotationUnderLoad(t *testing.T) {
	inner := mem.New()
	b, m := newCrypt(t, inner)
	data := random(3*crypt.SegmentSize + 5)
	for i := range 20 {
		b.Put(ctx, fmt.Sprint("pre/", i), bytes.NewReader(data), -1)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []error
	fail := func(err error) { mu.Lock(); failures = append(failures, err); mu.Unlock() }
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprint("load/", w, "/", i)
				if err := b.Put(ctx, key, bytes.NewReader(data), -1); err != nil {
					fail(err)
					continue
				}
				m.Forget()
				for _, k := range []string{key, fmt.Sprint("pre/", i%20)} {
					if got, err := read(b, k, 0); err != nil || !bytes.Equal(got, data) {
						fail(fmt.Errorf("read %s: %d bytes, %v", k, len(got), err))
					}
				}
			}
		}()
	}
	for range 3 {
		if _, err := m.Rotate(ctx, crypt.RotateOptions{NewVersion: true, Batch: 7}); err != nil {
			fail(err)
		}
	}
	close(stop)
	wg.Wait()
	if _, err := m.Rotate(ctx, crypt.RotateOptions{}); err != nil { // pushes that raced the last switch
		t.Fatal(err)
	}
	for _, err := range failures {
		t.Error(err)
	}
	st, _ := m.Status(ctx)
	if len(st.DataKeys) != 1 || st.DataKeys[0].KeyVersion != st.Current {
		t.Errorf("after rotation under load: %+v", st.DataKeys)
	}
}

// TestRevocation: without its key file, reads fail with "encryption key
// unavailable" (503), nothing is lost, and reads work when the key is back.
func TestRevocation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "customer.json")
	if _, err := crypt.OpenFileKeyring(path, true); err != nil {
		t.Fatal(err)
	}
	k, err := crypt.OpenFileKeyring(path, false)
	if err != nil {
		t.Fatal(err)
	}
	m := crypt.NewManager(openDB(t), k)
	m.CacheTTL = -1
	b := crypt.New(mem.New(), m)
	b.Put(ctx, "k", bytes.NewReader([]byte("precious")), -1)
	saved, _ := os.ReadFile(path)
	os.Remove(path)
	waitRefresh := func() { // the key file is looked at once a second
		for i := 0; i < 30; i++ {
			if _, err := k.Current(ctx); (err == nil) == fileExists(path) {
				return
			}
			sleep()
		}
	}
	waitRefresh()
	_, err = read(b, "k", 0)
	if !errors.Is(err, crypt.ErrKeyUnavailable) || stowage.ErrorCodeOf(err) != stowage.CodeUnavailable {
		t.Fatalf("read without the key: %v", err)
	}
	os.WriteFile(path, saved, 0o600)
	waitRefresh()
	if got, err := read(b, "k", 0); err != nil || string(got) != "precious" {
		t.Errorf("read with the key back: %q, %v", got, err)
	}
}

// TestWrongKey: another key is refused by Check, and reads with it fail
// with a key error (never with wrong bytes).
func TestWrongKey(t *testing.T) {
	db := openDB(t)
	inner := mem.New()
	good := crypt.NewManager(db, keyFile(t))
	crypt.New(inner, good).Put(ctx, "k", bytes.NewReader([]byte("data")), -1)
	if un, err := good.Check(ctx); err != nil || len(un) != 0 {
		t.Errorf("Check with the right key: %v, %v", un, err)
	}
	wrong := crypt.NewManager(db, keyFile(t))
	if _, err := wrong.Check(ctx); !errors.Is(err, crypt.ErrWrongKey) {
		t.Errorf("Check with another key: %v, want ErrWrongKey", err)
	}
	if _, err := read(crypt.New(inner, wrong), "k", 0); stowage.ErrorCodeOf(err) != stowage.CodeUnavailable {
		t.Errorf("read with another key: %v", err)
	}
}

func TestStaticKeyring(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(random(32))
	cases := []struct {
		value string
		ok    bool
	}{
		{key, true},
		{`{"id":"acme","current":2,"versions":{"1":"` + key + `","2":"` + key + `"}}`, true},
		{"", false},
		{"not base64!", false},
		{base64.StdEncoding.EncodeToString(random(16)), false},
		{`{"id":"acme","current":3,"versions":{"1":"` + key + `"}}`, false},
		{`{"id":"a:b","current":1,"versions":{"1":"` + key + `"}}`, false},
	}
	for _, c := range cases {
		k, err := crypt.ParseStaticKeyring("STOWAGE_TEST_KEY", c.value)
		if (err == nil) != c.ok {
			t.Errorf("%.40q: err = %v, want ok=%v", c.value, err, c.ok)
			continue
		}
		if err != nil {
			continue
		}
		b := crypt.New(mem.New(), crypt.NewManager(openDB(t), k))
		if err := b.Put(ctx, "k", bytes.NewReader([]byte("x")), -1); err != nil {
			t.Error(err)
		}
		if got, err := read(b, "k", 0); err != nil || string(got) != "x" {
			t.Errorf("round trip: %q, %v", got, err)
		}
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func sleep() { time.Sleep(100 * time.Millisecond) }

// TestUploadReadBehindAppend: the engine reads an upload's acknowledged
// bytes (a lease takeover copies them, a sha512 final PUT hashes them)
// while an earlier writer may still be in an Append, or after one failed.
// Whatever that Append left in the object (cut back to the start of the
// segment it seals again, or a torn part of its data), Open and Stat of
// the upload object must give the bytes of the last Append that completed.
func TestUploadReadBehindAppend(t *testing.T) {
	const acked = crypt.SegmentSize + 34464 // ends inside segment 1
	for _, tc := range []struct {
		name string
		// behind starts an Append at acked and returns once it has left
		// the object in the state to read, and a function that ends it.
		behind func(t *testing.T, app stowage.Appender, inner *fs.Backend, key string) func()
	}{
		{"stalled", func(t *testing.T, app stowage.Appender, inner *fs.Backend, key string) func() {
			pr, pw := io.Pipe()
			done := make(chan error, 1)
			go func() {
				_, err := app.Append(ctx, key, acked, pr)
				done <- err
			}()
			pw.Write(random(1000))
			// Wait until the Append cut the object back to segment 1.
			for i := 0; ; i++ {
				fi, err := inner.Stat(ctx, key)
				if err == nil && fi.Size == 25+crypt.SegmentSize+28 {
					break
				}
				if i == 1000 {
					t.Fatalf("the append did not cut the object back (size %d, %v)", fi.Size, err)
				}
				time.Sleep(5 * time.Millisecond)
			}
			return func() {
				pw.Write(random(5000))
				pw.Close()
				if err := <-done; err != nil {
					t.Errorf("the stalled append: %v", err)
				}
			}
		}},
		{"failed", func(t *testing.T, app stowage.Appender, inner *fs.Backend, key string) func() {
			// More than the 1 MiB the sealed data goes out in, so torn
			// segments reach the object.
			if _, err := app.Append(ctx, key, acked, &failAfter{bytes.NewReader(random(2 << 20)), 3<<19 + 77}); err == nil {
				t.Fatal("failing append succeeded")
			}
			return func() {}
		}},
		{"failed-at-once", func(t *testing.T, app stowage.Appender, inner *fs.Backend, key string) func() {
			if _, err := app.Append(ctx, key, acked, &failAfter{bytes.NewReader(random(100)), 10}); err == nil {
				t.Fatal("failing append succeeded")
			}
			return func() {}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inner, _ := newFS(t)
			b, _ := newCrypt(t, inner)
			app := b.(stowage.Appender)
			key := "uploads/u/data.1"
			data := random(acked)
			if _, err := app.Append(ctx, key, 0, bytes.NewReader(data[:1000])); err != nil {
				t.Fatal(err)
			}
			if _, err := app.Append(ctx, key, 1000, bytes.NewReader(data[1000:])); err != nil {
				t.Fatal(err)
			}
			end := tc.behind(t, app, inner, key)
			for _, off := range []int64{0, 1000, crypt.SegmentSize, acked - 1, acked} {
				got, err := read(b, key, off)
				if err != nil || len(got) < acked-int(off) || !bytes.Equal(got[:acked-off], data[off:]) {
					t.Errorf("read from %d behind the append: %d bytes, %v; want the %d acknowledged ones first", off, len(got), err, acked-off)
				}
			}
			if oi, err := b.Stat(ctx, key); err != nil || oi.Size < acked {
				t.Errorf("Stat behind the append: size %d, %v; want at least %d", oi.Size, err, acked)
			}
			end()
			// The upload goes on, and commits what it acknowledged.
			more := random(3000)
			if n, err := app.Append(ctx, key, acked, bytes.NewReader(more)); err != nil || n != acked+3000 {
				t.Fatalf("append after: %d, %v", n, err)
			}
			if got, err := read(b, key, 0); err != nil || !bytes.Equal(got, append(data, more...)) {
				t.Errorf("upload read after the next append: %d bytes, %v", len(got), err)
			}
			if err := app.Commit(ctx, key, "blobs/x", acked+3000); err != nil {
				t.Fatal(err)
			}
			if got, err := read(b, "blobs/x", 0); err != nil || !bytes.Equal(got, append(data, more...)) {
				t.Errorf("committed: %d bytes, %v", len(got), err)
			}
		})
	}
}

// TestUploadDeleteTakesTailCopy: deleting an upload object directly (the
// engine does, for the data of a writer generation it took over) deletes
// its tail copy too.
func TestUploadDeleteTakesTailCopy(t *testing.T) {
	inner, _ := newFS(t)
	b, _ := newCrypt(t, inner)
	key := "uploads/u/data.3"
	if _, err := b.(stowage.Appender).Append(ctx, key, 0, bytes.NewReader(random(1000))); err != nil {
		t.Fatal(err)
	}
	if _, err := inner.Stat(ctx, key+".tail"); err != nil {
		t.Fatalf("no tail copy after an append: %v", err)
	}
	if err := b.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if err := inner.List(ctx, "uploads/", func(oi stowage.ObjectInfo) error {
		t.Errorf("left after deleting the upload object: %s", oi.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
