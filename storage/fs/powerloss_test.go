package fs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/storage/fs"
	"github.com/stowage/stowage/storage/fs/faultfs"
)

// The durability contract of storage/fs, checked by cutting power before
// every step of each operation (and once after it returned):
//
//   - Put: acknowledged (nil) means the whole object is there after a power
//     loss; otherwise the key holds the old object or nothing, never a part.
//   - Append: acknowledged bytes survive; a failed Append never damages the
//     bytes acknowledged before it.
//   - Commit: acknowledged means dst holds the first size bytes; otherwise
//     dst is absent or whole, and if absent src still holds the
//     acknowledged bytes, so a retried Commit finishes the upload.
//   - Delete: need not be durable (a forgotten delete leaves the object
//     whole, an orphan the engine's sweep removes), but never leaves a part.
//
// docs/architecture.md ("Durability") states what the engine builds on it.

const root = "/data"

var (
	ctx   = context.Background()
	blobA = "blobs/sha256/ab/ab" + string(bytes.Repeat([]byte("0"), 62))
	blobB = "blobs/sha256/ab/ab" + string(bytes.Repeat([]byte("1"), 62))
	up    = "uploads/0123456789abcdef/data"
	dataA = bytes.Repeat([]byte("A"), 3000)
	dataB = bytes.Repeat([]byte("B"), 5000)
	part1 = bytes.Repeat([]byte("1"), 1500)
	part2 = bytes.Repeat([]byte("2"), 2500)
)

