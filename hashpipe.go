package stowage

import (
	"hash"
	"sync"
)

// hashPipe feeds a hash on another goroutine, so that a push hashes one
// batch of its bytes while it receives, encrypts and writes the next: on a
// machine with a core to spare, sha256 (~1.6 GiB/s per core) leaves the
// critical path of a large push. The first pipeSync bytes are hashed in the
// caller's goroutine (small blobs: no goroutine, no buffer); after that,
// bytes are copied into one of two pooled pipeBatch buffers, and a full
// buffer is hashed by a goroutine of its own while the other fills. At most
// one batch is in flight, so the hash sees the bytes in order.
//
// Write never fails. Call finish before reading the hash (Sum,
// MarshalBinary): it waits for the batch in flight and hashes the rest. A
// hashPipe abandoned before finish leaks nothing: its last goroutine ends
// on its own, and its buffers are garbage.
type hashPipe struct {
	h        hash.Hash
	n        int64 // bytes written
	cur      *[]byte
	spare    *[]byte
	inFlight chan struct{} // closed when the batch in flight is hashed; nil if none
}

const (
	pipeSync  = 1 << 20
	pipeBatch = 1 << 20
)

var pipePool = sync.Pool{New: func() any { b := make([]byte, 0, pipeBatch); return &b }}

func newHashPipe(h hash.Hash) *hashPipe { return &hashPipe{h: h} }

func (p *hashPipe) Write(b []byte) (int, error) {
	n := len(b)
	if p.cur == nil && p.n+int64(n) <= pipeSync {
		p.n += int64(n)
		return p.h.Write(b)
	}
	p.n += int64(n)
	for len(b) > 0 {
		if p.cur == nil {
			p.cur, p.spare = pipePool.Get().(*[]byte), pipePool.Get().(*[]byte)
			*p.cur, *p.spare = (*p.cur)[:0], (*p.spare)[:0]
		}
		c := *p.cur
		k := copy(c[len(c):cap(c)], b)
		*p.cur = c[:len(c)+k]
		b = b[k:]
		if len(*p.cur) == cap(*p.cur) {
			p.send()
		}
	}
	return n, nil
}

// send hands the full current buffer to a goroutine and fills the other.
func (p *hashPipe) send() {
	p.wait()
	batch, h, done := *p.cur, p.h, make(chan struct{})
	go func() {
		h.Write(batch)
		close(done)
	}()
	p.inFlight = done
	p.cur, p.spare = p.spare, p.cur
	*p.cur = (*p.cur)[:0]
}

func (p *hashPipe) wait() {
	if p.inFlight != nil {
		<-p.inFlight
		p.inFlight = nil
	}
}

// finish hashes everything written so far and returns the hash, ready to
// read. Writing more after finish is allowed (it starts over in pipeSync
// mode only if nothing is buffered, which finish ensures).
func (p *hashPipe) finish() hash.Hash {
	p.wait()
	if p.cur != nil {
		p.h.Write(*p.cur)
		*p.cur, *p.spare = (*p.cur)[:0], (*p.spare)[:0]
		pipePool.Put(p.cur)
		pipePool.Put(p.spare)
		p.cur, p.spare = nil, nil
	}
	return p.h
}
