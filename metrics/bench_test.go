package metrics

import (
	"testing"
	"time"
)

// BenchmarkRequestDone: recording one request (counter, histogram, bytes).
func BenchmarkRequestDone(b *testing.B) {
	s := New("bench")
	b.ReportAllocs()
	for b.Loop() {
		s.RequestStarted()
		s.RequestDone(Route("/v2/team/app/manifests/v1"), "GET", 200, 0, 512, 3*time.Millisecond)
	}
}
