package crypt

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stowage/stowage"
)

// Manager owns the key hierarchy: it creates and opens data keys (wrapped
// by the KEK provider, kept in the Store) and rotates, checks and reports
// them. One Manager serves every Backend of a registry.
type Manager struct {
	Store KeyStore
	Keys  Keys
	// CacheTTL bounds how long an unwrapped data key is reused without asking
	// the provider again: the delay before a revoked key takes effect. 0
	// means the default (1 minute); negative disables the cache.
	CacheTTL time.Duration

	mu    sync.Mutex
	cache map[string]cachedKey
}

type cachedKey struct {
	aead    cipher.AEAD
	expires time.Time
}

const cacheMax = 8192

// NewManager returns a Manager for keys whose data keys live in store (the
// metadata database). A key file (FileKeyring) then keeps the versions
// rotations add in store too, where every node sharing it finds them
// (shared.go).
func NewManager(store KeyStore, keys Keys) *Manager {
	if fk, ok := keys.(*FileKeyring); ok {
		fk.ShareVersions(store)
	}
	return &Manager{Store: store, Keys: keys}
}

// TTL is how long an unwrapped data key is reused (negative: not cached).
func (m *Manager) TTL() time.Duration { return m.ttl() }

func (m *Manager) ttl() time.Duration {
	if m.CacheTTL == 0 {
		return time.Minute
	}
	return m.CacheTTL
}

// newDataKey makes a random data key for the object at key obj, wraps it
// with the current KEK and records it. It returns the key's id and AEAD.
func (m *Manager) newDataKey(ctx context.Context, obj string) ([idSize]byte, cipher.AEAD, error) {
	if p, ok := ctx.Value(preparedKey{}).(*prepared); ok && p.obj == obj && p.used.CompareAndSwap(false, true) {
		return p.id, p.aead, nil // recorded by the caller (PrepareDataKey)
	}
	id, aead, dk, err := m.makeDataKey(ctx, obj)
	if err != nil {
		return id, nil, err
	}
	if err := m.Store.PutDataKey(ctx, dk); err != nil {
		return id, nil, fmt.Errorf("record data key: %w", err)
	}
	m.remember(dk.ID, aead)
	return id, aead, nil
}

// preparedKey carries a *prepared in a context (PrepareDataKey).
type preparedKey struct{}

// prepared is a data key made for the next Put of obj, its row recorded by
// the caller.
type prepared struct {
	obj  string
	id   [idSize]byte
	aead cipher.AEAD
	used atomic.Bool
}

// prepare makes the data key of the next write of obj under the returned
// context, for the caller to record the row (stowage.DataKeyPreparer). Only
// keys wrapped in the process (a key file, a key in the environment) are
// prepared: a KMS call for an object that may already be stored would cost
// more than the commit it saves.
func (m *Manager) prepare(ctx context.Context, obj string) (context.Context, stowage.DataKey, error) {
	switch m.Keys.(type) {
	case *FileKeyring, *StaticKeyring:
	default:
		return ctx, stowage.DataKey{}, errors.New("crypt: keys wrapped outside the process are not prepared")
	}
	id, aead, dk, err := m.makeDataKey(ctx, obj)
	if err != nil {
		return ctx, dk, err
	}
	m.remember(dk.ID, aead)
	return context.WithValue(ctx, preparedKey{}, &prepared{obj: obj, id: id, aead: aead}), dk, nil
}

// makeDataKey makes and wraps a random data key for obj, unrecorded.
func (m *Manager) makeDataKey(ctx context.Context, obj string) ([idSize]byte, cipher.AEAD, stowage.DataKey, error) {
	var id [idSize]byte
	var dk stowage.DataKey
	kv, err := m.Keys.Current(ctx)
	if err != nil {
		return id, nil, dk, keyError(err)
	}
	dek := make([]byte, 32)
	if _, err := rand.Read(dek); err != nil {
		return id, nil, dk, err
	}
	if _, err := rand.Read(id[:]); err != nil {
		return id, nil, dk, err
	}
	wrapped, err := m.Keys.Wrap(ctx, kv, dek)
	if err != nil {
		return id, nil, dk, keyError(err)
	}
	aead, err := gcm(dek)
	if err != nil {
		return id, nil, dk, err
	}
	dk = stowage.DataKey{ID: hex.EncodeToString(id[:]), Object: obj, Wrapped: kv, Key: wrapped, Created: time.Now()}
	return id, aead, dk, nil
}

// dataKey returns the AEAD of data key id, from the cache or by unwrapping it.
func (m *Manager) dataKey(ctx context.Context, id [idSize]byte) (cipher.AEAD, error) {
	hid := hex.EncodeToString(id[:])
	m.mu.Lock()
	c, ok := m.cache[hid]
	m.mu.Unlock()
	if ok && time.Now().Before(c.expires) {
		return c.aead, nil
	}
	dk, err := m.Store.GetDataKey(ctx, hid)
	if errors.Is(err, stowage.ErrNotFound) {
		return nil, integrityError(fmt.Errorf("%w: the object's data key %s is not in the metadata database", ErrIntegrity, hid))
	}
	if err != nil {
		return nil, err
	}
	dek, err := m.Keys.Unwrap(ctx, dk.Wrapped, dk.Key)
	if err != nil {
		return nil, keyError(err)
	}
	aead, err := gcm(dek)
	if err != nil {
		return nil, err
	}
	m.remember(hid, aead)
	return aead, nil
}

