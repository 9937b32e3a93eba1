package crypt

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"

	"github.com/stowage/stowage"
)

// Sealed states (stowage.StateSealer): what the engine keeps in the database
// about an object's content, such as an upload's hash state, sealed with the
// data key of that object:
//
//	"STWS2" | u16 big-endian key length | key | data key id (16) | nonce (12) | AES-256-GCM ciphertext | tag (16)
//
// with additional data "stowage-state:" | key | the object's header (which
// the data key id determines), so a sealed state opens only for the object
// it was sealed for. It opens by the data key id, without reading the
// object: after an upload's Commit moved the object (and its data key
// record) to the blob key, a retried final PUT still reads the state that
// proves which digest the session's bytes have. "STWS1" states (the same
// without the key id, opened through the object's header) are still read.
var (
	stateMagic   = []byte("STWS2")
	stateMagicV1 = []byte("STWS1")
)

var _ stowage.StateSealer = (*Backend)(nil)

func stateAD(key string, hb []byte) []byte {
	return append([]byte("stowage-state:"+key), hb...)
}

// SealState encrypts state with the data key of the object at key.
func (b *Backend) SealState(ctx context.Context, key string, state []byte) ([]byte, error) {
	hb, aead, err := b.openHeader(ctx, key)
	if err != nil {
		return nil, err
	}
	h, err := parseHeader(hb)
	if err != nil {
		return nil, integrityError(err)
	}
	out := append([]byte(nil), stateMagic...)
	out = binary.BigEndian.AppendUint16(out, uint16(len(key)))
	out = append(out, key...)
	out = append(out, h.KeyID[:]...)
	nonce := make([]byte, nonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out = append(out, nonce...)
	return aead.Seal(out, nonce, state, stateAD(key, hb)), nil
}

// OpenState decrypts what SealState returned; anything else is returned as
// it is (a state saved before sealing existed).
func (b *Backend) OpenState(ctx context.Context, sealed []byte) ([]byte, error) {
	v1 := bytes.HasPrefix(sealed, stateMagicV1)
	if !v1 && !bytes.HasPrefix(sealed, stateMagic) {
		return sealed, nil
	}
	short := integrityError(fmt.Errorf("%w: a sealed state is too short", ErrIntegrity))
	rest := sealed[len(stateMagic):]
	if len(rest) < 2 {
		return nil, short
	}
	n := int(binary.BigEndian.Uint16(rest))
	if len(rest) < 2+n+nonceSize+tagSize {
		return nil, short
	}
	key, rest := string(rest[2:2+n]), rest[2+n:]
	var hb []byte
	var aead cipher.AEAD
	var err error
	if v1 {
		hb, aead, err = b.openHeader(ctx, key)
	} else {
		if len(rest) < idSize+nonceSize+tagSize {
			return nil, short
		}
		h := header{SegmentSize: SegmentSize}
		copy(h.KeyID[:], rest)
		rest = rest[idSize:]
		hb = h.marshal()
		aead, err = b.Keys.dataKey(ctx, h.KeyID)
	}
	if err != nil {
		return nil, err
	}
	state, err := aead.Open(nil, rest[:nonceSize], rest[nonceSize:], stateAD(key, hb))
	if err != nil {
		return nil, integrityError(fmt.Errorf("%w: the sealed state of %s does not authenticate", ErrIntegrity, key))
	}
	return state, nil
}
