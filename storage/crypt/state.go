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
//	"STWS2" | data key id (16) | nonce (12) | AES-256-GCM ciphertext | tag (16)
//
// with additional data "stowage-state:" | data key id. The seal names the
// data key, not the object's location: the key's row follows the object
// when an upload is committed to its blob key (Manager.moved), so a state
// sealed for an upload still opens after the commit moved the object (a
// retried final PUT after a crash between the move and the recording
// transaction reads it). States sealed by the first format ("STWS1", bound
// to the object's key and header) are still opened.
var (
	stateMagic   = []byte("STWS2")
	stateMagicV1 = []byte("STWS1")
)

var _ stowage.StateSealer = (*Backend)(nil)

func stateAD(id []byte) []byte {
	return append([]byte("stowage-state:"), id...)
}

// SealState encrypts state with the data key of the object at key.
func (b *Backend) SealState(ctx context.Context, key string, state []byte) ([]byte, error) {
	rc, err := b.Inner.Open(ctx, key, 0)
	if err != nil {
		return nil, err
	}
	h, _, err := readHeader(rc)
	rc.Close()
	if err != nil {
		return nil, integrityError(fmt.Errorf("%s: %w", key, err))
	}
	aead, err := b.Keys.dataKey(ctx, h.KeyID)
	if err != nil {
		return nil, err
	}
	out := append([]byte(nil), stateMagic...)
	out = append(out, h.KeyID[:]...)
	nonce := make([]byte, nonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out = append(out, nonce...)
	return aead.Seal(out, nonce, state, stateAD(h.KeyID[:])), nil
}

// OpenState decrypts what SealState returned; anything else is returned as
// it is (a state saved before sealing existed).
func (b *Backend) OpenState(ctx context.Context, sealed []byte) ([]byte, error) {
	if bytes.HasPrefix(sealed, stateMagicV1) {
		return b.openStateV1(ctx, sealed)
	}
	if !bytes.HasPrefix(sealed, stateMagic) {
		return sealed, nil
	}
	rest := sealed[len(stateMagic):]
	if len(rest) < idSize+nonceSize+tagSize {
		return nil, integrityError(fmt.Errorf("%w: a sealed state is too short", ErrIntegrity))
	}
	var id [idSize]byte
	copy(id[:], rest)
	rest = rest[idSize:]
	aead, err := b.Keys.dataKey(ctx, id)
	if err != nil {
		return nil, err
	}
	state, err := aead.Open(nil, rest[:nonceSize], rest[nonceSize:], stateAD(id[:]))
	if err != nil {
		return nil, integrityError(fmt.Errorf("%w: a sealed state does not authenticate", ErrIntegrity))
	}
	return state, nil
}

// openStateV1 opens a state sealed in the first format: "STWS1" | u16 key
// length | key | nonce | ciphertext | tag, additional data "stowage-state:"
// | key | the object's header.
func (b *Backend) openStateV1(ctx context.Context, sealed []byte) ([]byte, error) {
	rest := sealed[len(stateMagicV1):]
	if len(rest) < 2 || len(rest) < 2+int(binary.BigEndian.Uint16(rest))+nonceSize+tagSize {
		return nil, integrityError(fmt.Errorf("%w: a sealed state is too short", ErrIntegrity))
	}
	n := int(binary.BigEndian.Uint16(rest))
	key, rest := string(rest[2:2+n]), rest[2+n:]
	hb, aead, err := b.openHeader(ctx, key)
	if err != nil {
		return nil, err
	}
	state, err := aead.Open(nil, rest[:nonceSize], rest[nonceSize:], append([]byte("stowage-state:"+key), hb...))
	if err != nil {
		return nil, integrityError(fmt.Errorf("%w: the sealed state of %s does not authenticate", ErrIntegrity, key))
	}
	return state, nil
}
