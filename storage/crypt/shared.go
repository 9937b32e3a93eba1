package crypt

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/stowage/stowage"
)

// Versions kept in the database.
//
// Several nodes share one database, and each has its own copy of the key
// file (or one shared file). A version that `stowage keys rotate` added
// only to the file of the node that served the call could not be read by
// the others. So, once ShareVersions gave it the database, a FileKeyring
// keeps the versions it adds in the database instead, each wrapped
// (AES-256-GCM) by the version that was current in the key file, the root,
// which every node holds. Any node finds them there: at most a second
// after a rotation for the current version, at once for a version it meets
// in a data key. The file is then never written by Stowage after its
// creation: it holds the roots, the database holds the rest, and a backup of
// the database opens with the key file.
//
// The setting "encryption.kek:<key id>" holds, as JSON:
//
//	{"current": 3, "versions": {"2": {"wrapped_by": 1, "key": "<base64 nonce|ciphertext|tag>"}, "3": {…}}}
//
// The additional data of a wrapped version is "stowage-kek:<id>:<version>:<wrapped_by>".

// settingVersionsPrefix names the setting holding a key's database versions.
const settingVersionsPrefix = "encryption.kek:"

// sharedVersions is the setting's JSON.
type sharedVersions struct {
	Current  uint32                   `json:"current"`
	Versions map[uint32]sharedVersion `json:"versions"`
}

type sharedVersion struct {
	WrappedBy uint32    `json:"wrapped_by"`
	Key       []byte    `json:"key"`
	Created   time.Time `json:"created"`
}

func kekAAD(id string, v, by uint32) []byte {
	return fmt.Appendf(nil, "stowage-kek:%s:%d:%d", id, v, by)
}

// ShareVersions makes the key file's new versions live in db (see above),
// where every node sharing the database finds them. Call it before the
// keyring is used.
func (k *FileKeyring) ShareVersions(db SettingStore) {
	k.mu.Lock()
	k.db = db
	k.mu.Unlock()
}

// readShared reads the database versions of key id.
func readShared(ctx context.Context, db SettingStore, id string) (sharedVersions, error) {
	v, err := db.Setting(ctx, settingVersionsPrefix+id)
	if errors.Is(err, stowage.ErrNotFound) {
		return parseShared("", false, id)
	}
	if err != nil {
		return sharedVersions{}, err
	}
	return parseShared(v, true, id)
}

// parseShared reads the setting's value (found is false if it is unset).
func parseShared(v string, found bool, id string) (sharedVersions, error) {
	s := sharedVersions{Versions: map[uint32]sharedVersion{}}
	if !found {
		return s, nil
	}
	if err := json.Unmarshal([]byte(v), &s); err != nil {
		return s, fmt.Errorf("setting %s%s: %v", settingVersionsPrefix, id, err)
	}
	if s.Versions == nil {
		s.Versions = map[uint32]sharedVersion{}
	}
	return s, nil
}

// updateShared changes the database versions of key id with fn, in one
// transaction; fn returns false to leave them as they are.
func updateShared(ctx context.Context, db SettingStore, id string, fn func(s *sharedVersions) (bool, error)) error {
	return db.UpdateSetting(ctx, settingVersionsPrefix+id, func(v string, found bool) (string, error) {
		s, err := parseShared(v, found, id)
		if err != nil {
			return v, err
		}
		if ok, err := fn(&s); err != nil || !ok {
			return v, err
		}
		b, err := json.Marshal(s)
		return string(b), err
	})
}

