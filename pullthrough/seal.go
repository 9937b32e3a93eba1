package pullthrough

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/stowage/stowage"
)

// Upstream passwords at rest.
//
// A rule's password is sealed like the token signing key (auth/signkey.go):
// a random 32-byte sealing key per rule seals it (AES-256-GCM, the rule's
// name and the key's id as additional data), and the registry's keyring
// wraps the sealing key, which is a data key (object "cache-rule:<name>")
// in the data_keys table, so `stowage keys rotate` rewraps it with the
// others. The rule's secret column holds
//
//	{"data_key": "<id>", "box": "<base64 nonce|ciphertext|tag>"}
//
// Without a keyring (encryption: none) a rule with a password is refused:
// the password would be in the clear in the database and its backups.

// Keyring wraps and unwraps 32-byte keys with a key-encryption key the
// database does not hold (storage/crypt's keyring).
type Keyring interface {
	Describe() string
	Current(ctx context.Context) (stowage.KeyVersion, error)
	Wrap(ctx context.Context, kv stowage.KeyVersion, key []byte) ([]byte, error)
	Unwrap(ctx context.Context, kv stowage.KeyVersion, wrapped []byte) ([]byte, error)
}

type sealed struct {
	DataKey string `json:"data_key"`
	Box     []byte `json:"box"`
}

func dataKeyObject(rule string) string { return "cache-rule:" + rule }

func sealAAD(rule, dk string) []byte { return []byte("stowage-cache-rule:" + rule + ":" + dk) }

// seal returns the sealed password and the data key to store first.
func seal(ctx context.Context, keys Keyring, rule, password string, now time.Time) ([]byte, stowage.DataKey, error) {
	if keys == nil {
		return nil, stowage.DataKey{}, stowage.Errorf(stowage.CodeUnsupported,
			"cache rule %s: upstream passwords are kept sealed with the registry's encryption key, and encryption is off (encryption: none); turn encryption on (docs/encryption.md) or use a rule without credentials", rule)
	}
	kv, err := keys.Current(ctx)
	if err != nil {
		return nil, stowage.DataKey{}, fmt.Errorf("seal the password of cache rule %s: encryption key (%s): %w", rule, keys.Describe(), err)
	}
	key := make([]byte, 32)
	rand.Read(key)
	wrapped, err := keys.Wrap(ctx, kv, key)
	if err != nil {
		return nil, stowage.DataKey{}, fmt.Errorf("seal the password of cache rule %s: %w", rule, err)
	}
	id := make([]byte, 16)
	rand.Read(id)
	dk := stowage.DataKey{ID: hex.EncodeToString(id), Object: dataKeyObject(rule), Wrapped: kv, Key: wrapped, Created: now}
	aead, err := gcm(key)
	if err != nil {
		return nil, dk, err
	}
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce)
	b, err := json.Marshal(sealed{DataKey: dk.ID, Box: aead.Seal(nonce, nonce, []byte(password), sealAAD(rule, dk.ID))})
	return b, dk, err
}

// open returns the password sealed in secret.
func open(ctx context.Context, keys Keyring, store Store, rule string, secret []byte) (string, error) {
	var s sealed
	if err := json.Unmarshal(secret, &s); err != nil || s.DataKey == "" {
		return "", fmt.Errorf("the password of cache rule %s is not a sealed value", rule)
	}
	if keys == nil {
		return "", fmt.Errorf("the password of cache rule %s is sealed with the encryption key, but no encryption key is configured (docs/encryption.md)", rule)
	}
	dk, err := store.GetDataKey(ctx, s.DataKey)
	if err != nil {
		return "", fmt.Errorf("the password of cache rule %s: data key %s: %w", rule, s.DataKey, err)
	}
	key, err := keys.Unwrap(ctx, dk.Wrapped, dk.Key)
	if err != nil {
		return "", fmt.Errorf("open the password of cache rule %s (sealed with %s): %w", rule, dk.Wrapped, err)
	}
	aead, err := gcm(key)
	if err != nil {
		return "", err
	}
	if len(s.Box) < aead.NonceSize() {
		return "", fmt.Errorf("the sealed password of cache rule %s is too short", rule)
	}
	p, err := aead.Open(nil, s.Box[:aead.NonceSize()], s.Box[aead.NonceSize():], sealAAD(rule, s.DataKey))
	if err != nil {
		return "", fmt.Errorf("the password of cache rule %s does not open with data key %s (changed or damaged)", rule, s.DataKey)
	}
	return string(p), nil
}

func gcm(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}