func (m *Manager) remember(id string, aead cipher.AEAD) {
	if m.ttl() < 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cache == nil || len(m.cache) >= cacheMax {
		m.cache = map[string]cachedKey{}
	}
	m.cache[id] = cachedKey{aead, time.Now().Add(m.ttl())}
}

// Forget empties the cache of unwrapped data keys, so the next read asks the
// provider again (after a revocation, or in tests).
func (m *Manager) Forget() {
	m.mu.Lock()
	m.cache = nil
	m.mu.Unlock()
}

// forget removes the record of a data key whose write failed (best
// effort: a leftover row only costs a rewrap at rotations).
func (m *Manager) forget(ctx context.Context, id [idSize]byte) {
	hid := hex.EncodeToString(id[:])
	_ = m.Store.DeleteDataKey(context.WithoutCancel(ctx), hid)
	m.mu.Lock()
	delete(m.cache, hid)
	m.mu.Unlock()
}

func (m *Manager) moved(ctx context.Context, from, to string) error {
	return m.Store.MoveDataKeys(ctx, from, to)
}

// replaced forgets data key old, the key of the object that a write (a Put,
// or an upload's Commit) has just replaced at key obj, unless that key no
// longer belongs to obj (or is the new object's key, cur). Best effort: a
// row left behind only costs a rewrap at rotations until obj is deleted.
//
// It is called only after the write succeeded, with the id read from the
// object's header before the write: data keys are random per write, so once
// that object is replaced no bytes at obj are sealed with it any more. (It
// does not forget every other key of obj: a concurrent write of the same key
// may own one, and its bytes may be the ones that stay.)
func (m *Manager) replaced(ctx context.Context, obj string, old, cur [idSize]byte) {
	if old == cur {
		return
	}
	hid := hex.EncodeToString(old[:])
	_ = m.Store.DeleteDataKeyOf(context.WithoutCancel(ctx), hid, obj)
	m.mu.Lock()
	delete(m.cache, hid)
	m.mu.Unlock()
}

func (m *Manager) deleted(ctx context.Context, obj string) error {
	return m.Store.DeleteDataKeys(ctx, obj)
}

// keyError turns a provider error into the API error people see.
func keyError(err error) error {
	var se *stowage.Error
	if errors.As(err, &se) {
		return err
	}
	if errors.Is(err, ErrWrongKey) {
		return &stowage.Error{Code: stowage.CodeUnavailable, Err: err,
			Message: "encryption key unavailable: the configured key is not the one this data was encrypted with; nothing was deleted, and access returns when the right key is configured"}
	}
	return &stowage.Error{Code: stowage.CodeUnavailable, Err: fmt.Errorf("%w: %w", ErrKeyUnavailable, err),
		Message: "encryption key unavailable: the key-encryption key cannot be used now (revoked, retired or unreachable); nothing was deleted, and access returns when the key does"}
}

func integrityError(err error) error {
	return &stowage.Error{Code: stowage.CodeInternal, Err: err,
		Message: "stored data failed its integrity check and was not served (it was changed, truncated or damaged on disk); restore it from a backup or another copy"}
}

// Status is what `stowage keys status` shows.
type Status struct {
	Provider string               `json:"provider"`
	Current  stowage.KeyVersion   `json:"current"`
	Versions []stowage.KeyVersion `json:"versions,omitempty"` // held by the provider, if it says
	// DataKeys counts data keys per KEK version that wraps them.
	DataKeys []stowage.KeyVersionCount `json:"data_keys"`
}

// Status reports the current key, its versions and the data keys each wraps.
func (m *Manager) Status(ctx context.Context) (Status, error) {
	st := Status{Provider: m.Keys.Describe()}
	var err error
	if st.Current, err = m.Keys.Current(ctx); err != nil {
		return st, keyError(err)
	}
	if r, ok := m.Keys.(Rotator); ok {
		st.Versions = r.Versions()
	}
	st.DataKeys, err = m.Store.CountDataKeys(ctx)
	return st, err
}

// RotateProgress reports a rotation as it goes.
type RotateProgress struct {
	Current   stowage.KeyVersion `json:"current"`
	Rewrapped int64              `json:"rewrapped"`
	Total     int64              `json:"total"` // data keys not on the current version when the pass began
	Done      bool               `json:"done"`
}

// RotateOptions tunes Rotate.
type RotateOptions struct {
	// NewVersion asks the provider for a new version first (file keys);
	// false only rewraps onto the current one (after a KMS or an environment
	// variable changed its current version).
	NewVersion bool
	Batch      int // data keys per transaction; default 256
	Progress   func(RotateProgress)
}