// loadShared rereads the database versions: when force (a version this
// node has not seen: one read per such request, a rare event), or when the
// copy is older than a second. The caller does not hold mu.
func (k *FileKeyring) loadShared(ctx context.Context, force bool) error {
	k.mu.RLock()
	db, id, age := k.db, k.file.ID, time.Since(k.sharedAt)
	k.mu.RUnlock()
	if db == nil || (!force && age < time.Second) {
		return nil
	}
	s, err := readShared(ctx, db, id)
	if err != nil {
		return fmt.Errorf("%w: read the key versions kept in the database: %v", ErrKeyUnavailable, err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.file.ID == id {
		k.setShared(s)
	}
	return nil
}

// setShared installs s, keeping the versions already unwrapped whose
// wrapped form did not change; the caller holds mu.
func (k *FileKeyring) setShared(s sharedVersions) {
	learned := map[uint32][]byte{}
	for v, e := range s.Versions {
		if old, ok := k.shared.Versions[v]; ok && string(old.Key) == string(e.Key) && k.learned[v] != nil {
			learned[v] = k.learned[v]
		}
	}
	k.shared, k.learned, k.sharedAt = s, learned, time.Now()
}

// sharedKEK returns database version v, unwrapping it with its root from
// the file; the caller holds no lock.
func (k *FileKeyring) sharedKEK(ctx context.Context, v uint32) ([]byte, error) {
	// Once a second at most, so a version retired on another node stops
	// working here too.
	if err := k.loadShared(ctx, false); err != nil {
		return nil, err
	}
	k.mu.RLock()
	key, known := k.learned[v], k.shared.Versions[v].Key != nil
	k.mu.RUnlock()
	if key != nil {
		return key, nil
	}
	if !known {
		// A version this node has not seen yet: another node rotated.
		if err := k.loadShared(ctx, true); err != nil {
			return nil, err
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	e, ok := k.shared.Versions[v]
	if !ok {
		return nil, nil
	}
	kv := stowage.KeyVersion{ID: k.file.ID, Version: v}
	root := k.keys[e.WrappedBy]
	if root == nil {
		return nil, fmt.Errorf("%w: %s is kept in the database wrapped by version %d, which is not in %s (give every node the same key file)", ErrKeyUnavailable, kv, e.WrappedBy, k.path)
	}
	aead, err := gcm(root)
	if err != nil {
		return nil, err
	}
	if len(e.Key) < aead.NonceSize() {
		return nil, fmt.Errorf("%w: %s in the database is too short", ErrIntegrity, kv)
	}
	key, err = aead.Open(nil, e.Key[:aead.NonceSize()], e.Key[aead.NonceSize():], kekAAD(kv.ID, v, e.WrappedBy))
	if err != nil {
		return nil, fmt.Errorf("%w: %s, kept in the database, does not open with version %d of %s", ErrWrongKey, kv, e.WrappedBy, k.path)
	}
	if k.learned == nil {
		k.learned = map[uint32][]byte{}
	}
	k.learned[v] = key
	return key, nil
}

// rotateShared adds a random version to the database, wrapped by the file's
// current version, and makes it current for every node.
func (k *FileKeyring) rotateShared(ctx context.Context) (stowage.KeyVersion, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return stowage.KeyVersion{}, err
	}
	if err := k.refresh(); err != nil {
		return stowage.KeyVersion{}, err
	}
	k.mu.RLock()
	db, id, root := k.db, k.file.ID, k.file.Current
	rootKey := k.keys[root]
	top := uint32(0)
	for v := range k.keys {
		top = max(top, v)
	}
	k.mu.RUnlock()
	var s sharedVersions
	var kv stowage.KeyVersion
	err := updateShared(ctx, db, id, func(sv *sharedVersions) (bool, error) {
		s = *sv
		next := max(top, s.Current)
		for v := range s.Versions {
			next = max(next, v)
		}
		next++
		kv = stowage.KeyVersion{ID: id, Version: next}
		aead, err := gcm(rootKey)
		if err != nil {
			return false, err
		}
		nonce := make([]byte, aead.NonceSize())
		if _, err := rand.Read(nonce); err != nil {
			return false, err
		}
		s.Versions[next] = sharedVersion{WrappedBy: root, Key: aead.Seal(nonce, nonce, key, kekAAD(id, next, root)), Created: time.Now().UTC()}
		s.Current = next
		*sv = s
		return true, nil
	})
	if err != nil {
		return stowage.KeyVersion{}, fmt.Errorf("record the new key version in the database: %w", err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.file.ID == id {
		k.setShared(s)
		k.learned[kv.Version] = key
	}
	return kv, nil
}

// retireShared removes database version kv; ok is false if it is not one.
func (k *FileKeyring) retireShared(ctx context.Context, kv stowage.KeyVersion) (ok bool, err error) {
	k.mu.RLock()
	db := k.db
	k.mu.RUnlock()
	var s sharedVersions
	err = updateShared(ctx, db, kv.ID, func(sv *sharedVersions) (bool, error) {
		s = *sv
		if _, ok = s.Versions[kv.Version]; !ok {
			return false, nil
		}
		if kv.Version == s.Current {
			return false, fmt.Errorf("%s is the current version: rotate first", kv)
		}
		delete(s.Versions, kv.Version)
		return true, nil
	})
	if err != nil || !ok {
		return ok, err
	}
	k.mu.Lock()
	if k.file.ID == kv.ID {
		k.setShared(s)
	}
	k.mu.Unlock()
	return true, nil
}

// wrapsShared lists the database versions wrapped by file version v; the
// caller holds mu.
func (k *FileKeyring) wrapsShared(v uint32) []uint32 {
	var out []uint32
	for sv, e := range k.shared.Versions {
		if e.WrappedBy == v {
			out = append(out, sv)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
