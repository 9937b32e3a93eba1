package crypt_test

import (
	"bytes"
	"runtime"
	"testing"

	"github.com/stowage/stowage/storage/crypt"
	"github.com/stowage/stowage/storage/mem"
)

// TestSmallReadAllocatesLittle: opening and reading a manifest-sized object
// must not allocate a buffer sized for big blobs. Each such read missed by
// the engine's manifest cache (every first read after a restart) used to
// allocate and zero 1.1 MiB; larger objects still read in 1 MiB pieces
// (TestRangeReads checks their bytes at every size around a segment).
func TestSmallReadAllocatesLittle(t *testing.T) {
	b, _ := newCrypt(t, mem.New())
	for _, size := range []int{400, crypt.SegmentSize - 1, 3*crypt.SegmentSize + 5} {
		data := random(size)
		if err := b.Put(ctx, "k", bytes.NewReader(data), -1); err != nil {
			t.Fatal(err)
		}
		const reads = 20
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range reads {
			got, err := read(b, "k", 0)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("size %d: %d bytes, %v", size, len(got), err)
			}
		}
		runtime.ReadMemStats(&after)
		perRead := (after.TotalAlloc - before.TotalAlloc) / reads
		t.Logf("size %d: %d bytes allocated per read", size, perRead)
		// A manifest: the first buffer (64 KiB), its plaintext and
		// io.ReadAll's; never the 1 MiB read buffer (-race adds its own).
		if limit := uint64(256 << 10); size < 1<<10 && perRead > limit {
			t.Errorf("size %d: %d bytes allocated per read, want at most %d", size, perRead, limit)
		}
	}
}
