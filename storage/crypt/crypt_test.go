package crypt_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/storage/crypt"
	"github.com/stowage/stowage/storage/fs"
	"github.com/stowage/stowage/storage/mem"
	"github.com/stowage/stowage/storage/storagetest"
)

func keyring(t *testing.T) *crypt.FileKeyring {
	k, err := crypt.OpenFileKeyring(filepath.Join(t.TempDir(), "keyring.json"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestConformanceOverMem(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) stowage.Backend { return crypt.New(mem.New(), keyring(t)) })
}

func TestConformanceOverFS(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) stowage.Backend {
		inner, err := fs.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return crypt.New(inner, keyring(t))
	})
}

var ctx = context.Background()

func read(b stowage.Backend, key string, off int64) ([]byte, error) {
	rc, err := b.Open(ctx, key, off)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// TestNoPlaintextAtRest: a marker in the data never appears in storage.
func TestNoPlaintextAtRest(t *testing.T) {
	dir := t.TempDir()
	inner, _ := fs.New(dir)
	b := crypt.New(inner, keyring(t))
	marker := []byte("STOWAGE-SECRET-MARKER-7c1f")
	data := bytes.Repeat(append(marker, ' '), 20_000)
	if err := b.Put(ctx, "blobs/sha256/ab/marker", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
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
	if got, err := read(b, "blobs/sha256/ab/marker", 0); err != nil || !bytes.Equal(got, data) {
		t.Errorf("round trip: %v", err)
	}
}

// TestTamper: flipping any byte, truncating, or splicing segments from
// another object makes reads fail, never return wrong bytes.
func TestTamper(t *testing.T) {
	inner := mem.New()
	b := crypt.New(inner, keyring(t))
	data := make([]byte, 3*crypt.SegmentSize+1234)
	rand.Read(data)
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
	cases := map[string][]byte{}
	for _, pos := range []int{0, 10, 40, len(raw) / 2, len(raw) - 1} {
		c := bytes.Clone(raw)
		c[pos] ^= 0x01
		cases["flip at "+itoa(pos)] = c
	}
	seg := crypt.SegmentSize + 16
	hdr := len(raw) - (3*seg + 1234 + 16)
	cases["truncated at a segment boundary"] = raw[:hdr+3*seg]
	cases["truncated inside a segment"] = raw[:len(raw)-5]
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
		// A damaged header may name a key that does not exist or a data key
		// that does not open: those say so; damaged data is an integrity error.
		inHeader := name == "flip at 0" || name == "flip at 10" || name == "flip at 40"
		if !errors.Is(err, crypt.ErrIntegrity) && !(inHeader && errors.Is(err, crypt.ErrKeyUnavailable)) {
			t.Errorf("%s: err = %v, want ErrIntegrity", name, err)
		}
	}
}

// TestRangeReads: reads from random offsets equal the plaintext.
func TestRangeReads(t *testing.T) {
	b := crypt.New(mem.New(), keyring(t))
	for _, size := range []int{0, 1, crypt.SegmentSize - 1, crypt.SegmentSize, crypt.SegmentSize + 1, 5*crypt.SegmentSize + 77} {
		data := make([]byte, size)
		rand.Read(data)
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

// TestKeys: rotation keeps old objects readable; a missing key is a clear
// error, and reads work again when the key comes back.
func TestKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keyring.json")
	k, err := crypt.OpenFileKeyring(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("keyring file mode %v, want 0600", fi.Mode().Perm())
	}
	inner := mem.New()
	b := crypt.New(inner, k)
	b.Put(ctx, "old", bytes.NewReader([]byte("before rotation")), -1)
	if _, err := k.Rotate(); err != nil {
		t.Fatal(err)
	}
	b.Put(ctx, "new", bytes.NewReader([]byte("after rotation")), -1)
	for key, want := range map[string]string{"old": "before rotation", "new": "after rotation"} {
		if got, err := read(b, key, 0); err != nil || string(got) != want {
			t.Errorf("%s: %q, %v", key, got, err)
		}
	}
	other := crypt.New(inner, keyring(t)) // a different keyring: the wrong key
	if _, err := read(other, "old", 0); !errors.Is(err, crypt.ErrKeyUnavailable) {
		t.Errorf("read with another keyring: %v, want ErrKeyUnavailable", err)
	}
	reopened, err := crypt.OpenFileKeyring(path) // the key comes back
	if err != nil {
		t.Fatal(err)
	}
	if got, err := read(crypt.New(inner, reopened), "old", 0); err != nil || string(got) != "before rotation" {
		t.Errorf("after reopening the keyring: %q, %v", got, err)
	}
}

func itoa(i int) string {
	b := []byte{}
	if i == 0 {
		return "0"
	}
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}
