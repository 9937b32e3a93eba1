package transfer

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/stowage/stowage"
)

// Sink is where an export writes a layout: a directory (resumable, blobs
// written in parallel) or a tar stream (one blob after the other).
type Sink interface {
	// Blob stores blob d, reading it from fetch(offset) (the bytes from
	// offset on), verifying digest and size on the way; it reports each
	// chunk's size to progress. It returns the bytes it fetched (0 when
	// the blob was already complete: a rerun into the same directory).
	Blob(d Descriptor, fetch func(offset int64) (io.ReadCloser, error), progress func(int64)) (fetched int64, err error)
	// File writes a small file of the layout (index.json, oci-layout, the
	// marker), replacing any older one.
	File(name string, b []byte) error
	// Parallel reports whether Blob may be called from several goroutines.
	Parallel() bool
	Close() error
}

const partialDir = ".stowage-partial"

// blobPath is a blob's place in a layout.
func blobPath(d stowage.Digest) string {
	return filepath.Join("blobs", d.Algorithm().String(), d.Encoded())
}

// DirSink writes a layout into a directory; a rerun into the same
// directory skips the blobs already there (after verifying them) and
// resumes a partial one from where it stopped.
type DirSink struct{ dir string }

// NewDirSink creates (or reuses) the layout directory dir.
func NewDirSink(dir string) (*DirSink, error) {
	if err := os.MkdirAll(filepath.Join(dir, partialDir), 0o755); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		return nil, err
	}
	return &DirSink{dir: dir}, nil
}

func (s *DirSink) Parallel() bool { return true }

// Close removes the partial directory when it is empty (a finished export).
func (s *DirSink) Close() error {
	os.Remove(filepath.Join(s.dir, partialDir))
	return nil
}

func (s *DirSink) File(name string, b []byte) error {
	tmp := filepath.Join(s.dir, partialDir, name+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(s.dir, name))
}

func (s *DirSink) Blob(d Descriptor, fetch func(int64) (io.ReadCloser, error), progress func(int64)) (int64, error) {
	if progress == nil {
		progress = func(int64) {}
	}
	final := filepath.Join(s.dir, blobPath(d.Digest))
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return 0, err
	}
	// 1. Already there (a rerun): keep it if it verifies.
	if f, err := os.Open(final); err == nil {
		_, verr := io.Copy(io.Discard, newVerifier(f, d, progress))
		f.Close()
		if verr == nil {
			return 0, nil
		}
		os.Remove(final) // damaged: fetch it again
	}
	// 2. A partial file from an interrupted run: hash what it holds and
	// fetch the rest.
	part := filepath.Join(s.dir, partialDir, d.Digest.Encoded())
	f, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	h := sha256.New()
	have, err := io.Copy(h, f)
	if err != nil || have > d.Size {
		have, h = 0, sha256.New()
		if err := f.Truncate(0); err != nil {
			return 0, err
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return 0, err
		}
	}
	progress(have)
	// 3. Fetch the rest, hashing and counting; rename only once verified.
	var fetched int64
	if have < d.Size || d.Size == 0 {
		rc, err := fetch(have)
		if errors.Is(err, errNoRange) { // the server sent it all again
			rc, err = fetch(0)
			if err == nil {
				have, h = 0, sha256.New()
				if err := f.Truncate(0); err != nil {
					rc.Close()
					return 0, err
				}
				f.Seek(0, io.SeekStart)
			}
		}
		if err != nil {
			return 0, err
		}
		fetched, err = io.Copy(io.MultiWriter(f, h, progressWriter(progress)), io.LimitReader(rc, d.Size-have+1))
		rc.Close()
		if err != nil {
			return fetched, fmt.Errorf("blob %s: %w", d.Digest, err)
		}
	}
	if err := check(d, have+fetched, h); err != nil {
		os.Remove(part)
		return fetched, err
	}
	// No fsync: a rerun verifies every blob it finds, so a file a power
	// cut left short or empty is fetched again, never trusted.
	return fetched, os.Rename(part, final)
}

// errNoRange is what a fetch returns when asked for an offset it cannot
// start at (the server ignored the Range header).
var errNoRange = errors.New("range not supported")

// TarSink writes a layout as a tar stream: blobs as they come, index.json
// and the marker last. A tar cannot be resumed; export into a directory
// for that.
type TarSink struct {
	mu  sync.Mutex
	tw  *tar.Writer
	now time.Time
}

// NewTarSink starts a tar stream on w.
func NewTarSink(w io.Writer) *TarSink {
	return &TarSink{tw: tar.NewWriter(w), now: time.Now().UTC().Truncate(time.Second)}
}

func (s *TarSink) Parallel() bool { return false }

func (s *TarSink) header(name string, size int64) error {
	return s.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644, ModTime: s.now, Format: tar.FormatPAX})
}

func (s *TarSink) File(name string, b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.header(name, int64(len(b))); err != nil {
		return err
	}
	_, err := s.tw.Write(b)
	return err
}

func (s *TarSink) Blob(d Descriptor, fetch func(int64) (io.ReadCloser, error), progress func(int64)) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rc, err := fetch(0)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	if err := s.header(filepath.ToSlash(blobPath(d.Digest)), d.Size); err != nil {
		return 0, err
	}
	// The verifier fails before the tar writer sees more bytes than the
	// header declared, and at EOF on a wrong digest: the stream is then
	// cut, and the command fails.
	n, err := io.Copy(s.tw, newVerifier(rc, d, progress))
	return n, err
}

