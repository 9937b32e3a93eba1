package transfer

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stowage/stowage"
)

func blobOf(t *testing.T, n int) ([]byte, Descriptor) {
	b := make([]byte, n)
	rand.Read(b)
	sum := sha256.Sum256(b)
	return b, Descriptor{Digest: stowage.Digest("sha256:" + hex.EncodeToString(sum[:])), Size: int64(n)}
}

// failAfter yields n bytes of b then an error: a connection that drops.
type failAfter struct {
	r io.Reader
	n int
}

func (f *failAfter) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("connection reset")
	}
	if len(p) > f.n {
		p = p[:f.n]
	}
	k, err := f.r.Read(p)
	f.n -= k
	return k, err
}

// An interrupted blob stays in the partial directory (never in blobs/);
// the rerun fetches only the rest, from the offset, and the blob verifies.
func TestDirSinkResume(t *testing.T) {
	dir := t.TempDir()
	data, d := blobOf(t, 1<<20)
	s, err := NewDirSink(dir)
	if err != nil {
		t.Fatal(err)
	}
	final := filepath.Join(dir, blobPath(d.Digest))
	_, err = s.Blob(d, func(off int64) (io.ReadCloser, error) {
		return io.NopCloser(&failAfter{bytes.NewReader(data[off:]), 300_000}), nil
	}, func(int64) {})
	if err == nil {
		t.Fatal("interrupted fetch reported success")
	}
	if _, err := os.Stat(final); !os.IsNotExist(err) {
		t.Fatalf("a partial blob is in blobs/: %v", err)
	}
	var offsets []int64
	got, err := s.Blob(d, func(off int64) (io.ReadCloser, error) {
		offsets = append(offsets, off)
		return io.NopCloser(bytes.NewReader(data[off:])), nil
	}, func(int64) {})
	if err != nil || got != int64(len(data))-300_000 || len(offsets) != 1 || offsets[0] != 300_000 {
		t.Fatalf("resume: fetched %d (offsets %v), %v; want %d from 300000", got, offsets, err, len(data)-300_000)
	}
	if b, _ := os.ReadFile(final); !bytes.Equal(b, data) {
		t.Fatal("resumed blob differs")
	}
	// A third run verifies the file and fetches nothing; a damaged file is fetched again.
	if got, err := s.Blob(d, func(int64) (io.ReadCloser, error) { t.Fatal("fetched a complete blob"); return nil, nil }, func(int64) {}); got != 0 || err != nil {
		t.Fatalf("rerun: %d %v", got, err)
	}
	os.WriteFile(final, data[:10], 0o644)
	if got, err := s.Blob(d, func(off int64) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data[off:])), nil }, func(int64) {}); got != int64(len(data)) || err != nil {
		t.Fatalf("damaged blob: fetched %d, %v", got, err)
	}
	// Wrong bytes never land in blobs/.
	_, d2 := blobOf(t, 100)
	if _, err := s.Blob(d2, func(int64) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data[:100])), nil }, func(int64) {}); stowage.ErrorCodeOf(err) != stowage.CodeDigestInvalid {
		t.Fatalf("wrong bytes: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, blobPath(d2.Digest))); !os.IsNotExist(err) {
		t.Fatal("a blob that failed verification is in blobs/")
	}
}

// A tar written by TarSink reads back through TarSource, blob for blob.
func TestTarRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	s := NewTarSink(&buf)
	a, da := blobOf(t, 5000)
	b, db := blobOf(t, 0)
	for _, x := range []struct {
		b []byte
		d Descriptor
	}{{a, da}, {b, db}} {
		if _, err := s.Blob(x.d, func(int64) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(x.b)), nil }, nil); err != nil {
			t.Fatal(err)
		}
	}
	s.File("index.json", []byte(`{"schemaVersion":2,"manifests":[]}`))
	s.Close()
	// A blob whose bytes are wrong cuts the stream with an error.
	if _, err := NewTarSink(io.Discard).Blob(db, func(int64) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(a)), nil }, nil); err == nil {
		t.Fatal("tar sink wrote a blob with the wrong bytes")
	}
	src, err := OpenTar("-", &buf)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	for _, x := range []struct {
		b []byte
		d Descriptor
	}{{a, da}, {b, db}} {
		rc, err := src.Open(x.d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(rc)
		if !bytes.Equal(got, x.b) {
			t.Fatalf("blob %s differs", x.d.Digest)
		}
	}
	if ix, err := src.ReadFile("index.json"); err != nil || !bytes.Contains(ix, []byte("schemaVersion")) {
		t.Fatalf("index.json: %s %v", ix, err)
	}
}
