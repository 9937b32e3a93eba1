// Package crypt is a stowage.Backend that encrypts everything it stores in
// another Backend (envelope encryption), so objects are encrypted before they
// leave the process, on a plain disk as on any object store.
//
// Object layout (see docs/encryption.md):
//
//	header   "STWC2" | data key id (16 bytes) | u32 segment size (65536)
//	segments one per 64 KiB of plaintext: nonce (12 random bytes) |
//	         AES-256-GCM ciphertext | tag (16 bytes). Segment i is
//	         authenticated with header | u32 i | final flag as additional
//	         data. Every object ends with a final segment shorter than 64 KiB
//	         (possibly empty), and no other segment is final, so truncation,
//	         reordering, and splicing between objects all fail.
//
// Each object has its own random data key. The object's header names it; the
// key itself, wrapped by a key-encryption key (KEK) version, is kept in the
// metadata DB by Manager, so rotating the KEK rewraps rows and never rewrites
// an object. Range reads decrypt only the segments they touch. Nonces are
// random per sealed segment, because an upload's last segment is sealed
// again as it grows: a counter nonce would then repeat.
package crypt

import (
	"bufio"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/stowage/stowage"
)

// SegmentSize is the plaintext size of each sealed segment.
const SegmentSize = 64 << 10

const (
	nonceSize   = 12
	tagSize     = 16
	overhead    = nonceSize + tagSize
	sealedFull  = SegmentSize + overhead
	maxSegments = 1 << 32
)

// Backend encrypts objects stored in Inner.
type Backend struct {
	Inner stowage.Backend
	Keys  *Manager
}

// appendBackend adds the Appender capability when Inner has it.
type appendBackend struct {
	*Backend
	app stowage.Appender
}

// New returns an encrypting Backend over inner. It implements
// stowage.Appender if inner does, so chunked pushes still write once.
func New(inner stowage.Backend, keys *Manager) stowage.Backend {
	b := &Backend{Inner: inner, Keys: keys}
	if app, ok := inner.(stowage.Appender); ok {
		return &appendBackend{b, app}
	}
	return b
}

