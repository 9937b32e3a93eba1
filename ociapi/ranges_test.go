package ociapi_test

import (
	"fmt"
	"math"
	"testing"

	"github.com/stowage/stowage/ociapi"
)

func TestParseRange(t *testing.T) {
	maxI := fmt.Sprint(int64(math.MaxInt64))
	tests := []struct {
		header      string
		size        int64
		start, want int64 // want: length
		ok          bool
	}{
		// a-b
		{"bytes=0-9", 10, 0, 10, true},
		{"bytes=0-0", 10, 0, 1, true},
		{"bytes=2-5", 10, 2, 4, true},
		{"bytes=9-9", 10, 9, 1, true},
		{"bytes=0-100", 10, 0, 10, true}, // last clamped to the end
		{"bytes=5-" + maxI, 10, 5, 5, true},
		{"bytes=0-0", 1, 0, 1, true},
		{"bytes=5-4", 10, 0, 0, false}, // last before first
		{"bytes=10-10", 10, 0, 0, false},
		{"bytes=10-20", 10, 0, 0, false},
		{"bytes=0-0", 0, 0, 0, false}, // nothing to send from an empty blob
		// a-
		{"bytes=0-", 10, 0, 10, true},
		{"bytes=5-", 10, 5, 5, true},
		{"bytes=9-", 10, 9, 1, true},
		{"bytes=10-", 10, 0, 0, false},
		{"bytes=11-", 10, 0, 0, false},
		{"bytes=0-", 0, 0, 0, false},
		{"bytes=" + maxI + "-", 10, 0, 0, false},
		// -n (suffix)
		{"bytes=-3", 10, 7, 3, true},
		{"bytes=-1", 10, 9, 1, true},
		{"bytes=-10", 10, 0, 10, true},
		{"bytes=-11", 10, 0, 10, true},
		{"bytes=-" + maxI, 10, 0, 10, true},
		{"bytes=-1", 1, 0, 1, true},
		{"bytes=-0", 10, 0, 0, false},
		{"bytes=-1", 0, 0, 0, false},
		// whitespace around the spec
		{"bytes= 2-5 ", 10, 2, 4, true},
		// malformed
		{"", 10, 0, 0, false},
		{"bytes=", 10, 0, 0, false},
		{"bytes=-", 10, 0, 0, false},
		{"bytes=5", 10, 0, 0, false},
		{"bytes=a-b", 10, 0, 0, false},
		{"bytes=1-b", 10, 0, 0, false},
		{"bytes=a-5", 10, 0, 0, false},
		{"bytes=+1-5", 10, 0, 0, false},
		{"bytes=1-+5", 10, 0, 0, false},
		{"bytes=--5", 10, 0, 0, false},
		{"bytes=-+5", 10, 0, 0, false},
		{"bytes=1--5", 10, 0, 0, false},
		{"bytes=1-2-3", 10, 0, 0, false},
		{"bytes=0x1-5", 10, 0, 0, false},
		{"bytes=1 -5", 10, 0, 0, false},
		{"bytes=1- 5", 10, 0, 0, false},
		{"bytes=0-1,3-4", 10, 0, 0, false}, // multiple ranges
		{"bytes=0-1, 3-4", 10, 0, 0, false},
		{"bytes=99999999999999999999-", 10, 0, 0, false},
		{"bytes=-99999999999999999999", 10, 0, 0, false},
		{"Bytes=0-1", 10, 0, 0, false},
		{"bytes 0-1", 10, 0, 0, false},
		{" bytes=0-1", 10, 0, 0, false},
		{"items=0-1", 10, 0, 0, false},
		{"0-1", 10, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d", tt.header, tt.size), func(t *testing.T) {
			start, length, ok := ociapi.ParseRange(tt.header, tt.size)
			if ok != tt.ok {
				t.Fatalf("ParseRange(%q, %d) = %d, %d, %v; want ok=%v", tt.header, tt.size, start, length, ok, tt.ok)
			}
			if ok && (start != tt.start || length != tt.want) {
				t.Fatalf("ParseRange(%q, %d) = %d, %d; want %d, %d", tt.header, tt.size, start, length, tt.start, tt.want)
			}
		})
	}
}

func TestParseContentRange(t *testing.T) {
	tests := []struct {
		header        string
		start, length int64
		ok            bool
	}{
		{"0-9", 0, 10, true},
		{"0-0", 0, 1, true},
		{"5-5", 5, 1, true},
		{"10-19", 10, 10, true},
		{"bytes 0-9", 0, 10, true},
		{"bytes 0-9/10", 0, 10, true},
		{"bytes 0-9/*", 0, 10, true},
		{"0-9/100", 0, 10, true},
		{"bytes=0-9", 0, 10, true},
		{"  0-9  ", 0, 10, true},
		{"\tbytes 3-4\n", 3, 2, true},
		{"1-9223372036854775807", 1, math.MaxInt64, true},
		{"9223372036854775807-9223372036854775807", math.MaxInt64, 1, true},
		{"", 0, 0, false},
		{"-", 0, 0, false},
		{"0-", 0, 0, false},
		{"-9", 0, 0, false},
		{"9-0", 0, 0, false},
		{"a-b", 0, 0, false},
		{"0-b", 0, 0, false},
		{"+0-9", 0, 0, false},
		{"0-+9", 0, 0, false},
		{"0--9", 0, 0, false},
		{"0-9-10", 0, 0, false},
		{"0 - 9", 0, 0, false},
		{"bytes 0-9 /10", 0, 0, false},
		{"bytes */10", 0, 0, false},
		{"/10", 0, 0, false},
		{"bytes", 0, 0, false},
		{"09", 0, 0, false},
		{"0-99999999999999999999", 0, 0, false},
		{"items 0-9", 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.header, func(t *testing.T) {
			start, length, ok := ociapi.ParseContentRange(tt.header)
			if ok != tt.ok {
				t.Fatalf("ParseContentRange(%q) = %d, %d, %v; want ok=%v", tt.header, start, length, ok, tt.ok)
			}
			if ok && (start != tt.start || length != tt.length) {
				t.Fatalf("ParseContentRange(%q) = %d, %d; want %d, %d", tt.header, start, length, tt.start, tt.length)
			}
		})
	}
}

// TestParseContentRangeOverflow: "0-9223372036854775807" is 2^63 bytes,
// which an int64 length cannot hold; ParseContentRange once reported ok with
// a negative length (math.MinInt64).
func TestParseContentRangeOverflow(t *testing.T) {
	for _, h := range []string{"0-9223372036854775807", "bytes 0-9223372036854775807/*"} {
		start, length, ok := ociapi.ParseContentRange(h)
		if ok && length < 1 {
			t.Errorf("ParseContentRange(%q) = start %d, length %d, ok; want ok=false (or a positive length)", h, start, length)
		}
	}
}
