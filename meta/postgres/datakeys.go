package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stowage/stowage"
)

// The key store of encrypted storage (storage/crypt.KeyStore): its data
// keys, in the table data_keys, and the settings it shares between nodes.
// Each call is one transaction. A transaction's own PutDataKey and
// GetDataKey (stowage.DataKeyTx) serve a value sealed with a data key in the
// same transaction as the data key (auth's token signing key).

func (db *DB) keyView(ctx context.Context, fn func(t *Tx) error) error {
	return db.View(ctx, func(tx stowage.Tx) error { return fn(tx.(*Tx)) })
}

func (db *DB) keyUpdate(ctx context.Context, fn func(t *Tx) error) error {
	return db.Update(ctx, func(tx stowage.Tx) error { return fn(tx.(*Tx)) })
}

// PutDataKey implements crypt.DataKeyStore.
func (db *DB) PutDataKey(ctx context.Context, k stowage.DataKey) error {
	return db.keyUpdate(ctx, func(t *Tx) error { return t.PutDataKey(k) })
}

// GetDataKey implements crypt.DataKeyStore.
func (db *DB) GetDataKey(ctx context.Context, id string) (k stowage.DataKey, err error) {
	err = db.keyView(ctx, func(t *Tx) (err error) { k, err = t.GetDataKey(id); return err })
	return k, err
}

// MoveDataKeys implements crypt.DataKeyStore.
func (db *DB) MoveDataKeys(ctx context.Context, from, to string) error {
	return db.keyUpdate(ctx, func(t *Tx) error { return t.moveDataKeys(from, to) })
}

// DeleteDataKeys implements crypt.DataKeyStore.
func (db *DB) DeleteDataKeys(ctx context.Context, obj string) error {
	return db.keyUpdate(ctx, func(t *Tx) error { return t.deleteDataKeys(obj) })
}

// DeleteDataKey implements crypt.DataKeyStore.
func (db *DB) DeleteDataKey(ctx context.Context, id string) error {
	return db.keyUpdate(ctx, func(t *Tx) error { return t.deleteDataKey(id) })
}

// DeleteDataKeyOf implements crypt.DataKeyStore.
func (db *DB) DeleteDataKeyOf(ctx context.Context, id, obj string) error {
	return db.keyUpdate(ctx, func(t *Tx) error {
		k, err := t.GetDataKey(id)
		if errors.Is(err, stowage.ErrNotFound) {
			return nil
		}
		if err != nil || k.Object != obj {
			return err
		}
		return t.deleteDataKey(id)
	})
}

// DataKeysNotWrappedBy implements crypt.DataKeyStore.
func (db *DB) DataKeysNotWrappedBy(ctx context.Context, kv stowage.KeyVersion, after string, limit int) (ks []stowage.DataKey, err error) {
	err = db.keyView(ctx, func(t *Tx) (err error) { ks, err = t.dataKeysNotWrappedBy(kv, after, limit); return err })
	return ks, err
}

// RewrapDataKeys implements crypt.DataKeyStore.
func (db *DB) RewrapDataKeys(ctx context.Context, keys []stowage.DataKey, old []stowage.KeyVersion) (n int64, err error) {
	if len(keys) != len(old) {
		return 0, errors.New("RewrapDataKeys: one old version per key")
	}
	err = db.keyUpdate(ctx, func(t *Tx) error {
		n = 0
		for i := range keys {
			ok, err := t.rewrapDataKey(keys[i], old[i])
			if err != nil {
				return err
			}
			if ok {
				n++
			}
		}
		return nil
	})
	return n, err
}

// CountDataKeys implements crypt.DataKeyStore.
func (db *DB) CountDataKeys(ctx context.Context) (cs []stowage.KeyVersionCount, err error) {
	err = db.keyView(ctx, func(t *Tx) (err error) { cs, err = t.countDataKeys(); return err })
	return cs, err
}

// SampleDataKey implements crypt.DataKeyStore.
func (db *DB) SampleDataKey(ctx context.Context, kv stowage.KeyVersion) (k stowage.DataKey, err error) {
	err = db.keyView(ctx, func(t *Tx) (err error) { k, err = t.sampleDataKey(kv); return err })
	return k, err
}

// Setting implements crypt.SettingStore.
func (db *DB) Setting(ctx context.Context, name string) (v string, err error) {
	err = db.keyView(ctx, func(t *Tx) (err error) { v, err = t.GetSetting(name); return err })
	return v, err
}

// UpdateSetting implements crypt.SettingStore.
func (db *DB) UpdateSetting(ctx context.Context, name string, fn func(value string, found bool) (string, error)) error {
	return db.keyUpdate(ctx, func(t *Tx) error {
		v, err := t.GetSetting(name)
		found := err == nil
		if err != nil && !errors.Is(err, stowage.ErrNotFound) {
			return err
		}
		next, err := fn(v, found)
		if err != nil || next == v {
			return err
		}
		return t.PutSetting(name, next, time.Now())
	})
}

func scanDataKey(row pgx.CollectableRow) (stowage.DataKey, error) {
	var k stowage.DataKey
	var version, created int64
	if err := row.Scan(&k.ID, &k.Object, &k.Wrapped.ID, &version, &k.Key, &created); err != nil {
		return k, err
	}
	k.Wrapped.Version, k.Created = uint32(version), ts(created)
	return k, nil
}

func (t *Tx) PutDataKey(k stowage.DataKey) error {
	tag, err := t.exec(sqlPutDataKey, k.ID, k.Object, k.Wrapped.ID, int64(k.Wrapped.Version), k.Key, k.Created.UnixNano())
	if err == nil && tag.RowsAffected() == 0 {
		err = fmt.Errorf("data key %s already exists", k.ID)
	}
	return err
}

func (t *Tx) GetDataKey(id string) (stowage.DataKey, error) {
	return first(t, sqlGetDataKey, []any{id}, scanDataKey)
}

func (t *Tx) moveDataKeys(from, to string) error {
	_, err := t.exec(sqlMoveDataKeys, to, from)
	return err
}

func (t *Tx) deleteDataKeys(obj string) error {
	_, err := t.exec(sqlDelDataKeys, obj)
	return err
}

func (t *Tx) dataKeysNotWrappedBy(kv stowage.KeyVersion, after string, limit int) ([]stowage.DataKey, error) {
	return all(t, sqlDataKeysNotBy, []any{kv.ID, int64(kv.Version), after, limitOf(limit)}, scanDataKey)
}

func (t *Tx) rewrapDataKey(k stowage.DataKey, old stowage.KeyVersion) (bool, error) {
	tag, err := t.exec(sqlRewrapDataKey, k.Wrapped.ID, int64(k.Wrapped.Version), k.Key, k.ID, old.ID, int64(old.Version))
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() == 1, nil
}

func (t *Tx) countDataKeys() ([]stowage.KeyVersionCount, error) {
	return all(t, sqlCountDataKeys, nil, func(row pgx.CollectableRow) (stowage.KeyVersionCount, error) {
		var c stowage.KeyVersionCount
		var version int64
		err := row.Scan(&c.ID, &version, &c.Count)
		c.Version = uint32(version)
		return c, err
	})
}

func (t *Tx) sampleDataKey(kv stowage.KeyVersion) (stowage.DataKey, error) {
	return first(t, sqlSampleDataKey, []any{kv.ID, int64(kv.Version)}, scanDataKey)
}

func (t *Tx) deleteDataKey(id string) error {
	_, err := t.exec(sqlDelDataKey, id)
	return err
}
