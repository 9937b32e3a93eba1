package crypt

import (
	"context"

	"github.com/stowage/stowage"
)

// KeyStore is where the key hierarchy keeps what is not in the key file or
// the KMS: the wrapped data keys (Manager) and the key versions a key file
// shares with the other nodes (FileKeyring, shared.go). The metadata
// database implements it (meta/sqlite, meta/postgres; meta/metatest tests
// it), so every node sharing the database shares them.
type KeyStore interface {
	DataKeyStore
	SettingStore
}

// DataKeyStore keeps the wrapped data keys of encrypted objects. The object
// holds only its data key's ID; the key itself, wrapped by a key-encryption
// key, lives here, so rotating the key-encryption key rewrites these records
// and never an object. Each method is one transaction; lookups that find
// nothing return stowage.ErrNotFound.
type DataKeyStore interface {
	PutDataKey(ctx context.Context, k stowage.DataKey) error
	GetDataKey(ctx context.Context, id string) (stowage.DataKey, error)
	// MoveDataKeys records that the objects at storage key from now live at to.
	MoveDataKeys(ctx context.Context, from, to string) error
	// DeleteDataKeys forgets the data keys of the object at obj.
	DeleteDataKeys(ctx context.Context, obj string) error
	// DeleteDataKey forgets one data key (of a write that failed).
	DeleteDataKey(ctx context.Context, id string) error
	// DeleteDataKeyOf forgets data key id if it still belongs to the object
	// at obj (of an object a write replaced).
	DeleteDataKeyOf(ctx context.Context, id, obj string) error
	// DataKeysNotWrappedBy lists at most limit data keys wrapped by any key
	// version other than kv, in ID order after `after`.
	DataKeysNotWrappedBy(ctx context.Context, kv stowage.KeyVersion, after string, limit int) ([]stowage.DataKey, error)
	// RewrapDataKeys replaces the wrapping of each keys[i] (its Wrapped and
	// Key) if it is still wrapped by old[i], all in one transaction, and
	// counts those it replaced (one that changed or is gone meanwhile is left).
	RewrapDataKeys(ctx context.Context, keys []stowage.DataKey, old []stowage.KeyVersion) (int64, error)
	// CountDataKeys counts data keys per key version, in key version order.
	CountDataKeys(ctx context.Context) ([]stowage.KeyVersionCount, error)
	// SampleDataKey returns one data key wrapped by kv.
	SampleDataKey(ctx context.Context, kv stowage.KeyVersion) (stowage.DataKey, error)
}

// SettingStore keeps named values shared by every node (the metadata
// database's settings).
type SettingStore interface {
	// Setting returns the value of setting name (stowage.ErrNotFound if unset).
	Setting(ctx context.Context, name string) (string, error)
	// UpdateSetting sets setting name to what fn makes of its value
	// (found is false if unset), in one transaction: nothing is written
	// when fn fails or returns the value unchanged.
	UpdateSetting(ctx context.Context, name string, fn func(value string, found bool) (string, error)) error
}
