package crypt

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/stowage/stowage"
)

// Errors. Backend methods return them inside a *stowage.Error with a code
// and a message for people, so errors.Is works on what the API layer sees.
var (
	// ErrIntegrity: stored bytes failed authentication (changed, truncated
	// or moved). Nothing of such an object is returned.
	ErrIntegrity = errors.New("encrypted object failed its integrity check")
	// ErrKeyUnavailable: the key-encryption key version is not available
	// now (revoked, retired, or the KMS cannot be reached). Nothing is lost:
	// access returns when the key does.
	ErrKeyUnavailable = errors.New("encryption key unavailable")
	// ErrWrongKey: the key-encryption key given is not the one that wrapped
	// the data keys (another registry's key, or a mistyped key file).
	ErrWrongKey = errors.New("wrong encryption key")
)

// Keys is a key-encryption key (KEK) provider: the service-managed key file,
// a customer-managed key file or environment variable, or a KMS. Only Wrap
// and Unwrap see data keys; a KMS never needs to reveal its KEK.
//
// To plug in a KMS, implement Keys (in Go, or as an external program: see
// ExecKMS). Errors must wrap ErrKeyUnavailable when the key cannot be used
// now and ErrWrongKey when a wrapped key does not open with it.
type Keys interface {
	// Describe says where the keys come from, for `stowage keys status`.
	Describe() string
	// Current is the version new data keys are wrapped with.
	Current(ctx context.Context) (stowage.KeyVersion, error)
	// Wrap encrypts a 32-byte data key with version kv.
	Wrap(ctx context.Context, kv stowage.KeyVersion, dek []byte) ([]byte, error)
	// Unwrap decrypts a data key wrapped by version kv.
	Unwrap(ctx context.Context, kv stowage.KeyVersion, wrapped []byte) ([]byte, error)
}

// Rotator is implemented by providers that manage their own versions (the
// key files). With a KMS, rotation happens in the KMS: its Current changes.
type Rotator interface {
	// Rotate adds a new version and makes it current.
	Rotate(ctx context.Context) (stowage.KeyVersion, error)
	// Retire removes a version that is not current.
	Retire(ctx context.Context, kv stowage.KeyVersion) error
	// Versions lists the versions held.
	Versions() []stowage.KeyVersion
}

// wrapLocal seals a data key with a 32-byte KEK held in the process.
func wrapLocal(kek, dek []byte, kv stowage.KeyVersion) ([]byte, error) {
	aead, err := gcm(kek)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return aead.Seal(nonce, nonce, dek, wrapAAD(kv)), nil
}

func unwrapLocal(kek, wrapped []byte, kv stowage.KeyVersion) ([]byte, error) {
	aead, err := gcm(kek)
	if err != nil {
		return nil, err
	}
	if len(wrapped) < aead.NonceSize() {
		return nil, fmt.Errorf("%w: a wrapped data key is too short", ErrIntegrity)
	}
	dek, err := aead.Open(nil, wrapped[:aead.NonceSize()], wrapped[aead.NonceSize():], wrapAAD(kv))
	if err != nil {
		return nil, fmt.Errorf("%w: a data key wrapped by %s does not open with the key configured under that name", ErrWrongKey, kv)
	}
	return dek, nil
}

func wrapAAD(kv stowage.KeyVersion) []byte {
	return fmt.Appendf(nil, "stowage-dek:%s:%d", kv.ID, kv.Version)
}

// keyringFile is the JSON form of a key file:
//
//	{"id": "service-1a2b3c4d", "current": 2, "versions": {"1": "<base64>", "2": "<base64>"}}
type keyringFile struct {
	ID       string            `json:"id"`
	Current  uint32            `json:"current"`
	Versions map[uint32]string `json:"versions"`
}

func (f *keyringFile) parse(where string) (map[uint32][]byte, error) {
	if f.ID == "" || len(f.ID) > 200 || strings.ContainsAny(f.ID, ":\n") {
		return nil, fmt.Errorf("%s: the key id must be 1 to 200 characters without ':'", where)
	}
	keys := map[uint32][]byte{}
	for v, s := range f.Versions {
		k, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(k) != 32 {
			return nil, fmt.Errorf("%s: version %d is not a base64-encoded 32-byte key", where, v)
		}
		keys[v] = k
	}
	if keys[f.Current] == nil {
		return nil, fmt.Errorf("%s: the current version %d is not in the file", where, f.Current)
	}
	return keys, nil
}

