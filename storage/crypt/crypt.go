// Package crypt is a stowage.Backend that encrypts everything it stores in
// another Backend (envelope encryption), so objects are encrypted before they
// leave the process, on a plain disk as on any object store.
//
// Object layout:
//
//	header   magic "STWC1", key id, key version, wrapped data key, segment
//	         size, nonce prefix (see header.go)
//	segments AES-256-GCM over fixed-size plaintext segments; segment i is
//	         sealed with nonce = prefix(7) || final(1) || i(4) and the header
//	         as additional data, so truncation, reordering, splicing between
//	         objects and header tampering all fail authentication.
//
// Each object has its own random data key, wrapped (AES-256-GCM) by a
// key-encryption key from a Keyring, identified by id and version, so a key
// rotation rewraps data keys without rewriting objects. A Range read
// decrypts only the segments it touches.
package crypt

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/stowage/stowage"
)

// SegmentSize is the plaintext size of each sealed segment.
const SegmentSize = 64 << 10

const tagSize = 16

// ErrIntegrity means stored bytes failed authentication: they were changed,
// truncated or moved. Nothing of such an object is returned.
var ErrIntegrity = errors.New("encrypted object failed its integrity check")

// ErrKeyUnavailable means the key-encryption key needed is not available.
var ErrKeyUnavailable = errors.New("encryption key unavailable")

// Keyring supplies key-encryption keys (32 bytes each).
type Keyring interface {
	// Current returns the key new objects are wrapped with.
	Current() (id string, version uint32, key []byte, err error)
	// Key returns a specific key version; ErrKeyUnavailable if it is not
	// available (revoked, or the KMS cannot be reached).
	Key(id string, version uint32) ([]byte, error)
}

// Backend encrypts objects stored in Inner.
type Backend struct {
	Inner stowage.Backend
	Keys  Keyring
}

var _ stowage.Backend = (*Backend)(nil)

// New returns an encrypting Backend over inner.
func New(inner stowage.Backend, keys Keyring) *Backend { return &Backend{Inner: inner, Keys: keys} }

func gcm(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Put seals r segment by segment as it streams into the inner backend.
func (b *Backend) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	id, version, kek, err := b.Keys.Current()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrKeyUnavailable, err)
	}
	dek := make([]byte, 32)
	if _, err := rand.Read(dek); err != nil {
		return err
	}
	h := header{KeyID: id, KeyVersion: version, SegmentSize: SegmentSize}
	if _, err := rand.Read(h.NoncePrefix[:]); err != nil {
		return err
	}
	if h.WrappedKey, err = wrap(kek, dek, id, version); err != nil {
		return err
	}
	aead, err := gcm(dek)
	if err != nil {
		return err
	}
	hb := h.marshal()
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(seal(pw, r, aead, &h, hb)) }()
	csize := int64(-1)
	if size >= 0 {
		csize = int64(len(hb)) + ciphertextSize(size)
	}
	err = b.Inner.Put(ctx, key, pr, csize)
	pr.CloseWithError(err) // unblock the sealer if the inner Put stopped early
	return err
}

// seal writes the header and the sealed segments of r to w.
func seal(w io.Writer, r io.Reader, aead cipher.AEAD, h *header, hb []byte) error {
	if _, err := w.Write(hb); err != nil {
		return err
	}
	buf := make([]byte, SegmentSize+1) // one byte more, to know whether a segment is the last
	out := make([]byte, 0, SegmentSize+tagSize)
	n, err := io.ReadFull(r, buf)
	for idx := uint32(0); ; idx++ {
		final := err == io.EOF || err == io.ErrUnexpectedEOF
		if err != nil && !final {
			return err
		}
		seg := buf[:min(n, SegmentSize)]
		out = aead.Seal(out[:0], h.nonce(idx, final), seg, hb)
		if _, werr := w.Write(out); werr != nil {
			return werr
		}
		if final {
			return nil
		}
		// Carry the extra byte over as the start of the next segment.
		buf[0] = buf[SegmentSize]
		var m int
		m, err = io.ReadFull(r, buf[1:])
		n = m + 1
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
	}
}

// ciphertextSize is the size of the segments for a plaintext of size bytes.
func ciphertextSize(size int64) int64 {
	segs := size/SegmentSize + 1 // a final segment always exists, maybe empty
	if size > 0 && size%SegmentSize == 0 {
		segs = size / SegmentSize
	}
	return size + segs*tagSize
}

// plaintextSize inverts ciphertextSize.
func plaintextSize(csize int64) (int64, error) {
	full := int64(SegmentSize + tagSize)
	segs := csize / full
	rest := csize % full
	if rest == 0 {
		if segs == 0 {
			return 0, ErrIntegrity
		}
		return segs * SegmentSize, nil
	}
	if rest < tagSize {
		return 0, ErrIntegrity
	}
	return segs*SegmentSize + rest - tagSize, nil
}

// openHeader reads and checks an object's header and returns the data key's AEAD.
func (b *Backend) openHeader(ctx context.Context, key string) (header, []byte, cipher.AEAD, error) {
	rc, err := b.Inner.Open(ctx, key, 0)
	if err != nil {
		return header{}, nil, nil, err
	}
	defer rc.Close()
	h, hb, err := readHeader(rc)
	if err != nil {
		return h, nil, nil, err
	}
	kek, err := b.Keys.Key(h.KeyID, h.KeyVersion)
	if err != nil {
		return h, nil, nil, fmt.Errorf("%w: key %s version %d: %v", ErrKeyUnavailable, h.KeyID, h.KeyVersion, err)
	}
	dek, err := unwrap(kek, h.WrappedKey, h.KeyID, h.KeyVersion)
	if err != nil {
		return h, nil, nil, err
	}
	aead, err := gcm(dek)
	return h, hb, aead, err
}

