package auth

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/stowage/stowage"
)

// The signing key at rest.
//
// Whoever holds the signing key can mint an admin token, so it must not be
// readable by whoever can read the metadata database (a backup, a
// replica, a DBA). With encryption at rest on, the registry has a keyring
// every node holds (the service key file, key_file, key_env or a KMS) and
// the database does not: the signing key is sealed with it, the way blobs
// are. A random 32-byte sealing key seals the signing key (AES-256-GCM);
// the keyring wraps the sealing key, which is kept as a data key in the
// data_keys table (object DataKeyObject), so `stowage keys rotate`
// rewraps it with the blobs' keys and `stowage keys retire` refuses a
// version that still wraps it. The setting then holds, as JSON:
//
//	{"kid": "…", "alg": "HS256", "created": "…", "sealed": {"data_key": "<id>", "box": "<base64 nonce|ciphertext|tag>"}}
//
// with "stowage-auth-signing-key:<kid>:<data key id>" as the additional
// data. A key stored in the clear by an earlier version ({"kid", "alg",
// "key", "created"}) is sealed at the first start with a keyring, and the
// clear copy is overwritten (and, on SQLite, the file compacted, so it is
// not left in free pages). Without a keyring (encryption: none) the key
// stays in the clear.

// Keyring wraps and unwraps 32-byte keys with a key-encryption key the
// database does not hold. storage/crypt.Keys (the encryption keyring)
// satisfies it.
type Keyring = stowage.Keyring

// Compacter is an optional capability of a stowage.DB: Compact rewrites
// its files so that values overwritten earlier are gone from the disk, not
// only from the tables (meta/sqlite).
type Compacter interface {
	Compact(ctx context.Context) error
}

// DataKeyObject is the object name of the signing key's sealing key in
// the data_keys table (never a storage key).
const DataKeyObject = "setting:" + SettingKey

// storedKey is the setting's JSON: Key in the clear, or Sealed.
type storedKey struct {
	ID      string     `json:"kid"`
	Alg     string     `json:"alg"`
	Key     []byte     `json:"key,omitempty"`
	Created time.Time  `json:"created"`
	Sealed  *sealedKey `json:"sealed,omitempty"`
}

type sealedKey struct {
	DataKey string `json:"data_key"` // id of the sealing key in data_keys
	Box     []byte `json:"box"`      // nonce | AES-256-GCM(signing key) | tag
}

func sealAAD(kid, dataKey string) []byte {
	return []byte("stowage-auth-signing-key:" + kid + ":" + dataKey)
}

func (s storedKey) check() error {
	if s.Alg != "HS256" || s.ID == "" || (s.Sealed == nil && len(s.Key) < 32) || (s.Sealed != nil && (s.Sealed.DataKey == "" || len(s.Key) != 0)) {
		return fmt.Errorf("the token signing key (%s) is not an HS256 key of 32 bytes or more", SettingKey)
	}
	return nil
}

// sealer is a fresh sealing key, wrapped by the keyring's current version.
type sealer struct {
	dk  stowage.DataKey
	gcm cipher.AEAD
}