// object returns the object at key after a power loss (nil if absent) and
// checks that Stat and List agree with what Open reads.
func object(t *testing.T, b *fs.Backend, key string) []byte {
	t.Helper()
	r, err := b.Open(ctx, key, 0)
	if stowage.IsNotExist(err) {
		if _, err := b.Stat(ctx, key); !stowage.IsNotExist(err) {
			t.Fatalf("%s: Open says missing, Stat says %v", key, err)
		}
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	var listed int64 = -1
	err = b.List(ctx, key, func(oi stowage.ObjectInfo) error {
		if oi.Key == key {
			listed = oi.Size
		}
		return nil
	})
	if err != nil || listed != int64(len(data)) {
		t.Fatalf("%s: List size %d (%v), Open read %d bytes", key, listed, err, len(data))
	}
	return data
}

func app(b *fs.Backend, key string, off int64, data []byte) error {
	n, err := b.Append(ctx, key, off, bytes.NewReader(data))
	if err == nil && n != off+int64(len(data)) {
		err = errors.New("short append")
	}
	return err
}

func TestPowerLoss(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(b *fs.Backend) error // acknowledged before the operation
		op    func(b *fs.Backend) error
		check func(t *testing.T, b *fs.Backend, acked bool)
	}{
		{
			name: "Put of the first object",
			op:   func(b *fs.Backend) error { return b.Put(ctx, blobA, bytes.NewReader(dataA), int64(len(dataA))) },
			check: func(t *testing.T, b *fs.Backend, acked bool) {
				got := object(t, b, blobA)
				if acked && !bytes.Equal(got, dataA) || !acked && got != nil && !bytes.Equal(got, dataA) {
					t.Errorf("Put acknowledged=%v: %s holds %d bytes after power loss, want %d", acked, blobA, len(got), len(dataA))
				}
			},
		},
		{
			name:  "Put next to an existing object",
			setup: func(b *fs.Backend) error { return b.Put(ctx, blobA, bytes.NewReader(dataA), -1) },
			op:    func(b *fs.Backend) error { return b.Put(ctx, blobB, bytes.NewReader(dataB), -1) },
			check: func(t *testing.T, b *fs.Backend, acked bool) {
				if got := object(t, b, blobA); !bytes.Equal(got, dataA) {
					t.Errorf("the earlier object holds %d bytes, want %d", len(got), len(dataA))
				}
				got := object(t, b, blobB)
				if acked && !bytes.Equal(got, dataB) || !acked && got != nil && !bytes.Equal(got, dataB) {
					t.Errorf("Put acknowledged=%v: %s holds %d bytes after power loss", acked, blobB, len(got))
				}
			},
		},
		{
			name:  "Put replacing an object",
			setup: func(b *fs.Backend) error { return b.Put(ctx, blobA, bytes.NewReader(dataA), -1) },
			op:    func(b *fs.Backend) error { return b.Put(ctx, blobA, bytes.NewReader(dataB), -1) },
			check: func(t *testing.T, b *fs.Backend, acked bool) {
				got := object(t, b, blobA)
				if acked && !bytes.Equal(got, dataB) || !acked && !bytes.Equal(got, dataA) && !bytes.Equal(got, dataB) {
					t.Errorf("Put acknowledged=%v: %s holds %d bytes after power loss", acked, blobA, len(got))
				}
			},
		},
		{
			name: "Append creating an upload",
			op:   func(b *fs.Backend) error { return app(b, up, 0, part1) },
			check: func(t *testing.T, b *fs.Backend, acked bool) {
				if got := object(t, b, up); acked && !bytes.HasPrefix(got, part1) {
					t.Errorf("acknowledged Append lost: the upload holds %d bytes, want %d", len(got), len(part1))
				}
			},
		},
		{
			name:  "Append to an upload",
			setup: func(b *fs.Backend) error { return app(b, up, 0, part1) },
			op:    func(b *fs.Backend) error { return app(b, up, int64(len(part1)), part2) },
			check: func(t *testing.T, b *fs.Backend, acked bool) {
				got := object(t, b, up)
				want := part1
				if acked {
					want = append(append([]byte{}, part1...), part2...)
				}
				if !bytes.HasPrefix(got, want) {
					t.Errorf("Append acknowledged=%v: the upload holds %d bytes after power loss, want at least the %d acknowledged", acked, len(got), len(want))
				}
			},
		},
		{
			name: "Commit of an upload with a torn tail",
			setup: func(b *fs.Backend) error {
				if err := app(b, up, 0, part1); err != nil {
					return err
				}
				return app(b, up, int64(len(part1)), part2) // then cut to part1
			},
			op: func(b *fs.Backend) error { return b.Commit(ctx, up, blobA, int64(len(part1))) },
			check: func(t *testing.T, b *fs.Backend, acked bool) {
				got := object(t, b, blobA)
				if acked && !bytes.Equal(got, part1) || got != nil && !bytes.Equal(got, part1) {
					t.Errorf("Commit acknowledged=%v: %s holds %d bytes after power loss, want %d", acked, blobA, len(got), len(part1))
				}
				if src := object(t, b, up); got == nil && !bytes.HasPrefix(src, part1) {
					t.Errorf("Commit not done and its source lost: the upload holds %d bytes", len(src))
				}
			},
		},
		{
			name:  "Delete",
			setup: func(b *fs.Backend) error { return b.Put(ctx, blobA, bytes.NewReader(dataA), -1) },
			op:    func(b *fs.Backend) error { return b.Delete(ctx, blobA) },
			check: func(t *testing.T, b *fs.Backend, acked bool) {
				if got := object(t, b, blobA); got != nil && !bytes.Equal(got, dataA) {
					t.Errorf("Delete acknowledged=%v left %d bytes of %d", acked, len(got), len(dataA))
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for n := 0; ; n++ {
				if n > 100 {
					t.Fatal("the operation did not finish in 100 steps")
				}
				fsys := faultfs.New()
				b, err := fs.NewWithFS(root, fsys)
				if err != nil {
					t.Fatal(err)
				}
				if tc.setup != nil {
					if err := tc.setup(b); err != nil {
						t.Fatal(err)
					}
				}
				fsys.CrashAfter(n)
				opErr := tc.op(b)
				crashed := fsys.Crashed()
				if !crashed && opErr != nil {
					t.Fatalf("without a crash: %v", opErr)
				}
				fsys.PowerLoss()
				b, err = fs.NewWithFS(root, fsys) // the restart
				if err != nil {
					t.Fatal(err)
				}
				if _, err := b.CleanTemp(0); err != nil {
					t.Fatal(err)
				}
				name := fmt.Sprintf("power cut before step %d", n+1)
				if !crashed {
					name = "power cut after it returned"
				}
				t.Run(name, func(t *testing.T) {
					tc.check(t, b, opErr == nil)
				})
				if !crashed {
					return
				}
			}
		})
	}
}