// Open decrypts from offset: it starts at the segment holding offset.
func (b *Backend) Open(ctx context.Context, key string, offset int64) (io.ReadCloser, error) {
	h, hb, aead, err := b.openHeader(ctx, key)
	if err != nil {
		return nil, err
	}
	idx := offset / SegmentSize
	rc, err := b.Inner.Open(ctx, key, int64(len(hb))+idx*(SegmentSize+tagSize))
	if err != nil {
		return nil, err
	}
	return &reader{src: rc, aead: aead, h: h, hb: hb, idx: uint32(idx), skip: int(offset % SegmentSize),
		buf: make([]byte, SegmentSize+tagSize)}, nil
}

// reader decrypts segments in order and fails on anything unauthentic.
type reader struct {
	src  io.ReadCloser
	aead cipher.AEAD
	h    header
	hb   []byte
	idx  uint32
	skip int
	buf  []byte
	out  []byte // decrypted bytes not yet returned
	done bool
	err  error
	// started is set once a segment was read.
	started bool
}

func (r *reader) Read(p []byte) (int, error) {
	for len(r.out) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.done {
			return 0, io.EOF
		}
		r.err = r.next()
	}
	n := copy(p, r.out)
	r.out = r.out[n:]
	return n, nil
}

// next reads and opens one segment. A full segment may or may not be the
// last; it opens with the final flag only if it is, so a truncated object
// (cut at a segment boundary) fails.
func (r *reader) next() error {
	n, err := io.ReadFull(r.src, r.buf)
	if err == io.EOF && n == 0 {
		if !r.started {
			// Opened exactly at the end of an object whose size is a
			// multiple of the segment size: nothing to read.
			r.done = true
			return nil
		}
		return fmt.Errorf("%w: the object ends before its final segment", ErrIntegrity)
	}
	r.started = true
	if err != nil && err != io.ErrUnexpectedEOF {
		return err
	}
	seg := r.buf[:n]
	var plain []byte
	var openErr error
	if n == len(r.buf) {
		if plain, openErr = r.aead.Open(r.out[:0], r.h.nonce(r.idx, false), seg, r.hb); openErr != nil {
			plain, openErr = r.aead.Open(r.out[:0], r.h.nonce(r.idx, true), seg, r.hb)
			r.done = openErr == nil
		}
	} else {
		plain, openErr = r.aead.Open(r.out[:0], r.h.nonce(r.idx, true), seg, r.hb)
		r.done = true
	}
	if openErr != nil {
		return fmt.Errorf("%w (segment %d)", ErrIntegrity, r.idx)
	}
	r.idx++
	if r.skip > len(plain) {
		return fmt.Errorf("%w: offset beyond the end of the object", ErrIntegrity)
	}
	r.out, r.skip = plain[r.skip:], 0
	return nil
}

func (r *reader) Close() error { return r.src.Close() }

// Stat returns the plaintext size.
func (b *Backend) Stat(ctx context.Context, key string) (stowage.ObjectInfo, error) {
	oi, err := b.Inner.Stat(ctx, key)
	if err != nil {
		return oi, err
	}
	rc, err := b.Inner.Open(ctx, key, 0)
	if err != nil {
		return oi, err
	}
	defer rc.Close()
	_, hb, err := readHeader(rc)
	if err != nil {
		return oi, err
	}
	size, err := plaintextSize(oi.Size - int64(len(hb)))
	oi.Size = size
	return oi, err
}

// Delete passes through.
func (b *Backend) Delete(ctx context.Context, key string) error { return b.Inner.Delete(ctx, key) }

// List reports plaintext sizes (it reads each object's header: List is for
// maintenance walks, not hot paths).
func (b *Backend) List(ctx context.Context, prefix string, fn func(stowage.ObjectInfo) error) error {
	return b.Inner.List(ctx, prefix, func(oi stowage.ObjectInfo) error {
		if rc, err := b.Inner.Open(ctx, oi.Key, 0); err == nil {
			_, hb, herr := readHeader(rc)
			rc.Close()
			if herr == nil {
				if size, err := plaintextSize(oi.Size - int64(len(hb))); err == nil {
					oi.Size = size
				}
			}
		}
		return fn(oi)
	})
}

// wrap seals a data key with a key-encryption key.
func wrap(kek, dek []byte, id string, version uint32) ([]byte, error) {
	aead, err := gcm(kek)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return aead.Seal(nonce, nonce, dek, wrapAAD(id, version)), nil
}

func unwrap(kek, wrapped []byte, id string, version uint32) ([]byte, error) {
	aead, err := gcm(kek)
	if err != nil {
		return nil, err
	}
	if len(wrapped) < aead.NonceSize() {
		return nil, ErrIntegrity
	}
	dek, err := aead.Open(nil, wrapped[:aead.NonceSize()], wrapped[aead.NonceSize():], wrapAAD(id, version))
	if err != nil {
		return nil, fmt.Errorf("%w: the object's data key does not open with key %s version %d: a wrong key, or a damaged header", ErrKeyUnavailable, id, version)
	}
	return dek, nil
}

func wrapAAD(id string, version uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte("stowage-dek:"+id+":"), version)
}
