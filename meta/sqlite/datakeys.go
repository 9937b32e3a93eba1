package sqlite

import (
	"context"
	"errors"
	"time"

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

func scanDataKey(scan func(...any) error) (stowage.DataKey, error) {
	var k stowage.DataKey
	var created int64
	if err := scan(&k.ID, &k.Object, &k.Wrapped.ID, &k.Wrapped.Version, &k.Key, &created); err != nil {
		return k, notFound(err)
	}
	k.Created = ts(created)
	return k, nil
}

func (t *Tx) PutDataKey(k stowage.DataKey) error {
	_, err := t.exec(sqlPutDataKey, k.ID, k.Object, k.Wrapped.ID, k.Wrapped.Version, k.Key, k.Created.UnixNano())
	return err
}

func (t *Tx) GetDataKey(id string) (stowage.DataKey, error) {
	return scanDataKey(t.row(sqlGetDataKey, id).Scan)
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
	rows, err := t.query(sqlDataKeysNotBy, kv.ID, kv.Version, after, limitOf(limit))
	return scanAll(rows, err, scanDataKey)
}

func (t *Tx) rewrapDataKey(k stowage.DataKey, old stowage.KeyVersion) (bool, error) {
	res, err := t.exec(sqlRewrapDataKey, k.Wrapped.ID, k.Wrapped.Version, k.Key, k.ID, old.ID, old.Version)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

func (t *Tx) countDataKeys() ([]stowage.KeyVersionCount, error) {
	rows, err := t.query(sqlCountDataKeys)
	return scanAll(rows, err, func(scan func(...any) error) (stowage.KeyVersionCount, error) {
		var c stowage.KeyVersionCount
		return c, scan(&c.ID, &c.Version, &c.Count)
	})
}

func (t *Tx) sampleDataKey(kv stowage.KeyVersion) (stowage.DataKey, error) {
	return scanDataKey(t.row(sqlSampleDataKey, kv.ID, kv.Version).Scan)
}

func (t *Tx) deleteDataKey(id string) error {
	_, err := t.exec(sqlDelDataKey, id)
	return err
}