func gcm(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// sealer seals plaintext into segments as it is written.
type sealer struct {
	aead cipher.AEAD
	hb   []byte // header bytes
	idx  uint32
	buf  []byte // plaintext of the current segment
	out  []byte
	ad   []byte
	w    io.Writer
}

func newSealer(w io.Writer, aead cipher.AEAD, hb []byte, idx uint32) *sealer {
	return &sealer{aead: aead, hb: hb, idx: idx, w: w, buf: make([]byte, 0, SegmentSize),
		out: make([]byte, 0, sealedFull), ad: make([]byte, 0, len(hb)+5)}
}

// Write buffers plaintext and seals every segment that fills up (as not
// final: the final segment is always the short one sealed by Close).
func (s *sealer) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		c := copy(s.buf[len(s.buf):SegmentSize], p)
		s.buf = s.buf[:len(s.buf)+c]
		p = p[c:]
		if len(s.buf) == SegmentSize {
			if err := s.seal(false); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (s *sealer) seal(final bool) error {
	if uint64(s.idx) >= maxSegments-1 {
		return fmt.Errorf("object too large to encrypt (over 256 TiB)")
	}
	out := s.out[:nonceSize]
	if _, err := rand.Read(out); err != nil {
		return err
	}
	out = s.aead.Seal(out, out[:nonceSize], s.buf, segmentAD(s.ad[:0], s.hb, s.idx, final))
	if _, err := s.w.Write(out); err != nil {
		return err
	}
	s.idx++
	s.buf = s.buf[:0]
	return nil
}

// Close seals the final segment.
func (s *sealer) Close() error { return s.seal(true) }

func segmentAD(dst, hb []byte, idx uint32, final bool) []byte {
	dst = append(dst, hb...)
	dst = binary.BigEndian.AppendUint32(dst, idx)
	if final {
		return append(dst, 1)
	}
	return append(dst, 0)
}

// sealedSize is the stored size of an object of size plaintext bytes.
func sealedSize(size int64) int64 {
	return int64(headerSize) + size + (size/SegmentSize+1)*overhead
}

// plainSize inverts sealedSize.
func plainSize(stored int64) (int64, error) {
	c := stored - int64(headerSize)
	rest := c % sealedFull
	if c < overhead || rest < overhead {
		return 0, fmt.Errorf("%w: the stored size %d is not that of an encrypted object", ErrIntegrity, stored)
	}
	return c/sealedFull*SegmentSize + rest - overhead, nil
}

// segmentOffset is where segment idx starts in the stored object.
func segmentOffset(idx int64) int64 { return int64(headerSize) + idx*sealedFull }

// PrepareDataKey implements stowage.DataKeyPreparer: the next Put of key
// under the returned context seals with the returned data key, whose row
// the caller records (before that Put) in a transaction of its own.
func (b *Backend) PrepareDataKey(ctx context.Context, key string) (context.Context, stowage.DataKey, error) {
	return b.Keys.prepare(ctx, key)
}

// Put seals r segment by segment as it streams into the inner backend.
func (b *Backend) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	id, aead, err := b.Keys.newDataKey(ctx, key)
	if err != nil {
		return err
	}
	hb := (&header{KeyID: id, SegmentSize: SegmentSize}).marshal()
	// Sealed as the inner backend reads (no goroutine, no pipe), in 1 MiB
	// batches: the inner backend writes as it does for plaintext.
	sr := newSealReader(r, aead, hb, 0, hb, nil)
	stored := int64(-1)
	if size >= 0 {
		stored = sealedSize(size)
	}
	prev, hadPrev := b.keyIDAt(ctx, key)
	err = b.Inner.Put(ctx, key, sr, stored)
	if err != nil {
		b.Keys.forget(ctx, id) // nothing was stored under it
		return err
	}
	sr.release()
	if hadPrev {
		b.Keys.replaced(ctx, key, prev, id) // its bytes are gone now
	}
	return nil
}

// keyIDAt returns the data key id in the header of the object stored at key,
// if there is one (false if there is none or it cannot be read now). A write
// reads it before it replaces the object, to forget the key afterwards.
func (b *Backend) keyIDAt(ctx context.Context, key string) ([idSize]byte, bool) {
	rc, err := b.Inner.Open(ctx, key, 0)
	if err != nil {
		return [idSize]byte{}, false
	}
	h, _, err := readHeader(rc)
	rc.Close()
	if err != nil {
		return [idSize]byte{}, false
	}
	return h.KeyID, true
}

// openHeader reads an object's header and returns its bytes and data key.
func (b *Backend) openHeader(ctx context.Context, key string) ([]byte, cipher.AEAD, error) {
	rc, err := b.Inner.Open(ctx, key, 0)
	if err != nil {
		return nil, nil, err
	}
	h, hb, err := readHeader(rc)
	rc.Close()
	if err != nil {
		return nil, nil, integrityError(fmt.Errorf("%s: %w", key, err))
	}
	aead, err := b.Keys.dataKey(ctx, h.KeyID)
	return hb, aead, err
}

// Open decrypts from offset: it starts at the segment holding offset. The
// first segment is opened before Open returns, so a damaged object or an
// unavailable key is an error here, before a response is committed.
func (b *Backend) Open(ctx context.Context, key string, offset int64) (io.ReadCloser, error) {
	var err error
	base := stowage.ReadAttempt(ctx)
	for attempt := 0; attempt < maxReadAttempts; attempt++ {
		// A failed authentication is tried again: from an offset, the header
		// and the data are read through two opens, and an object replaced in
		// between (the same content pushed again) fails once; with several
		// copies (storage/mirror), the next attempt reads another copy.
		var r io.ReadCloser
		if r, err = b.open(stowage.WithReadAttempt(ctx, base+attempt), key, offset); err == nil || !errors.Is(err, ErrIntegrity) {
			return r, err
		}
	}
	return nil, err
}

func (b *Backend) open(ctx context.Context, key string, offset int64) (io.ReadCloser, error) {
	idx := offset / SegmentSize
	var rc io.ReadCloser
	var hb []byte
	var aead cipher.AEAD
	var err error
	if idx == 0 {
		// One stream for the header and the data.
		if rc, err = b.Inner.Open(ctx, key, 0); err != nil {
			return nil, err
		}
		var h header
		if h, hb, err = readHeader(rc); err != nil {
			rc.Close()
			return nil, integrityError(fmt.Errorf("%s: %w", key, err))
		}
		if aead, err = b.Keys.dataKey(ctx, h.KeyID); err != nil {
			rc.Close()
			return nil, err
		}
	} else {
		if hb, aead, err = b.openHeader(ctx, key); err != nil {
			return nil, err
		}
		if rc, err = b.Inner.Open(ctx, key, segmentOffset(idx)); err != nil {
			return nil, err
		}
	}
	r := newReader(key, rc, aead, hb, uint32(idx), int(offset%SegmentSize))
	r.reopen = func(n int, off int64) (io.ReadCloser, error) {
		return b.Inner.Open(stowage.WithReadAttempt(ctx, stowage.ReadAttempt(ctx)+n), key, off)
	}
	if err := r.next(); err != nil {
		rc.Close()
		return nil, err
	}
	return r, nil
}

// reader decrypts segments in order and fails on anything unauthentic.
// It looks one segment ahead: the plaintext of the segment before the final
// one is released only once the final one authenticated too, so a damaged
// end of an object fails the read before the last bytes go out, even for a
// client that stops reading at the size it expects.
type reader struct {
	key     string
	src     *bufio.Reader
	rc      io.Closer
	aead    cipher.AEAD
	hb      []byte
	idx     uint32
	skip    int
	ad      []byte
	plain   []byte // buffer for the current segment's plaintext
	pending []byte // the final segment's plaintext, opened ahead
	out     []byte // decrypted bytes not yet returned
	done    bool
	err     error
	// reopen opens the stored object again at off for read attempt n (nil:
	// no second attempt).
	reopen func(n int, off int64) (io.ReadCloser, error)
}

// newReader starts small: most objects opened are manifests and configs of
// a few KiB, for which a readBuffer and a segment-sized plaintext buffer
// (1.1 MiB to allocate and zero) were most of the cost of a manifest read
// that misses the engine's cache. The buffer grows to readBuffer at the
// first segment that is not the final one (see grow), and the plaintext
// buffer is allocated for a full segment only then.
func newReader(key string, rc io.ReadCloser, aead cipher.AEAD, hb []byte, idx uint32, skip int) *reader {
	return &reader{key: key, src: bufio.NewReaderSize(rc, firstBuffer), rc: rc, aead: aead, hb: hb, idx: idx, skip: skip}
}

// readBuffer is how much of the stored object a reader asks for at once
// (16 segments); firstBuffer is the least that tells whether the first
// segment is the final one (peek).
const (
	readBuffer  = 16 * sealedFull
	firstBuffer = sealedFull + 1
)

// grow gives an object of more than one segment its readBuffer: the small
// first buffer stays underneath until what it holds is read, then reads of
// the object go straight into the large one.
func (r *reader) grow() {
	if r.src.Size() < readBuffer {
		r.src = bufio.NewReaderSize(r.src, readBuffer)
	}
	if r.plain == nil {
		r.plain = make([]byte, 0, SegmentSize)
	}
}

// WriteTo writes the decrypted bytes in writes of up to 1 MiB (16
// segments gathered in one buffer): a response then costs about as many
// write calls as the unencrypted one's sendfile(2) does, not one per 64 KiB.
func (r *reader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	bp := writePool.Get().(*[]byte)
	defer writePool.Put(bp)
	batch := (*bp)[:0]
	flush := func() error {
		for len(batch) > 0 {
			n, err := w.Write(batch)
			total += int64(n)
			batch = batch[n:]
			if err != nil {
				return err
			}
		}
		batch = (*bp)[:0]
		return nil
	}
	for {
		for len(r.out) > 0 {
			if len(batch) == cap(batch) {
				if err := flush(); err != nil {
					return total, err
				}
			}
			n := copy(batch[len(batch):cap(batch)], r.out)
			batch = batch[:len(batch)+n]
			r.out = r.out[n:]
		}
		if r.err != nil || r.done {
			if err := flush(); err != nil {
				return total, err
			}
			return total, r.err
		}
		r.err = r.next()
	}
}

var writePool = sync.Pool{New: func() any { b := make([]byte, 0, batchSegments*SegmentSize); return &b }}

// Read fills p across as many segments as it holds (a 1 MiB buffer gets 16
// segments in one call), so a copy through a large buffer writes in large
// writes. An error after some bytes is returned by the next call.
func (r *reader) Read(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		if len(r.out) == 0 {
			if r.err != nil || r.done {
				break
			}
			if r.err = r.next(); r.err != nil {
				break
			}
			continue
		}
		c := copy(p, r.out)
		r.out, p, n = r.out[c:], p[c:], n+c
	}
	if n > 0 {
		return n, nil
	}
	if r.err != nil {
		return 0, r.err
	}
	return 0, io.EOF
}