// Rotate makes a new KEK version current (if asked) and rewraps every data
// key wrapped by another version onto it, in bounded batches, each its own
// short transaction, while the registry keeps serving. Objects are not
// touched: only the wrapped keys in the DB change. It returns when no data
// key is wrapped by any other version.
func (m *Manager) Rotate(ctx context.Context, opt RotateOptions) (RotateProgress, error) {
	var p RotateProgress
	if opt.Batch <= 0 {
		opt.Batch = 256
	}
	if opt.NewVersion {
		r, ok := m.Keys.(Rotator)
		if !ok {
			return p, stowage.Errorf(stowage.CodeUnsupported, "%s cannot add key versions itself: make a new version current where the key lives, then run `stowage keys rotate --rewrap-only`", m.Keys.Describe())
		}
		if _, err := r.Rotate(ctx); err != nil {
			return p, err
		}
	}
	cur, err := m.Keys.Current(ctx)
	if err != nil {
		return p, keyError(err)
	}
	p.Current = cur
	// Passes repeat until one finds nothing: a push that read the old
	// current version just before the switch may record its key after the
	// first pass went by. Bounded: pushes started after the switch use cur.
	for pass := 0; pass < 10; pass++ {
		counts, err := m.Store.CountDataKeys(ctx)
		if err != nil {
			return p, err
		}
		left := int64(0)
		for _, c := range counts {
			if c.KeyVersion != cur {
				left += c.Count
			}
		}
		if left == 0 {
			p.Done = true
			report(opt.Progress, p)
			return p, nil
		}
		p.Total = p.Rewrapped + left
		after := ""
		for {
			batch, err := m.Store.DataKeysNotWrappedBy(ctx, cur, after, opt.Batch)
			if err != nil {
				return p, err
			}
			if len(batch) == 0 {
				break
			}
			after = batch[len(batch)-1].ID
			olds := make([]stowage.KeyVersion, len(batch))
			for i := range batch {
				dek, err := m.Keys.Unwrap(ctx, batch[i].Wrapped, batch[i].Key)
				if err != nil {
					return p, fmt.Errorf("rewrap data key %s (of %s): %w", batch[i].ID, batch[i].Object, keyError(err))
				}
				olds[i] = batch[i].Wrapped
				if batch[i].Key, err = m.Keys.Wrap(ctx, cur, dek); err != nil {
					return p, keyError(err)
				}
				batch[i].Wrapped = cur
			}
			n, err := m.Store.RewrapDataKeys(ctx, batch, olds)
			if err != nil {
				return p, err
			}
			p.Rewrapped += n
			report(opt.Progress, p)
		}
	}
	return p, fmt.Errorf("data keys wrapped by old versions keep appearing; run `stowage keys rotate --rewrap-only` again")
}

func report(fn func(RotateProgress), p RotateProgress) {
	if fn != nil {
		fn(p)
	}
}

// Retire removes a KEK version from a key file once no data key uses it.
func (m *Manager) Retire(ctx context.Context, kv stowage.KeyVersion) error {
	r, ok := m.Keys.(Rotator)
	if !ok {
		return stowage.Errorf(stowage.CodeUnsupported, "%s manages its own versions: retire the version there", m.Keys.Describe())
	}
	counts, err := m.Store.CountDataKeys(ctx)
	if err != nil {
		return err
	}
	var n int64
	for _, c := range counts {
		if c.KeyVersion == kv {
			n = c.Count
		}
	}
	if n > 0 {
		return stowage.Errorf(stowage.CodeDenied, "%s still wraps %d data keys: run `stowage keys rotate` first", kv, n)
	}
	if err := r.Retire(ctx, kv); err != nil {
		return stowage.Errorf(stowage.CodeInvalidParameter, "%v", err)
	}
	return nil
}

// Check verifies at startup that the configured keys open this registry's
// data keys: for each KEK version in use it unwraps one sample. A wrong key
// is an error (refuse to start); an unavailable version is returned in
// unavailable (start, and serve what can be served).
func (m *Manager) Check(ctx context.Context) (unavailable []stowage.KeyVersion, err error) {
	if _, err := m.Keys.Current(ctx); err != nil {
		if errors.Is(err, ErrWrongKey) {
			return nil, err
		}
		return nil, fmt.Errorf("the current encryption key cannot be used: %w", err)
	}
	counts, err := m.Store.CountDataKeys(ctx)
	if err != nil {
		return nil, err
	}
	for _, c := range counts {
		dk, err := m.Store.SampleDataKey(ctx, c.KeyVersion)
		if err != nil {
			return nil, err
		}
		if _, err := m.Keys.Unwrap(ctx, dk.Wrapped, dk.Key); err != nil {
			if errors.Is(err, ErrWrongKey) {
				return nil, fmt.Errorf("the configured encryption key does not open this registry's data (%d data keys are wrapped by %s): %w; configure the key this data was written with", c.Count, c.KeyVersion, err)
			}
			unavailable = append(unavailable, c.KeyVersion)
		}
	}
	return unavailable, nil
}
