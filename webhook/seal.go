package webhook

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/stowage/stowage"
)

// Secrets at rest.
//
// A webhook's secret and its custom header values let whoever reads them
// call the receiver as the registry (and often more: an Authorization
// header). They are sealed the way the token signing key is (auth/signkey.go):
// a random 32-byte key seals them (AES-256-GCM, additional data
// "stowage-webhook:<name>:<id>:<data key id>"); the registry's keyring
// wraps that key, which is kept in data_keys (object "webhook:<name>"), so
// `stowage keys rotate` rewraps it with the others. The database never holds them in
// the clear. Without a keyring (encryption: none) a webhook can have neither
// a secret nor custom headers: creating one says so.

// Keyring wraps and unwraps 32-byte keys with a key-encryption key the
// database does not hold (storage/crypt.Keys satisfies it).
type Keyring = stowage.Keyring

// secrets is what Sealed holds.
type secrets struct {
	Secret  string            `json:"secret,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
}

func sealAAD(name, id, dataKey string) []byte {
	return []byte("stowage-webhook:" + name + ":" + id + ":" + dataKey)
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported systems
	}
	return hex.EncodeToString(b)
}

var errNoKeyring = stowage.Errorf(stowage.CodeUnsupported, "a webhook's secret and custom header values are sealed with the registry's encryption key, "+
	"and this registry has none (encryption: none): turn encryption at rest on (docs/encryption.md), or create the webhook without a secret and custom headers")

// seal seals s for webhook r (its Name and ID), with a new data key.
func seal(ctx context.Context, keys Keyring, r *Record, s secrets, now time.Time) (*stowage.DataKey, error) {
	if keys == nil {
		return nil, errNoKeyring
	}
	plain, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	box, dk, err := stowage.SealSecret(ctx, keys, DataKeyObject(r.Name), func(id string) []byte { return sealAAD(r.Name, r.ID, id) }, plain, now)
	if err != nil {
		return nil, fmt.Errorf("seal the webhook's secrets: %w", err)
	}
	r.Sealed, r.DataKey = box, dk.ID
	return &dk, nil
}

// open returns r's secrets.
func open(ctx context.Context, db stowage.DB, keys Keyring, r Record) (secrets, error) {
	if len(r.Sealed) == 0 {
		return secrets{}, nil
	}
	if keys == nil {
		return secrets{}, fmt.Errorf("webhook %s: its secrets are sealed with the encryption key, but no encryption key is configured (docs/encryption.md)", r.Name)
	}
	var dk stowage.DataKey
	err := db.View(ctx, func(tx stowage.Tx) (err error) {
		dk, err = tx.DataKeys().GetDataKey(r.DataKey)
		return err
	})
	if errors.Is(err, stowage.ErrNotFound) {
		return secrets{}, fmt.Errorf("webhook %s: its secrets are sealed with data key %s, which is not in the data_keys table", r.Name, r.DataKey)
	}
	if err != nil {
		return secrets{}, err
	}
	plain, err := stowage.OpenSecret(ctx, keys, dk, sealAAD(r.Name, r.ID, r.DataKey), r.Sealed)
	if err != nil {
		return secrets{}, fmt.Errorf("webhook %s: open its secrets: %w", r.Name, err)
	}
	var s secrets
	if err := json.Unmarshal(plain, &s); err != nil {
		return secrets{}, fmt.Errorf("webhook %s: sealed secrets: %w", r.Name, err)
	}
	return s, nil
}