func (s *TarSink) Close() error { return s.tw.Close() }

// ---- verification ----

// verifier hashes and counts a blob as it is read and fails at EOF (or as
// soon as it is too long) if it is not the blob d describes.
type verifier struct {
	r        io.Reader
	d        Descriptor
	h        hash.Hash
	n        int64
	progress func(int64)
}

func newVerifier(r io.Reader, d Descriptor, progress func(int64)) *verifier {
	if progress == nil {
		progress = func(int64) {}
	}
	return &verifier{r: r, d: d, h: sha256.New(), progress: progress}
}

func (v *verifier) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.n += int64(n)
	v.h.Write(p[:n])
	v.progress(int64(n))
	if v.n > v.d.Size {
		return n, stowage.Errorf(stowage.CodeSizeInvalid, "blob %s is longer than its %d bytes", v.d.Digest, v.d.Size)
	}
	if err == io.EOF {
		if e := check(v.d, v.n, v.h); e != nil {
			return n, e
		}
	}
	return n, err
}

func check(d Descriptor, n int64, h hash.Hash) error {
	if n != d.Size {
		return stowage.Errorf(stowage.CodeSizeInvalid, "blob %s has %d bytes, %d were expected", d.Digest, n, d.Size)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != string(d.Digest) {
		return stowage.Errorf(stowage.CodeDigestInvalid, "blob %s: the bytes have digest %s", d.Digest, got)
	}
	return nil
}

type progressWriter func(int64)

func (p progressWriter) Write(b []byte) (int, error) { p(int64(len(b))); return len(b), nil }

// ---- reading a layout ----

// Source is a layout being imported: a directory or a tar file.
type Source interface {
	// ReadFile returns a small file of the layout (index.json, the
	// marker); a missing one is fs.ErrNotExist.
	ReadFile(name string) ([]byte, error)
	// Open opens blob dg; a missing one is fs.ErrNotExist.
	Open(dg stowage.Digest) (io.ReadCloser, error)
	Close() error
}

// DirSource reads a layout directory.
type DirSource struct{ dir string }

func (s DirSource) ReadFile(name string) ([]byte, error) {
	return readLimited(filepath.Join(s.dir, name))
}

func (s DirSource) Open(dg stowage.Digest) (io.ReadCloser, error) {
	return os.Open(filepath.Join(s.dir, blobPath(dg)))
}

func (s DirSource) Close() error { return nil }

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxIndexSize+1))
	if len(b) > maxIndexSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxIndexSize)
	}
	return b, err
}

// TarSource reads a layout from a tar file: one pass over its headers
// finds where each entry's bytes are, then blobs are read in place.
type TarSource struct {
	f       *os.File
	entries map[string]tarEntry
	temp    string // a spooled stdin, removed on Close
}

type tarEntry struct{ off, size int64 }

// OpenTar indexes the tar file path ("-": standard input, spooled to a
// temporary file first since a layout is read out of order).
func OpenTar(path string, stdin io.Reader) (*TarSource, error) {
	s := &TarSource{entries: map[string]tarEntry{}}
	if path == "-" {
		f, err := os.CreateTemp("", "stowage-import-*.tar")
		if err != nil {
			return nil, err
		}
		s.temp = f.Name()
		if _, err := io.Copy(f, stdin); err != nil {
			f.Close()
			os.Remove(s.temp)
			return nil, fmt.Errorf("reading the tar from standard input: %w", err)
		}
		f.Close()
		path = s.temp
	}
	f, err := os.Open(path)
	if err != nil {
		s.Close()
		return nil, err
	}
	s.f = f
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("%s is not a tar of an OCI layout: %w", path, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		// archive/tar reads headers in whole blocks and no further, so
		// the file's position is where this entry's bytes start.
		off, err := f.Seek(0, io.SeekCurrent)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.entries[cleanName(h.Name)] = tarEntry{off, h.Size}
	}
	return s, nil
}

func cleanName(n string) string {
	n = filepath.ToSlash(filepath.Clean("/" + n))
	return n[1:]
}

func (s *TarSource) ReadFile(name string) ([]byte, error) {
	e, ok := s.entries[name]
	if !ok {
		return nil, fs.ErrNotExist
	}
	if e.size > maxIndexSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, maxIndexSize)
	}
	b := make([]byte, e.size)
	_, err := s.f.ReadAt(b, e.off)
	return b, err
}

func (s *TarSource) Open(dg stowage.Digest) (io.ReadCloser, error) {
	e, ok := s.entries[filepath.ToSlash(blobPath(dg))]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return io.NopCloser(io.NewSectionReader(s.f, e.off, e.size)), nil
}

func (s *TarSource) Close() error {
	if s.f != nil {
		s.f.Close()
	}
	if s.temp != "" {
		os.Remove(s.temp)
	}
	return nil
}

// OpenSource opens path as a layout: a directory, a tar file, or "-".
func OpenSource(path string, stdin io.Reader) (Source, error) {
	if path != "-" {
		st, err := os.Stat(path)
		if err != nil {
			return nil, err
		}
		if st.IsDir() {
			if _, err := os.Stat(filepath.Join(path, "index.json")); err != nil {
				return nil, fmt.Errorf("%s is not an OCI image layout: it has no index.json", path)
			}
			return DirSource{path}, nil
		}
	}
	return OpenTar(path, stdin)
}