func newSealer(ctx context.Context, keys Keyring, now time.Time) (*sealer, error) {
	kv, err := keys.Current(ctx)
	if err != nil {
		return nil, fmt.Errorf("seal the token signing key: encryption key (%s): %w", keys.Describe(), err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	wrapped, err := keys.Wrap(ctx, kv, key)
	if err != nil {
		return nil, fmt.Errorf("seal the token signing key: encryption key %s (%s): %w", kv, keys.Describe(), err)
	}
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	return &sealer{dk: stowage.DataKey{ID: randomID(16), Object: DataKeyObject, Wrapped: kv, Key: wrapped, Created: now}, gcm: aead}, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// seal returns k's sealed form.
func (s *sealer) seal(k signingKey) storedKey {
	nonce := make([]byte, s.gcm.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		panic(err) // crypto/rand does not fail on supported systems
	}
	box := s.gcm.Seal(nonce, nonce, k.Key, sealAAD(k.ID, s.dk.ID))
	return storedKey{ID: k.ID, Alg: k.Alg, Created: k.Created, Sealed: &sealedKey{DataKey: s.dk.ID, Box: box}}
}

// readKey reads the stored key and, when it is sealed, its sealing key's
// record.
func readKey(tx stowage.Tx) (*storedKey, stowage.DataKey, error) {
	raw, err := tx.Settings().GetSetting(SettingKey)
	if errors.Is(err, stowage.ErrNotFound) {
		return nil, stowage.DataKey{}, nil
	}
	if err != nil {
		return nil, stowage.DataKey{}, err
	}
	var s storedKey
	if err := json.Unmarshal([]byte(raw), &s); err != nil {
		return nil, stowage.DataKey{}, fmt.Errorf("the token signing key (%s) is not valid JSON: %w", SettingKey, err)
	}
	if err := s.check(); err != nil {
		return nil, stowage.DataKey{}, err
	}
	var dk stowage.DataKey
	if s.Sealed != nil {
		if dk, err = tx.DataKeys().GetDataKey(s.Sealed.DataKey); errors.Is(err, stowage.ErrNotFound) {
			return nil, dk, fmt.Errorf("the token signing key (%s) is sealed with data key %s, which is not in the data_keys table", SettingKey, s.Sealed.DataKey)
		} else if err != nil {
			return nil, dk, err
		}
	}
	return &s, dk, nil
}

// open returns the signing key of a stored one (unsealing it with keys).
func (s *storedKey) open(ctx context.Context, keys Keyring, dk stowage.DataKey) (signingKey, error) {
	k := signingKey{ID: s.ID, Alg: s.Alg, Key: s.Key, Created: s.Created}
	if s.Sealed == nil {
		return k, nil
	}
	if keys == nil {
		return signingKey{}, fmt.Errorf("the token signing key (%s) is sealed with the encryption key (%s), but no encryption key is configured: configure the registry's encryption key (docs/encryption.md)", SettingKey, dk.Wrapped)
	}
	key, err := keys.Unwrap(ctx, dk.Wrapped, dk.Key)
	if err != nil {
		return signingKey{}, fmt.Errorf("open the token signing key (%s), sealed with %s: %w", SettingKey, dk.Wrapped, err)
	}
	aead, err := newGCM(key)
	if err != nil {
		return signingKey{}, fmt.Errorf("open the token signing key (%s): data key %s: %w", SettingKey, dk.ID, err)
	}
	box := s.Sealed.Box
	if len(box) < aead.NonceSize() {
		return signingKey{}, fmt.Errorf("open the token signing key (%s): the sealed key is too short", SettingKey)
	}
	if k.Key, err = aead.Open(nil, box[:aead.NonceSize()], box[aead.NonceSize():], sealAAD(s.ID, s.Sealed.DataKey)); err != nil {
		return signingKey{}, fmt.Errorf("open the token signing key (%s): it does not open with data key %s (changed or damaged)", SettingKey, dk.ID)
	}
	if len(k.Key) < 32 {
		return signingKey{}, fmt.Errorf("the token signing key (%s) is not an HS256 key of 32 bytes or more", SettingKey)
	}
	return k, nil
}

const clearKeyWarning = "the token signing key is kept in the clear in the metadata database (encryption: none): " +
	"whoever can read the database or a backup of it can sign admin tokens; protect them (docs/access.md)"

// loadKey returns the signing key. On an empty database it creates one;
// nodes starting together on one database store one key between them
// (insert if absent, in one transaction that re-reads the setting: SQLite
// has one writer, PostgreSQL runs it SERIALIZABLE), and each returns the
// stored one. With keys, a new key is stored sealed, and a key found in the
// clear is sealed (see above).
func loadKey(ctx context.Context, db stowage.DB, keys Keyring, now time.Time, log *slog.Logger) (signingKey, error) {
	var stored *storedKey
	var dk stowage.DataKey
	if err := db.View(ctx, func(tx stowage.Tx) (err error) {
		stored, dk, err = readKey(tx)
		return err
	}); err != nil {
		return signingKey{}, err
	}
	if stored != nil && (stored.Sealed != nil || keys == nil) {
		if keys == nil {
			log.Warn(clearKeyWarning)
		}
		return stored.open(ctx, keys, dk)
	}
	// No key yet, or one to seal: prepare outside the transaction (a
	// KMS may take a while), then insert or seal unless another node did.
	fresh, err := newSigningKey(now)
	if err != nil {
		return signingKey{}, err
	}
	var s *sealer
	if keys != nil {
		if s, err = newSealer(ctx, keys, now); err != nil {
			return signingKey{}, err
		}
	}
	sealedClear := false
	err = db.Update(ctx, func(tx stowage.Tx) error {
		var err error
		sealedClear = false
		if stored, dk, err = readKey(tx); err != nil {
			return err
		}
		if stored != nil && (stored.Sealed != nil || s == nil) {
			return nil // another node was first
		}
		k := fresh
		if stored != nil { // in the clear: keep it (tokens issued with it stay good), sealed
			k = signingKey{ID: stored.ID, Alg: stored.Alg, Key: stored.Key, Created: stored.Created}
			sealedClear = true
		}
		out := storedKey{ID: k.ID, Alg: k.Alg, Key: k.Key, Created: k.Created}
		if s != nil {
			if err := tx.DataKeys().PutDataKey(s.dk); err != nil {
				return err
			}
			out, dk = s.seal(k), s.dk
		}
		b, err := json.Marshal(out)
		if err != nil {
			return err
		}
		if err := tx.Settings().PutSetting(SettingKey, string(b), now); err != nil {
			return err
		}
		stored = &out
		return nil
	})
	if err != nil {
		return signingKey{}, err
	}
	if sealedClear {
		msg := "sealed the token signing key with the encryption key: the database no longer holds it in the clear (backups made before still do, see docs/access.md)"
		if c, ok := db.(Compacter); ok {
			log.Info("compacting the metadata database, once, so the clear copy of the token signing key is not left in its free space")
			if err := c.Compact(ctx); err != nil {
				// Sealed all the same: the clear copy is only in free space.
				log.Error("the token signing key was sealed, but compacting the database failed, so its files may still hold the clear copy in free space: stop stowage and run `sqlite3 stowage.db 'VACUUM'`, or replace the key (docs/access.md)", "err", err)
			}
		} else {
			msg = "sealed the token signing key with the encryption key: the database no longer holds it in the clear, but its files may until the database reuses the space (PostgreSQL: run VACUUM FULL settings), and backups made before do (docs/access.md)"
		}
		log.Warn(msg, "key_id", stored.ID, "wrapped_by", dk.Wrapped.String())
	}
	k, err := stored.open(ctx, keys, dk)
	if err != nil {
		return signingKey{}, err
	}
	if keys == nil {
		log.Warn(clearKeyWarning)
	}
	return k, nil
}
