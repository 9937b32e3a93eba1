package stowage

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Small secrets at rest (webhook secrets and header values, pull-through
// upstream passwords; auth's token-signing key the same way).
//
// A random 32-byte key seals the secret (AES-256-GCM, additional data that
// names what it belongs to and the data key's id, so a box cannot be moved
// to another record); the registry's keyring, which the database does not
// hold, wraps that key, which is kept as a data key (data_keys, with an
// object name saying whose it is), so `stowage keys rotate` rewraps it with
// the blobs' keys and `stowage keys retire` refuses a version that still
// wraps it. The box is nonce | ciphertext | tag.

// Keyring wraps and unwraps 32-byte keys with a key-encryption key the
// database does not hold. storage/crypt's keyring satisfies it.
type Keyring interface {
	// Describe says where the keys come from (for messages).
	Describe() string
	// Current is the version new keys are wrapped with.
	Current(ctx context.Context) (KeyVersion, error)
	// Wrap encrypts a 32-byte key with version kv.
	Wrap(ctx context.Context, kv KeyVersion, key []byte) ([]byte, error)
	// Unwrap decrypts a key wrapped by version kv.
	Unwrap(ctx context.Context, kv KeyVersion, wrapped []byte) ([]byte, error)
}

// ErrSecretDamaged is the cause when a sealed secret does not open with its
// data key (changed, damaged, or moved to another record).
var ErrSecretDamaged = errors.New("the sealed secret does not open with its data key (changed or damaged)")

// SealSecret seals plain with a new data key for object, wrapped by the
// keyring's current version; aad gives the additional data for the data
// key's id. It returns the box and the data key, which the caller stores
// (tx.DataKeys().PutDataKey) in the change that stores the box.
func SealSecret(ctx context.Context, keys Keyring, object string, aad func(dataKeyID string) []byte, plain []byte, now time.Time) ([]byte, DataKey, error) {
	kv, err := keys.Current(ctx)
	if err != nil {
		return nil, DataKey{}, fmt.Errorf("encryption key (%s): %w", keys.Describe(), err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, DataKey{}, err
	}
	wrapped, err := keys.Wrap(ctx, kv, key)
	if err != nil {
		return nil, DataKey{}, fmt.Errorf("encryption key %s (%s): %w", kv, keys.Describe(), err)
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return nil, DataKey{}, err
	}
	dk := DataKey{ID: hex.EncodeToString(id), Object: object, Wrapped: kv, Key: wrapped, Created: now}
	aead, err := gcmOf(key)
	if err != nil {
		return nil, DataKey{}, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, DataKey{}, err
	}
	return aead.Seal(nonce, nonce, plain, aad(dk.ID)), dk, nil
}

// OpenSecret opens a box SealSecret made with data key dk (which the caller
// read from data_keys) and the same additional data. A box that does not
// open is ErrSecretDamaged.
func OpenSecret(ctx context.Context, keys Keyring, dk DataKey, aad []byte, box []byte) ([]byte, error) {
	key, err := keys.Unwrap(ctx, dk.Wrapped, dk.Key)
	if err != nil {
		return nil, fmt.Errorf("data key %s (wrapped by %s): %w", dk.ID, dk.Wrapped, err)
	}
	aead, err := gcmOf(key)
	if err != nil {
		return nil, err
	}
	n := aead.NonceSize()
	if len(box) < n {
		return nil, ErrSecretDamaged
	}
	plain, err := aead.Open(nil, box[:n], box[n:], aad)
	if err != nil {
		return nil, ErrSecretDamaged
	}
	return plain, nil
}

func gcmOf(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}
