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
// it. It starts with pre (the header of a new object), then seals prefix
// (plaintext an Append seals again) followed by src, in the same segments
// as sealer: full segments not final, then one short final segment
// (possibly empty).
//
// Sealing runs one batch ahead on a goroutine of its own: while batch k is
// sealed there, the reader's caller reads batch k+1 from src and writes
// sealed batch k-1 to the inner backend. Sealing in the caller's goroutine
// made a single push's path read, seal and write one after the other
// (about 13 ms of AES-GCM per 64 MiB on the path of a monolithic push:
// docs/performance.md). src is read only in the caller's goroutine (an
// HTTP body and the digest check behind it are never touched after the
// caller returns); the sealing goroutine touches only its batch's buffers,
// and release waits for it. A source that ends within its first batch is
// sealed in the caller's goroutine, without a hand-off.
type sealReader struct {
	src    io.Reader
	aead   cipher.AEAD
	hb     []byte
	idx    uint32 // the next batch's first segment
	prefix []byte
	// ret is the batch whose sealed bytes are being returned (and, once
	// they are, the buffer the next batch is read into); ahead is the
	// batch being sealed, whose result arrives on sealed (nil until the
	// first hand-off). start swaps them.
	ret, ahead *sealBufs
	sealing    bool
	sealed     chan sealResult
	out        []byte // sealed bytes not yet returned
	n          int64  // plaintext bytes read from src
	// last and lastIdx are the final segment's plaintext and index, once
	// it is read (eof); done once its sealed batch is being returned.
	last    []byte
	lastIdx uint32
	eof     bool
	done    bool
	err     error
}

type sealJob struct {
	plain []byte
	idx   uint32
	final bool
}

type sealResult struct {
	out []byte
	err error
}

func newSealReader(src io.Reader, aead cipher.AEAD, hb []byte, idx uint32, pre, prefix []byte) *sealReader {
	s := &sealReader{src: src, aead: aead, hb: hb, idx: idx, prefix: prefix,
		ret: sealPool.Get().(*sealBufs), sealed: make(chan sealResult, 1)}
	s.out = append(s.ret.out[:0], pre...)
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

// fill makes the next sealed batch ready to return (out): it reads the
// next batch of plaintext from src (into ret, whose bytes are all
// returned), takes the batch sealed ahead, and starts sealing the one just
// read.
func (s *sealReader) fill() error {
	var next *sealJob
	if !s.eof {
		var err error
		if next, err = s.read(s.ret.plain); err != nil {
			s.wait() // (the batch sealed ahead is not returned)
			return err
		}
	}
	if !s.sealing {
		// Nothing ahead: the first batch, sealed here if it is also the
		// last; else handed off, and the next one read while it is sealed.
		if next.final {
			out, err := s.seal(s.ret.out[:0], next)
			s.out, s.done = out, true
			return err
		}
		s.start(next)
		return s.fill()
	}
	r := s.wait()
	if r.err != nil {
		return r.err
	}
	s.out = r.out // in ahead's buffer
	if next == nil {
		s.done = true // the batch now returned is the final one
		return nil
	}
	s.start(next)
	return nil
}

// read reads the next batch of plaintext into plain and numbers its
// segments.
func (s *sealReader) read(plain []byte) (*sealJob, error) {
	k := copy(plain, s.prefix)
	s.prefix = nil
	m, err := io.ReadFull(s.src, plain[k:])
	s.n += int64(m)
	plain = plain[:k+m]
	job := &sealJob{plain: plain, idx: s.idx}
	switch {
	case err == nil:
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		job.final = true
	default:
		return nil, err
	}
	segs := uint64(len(plain) / SegmentSize)
	if job.final {
		tail := plain[segs*SegmentSize:]
		s.last, s.lastIdx = bytes.Clone(tail), s.idx+uint32(segs)
		s.eof = true
		segs++
	}
	if uint64(s.idx)+segs > maxSegments-1 {
		return nil, fmt.Errorf("object too large to encrypt (over 256 TiB)")
	}
	s.idx += uint32(segs)
	return job, nil
}

// start seals job, read into ret, on a goroutine, into ret's own out:
// ret becomes the batch ahead, and the batch ahead until now (whose sealed
// bytes, if any, are returned next) becomes ret. wait takes the result.
func (s *sealReader) start(job *sealJob) {
	if s.ahead == nil { // the first hand-off: a source of one batch never takes a second buffer
		s.ahead = sealPool.Get().(*sealBufs)
	}
	b := s.ret
	s.ret, s.ahead = s.ahead, b
	s.sealing = true
	go func() {
		out, err := s.seal(b.out[:0], job)
		s.sealed <- sealResult{out, err}
	}()
}

func (s *sealReader) wait() sealResult {
	if !s.sealing {
		return sealResult{}
	}
	s.sealing = false
	return <-s.sealed
}

// seal seals job's segments into out: full segments not final, then, if
// the job is the final batch, its short final segment. It uses only its
// arguments and the reader's fixed fields (aead, hb).
func (s *sealReader) seal(out []byte, job *sealJob) ([]byte, error) {
	plain, idx := job.plain, job.idx
	ad := make([]byte, 0, len(s.hb)+5)
	one := func(seg []byte, final bool) error {
		start := len(out)
		out = out[:start+nonceSize]
		nonce := out[start:]
		if _, err := rand.Read(nonce); err != nil {
			return err
		}
		out = s.aead.Seal(out, nonce, seg, segmentAD(ad[:0], s.hb, idx, final))
		idx++
		return nil
	}
	for len(plain) >= SegmentSize {
		if err := one(plain[:SegmentSize], false); err != nil {
			return nil, err
		}
		plain = plain[SegmentSize:]
	}
	if job.final {
		if err := one(plain, true); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// release waits for the batch being sealed, if any, and returns the
// buffers to the pool; s is not used after. Its n, last, lastIdx and done
// stay readable.
func (s *sealReader) release() {
	s.wait()
	s.out = nil
	for _, b := range []*sealBufs{s.ret, s.ahead} {
		if b != nil {
			sealPool.Put(b)
		}
	}
	s.ret, s.ahead = nil, nil
}
