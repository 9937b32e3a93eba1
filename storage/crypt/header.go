package crypt

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
)

const magic = "STWC1"

// header starts every encrypted object.
//
//	"STWC1" | u8 len(keyID) | keyID | u32 keyVersion | u16 len(wrapped) |
//	wrapped data key | u32 segmentSize | 8-byte nonce prefix
type header struct {
	KeyID       string
	KeyVersion  uint32
	WrappedKey  []byte
	SegmentSize uint32
	NoncePrefix [8]byte
}

func (h *header) marshal() []byte {
	var b bytes.Buffer
	b.WriteString(magic)
	b.WriteByte(byte(len(h.KeyID)))
	b.WriteString(h.KeyID)
	binary.Write(&b, binary.BigEndian, h.KeyVersion)
	binary.Write(&b, binary.BigEndian, uint16(len(h.WrappedKey)))
	b.Write(h.WrappedKey)
	binary.Write(&b, binary.BigEndian, h.SegmentSize)
	b.Write(h.NoncePrefix[:])
	return b.Bytes()
}

// nonce is prefix(7) || final(1) || index(4).
func (h *header) nonce(idx uint32, final bool) []byte {
	n := make([]byte, 12)
	copy(n, h.NoncePrefix[:7])
	if final {
		n[7] = 1
	}
	binary.BigEndian.PutUint32(n[8:], idx)
	return n
}

// readHeader reads a header from r and returns it with its raw bytes (the
// additional data every segment is authenticated with).
func readHeader(r io.Reader) (header, []byte, error) {
	var raw bytes.Buffer
	tr := io.TeeReader(r, &raw)
	var h header
	fail := func(what string) (header, []byte, error) {
		return header{}, nil, fmt.Errorf("%w: bad header (%s)", ErrIntegrity, what)
	}
	m := make([]byte, len(magic)+1)
	if _, err := io.ReadFull(tr, m); err != nil || string(m[:len(magic)]) != magic {
		return fail("magic")
	}
	id := make([]byte, m[len(magic)])
	if _, err := io.ReadFull(tr, id); err != nil {
		return fail("key id")
	}
	h.KeyID = string(id)
	var wlen uint16
	if binary.Read(tr, binary.BigEndian, &h.KeyVersion) != nil || binary.Read(tr, binary.BigEndian, &wlen) != nil || wlen > 1024 {
		return fail("key version")
	}
	h.WrappedKey = make([]byte, wlen)
	if _, err := io.ReadFull(tr, h.WrappedKey); err != nil {
		return fail("wrapped key")
	}
	if binary.Read(tr, binary.BigEndian, &h.SegmentSize) != nil || h.SegmentSize != SegmentSize {
		return fail("segment size")
	}
	if _, err := io.ReadFull(tr, h.NoncePrefix[:]); err != nil {
		return fail("nonce")
	}
	return h, raw.Bytes(), nil
}
