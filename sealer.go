package stowage

import (
	"context"
	"crypto/sha256"
	"encoding"
	"fmt"
	"hash"
)

// StateSealer is an optional capability of a Backend that encrypts what it
// stores (storage/crypt). What the engine keeps in the database about an
// object's content is sealed with that object's key, so the database holds
// no image data in the clear: an upload's SHA-256 hash state includes the
// last bytes received (up to 63, the block not hashed yet).
type StateSealer interface {
	// SealState encrypts state with the key of the stored object at key.
	SealState(ctx context.Context, key string, state []byte) ([]byte, error)
	// OpenState decrypts what SealState returned. Anything else (a state
	// saved before sealing existed, or by a registry without encryption) is
	// returned as it is.
	OpenState(ctx context.Context, sealed []byte) ([]byte, error)
}

// sealHashState prepares an upload's hash state for the database: sealed
// with the key of obj, the object just written, when the backend encrypts.
func (r *Registry) sealHashState(ctx context.Context, h hash.Hash, obj string) ([]byte, error) {
	state, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return nil, err
	}
	if s, ok := r.store.(StateSealer); ok {
		return s.SealState(ctx, obj, state)
	}
	return state, nil
}

// resumeHash returns the SHA-256 of an upload's bytes so far, from its
// saved (possibly sealed) state.
func (r *Registry) resumeHash(ctx context.Context, u UploadRecord) (hash.Hash, error) {
	h := sha256.New()
	if len(u.HashState) == 0 {
		return h, nil
	}
	state := u.HashState
	if s, ok := r.store.(StateSealer); ok {
		var err error
		if state, err = s.OpenState(ctx, state); err != nil {
			return nil, fmt.Errorf("upload %s: open hash state: %w", u.ID, err)
		}
	}
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(state); err != nil {
		return nil, fmt.Errorf("upload %s: resume hash state: %w", u.ID, err)
	}
	return h, nil
}
