package crypt

import (
	"bufio"
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/stowage/stowage"
)

// Uploads that arrive in chunks (Appender).
//
// The upload object is kept in the final encrypted form as it grows: full
// segments sealed as not final, then a short final segment. An Append at
// offset off seals the segment holding off again (its first off%64KiB bytes
// plus the new data) and hands everything from that segment on to the inner
// Appender, so a chunked push still writes each byte once, plus at most one
// segment per chunk; Commit is the inner Commit (a rename on a disk).
//
// Sealing that segment again overwrites bytes that were acknowledged. So
// that a crash in the middle (kill -9, power loss) cannot lose them, every
// Append first leaves a copy of its final segment's plaintext, sealed with
// the upload's data key, in a small side object (<key>.tail); a resumed
// Append or a Commit that finds the segment torn takes the bytes from there.
//
// The copy always holds the segment an Append in progress seals again (it
// is written before that Append touches the object), or, once an Append
// completed, the final segment it left. So reads of an upload object (Open,
// Stat) take the segments before the copy's from the object and the copy's
// segment from the copy: they see the bytes of the last Append that
// completed, at least, whatever a stalled writer's Append in progress or a
// failed one left after them (the engine reads a session's acknowledged
// bytes while an earlier writer that lost its lease may still append).

// tailFlag marks the additional data of a tail copy (segments use 0 and 1).
const tailFlag = 2

func tailKey(key string) string { return key + ".tail" }

// uploadsPrefix is where upload objects live (stowage.UploadPrefix(id) for
// every id; UploadPrefix("") is "uploads//", which no key starts with).
const uploadsPrefix = "uploads/"

// Append writes r at plaintext offset off of the upload object key.
func (b *appendBackend) Append(ctx context.Context, key string, off int64, r io.Reader) (int64, error) {
	idx := off / SegmentSize
	var hb, prefix []byte
	var aead cipher.AEAD
	var newKey *[idSize]byte
	start := segmentOffset(idx)
	if off == 0 {
		id, a, err := b.Keys.newDataKey(ctx, key)
		if err != nil {
			return 0, err
		}
		newKey = &id
		hb, aead, start = (&header{KeyID: id, SegmentSize: SegmentSize}).marshal(), a, 0
	} else {
		var err error
		if hb, aead, err = b.openHeader(ctx, key); err != nil {
			return 0, fmt.Errorf("resume upload: %w", err)
		}
		var fromCopy bool
		if prefix, fromCopy, err = b.prefixAt(ctx, key, hb, aead, off); err != nil {
			return 0, err
		}
		if !fromCopy && len(prefix) > 0 {
			// The copy was torn (a kill while it was written): write it
			// again before the segment is sealed again.
			if err := b.saveTail(ctx, key, hb, aead, uint32(idx), prefix); err != nil {
				return 0, err
			}
		}
	}
	var pre []byte
	if off == 0 {
		pre = hb
	}
	// Sealed as the inner Appender reads, in 1 MiB batches (sealreader.go).
	sr := newSealReader(r, aead, hb, uint32(idx), pre, prefix)
	stored, err := b.app.Append(ctx, key, start, sr)
	if err != nil {
		if newKey != nil {
			b.Keys.forget(ctx, *newKey) // the upload starts again at 0 with a new key
		}
		return 0, err
	}
	last, lastIdx, n := sr.last, sr.lastIdx, sr.n
	sr.release()
	if !sr.done {
		return 0, fmt.Errorf("crypt: upload %s: the append stopped before the end of its data", key)
	}
	size, err := plainSize(stored)
	if err != nil {
		return 0, integrityError(err)
	}
	if size != off+n {
		return 0, fmt.Errorf("crypt: upload %s holds %d bytes after an append, want %d", key, size, off+n)
	}
	if err := b.saveTail(ctx, key, hb, aead, lastIdx, last); err != nil {
		return 0, fmt.Errorf("save the upload's last segment: %w", err)
	}
	return size, nil
}