// FileKeyring keeps KEK versions in a JSON file with 0600 permissions. It is
// the service-managed default (<data_dir>/keys/service.json, created on first
// start) and the customer-managed key file. It rereads the file when it
// changes (checked at most once a second), so a key file updated by a secret
// store takes effect without a restart, and removing the file revokes access.
type FileKeyring struct {
	path    string
	service bool

	mu      sync.RWMutex
	file    keyringFile
	keys    map[uint32][]byte
	stamp   string    // size and modification time of what was read
	checked time.Time // last time the file was looked at
	missing error     // set while the file cannot be read

	// With a database (ShareVersions): the versions Rotate added, kept
	// there (shared.go), as last read, and those unwrapped so far.
	db       SettingStore
	shared   sharedVersions
	sharedAt time.Time
	learned  map[uint32][]byte
}

// OpenFileKeyring reads the key file at path. create makes a new one with a
// fresh key if none exists (the service-managed key).
func OpenFileKeyring(path string, create bool) (*FileKeyring, error) {
	k := &FileKeyring{path: path, service: create}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) && create {
		id := make([]byte, 4)
		rand.Read(id)
		k.file = keyringFile{ID: "service-" + hex.EncodeToString(id), Versions: map[uint32]string{}}
		k.keys = map[uint32][]byte{}
		if _, err := k.addFileVersion(); err != nil {
			return nil, fmt.Errorf("create the service encryption key %s: %w", path, err)
		}
		return k, nil
	}
	if err := k.load(); err != nil {
		return nil, err
	}
	return k, nil
}

func stampOf(fi os.FileInfo) string { return fmt.Sprint(fi.Size(), fi.ModTime().UnixNano()) }

// load reads the file; the caller holds mu or is the constructor.
func (k *FileKeyring) load() error {
	fi, err := os.Stat(k.path)
	if err != nil {
		return fmt.Errorf("encryption key file %s: %w", k.path, err)
	}
	b, err := os.ReadFile(k.path)
	if err != nil {
		return fmt.Errorf("encryption key file %s: %w", k.path, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("encryption key file %s is readable by other users (mode %v): run chmod 600 %s", k.path, fi.Mode().Perm(), k.path)
	}
	var f keyringFile
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("encryption key file %s is not a key file (restore it from your backup): %v", k.path, err)
	}
	keys, err := f.parse("encryption key file " + k.path)
	if err != nil {
		return err
	}
	if f.ID != k.file.ID {
		// Another key: the database versions read so far were not its own.
		k.shared, k.learned, k.sharedAt = sharedVersions{}, nil, time.Time{}
	}
	k.file, k.keys, k.stamp = f, keys, stampOf(fi)
	return nil
}

