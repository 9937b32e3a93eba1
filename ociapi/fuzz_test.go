package ociapi_test

import (
	"strings"
	"testing"

	"github.com/stowage/stowage/ociapi"
)

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{
		"bytes=0-9", "bytes=5-", "bytes=-3", "bytes=-0", "bytes=0-", "bytes=9-0", "bytes=0-1,2-3", "bytes= 1-2 ",
		"bytes=-9223372036854775807", "bytes=0-9223372036854775807", "bytes=9223372036854775807-", "", "bytes=", "bytes=+1-2",
	} {
		for _, size := range []int64{0, 1, 10, 1 << 40} {
			f.Add(s, size)
		}
	}
	f.Fuzz(func(t *testing.T, header string, size int64) {
		if size < 0 {
			size = -(size + 1)
		}
		start, length, ok := ociapi.ParseRange(header, size)
		if !ok {
			return
		}
		if start < 0 || length < 1 || start > size-length {
			t.Fatalf("ParseRange(%q, %d) = %d, %d, ok: out of bounds", header, size, start, length)
		}
		if !strings.HasPrefix(header, "bytes=") || strings.Contains(header, ",") {
			t.Fatalf("ParseRange(%q, %d) accepted a header that is not one byte range", header, size)
		}
	})
}

func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{
		"0-9", "bytes 0-9", "bytes 0-9/10", "bytes 0-9/*", "bytes=0-9", " 0-9 ", "9-0", "-", "0-", "-9", "+0-9",
		"1-9223372036854775807", "0-99999999999999999999", "", "a-b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		start, length, ok := ociapi.ParseContentRange(header)
		if !ok {
			return
		}
		if start < 0 || length < 1 {
			t.Fatalf("ParseContentRange(%q) = %d, %d, ok: want start >= 0 and length >= 1", header, start, length)
		}
		// The end of the range is representable.
		if start-1 > (1<<63-1)-length {
			t.Fatalf("ParseContentRange(%q) = %d, %d, ok: end overflows", header, start, length)
		}
	})
}
