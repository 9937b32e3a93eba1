package crypt_test

import (
	"bytes"
	"fmt"
	"testing"
	"testing/iotest"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/storage/crypt"
	"github.com/stowage/stowage/storage/mem"
)

// TestSealAheadAcrossBatches: a Put or Append seals one 1 MiB batch ahead
// on a goroutine of its own while the next is read and the previous
// written (sealreader.go). Every size around the batch and segment
// boundaries reads back as written, from the start and from offsets; a
// source that fails anywhere (before, at and after a batch boundary)
// fails the write and leaves nothing readable; an Append that resumes
// mid-segment (the prefix sealed again) and spans batches reads back too.
func TestSealAheadAcrossBatches(t *testing.T) {
	const seg, batch = crypt.SegmentSize, 16 * crypt.SegmentSize
	b, _ := newCrypt(t, mem.New())
	for _, n := range []int{0, 1, seg - 1, seg, seg + 1, batch - 1, batch, batch + 1, 2 * batch, 2*batch + seg, 3*batch + seg + 7, 5*batch + 3} {
		data := random(n)
		for _, half := range []bool{false, true} {
			key := fmt.Sprintf("blobs/%d-%v", n, half)
			var err error
			if half { // short reads, size unknown
				err = b.Put(ctx, key, iotest.HalfReader(bytes.NewReader(data)), -1)
			} else {
				err = b.Put(ctx, key, bytes.NewReader(data), int64(n))
			}
			if err != nil {
				t.Fatalf("Put %d bytes (half reads %v): %v", n, half, err)
			}
			for _, off := range []int{0, n / 2, max(n-1, 0), n} {
				got, err := read(b, key, int64(off))
				if err != nil || !bytes.Equal(got, data[off:]) {
					t.Fatalf("Put %d bytes (half reads %v), read from %d: %d bytes, %v", n, half, off, len(got), err)
				}
			}
		}
	}
	for _, fail := range []int{0, 1, batch - 1, batch, batch + 1, 2*batch + 5} {
		key := "blobs/failed"
		err := b.Put(ctx, key, &failAfter{bytes.NewReader(random(3 * batch)), fail}, -1)
		if err == nil {
			t.Fatalf("Put of a source failing after %d bytes succeeded", fail)
		}
		if _, err := read(b, key, 0); err == nil {
			t.Errorf("a Put failing after %d bytes left something readable", fail)
		}
	}
	app := b.(stowage.Appender)
	data := random(4*batch + 11)
	cuts := []int64{0, seg + 1, 3*batch + 5, int64(len(data))}
	for i := 0; i+1 < len(cuts); i++ {
		off, end := cuts[i], cuts[i+1]
		if n, err := app.Append(ctx, "uploads/a/data", off, iotest.HalfReader(bytes.NewReader(data[off:end]))); err != nil || n != end {
			t.Fatalf("append [%d,%d): %d, %v", off, end, n, err)
		}
	}
	if err := app.Commit(ctx, "uploads/a/data", "blobs/a", int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if got, err := read(b, "blobs/a", 0); err != nil || !bytes.Equal(got, data) {
		t.Errorf("appended across batches: %d bytes, %v", len(got), err)
	}
}