// peek returns the next segment's sealed bytes and whether it is the final
// one: a full-size segment is never final (the final one, shorter, always
// follows); anything shorter is final.
func (r *reader) peek() ([]byte, bool, error) {
	b, err := r.src.Peek(sealedFull + 1)
	if err != nil && err != io.EOF {
		return nil, false, err
	}
	if len(b) == sealedFull+1 {
		return b[:sealedFull], false, nil
	}
	if len(b) < overhead || len(b) == sealedFull {
		return nil, false, r.fail("the object ends inside a segment or before its final segment")
	}
	return b, true, nil
}

func (r *reader) open(dst, seg []byte, final bool) ([]byte, error) {
	r.ad = segmentAD(r.ad[:0], r.hb, r.idx, final)
	plain, err := r.aead.Open(dst, seg[:nonceSize], seg[nonceSize:], r.ad)
	if err != nil {
		return nil, r.fail(fmt.Sprintf("segment %d does not authenticate", r.idx))
	}
	r.idx++
	return plain, nil
}

// next opens one segment (and, if the one after it is the final one, that
// one too).
func (r *reader) next() error {
	idx, skip := r.idx, r.skip
	err := r.nextOnce()
	for attempt := 1; err != nil && errors.Is(err, ErrIntegrity) && r.reopen != nil && attempt < maxReadAttempts; attempt++ {
		// Read this segment again from another copy (storage/mirror serves
		// the next copy for the next attempt; elsewhere it fails again).
		rc, oerr := r.reopen(attempt, segmentOffset(int64(idx)))
		if oerr != nil {
			break
		}
		r.rc.Close()
		r.rc, r.idx, r.skip, r.pending, r.done = rc, idx, skip, nil, false
		r.src.Reset(rc)
		err = r.nextOnce()
	}
	return err
}

