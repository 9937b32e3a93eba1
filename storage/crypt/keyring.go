package crypt

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
)

// FileKeyring keeps key-encryption keys in a JSON file with 0600
// permissions: {"id": "...", "current": N, "versions": {"1": "<base64>", ...}}.
// It is the service-managed default; a customer-managed key or a KMS is
// another Keyring.
type FileKeyring struct {
	mu      sync.RWMutex
	path    string
	ID      string            `json:"id"`
	Cur     uint32            `json:"current"`
	Version map[uint32]string `json:"versions"`
}

// OpenFileKeyring reads the keyring at path, creating it with one fresh
// key if it does not exist.
func OpenFileKeyring(path string) (*FileKeyring, error) {
	k := &FileKeyring{path: path}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		k.ID, k.Version = "service", map[uint32]string{}
		if _, err := k.Rotate(); err != nil {
			return nil, err
		}
		return k, nil
	}
	if err != nil {
		return nil, fmt.Errorf("encryption keyring %s: %w", path, err)
	}
	if err := json.Unmarshal(b, k); err != nil || k.Version[k.Cur] == "" {
		return nil, fmt.Errorf("encryption keyring %s is not a valid keyring (restore it from your backup): %v", path, err)
	}
	return k, nil
}

// Rotate adds a new key version and makes it current.
func (k *FileKeyring) Rotate() (uint32, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return 0, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	next := k.Cur + 1
	k.Version[next] = base64.StdEncoding.EncodeToString(key)
	k.Cur = next
	if err := k.save(); err != nil {
		delete(k.Version, next)
		k.Cur--
		return 0, err
	}
	return next, nil
}

// save writes the file atomically with 0600 permissions.
func (k *FileKeyring) save() error {
	b, err := json.MarshalIndent(k, "", "  ")
	if err != nil {
		return err
	}
	tmp := k.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, k.path)
}

func (k *FileKeyring) Current() (string, uint32, []byte, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	key, err := k.key(k.Cur)
	return k.ID, k.Cur, key, err
}

func (k *FileKeyring) Key(id string, version uint32) ([]byte, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if id != k.ID {
		return nil, fmt.Errorf("%w: this keyring holds key %q, not %q", ErrKeyUnavailable, k.ID, id)
	}
	return k.key(version)
}

func (k *FileKeyring) key(version uint32) ([]byte, error) {
	s, ok := k.Version[version]
	if !ok {
		return nil, fmt.Errorf("%w: version %d is not in the keyring", ErrKeyUnavailable, version)
	}
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(key) != 32 {
		return nil, fmt.Errorf("%w: version %d is not a 32-byte key", ErrKeyUnavailable, version)
	}
	return key, nil
}
