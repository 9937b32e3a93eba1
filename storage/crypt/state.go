package crypt

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"

	"github.com/stowage/stowage"
)

// Sealed states (stowage.StateSealer): what the engine keeps in the database
// about an object's content, such as an upload's hash state, sealed with the
// data key of that object:
//
//	"STWS1" | u16 big-endian key length | key | nonce (12) | AES-256-GCM ciphertext | tag (16)
//
// with additional data "stowage-state:" | key | the object's header, so a
// sealed state opens only for the object it was sealed for.
var stateMagic = []byte("STWS1")

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
	out := append([]byte(nil), stateMagic...)
	out = binary.BigEndian.AppendUint16(out, uint16(len(key)))
	out = append(out, key...)
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
	if !bytes.HasPrefix(sealed, stateMagic) {
		return sealed, nil
	}
	rest := sealed[len(stateMagic):]
	if len(rest) < 2 || len(rest) < 2+int(binary.BigEndian.Uint16(rest))+nonceSize+tagSize {
		return nil, integrityError(fmt.Errorf("%w: a sealed state is too short", ErrIntegrity))
	}
	n := int(binary.BigEndian.Uint16(rest))
	key, rest := string(rest[2:2+n]), rest[2+n:]
	hb, aead, err := b.openHeader(ctx, key)
	if err != nil {
		return nil, err
	}
	state, err := aead.Open(nil, rest[:nonceSize], rest[nonceSize:], stateAD(key, hb))
	if err != nil {
		return nil, integrityError(fmt.Errorf("%w: the sealed state of %s does not authenticate", ErrIntegrity, key))
	}
	return state, nil
}