// maxReadAttempts bounds how many copies a damaged segment is read from.
const maxReadAttempts = 3

func (r *reader) nextOnce() error {
	var plain []byte
	if r.pending != nil {
		plain, r.pending, r.done = r.pending, nil, true
	} else {
		seg, final, err := r.peek()
		if err != nil {
			return err
		}
		if !final {
			r.grow()
			if seg, _, err = r.peek(); err != nil { // the same bytes, now in the large buffer
				return err
			}
		}
		// A final segment without a plaintext buffer (a one-segment
		// object) is opened into one of its own size.
		if plain, err = r.open(r.plain[:0], seg, final); err != nil {
			return err
		}
		r.src.Discard(len(seg))
		r.done = final
		if !final {
			next, nextFinal, err := r.peek()
			if err != nil {
				return err
			}
			if nextFinal {
				if r.pending, err = r.open(make([]byte, 0, len(next)), next, true); err != nil {
					return err
				}
				r.src.Discard(len(next))
			}
		}
	}
	if r.skip > len(plain) {
		return r.fail("offset beyond the end of the object")
	}
	r.out, r.skip = plain[r.skip:], 0
	return nil
}

func (r *reader) fail(what string) error {
	return integrityError(fmt.Errorf("%w: %s: %s", ErrIntegrity, r.key, what))
}

func (r *reader) Close() error { return r.rc.Close() }

// Stat returns the plaintext size (computed from the stored size).
func (b *Backend) Stat(ctx context.Context, key string) (stowage.ObjectInfo, error) {
	oi, err := b.Inner.Stat(ctx, key)
	if err != nil {
		return oi, err
	}
	oi.Size, err = plainSize(oi.Size)
	if err != nil {
		return oi, integrityError(err)
	}
	return oi, nil
}

// Delete removes the object, then its data keys.
func (b *Backend) Delete(ctx context.Context, key string) error {
	if err := b.Inner.Delete(ctx, key); err != nil {
		return err
	}
	return b.Keys.deleted(ctx, key)
}

// List reports plaintext sizes (stored sizes for objects whose size is not
// that of an encrypted object, such as an upload's tail copy).
func (b *Backend) List(ctx context.Context, prefix string, fn func(stowage.ObjectInfo) error) error {
	return b.Inner.List(ctx, prefix, func(oi stowage.ObjectInfo) error {
		if size, err := plainSize(oi.Size); err == nil {
			oi.Size = size
		}
		return fn(oi)
	})
}

// ScrubObject checks every stored copy of key by decrypting it and handing
// the plaintext to check; it passes down to an inner Scrubber (a mirror),
// which rewrites bad copies from good ones.
func (b *Backend) ScrubObject(ctx context.Context, key string, check func(io.Reader) error) (stowage.ScrubResult, error) {
	raw := func(r io.Reader) error {
		h, hb, err := readHeader(r)
		if err != nil {
			return err
		}
		aead, err := b.Keys.dataKey(ctx, h.KeyID)
		if err != nil {
			return err
		}
		rd := newReader(key, io.NopCloser(r), aead, hb, 0, 0)
		if err := rd.next(); err != nil {
			return err
		}
		return check(rd)
	}
	// A read error from the storage underneath, a key outage or the end of
	// ctx means the copy could not be checked: an error, never "corrupt".
	return stowage.ScrubObjectOf(ctx, b.Inner, key, raw)
}
