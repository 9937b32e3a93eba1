package stowage

import (
	"bytes"
	"crypto/sha256"
	"math/rand/v2"
	"testing"
)

// TestHashPipe checks that a hashPipe hashes exactly what a plain hash
// would, in order, whatever the write sizes and wherever finish is called.
func TestHashPipe(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 5*pipeBatch+12345)
	for i := range data {
		data[i] = byte(rng.IntN(256))
	}
	for _, tc := range []struct {
		name     string
		size     int   // bytes written
		step     int   // write size (0: random up to 300 KiB)
		finishAt []int // offsets where finish is called (and the state compared) on the way
	}{
		{"small", 1000, 100, nil},
		{"exactly sync", pipeSync, 4096, nil},
		{"large in 1 MiB", len(data), 1 << 20, nil},
		{"large in odd writes", len(data), 0, nil},
		{"one write", len(data), len(data), nil},
		{"finish on the way", len(data), 0, []int{pipeSync / 2, 2*pipeBatch + 7, 4 * pipeBatch}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newHashPipe(sha256.New())
			off, next := 0, 0
			for off < tc.size {
				n := tc.step
				if n == 0 {
					n = 1 + rng.IntN(300<<10)
				}
				n = min(n, tc.size-off)
				if next < len(tc.finishAt) && off+n > tc.finishAt[next] {
					n = tc.finishAt[next] - off
				}
				if k, err := p.Write(data[off : off+n]); k != n || err != nil {
					t.Fatalf("Write = %d, %v", k, err)
				}
				off += n
				if next < len(tc.finishAt) && off == tc.finishAt[next] {
					next++
					want := sha256.Sum256(data[:off])
					if got := p.finish().Sum(nil); !bytes.Equal(got, want[:]) {
						t.Fatalf("at %d: hash differs", off)
					}
				}
			}
			want := sha256.Sum256(data[:tc.size])
			if got := p.finish().Sum(nil); !bytes.Equal(got, want[:]) {
				t.Fatal("hash differs")
			}
		})
	}
}