// refresh rereads the file if it changed; at most once a second.
func (k *FileKeyring) refresh() error {
	k.mu.RLock()
	fresh := time.Since(k.checked) < time.Second
	missing := k.missing
	k.mu.RUnlock()
	if fresh {
		return missing
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.checked = time.Now()
	fi, err := os.Stat(k.path)
	switch {
	case err != nil:
		k.missing = fmt.Errorf("%w: key file %s: %v", ErrKeyUnavailable, k.path, err)
	case stampOf(fi) != k.stamp:
		if err := k.load(); err != nil {
			k.missing = fmt.Errorf("%w: %v", ErrKeyUnavailable, err)
		} else {
			k.missing = nil
		}
	default:
		k.missing = nil
	}
	return k.missing
}

func (k *FileKeyring) Describe() string {
	if k.service {
		return "service-managed key file " + k.path
	}
	return "customer-managed key file " + k.path
}

// Current is the file's current version, or, with a database, the newest
// version a rotation put there if it is higher (read at most once a second,
// so every node switches within a second of a rotation on any of them).
func (k *FileKeyring) Current(ctx context.Context) (stowage.KeyVersion, error) {
	if err := k.refresh(); err != nil {
		return stowage.KeyVersion{}, err
	}
	if err := k.loadShared(ctx, false); err != nil {
		return stowage.KeyVersion{}, err
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	cur := k.file.Current
	if _, ok := k.shared.Versions[k.shared.Current]; ok && k.shared.Current > cur {
		cur = k.shared.Current
	}
	return stowage.KeyVersion{ID: k.file.ID, Version: cur}, nil
}

// kek returns version kv: from the file, else from the database.
func (k *FileKeyring) kek(ctx context.Context, kv stowage.KeyVersion) ([]byte, error) {
	if err := k.refresh(); err != nil {
		return nil, err
	}
	k.mu.RLock()
	id, kek, db := k.file.ID, k.keys[kv.Version], k.db
	k.mu.RUnlock()
	if kv.ID != id {
		return nil, fmt.Errorf("%w: the data key is wrapped by key %q, and %s holds key %q", ErrWrongKey, kv.ID, k.path, id)
	}
	if kek != nil {
		return kek, nil
	}
	if db != nil {
		kek, err := k.sharedKEK(ctx, kv.Version)
		if kek != nil || err != nil {
			return kek, err
		}
		return nil, fmt.Errorf("%w: %s is neither in %s nor in the database (retired, or the file is an old copy)", ErrKeyUnavailable, kv, k.path)
	}
	return nil, fmt.Errorf("%w: %s is not in %s (retired, or the file is an old copy)", ErrKeyUnavailable, kv, k.path)
}

func (k *FileKeyring) Wrap(ctx context.Context, kv stowage.KeyVersion, dek []byte) ([]byte, error) {
	kek, err := k.kek(ctx, kv)
	if err != nil {
		return nil, err
	}
	return wrapLocal(kek, dek, kv)
}

func (k *FileKeyring) Unwrap(ctx context.Context, kv stowage.KeyVersion, wrapped []byte) ([]byte, error) {
	kek, err := k.kek(ctx, kv)
	if err != nil {
		return nil, err
	}
	return unwrapLocal(kek, wrapped, kv)
}

// Rotate adds a fresh version and makes it current: in the database, for
// every node, after ShareVersions; otherwise in the file.
func (k *FileKeyring) Rotate(ctx context.Context) (stowage.KeyVersion, error) {
	k.mu.RLock()
	db := k.db
	k.mu.RUnlock()
	if db != nil {
		return k.rotateShared(ctx)
	}
	return k.addFileVersion()
}

// addFileVersion adds a fresh version to the file, makes it current and
// saves the file.
func (k *FileKeyring) addFileVersion() (stowage.KeyVersion, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return stowage.KeyVersion{}, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	next := k.file.Current + 1
	for _, ok := k.keys[next]; ok; _, ok = k.keys[next] {
		next++
	}
	f := k.file
	f.Versions = map[uint32]string{}
	for v, s := range k.file.Versions {
		f.Versions[v] = s
	}
	f.Versions[next] = base64.StdEncoding.EncodeToString(key)
	f.Current = next
	if err := k.save(f); err != nil {
		return stowage.KeyVersion{}, err
	}
	k.keys[next] = key
	return stowage.KeyVersion{ID: f.ID, Version: next}, nil
}

// Retire removes a version: from the database if it is kept there (for
// every node), else from the file. The caller checks that no data key is
// wrapped by it any more.
func (k *FileKeyring) Retire(ctx context.Context, kv stowage.KeyVersion) error {
	k.mu.RLock()
	db := k.db
	k.mu.RUnlock()
	if db != nil {
		if err := k.loadShared(ctx, true); err != nil {
			return err
		}
		if ok, err := k.retireShared(ctx, kv); ok || err != nil {
			return err
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if kv.ID != k.file.ID || k.keys[kv.Version] == nil {
		return fmt.Errorf("%s is not in %s", kv, k.path)
	}
	if vs := k.wrapsShared(kv.Version); len(vs) > 0 {
		return fmt.Errorf("%s is the root in %s of the versions %v kept in the database, and cannot be retired before them (docs/encryption.md, replacing the key file's key)", kv, k.path, vs)
	}
	if kv.Version == k.file.Current {
		return fmt.Errorf("%s is the current version: rotate first", kv)
	}
	f := k.file
	f.Versions = map[uint32]string{}
	for v, s := range k.file.Versions {
		if v != kv.Version {
			f.Versions[v] = s
		}
	}
	if err := k.save(f); err != nil {
		return err
	}
	delete(k.keys, kv.Version)
	return nil
}

// Versions lists the versions in the file and those in the database (as
// last read: Current refreshes them).
func (k *FileKeyring) Versions() []stowage.KeyVersion {
	k.mu.RLock()
	defer k.mu.RUnlock()
	var out []stowage.KeyVersion
	for v := range k.keys {
		out = append(out, stowage.KeyVersion{ID: k.file.ID, Version: v})
	}
	for v := range k.shared.Versions {
		if k.keys[v] == nil {
			out = append(out, stowage.KeyVersion{ID: k.file.ID, Version: v})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out
}

// save writes f atomically (temporary file, fsync, rename) with 0600
// permissions; the caller holds mu.
func (k *FileKeyring) save(f keyringFile) error {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dirOf(k.path), 0o700); err != nil {
		return err
	}
	tmp := k.path + ".tmp"
	fh, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = fh.Write(append(b, '\n'))
	if err == nil {
		err = fh.Sync()
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, k.path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("save encryption key file %s: %w", k.path, err)
	}
	if d, err := os.Open(dirOf(k.path)); err == nil {
		d.Sync()
		d.Close()
	}
	k.file = f
	if fi, err := os.Stat(k.path); err == nil {
		k.stamp = stampOf(fi)
	}
	return nil
}

func dirOf(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:max(i, 1)]
	}
	return "."
}

// StaticKeyring holds keys given once, from an environment variable: either
// a key file's JSON, or one base64-encoded 32-byte key (version 1 of a key
// whose id is derived from the key itself). To rotate, add a version to the
// JSON, make it current, restart, and run `stowage keys rotate`.
type StaticKeyring struct {
	from string
	file keyringFile
	keys map[uint32][]byte
}

// ParseStaticKeyring reads keys from the value of the variable `from`.
func ParseStaticKeyring(from, value string) (*StaticKeyring, error) {
	value = strings.TrimSpace(value)
	if value == "" {
		return nil, fmt.Errorf("encryption key variable %s is empty or not set", from)
	}
	k := &StaticKeyring{from: from}
	if strings.HasPrefix(value, "{") {
		if err := json.Unmarshal([]byte(value), &k.file); err != nil {
			return nil, fmt.Errorf("encryption key variable %s: not a key file's JSON: %v", from, err)
		}
	} else {
		raw, err := base64.StdEncoding.DecodeString(value)
		if err != nil || len(raw) != 32 {
			return nil, fmt.Errorf("encryption key variable %s: want a base64-encoded 32-byte key (openssl rand -base64 32) or a key file's JSON", from)
		}
		sum := sha256.Sum256(raw)
		k.file = keyringFile{ID: "customer-" + hex.EncodeToString(sum[:4]), Current: 1, Versions: map[uint32]string{1: value}}
	}
	var err error
	k.keys, err = k.file.parse("encryption key variable " + from)
	return k, err
}

func (k *StaticKeyring) Describe() string {
	return "customer-managed key from environment variable " + k.from
}

func (k *StaticKeyring) Current(context.Context) (stowage.KeyVersion, error) {
	return stowage.KeyVersion{ID: k.file.ID, Version: k.file.Current}, nil
}

func (k *StaticKeyring) kek(kv stowage.KeyVersion) ([]byte, error) {
	if kv.ID != k.file.ID {
		return nil, fmt.Errorf("%w: the data key is wrapped by key %q, and %s holds key %q", ErrWrongKey, kv.ID, k.from, k.file.ID)
	}
	kek, ok := k.keys[kv.Version]
	if !ok {
		return nil, fmt.Errorf("%w: %s is not in %s", ErrKeyUnavailable, kv, k.from)
	}
	return kek, nil
}

func (k *StaticKeyring) Wrap(_ context.Context, kv stowage.KeyVersion, dek []byte) ([]byte, error) {
	kek, err := k.kek(kv)
	if err != nil {
		return nil, err
	}
	return wrapLocal(kek, dek, kv)
}

func (k *StaticKeyring) Unwrap(_ context.Context, kv stowage.KeyVersion, wrapped []byte) ([]byte, error) {
	kek, err := k.kek(kv)
	if err != nil {
		return nil, err
	}
	return unwrapLocal(kek, wrapped, kv)
}

// Path is the key file's path.
func (k *FileKeyring) Path() string { return k.path }
