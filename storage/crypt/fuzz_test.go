package crypt

import (
	"bytes"
	"testing"
)

// FuzzReadHeader: the header parser never panics, and what it accepts
// re-marshals to the bytes it read.
func FuzzReadHeader(f *testing.F) {
	h := header{KeyID: "service", KeyVersion: 3, WrappedKey: bytes.Repeat([]byte{7}, 60), SegmentSize: SegmentSize}
	f.Add(h.marshal())
	f.Add([]byte("STWC1"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, raw, err := readHeader(bytes.NewReader(b))
		if err != nil {
			return
		}
		if !bytes.Equal(got.marshal(), raw) || !bytes.HasPrefix(b, raw) {
			t.Fatalf("accepted header does not round-trip")
		}
	})
}
