package crypt

import (
	"bytes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"
)

// batchSegments is how many segments a sealReader seals per read of its
// source: 1 MiB of plaintext, so the source (an HTTP body, through the
// digest check) is read in 1 MiB pieces and the inner backend gets sealed
// bytes in writes of about that size, as it gets plaintext unencrypted.
const batchSegments = 16

type sealBufs struct{ plain, out []byte }

var sealPool = sync.Pool{New: func() any {
	return &sealBufs{plain: make([]byte, batchSegments*SegmentSize), out: make([]byte, 0, headerSize+batchSegments*sealedFull)}
}}

// sealReader is the sealed form of src, sealed as the inner backend reads
// it: no goroutine or pipe between the two. It starts with pre (the header
// of a new object), then seals prefix (plaintext an Append seals again)
// followed by src, in the same segments as sealer: full segments not final,
// then one short final segment (possibly empty).
type sealReader struct {
	src    io.Reader
	aead   cipher.AEAD
	hb     []byte
	idx    uint32
	prefix []byte
	bufs   *sealBufs
	out    []byte // sealed bytes not yet returned
	ad     []byte
	n      int64 // plaintext bytes read from src
	// last and lastIdx are the final segment's plaintext and index, once
	// it is sealed (done).
	last    []byte
	lastIdx uint32
	done    bool
	err     error
}

func newSealReader(src io.Reader, aead cipher.AEAD, hb []byte, idx uint32, pre, prefix []byte) *sealReader {
	s := &sealReader{src: src, aead: aead, hb: hb, idx: idx, prefix: prefix, bufs: sealPool.Get().(*sealBufs),
		ad: make([]byte, 0, len(hb)+5)}
	s.out = append(s.bufs.out[:0], pre...)
	return s
}

func (s *sealReader) Read(p []byte) (int, error) {
	for len(s.out) == 0 {
		if s.err != nil {
			return 0, s.err
		}
		if s.done {
			return 0, io.EOF
		}
		s.err = s.fill()
	}
	n := copy(p, s.out)
	s.out = s.out[n:]
	return n, nil
}

// fill reads the next batch of plaintext and seals it into out.
func (s *sealReader) fill() error {
	plain := s.bufs.plain
	k := copy(plain, s.prefix)
	s.prefix = nil
	m, err := io.ReadFull(s.src, plain[k:])
	s.n += int64(m)
	plain = plain[:k+m]
	final := false
	switch {
	case err == nil:
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		final = true
	default:
		return err
	}
	out := s.bufs.out[:0]
	for len(plain) >= SegmentSize {
		if out, err = s.seal(out, plain[:SegmentSize], false); err != nil {
			return err
		}
		plain = plain[SegmentSize:]
	}
	if final {
		s.last, s.lastIdx = bytes.Clone(plain), s.idx
		if out, err = s.seal(out, plain, true); err != nil {
			return err
		}
		s.done = true
	}
	s.out = out
	return nil
}

func (s *sealReader) seal(out, plain []byte, final bool) ([]byte, error) {
	if uint64(s.idx) >= maxSegments-1 {
		return nil, fmt.Errorf("object too large to encrypt (over 256 TiB)")
	}
	start := len(out)
	out = out[:start+nonceSize]
	nonce := out[start:]
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out = s.aead.Seal(out, nonce, plain, segmentAD(s.ad[:0], s.hb, s.idx, final))
	s.idx++
	return out, nil
}

// release returns the buffers to the pool; s is not used after.
func (s *sealReader) release() {
	s.out = nil
	sealPool.Put(s.bufs)
	s.bufs = nil
}
