package mirror_test

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/storage/crypt"
	"github.com/stowage/stowage/storage/mirror"
)

// TestEncryptedUploadWithCopyBehind: with encryption over a mirror (quorum
// 1), a copy that missed a chunk holds a shorter upload object; the next
// chunks (which read the last segment back) and the commit must not read
// from it.
func TestEncryptedUploadWithCopyBehind(t *testing.T) {
	db, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	k, err := crypt.OpenFileKeyring(filepath.Join(t.TempDir(), "k.json"), true)
	if err != nil {
		t.Fatal(err)
	}
	a, b := newFaultyFS(t), newFaultyFS(t)
	// b first: reads start with the copy that falls behind.
	c := crypt.New(newMirror(t, mirror.Options{WriteQuorum: 1}, b, a), crypt.NewManager(db, k))
	app := c.(stowage.Appender)
	chunks := [][]byte{random(100_000), random(70_001), random(30_000), random(5)}
	key := "uploads/u/data"
	var off int64
	for i, ch := range chunks {
		b.down.Store(i == 1)
		n, err := app.Append(ctx, key, off, bytes.NewReader(ch))
		if err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
		off = n
	}
	all := bytes.Join(chunks, nil)
	if err := app.Commit(ctx, key, "blobs/x", off); err != nil {
		t.Fatal(err)
	}
	if got, err := read(c, "blobs/x"); err != nil || !bytes.Equal(got, all) {
		t.Fatalf("the blob: %d bytes (want %d), equal %v, %v", len(got), len(all), bytes.Equal(got, all), err)
	}
}