// saveTail stores the copy of the final segment's plaintext (segment idx).
func (b *appendBackend) saveTail(ctx context.Context, key string, hb []byte, aead cipher.AEAD, idx uint32, plain []byte) error {
	out := binary.BigEndian.AppendUint32(make([]byte, 0, 4+overhead+len(plain)), idx)
	nonce := make([]byte, nonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	out = append(out, nonce...)
	out = aead.Seal(out, nonce, plain, tailAD(hb, idx))
	// Written through the inner Appender, so the copy is durable when this
	// returns, as the bytes it copies are (stowage.Appender). A copy torn by
	// a crash (kill or power loss) while it was written fails to
	// authenticate, and then the upload object itself holds the bytes: this
	// write comes either after the Append into the object completed, or,
	// at the start of an Append, before it touched the object.
	_, err := b.app.Append(ctx, tailKey(key), 0, bytes.NewReader(out))
	return err
}

func tailAD(hb []byte, idx uint32) []byte {
	ad := binary.BigEndian.AppendUint32(bytes.Clone(hb), idx)
	return append(ad, tailFlag)
}

// loadTail returns the tail copy's segment index and plaintext.
func (b *appendBackend) loadTail(ctx context.Context, key string, hb []byte, aead cipher.AEAD) (uint32, []byte, error) {
	rc, err := b.Inner.Open(ctx, tailKey(key), 0)
	if err != nil {
		return 0, nil, err
	}
	raw, err := io.ReadAll(io.LimitReader(rc, sealedFull+4))
	rc.Close()
	if err != nil {
		return 0, nil, err
	}
	if len(raw) < 4+overhead {
		return 0, nil, fmt.Errorf("%w: the upload's tail copy is too short", ErrIntegrity)
	}
	idx := binary.BigEndian.Uint32(raw)
	plain, err := aead.Open(nil, raw[4:4+nonceSize], raw[4+nonceSize:], tailAD(hb, idx))
	if err != nil {
		return 0, nil, fmt.Errorf("%w: the upload's tail copy does not authenticate", ErrIntegrity)
	}
	return idx, plain, nil
}

// prefixAt returns the plaintext of the segment holding off, from its start
// to off: from the tail copy if it holds that segment, else from the upload
// object (where the segment is full, or the final one).
func (b *appendBackend) prefixAt(ctx context.Context, key string, hb []byte, aead cipher.AEAD, off int64) (prefix []byte, fromCopy bool, err error) {
	idx, w := off/SegmentSize, int(off%SegmentSize)
	if w == 0 {
		return nil, false, nil
	}
	if ti, plain, err := b.loadTail(ctx, key, hb, aead); err == nil && int64(ti) == idx && len(plain) >= w {
		return plain[:w], true, nil
	}
	rc, err := b.Inner.Open(ctx, key, segmentOffset(idx))
	if err == nil {
		r := newReader(key, rc, aead, hb, uint32(idx), 0)
		err = r.next()
		rc.Close()
		if err == nil && len(r.out) >= w {
			return bytes.Clone(r.out[:w]), false, nil
		}
	}
	return nil, false, &stowage.Error{Code: stowage.CodeBlobUploadInvalid, Err: err,
		Message: fmt.Sprintf("the upload's stored data does not reach offset %d (it was cut short, e.g. by a crash before it was durable); restart the upload", off)}
}

// Commit makes sure the upload's first size bytes end with an authentic
// final segment (sealing it again from the tail copy if an interrupted
// Append tore it), moves the data key record, and commits the object.
func (b *appendBackend) Commit(ctx context.Context, src, dst string, size int64) error {
	hb, aead, err := b.openHeader(ctx, src)
	if err != nil {
		return err
	}
	idx := size / SegmentSize
	if !b.endsAt(ctx, src, hb, aead, size) {
		prefix, _, err := b.prefixAt(ctx, src, hb, aead, size)
		if err != nil {
			return err
		}
		var sealed bytes.Buffer
		s := newSealer(&sealed, aead, hb, uint32(idx))
		s.Write(prefix)
		if err := s.Close(); err != nil {
			return err
		}
		if _, err := b.app.Append(ctx, src, segmentOffset(idx), &sealed); err != nil {
			return err
		}
		if !b.endsAt(ctx, src, hb, aead, size) {
			return stowage.Errorf(stowage.CodeBlobUploadInvalid, "the upload's stored data does not end at %d bytes; restart the upload", size)
		}
	}
	// Move the key record first: if the commit below is cut short, the
	// record stays with the object that holds it.
	if err := b.Keys.moved(ctx, src, dst); err != nil {
		return err
	}
	// The key of an object this commit replaces (the same blob pushed again
	// after a crash left it stored but unrecorded) is forgotten once the
	// commit succeeded, never before: until then its bytes are still at dst.
	prev, hadPrev := b.keyIDAt(ctx, dst)
	if err := b.app.Commit(ctx, src, dst, sealedSize(size)); err != nil {
		return err
	}
	if hadPrev {
		h, err := parseHeader(hb)
		if err == nil {
			b.Keys.replaced(ctx, dst, prev, h.KeyID)
		}
	}
	b.Inner.Delete(ctx, tailKey(src))
	return nil
}

// endsAt reports whether the object's segment holding size is an authentic
// final segment of exactly the right length.
func (b *appendBackend) endsAt(ctx context.Context, key string, hb []byte, aead cipher.AEAD, size int64) bool {
	idx := size / SegmentSize
	rc, err := b.Inner.Open(ctx, key, segmentOffset(idx))
	if err != nil {
		return false
	}
	last := make([]byte, size%SegmentSize+overhead)
	_, err = io.ReadFull(rc, last)
	rc.Close()
	if err != nil {
		return false
	}
	_, err = aead.Open(nil, last[:nonceSize], last[nonceSize:], segmentAD(nil, hb, uint32(idx), true))
	return err == nil
}

// Delete removes an upload object with its tail copy. (Registry deletes
// upload data by listing its prefix, which includes the copy; this covers
// direct deletes of an upload key.)
func (b *appendBackend) Delete(ctx context.Context, key string) error {
	if err := b.Backend.Delete(ctx, key); err != nil {
		return err
	}
	if !strings.HasPrefix(key, uploadsPrefix) {
		return nil
	}
	if err := b.Inner.Delete(ctx, tailKey(key)); err != nil && !stowage.IsNotExist(err) {
		return err
	}
	return nil
}

// isUploadData reports whether key is an upload object (not its tail copy).
func isUploadData(key string) bool {
	return strings.HasPrefix(key, uploadsPrefix) && !strings.HasSuffix(key, ".tail")
}

// Open reads an upload object as its tail copy describes it (see the top of
// this file); other objects as Backend.Open does.
func (b *appendBackend) Open(ctx context.Context, key string, offset int64) (io.ReadCloser, error) {
	if !isUploadData(key) {
		return b.Backend.Open(ctx, key, offset)
	}
	var err error
	for attempt := 0; attempt < maxReadAttempts; attempt++ {
		// Read again if the copy changed between its read and the object's
		// (an Append that completed meanwhile).
		var r io.ReadCloser
		if r, err = b.openUpload(ctx, key, offset); err == nil || !errors.Is(err, ErrIntegrity) {
			return r, err
		}
	}
	return nil, err
}

func (b *appendBackend) openUpload(ctx context.Context, key string, offset int64) (io.ReadCloser, error) {
	hb, aead, err := b.openHeader(ctx, key)
	if err != nil {
		return nil, err
	}
	ti, tail, err := b.loadTail(ctx, key, hb, aead)
	if err != nil {
		// No authentic copy: the object's first Append, or a copy torn
		// after the Append into the object completed. The object is whole.
		return b.Backend.open(ctx, key, offset)
	}
	if offset > int64(ti)*SegmentSize+int64(len(tail)) {
		return nil, integrityError(fmt.Errorf("%w: %s: offset beyond the end of the upload", ErrIntegrity, key))
	}
	idx := uint32(offset / SegmentSize)
	u := &uploadReader{key: key, aead: aead, hb: hb, idx: idx, last: ti, tail: tail, skip: int(offset % SegmentSize)}
	if idx < ti {
		rc, err := b.Inner.Open(ctx, key, segmentOffset(int64(idx)))
		if err != nil {
			return nil, err
		}
		u.rc, u.src = rc, bufio.NewReaderSize(io.LimitReader(rc, int64(ti-idx)*sealedFull), readBuffer)
		u.seg, u.plain = make([]byte, sealedFull), make([]byte, 0, SegmentSize)
	}
	if err := u.next(); err != nil {
		u.Close()
		return nil, err
	}
	return u, nil
}

// Stat of an upload object gives the size Open reads (see the top of this
// file); other objects' as Backend.Stat does.
func (b *appendBackend) Stat(ctx context.Context, key string) (stowage.ObjectInfo, error) {
	if !isUploadData(key) {
		return b.Backend.Stat(ctx, key)
	}
	oi, err := b.Inner.Stat(ctx, key)
	if err != nil {
		return oi, err
	}
	if hb, aead, err := b.openHeader(ctx, key); err == nil {
		if ti, tail, err := b.loadTail(ctx, key, hb, aead); err == nil {
			oi.Size = int64(ti)*SegmentSize + int64(len(tail))
			return oi, nil
		}
	}
	if oi.Size, err = plainSize(oi.Size); err != nil {
		return oi, integrityError(err)
	}
	return oi, nil
}

// uploadReader reads an upload object's full segments before segment last
// from the object, then segment last's plaintext from the tail copy.
type uploadReader struct {
	key       string
	rc        io.Closer
	src       io.Reader
	aead      cipher.AEAD
	hb        []byte
	idx, last uint32
	tail      []byte
	skip      int
	seg       []byte
	plain     []byte
	out       []byte
	done      bool
	err       error
}

func (u *uploadReader) next() error {
	var plain []byte
	if u.idx == u.last {
		plain, u.done = u.tail, true
	} else {
		if _, err := io.ReadFull(u.src, u.seg); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return integrityError(fmt.Errorf("%w: %s: the upload ends before segment %d, which its tail copy holds", ErrIntegrity, u.key, u.last))
			}
			return err
		}
		var err error
		if plain, err = u.aead.Open(u.plain[:0], u.seg[:nonceSize], u.seg[nonceSize:], segmentAD(nil, u.hb, u.idx, false)); err != nil {
			return integrityError(fmt.Errorf("%w: %s: segment %d does not authenticate", ErrIntegrity, u.key, u.idx))
		}
		u.idx++
	}
	u.out, u.skip = plain[u.skip:], 0
	return nil
}

func (u *uploadReader) Read(p []byte) (int, error) {
	for len(u.out) == 0 {
		if u.err != nil {
			return 0, u.err
		}
		if u.done {
			return 0, io.EOF
		}
		u.err = u.next()
	}
	n := copy(p, u.out)
	u.out = u.out[n:]
	return n, nil
}

func (u *uploadReader) Close() error {
	if u.rc == nil {
		return nil
	}
	return u.rc.Close()
}
