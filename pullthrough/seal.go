package pullthrough

import (
	"context"
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
type Keyring = stowage.Keyring

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
	box, dk, err := stowage.SealSecret(ctx, keys, dataKeyObject(rule), func(id string) []byte { return sealAAD(rule, id) }, []byte(password), now)
	if err != nil {
		return nil, stowage.DataKey{}, fmt.Errorf("seal the password of cache rule %s: %w", rule, err)
	}
	b, err := json.Marshal(sealed{DataKey: dk.ID, Box: box})
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
	p, err := stowage.OpenSecret(ctx, keys, dk, sealAAD(rule, s.DataKey), s.Box)
	if err != nil {
		return "", fmt.Errorf("the password of cache rule %s: %w", rule, err)
	}
	return string(p), nil
}
