package postgres_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/meta/postgres/pgtest"
	"github.com/stowage/stowage/storage/fs"
)

// TestUploadWriterLeaseClockSkew (issue 13 #1) on PostgreSQL: two nodes
// share the database and a storage directory, and node b's clock is 31 s
// ahead. While node a streams a chunk, b must be refused (a lease ends by
// the database's clock, not by a node's), and the blob must hold a's bytes.
func TestUploadWriterLeaseClockSkew(t *testing.T) {
	cs := pgtest.Schema(t, "stowage_test")
	store, err := fs.New(filepath.Join(t.TempDir(), "storage"))
	if err != nil {
		t.Fatal(err)
	}
	a := stowage.NewRegistry(open(t, cs), store, stowage.Options{})
	b := stowage.NewRegistry(open(t, cs), store, stowage.Options{Now: func() time.Time { return time.Now().Add(31 * time.Second) }})
	u, err := a.StartUpload(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	const size = 70000
	aBytes, bBytes := make([]byte, size), make([]byte, size)
	rand.Read(aBytes)
	rand.Read(bBytes)
	digest := func(b []byte) stowage.Digest {
		s := sha256.Sum256(b)
		return stowage.Digest("sha256:" + hex.EncodeToString(s[:]))
	}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := a.WriteUpload(ctx, "r", u.ID, 0, size, pr)
		done <- err
	}()
	pw.Write(aBytes[:1000]) // a holds the lease and is writing
	_, errB := b.WriteUpload(ctx, "r", u.ID, 0, size, bytes.NewReader(bBytes))
	pw.Write(aBytes[1000:])
	pw.Close()
	if err := <-done; err != nil {
		t.Errorf("node a's chunk: %v", err)
	}
	want, d := aBytes, digest(aBytes)
	if errB == nil {
		t.Errorf("node b (clock 31 s ahead) wrote the session while node a held its lease")
		want, d = bBytes, digest(bBytes)
	} else if stowage.ErrorCodeOf(errB) != stowage.CodeBlobUploadInvalid {
		t.Errorf("node b while node a writes: %v, want BLOB_UPLOAD_INVALID", errB)
	}
	if _, err := b.FinishUpload(ctx, "r", u.ID, d, -1, 0, nil); err != nil {
		t.Fatalf("finish on node b: %v", err)
	}
	rc, _, err := b.OpenBlob(ctx, "r", d, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, want) {
		t.Errorf("blob %s holds other bytes than were pushed under it", d)
	}
}
