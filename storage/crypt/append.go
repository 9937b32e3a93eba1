package crypt

import (
	"bufio"
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
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

// tailFlag marks the additional data of a tail copy (segments use 0 and 1).
const tailFlag = 2

func tailKey(key string) string { return key + ".tail" }

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
	var last []byte // the final segment's plaintext
	var lastIdx uint32
	var n int64
	pr, pw := io.Pipe()
	go func() {
		var err error
		bw := bufio.NewWriterSize(pw, 1<<20)
		if off == 0 {
			_, err = bw.Write(hb)
		}
		s := newSealer(bw, aead, hb, uint32(idx))
		if err == nil {
			_, err = s.Write(prefix)
		}
		if err == nil {
			n, err = io.Copy(s, r)
		}
		if err == nil {
			last, lastIdx = bytes.Clone(s.buf), s.idx
			err = s.Close()
		}
		if err == nil {
			err = bw.Flush()
		}
		pw.CloseWithError(err)
	}()
	stored, err := b.app.Append(ctx, key, start, pr)
	pr.CloseWithError(io.ErrClosedPipe)
	if err != nil {
		if newKey != nil {
			b.Keys.forget(ctx, *newKey) // the upload starts again at 0 with a new key
		}
		return 0, err
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
	// Written like upload data (no flush): it must survive a killed process,
	// not a power loss (after which an upload may fail anyway, see
	// stowage.Appender). A copy torn by a kill fails to authenticate, and
	// then the upload object itself holds the bytes: the Append that came
	// before this write completed.
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
	if err := b.app.Commit(ctx, src, dst, sealedSize(size)); err != nil {
		return err
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
	if !strings.HasPrefix(key, stowage.UploadPrefix("")) {
		return nil
	}
	if err := b.Inner.Delete(ctx, tailKey(key)); err != nil && !stowage.IsNotExist(err) {
		return err
	}
	return nil
}
