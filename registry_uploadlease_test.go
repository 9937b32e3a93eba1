package stowage_test

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/storage/mem"
)

// TestUploadWriterLeaseAcrossNodes: two registries (two nodes) share one
// database and one store. While node a streams a chunk into a session,
// node b's chunk for the same session is refused at once; other sessions
// are not; once a's chunk is in, b resumes the session where a left it, and
// the blob is right.
func TestUploadWriterLeaseAcrossNodes(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, t.TempDir()+"/shared.db")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	store := mem.New()
	a := stowage.NewRegistry(db, store, stowage.Options{})
	b := stowage.NewRegistry(db, store, stowage.Options{})
	u, err := a.StartUpload(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	other, err := b.StartUpload(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	first, second := bytes.Repeat([]byte("a"), 1000), bytes.Repeat([]byte("b"), 500)
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := a.WriteUpload(ctx, "r", u.ID, 0, int64(len(first)), pr)
		done <- err
	}()
	pw.Write(first[:10]) // a is now writing
	_, err = b.WriteUpload(ctx, "r", u.ID, 0, int64(len(second)), bytes.NewReader(second))
	if stowage.ErrorCodeOf(err) != stowage.CodeBlobUploadInvalid {
		t.Errorf("node b's chunk while node a writes: %v, want BLOB_UPLOAD_INVALID", err)
	}
	if _, err := b.WriteUpload(ctx, "r", other.ID, 0, 3, bytes.NewReader([]byte("xyz"))); err != nil {
		t.Errorf("node b, another session: %v", err)
	}
	pw.Write(first[10:])
	pw.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("node a's chunk: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("node a's chunk did not finish")
	}
	if _, err := b.WriteUpload(ctx, "r", u.ID, int64(len(first)), int64(len(second)), bytes.NewReader(second)); err != nil {
		t.Fatalf("node b resumes after a: %v", err)
	}
	whole := append(append([]byte{}, first...), second...)
	d := stowage.Digest("sha256:" + sha(whole))
	if _, err := a.FinishUpload(ctx, "r", u.ID, d, -1, 0, nil); err != nil {
		t.Fatalf("finish on node a: %v", err)
	}
	rc, _, err := b.OpenBlob(ctx, "r", d, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, whole) {
		t.Errorf("the blob has %d bytes, not the %d written", len(got), len(whole))
	}
	if _, err := a.WriteUpload(ctx, "r", "0123456789abcdef0123456789abcdef", 0, 1, bytes.NewReader([]byte("x"))); stowage.ErrorCodeOf(err) != stowage.CodeBlobUploadUnknown {
		t.Errorf("unknown session: %v, want BLOB_UPLOAD_UNKNOWN", err)
	}
}
