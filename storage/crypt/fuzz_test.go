package crypt

import (
	"bytes"
	"testing"
)

// FuzzParseHeader: the header parser never panics, and what it accepts
// re-marshals to the bytes it read.
func FuzzParseHeader(f *testing.F) {
	h := header{KeyID: [idSize]byte{1, 2, 3}, SegmentSize: SegmentSize}
	f.Add(h.marshal())
	f.Add([]byte("STWC2"))
	f.Add([]byte("STWC1\x07service"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, raw, err := readHeader(bytes.NewReader(b))
		if err != nil {
			return
		}
		if !bytes.Equal(got.marshal(), raw) || !bytes.HasPrefix(b, raw) || len(raw) != headerSize {
			t.Fatalf("accepted header does not round-trip")
		}
	})
}

// FuzzPlainSize: plainSize inverts sealedSize, and never accepts a size no
// object can have.
func FuzzPlainSize(f *testing.F) {
	for _, n := range []int64{0, 1, SegmentSize - 1, SegmentSize, SegmentSize + 1, 10 * SegmentSize} {
		f.Add(n)
	}
	f.Fuzz(func(t *testing.T, n int64) {
		if n >= 0 && n < 1<<50 {
			if got, err := plainSize(sealedSize(n)); err != nil || got != n {
				t.Fatalf("plainSize(sealedSize(%d)) = %d, %v", n, got, err)
			}
		}
		if p, err := plainSize(n); err == nil && sealedSize(p) != n {
			t.Fatalf("plainSize(%d) = %d, but sealedSize(%d) = %d", n, p, p, sealedSize(p))
		}
	})
}
