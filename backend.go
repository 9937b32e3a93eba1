package stowage

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"time"
)

// Storage key layout. Storage holds only immutable, content-addressed objects
// and in-flight uploads; everything about references lives in the DB.
//
//	blobs/<alg>/<first two hex>/<hex>   one object per digest, for the whole registry
//	                                    (layers, configs and manifests alike)
//	uploads/<id>/data                   an upload in progress (Appender backends)
//	uploads/<id>/data.<gen>             the same after writer generation <gen> took over
//	uploads/<id>/<offset>               an upload's chunks (backends without Appender)
//	uploads/<id>/g<gen>.<offset>        the same after writer generation <gen> took over
//
// A blob object is written only after its digest and size were verified, and
// becomes visible atomically, so a blob key never holds partial or wrong bytes.

// BlobKey returns the storage key of a digest's content.
func BlobKey(d Digest) string {
	hex := d.Encoded()
	return "blobs/" + string(d.Algorithm()) + "/" + hex[:2] + "/" + hex
}

// UploadPrefix returns the key prefix under which an upload's data lives.
func UploadPrefix(id string) string { return "uploads/" + id + "/" }

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Key     string
	Size    int64
	ModTime time.Time
}

// Backend stores write-once objects by key. Keys are slash-separated paths
// made of the characters [a-z0-9._/-].
type Backend interface {
	// Open returns the object's bytes from offset to its end.
	// A missing key returns an error wrapping fs.ErrNotExist.
	Open(ctx context.Context, key string, offset int64) (io.ReadCloser, error)
	// Put stores size bytes from r under key. The object becomes visible only
	// if Put returns nil, and then in full; an error from r (for example a
	// digest mismatch found at EOF) aborts the write and leaves nothing behind.
	// size is -1 when unknown. An existing object is replaced atomically.
	Put(ctx context.Context, key string, r io.Reader, size int64) error
	// Stat returns the object's size. A missing key wraps fs.ErrNotExist.
	Stat(ctx context.Context, key string) (ObjectInfo, error)
	// Delete removes the object. A missing key is not an error.
	Delete(ctx context.Context, key string) error
	// List calls fn for every object whose key starts with prefix, in no
	// particular order. An error from fn stops the walk and is returned.
	List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error
}

// Appender is an optional Backend capability for uploads that arrive in
// pieces (chunked pushes): the pieces go into one growing object, which is
// then moved to its final key, so the blob's bytes are written exactly once.
type Appender interface {
	// Append writes r at offset off of the upload object key, creating it when
	// off is 0, and returns the object's new size. Bytes at or after off left
	// by an earlier failed Append are discarded first, so a retried or resumed
	// upload never sees a torn tail. Append returns after the bytes are
	// durable (synced to stable storage): the engine records the hash state
	// describing them only then, and the final PUT trusts that hash state,
	// so a power loss must not take bytes whose Append returned. Open of the
	// upload object gives at least the bytes of the last Append that
	// returned, whatever an Append in progress or a failed one left after
	// them (a writer that lost its lease may still be appending while the
	// next one copies the acknowledged bytes).
	Append(ctx context.Context, key string, off int64, r io.Reader) (int64, error)
	// Commit durably and atomically makes the first size bytes of the upload
	// object at src visible as dst, and removes src. Bytes past size (a torn
	// tail left by a failed Append) never reach dst; an object shorter than
	// size is an error. If dst exists it is replaced (contents are identical
	// for content-addressed keys).
	Commit(ctx context.Context, src, dst string, size int64) error
}

// IsNotExist reports whether err means a missing object.
func IsNotExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist)
}

// readAttemptKey carries the read attempt number in a context.
type readAttemptKey struct{}

// WithReadAttempt marks a read as the nth attempt (0 is the first). A
// reader that found the bytes of one copy wrong (storage/crypt's
// authentication) opens again with the next attempt number, and a backend
// that keeps several copies (storage/mirror) then serves another copy.
func WithReadAttempt(ctx context.Context, n int) context.Context {
	return context.WithValue(ctx, readAttemptKey{}, n)
}

// ReadAttempt returns the attempt number set by WithReadAttempt (0 if none).
func ReadAttempt(ctx context.Context) int {
	n, _ := ctx.Value(readAttemptKey{}).(int)
	return n
}

// Scrubber is implemented by backends that can check every stored copy of
// an object and repair a bad copy from a good one (storage/mirror, and the
// decorators that pass scrubbing down: storage/shard, storage/crypt).
type Scrubber interface {
	// ScrubObject runs check on the bytes of every copy of key (as the
	// caller of this backend would read them from offset 0); check returns
	// nil if they are right. Bad or missing copies are rewritten from a good
	// one when one exists.
	ScrubObject(ctx context.Context, key string, check func(io.Reader) error) (ScrubResult, error)
}

// ScrubResult is what ScrubObject found for one object.
type ScrubResult struct {
	Copies   int      `json:"copies"`             // copies looked at
	Good     int      `json:"good"`               // copies whose bytes are right
	Missing  []string `json:"missing,omitempty"`  // names of copies without the object
	Corrupt  []string `json:"corrupt,omitempty"`  // names of copies with wrong bytes
	Repaired []string `json:"repaired,omitempty"` // names of copies rewritten from a good one
	Errors   []string `json:"errors,omitempty"`   // copies that could not be read (backend down)
}

// Merge adds r2's findings to r.
func (r *ScrubResult) Merge(r2 ScrubResult) {
	r.Copies += r2.Copies
	r.Good += r2.Good
	r.Missing = append(r.Missing, r2.Missing...)
	r.Corrupt = append(r.Corrupt, r2.Corrupt...)
	r.Repaired = append(r.Repaired, r2.Repaired...)
	r.Errors = append(r.Errors, r2.Errors...)
}
