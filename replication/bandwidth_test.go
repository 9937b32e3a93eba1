package replication

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"
)

// TestBandwidth: 300 KiB through a 1 MiB/s limit with a burst of one second
// take no time; 3 MiB take about two seconds more than the burst allows.
func TestBandwidth(t *testing.T) {
	cases := []struct {
		size     int
		min, max time.Duration
	}{
		{300 << 10, 0, 500 * time.Millisecond},
		{3 << 20, 1800 * time.Millisecond, 4 * time.Second},
	}
	for _, c := range cases {
		l := newRateLimit(1 << 20)
		start := time.Now()
		n, err := io.Copy(io.Discard, &limitedReader{ctx: context.Background(), r: bytes.NewReader(make([]byte, c.size)), l: l})
		took := time.Since(start)
		if err != nil || n != int64(c.size) || took < c.min || took > c.max {
			t.Errorf("%d bytes at 1 MiB/s: %d, %v in %v; want between %v and %v", c.size, n, err, took, c.min, c.max)
		}
	}
}
