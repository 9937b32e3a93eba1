package mirror_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/storage/mem"
	"github.com/stowage/stowage/storage/mirror"
)

// TestCheckedReads: with CheckReads on (copies of plain bytes), full reads
// of blob keys never return damaged bytes in full: a small object is
// checked before it is served and read from another copy; a large one
// fails at its end (even for a reader that stops at the known size, as
// io.CopyN does), and the next read prefers the other copy. Reads from an
// offset, and keys that are not blob keys, are not checked.
func TestCheckedReads(t *testing.T) {
	blobKey := func(b []byte) string {
		s := sha256.Sum256(b)
		return stowage.BlobKey(stowage.Digest("sha256:" + hex.EncodeToString(s[:])))
	}
	damage := func(b []byte) []byte {
		d := bytes.Clone(b)
		d[len(d)-1] ^= 1
		return d
	}
	small, large := random(10_000), random(1_000_000)
	for _, tc := range []struct {
		name      string
		data      []byte
		key       string
		a, b      []byte // what each copy holds
		off       int64
		openErr   string
		readErr   string // first read
		secondOK  bool   // a second full read gives data
		corruptOn int64  // damage found on copy c0
	}{
		{name: "good", data: small, a: small, b: small, secondOK: true},
		{name: "small damaged on one", data: small, a: damage(small), b: small, secondOK: true, corruptOn: 1},
		{name: "small damaged on both", data: small, a: damage(small), b: damage(small), openErr: "no copy of", corruptOn: 1},
		{name: "large damaged on one", data: large, a: damage(large), b: large, readErr: "do not match its digest", secondOK: true, corruptOn: 1},
		{name: "large good", data: large, a: large, b: large, secondOK: true},
		{name: "from an offset: not checked", data: small, a: damage(small), b: small, off: 5},
		{name: "not a blob key", data: small, key: "uploads/x/data", a: damage(small), b: small},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := mem.New(), mem.New()
			m := newMirror(t, mirror.Options{}, a, b)
			m.(interface{ CheckReads(bool) }).CheckReads(true)
			key := tc.key
			if key == "" {
				key = blobKey(tc.data)
			}
			a.Put(ctx, key, bytes.NewReader(tc.a), -1)
			b.Put(ctx, key, bytes.NewReader(tc.b), -1)
			rc, err := m.Open(ctx, key, tc.off)
			if tc.openErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.openErr) {
					t.Fatalf("open: %v, want an error containing %q", err, tc.openErr)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				// One byte at a time, and no further than the size: as
				// a response of known length reads it.
				got, err := io.ReadAll(io.LimitReader(iotest.OneByteReader(rc), int64(len(tc.data))-tc.off))
				rc.Close()
				switch {
				case tc.readErr != "" && (err == nil || !strings.Contains(err.Error(), tc.readErr)):
					t.Errorf("first read: %v, want an error containing %q", err, tc.readErr)
				case tc.readErr != "" && len(got) >= len(tc.data):
					t.Errorf("first read returned all %d bytes, want it cut short", len(got))
				case tc.readErr == "" && err != nil:
					t.Errorf("first read: %v", err)
				case tc.readErr == "" && tc.off == 0 && tc.key == "" && !bytes.Equal(got, tc.data):
					t.Errorf("first read: wrong bytes")
				}
			}
			if tc.secondOK {
				if got, err := read(m, key); err != nil || !bytes.Equal(got, tc.data) {
					t.Errorf("second read: %d bytes, %v; want the object", len(got), err)
				}
			}
			st := m.(interface{ Status() mirror.Status }).Status()
			if st.Copies[0].CorruptFound != tc.corruptOn || st.PendingRepairs != int(tc.corruptOn) {
				t.Errorf("status: c0 %d damaged, %d pending; want %d, %d", st.Copies[0].CorruptFound, st.PendingRepairs, tc.corruptOn, tc.corruptOn)
			}
		})
	}
}
