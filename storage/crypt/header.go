package crypt

import (
	"encoding/binary"
	"fmt"
	"io"
)

const magic = "STWC2"

// idSize is the size of a data key id.
const idSize = 16

// headerSize is the size of every object's header:
//
//	"STWC2" | data key id (16 bytes) | u32 segment size
//
// The header names the object's data key; the key itself, wrapped, is in
// the metadata DB (so a KEK rotation never rewrites an object). Every
// segment is authenticated with the header, so an object's segments cannot
// be moved into another object.
const headerSize = len(magic) + idSize + 4

type header struct {
	KeyID       [idSize]byte
	SegmentSize uint32
}

func (h *header) marshal() []byte {
	b := make([]byte, 0, headerSize)
	b = append(b, magic...)
	b = append(b, h.KeyID[:]...)
	return binary.BigEndian.AppendUint32(b, h.SegmentSize)
}

// parseHeader checks the first headerSize bytes of an object.
func parseHeader(b []byte) (header, error) {
	var h header
	if len(b) < headerSize || string(b[:len(magic)]) != magic {
		return h, fmt.Errorf("%w: not an encrypted object (bad header)", ErrIntegrity)
	}
	copy(h.KeyID[:], b[len(magic):])
	h.SegmentSize = binary.BigEndian.Uint32(b[len(magic)+idSize:])
	if h.SegmentSize != SegmentSize {
		return h, fmt.Errorf("%w: unsupported segment size %d", ErrIntegrity, h.SegmentSize)
	}
	return h, nil
}

// readHeader reads and checks a header from r, returning it with its bytes.
func readHeader(r io.Reader) (header, []byte, error) {
	b := make([]byte, headerSize)
	if _, err := io.ReadFull(r, b); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return header{}, nil, fmt.Errorf("%w: the object is shorter than its header", ErrIntegrity)
		}
		return header{}, nil, err
	}
	h, err := parseHeader(b)
	return h, b, err
}
