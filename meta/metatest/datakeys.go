package metatest

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/storage/crypt"
)

func keyStore(t *testing.T, db stowage.DB) crypt.KeyStore {
	t.Helper()
	ks, ok := db.(crypt.KeyStore)
	if !ok {
		t.Fatalf("%T does not implement crypt.KeyStore", db)
	}
	return ks
}

// testDataKeys: the data keys of encrypted storage (crypt.DataKeyStore).
func testDataKeys(t *testing.T, db stowage.DB) {
	ks := keyStore(t, db)
	v1 := stowage.KeyVersion{ID: "k", Version: 1}
	v2 := stowage.KeyVersion{ID: "k", Version: 2}
	for i := range 5 {
		k := stowage.DataKey{ID: fmt.Sprintf("id%d", i), Object: fmt.Sprintf("uploads/u%d/data", i%2), Wrapped: v1,
			Key: []byte{byte(i), 0, 1}, Created: now}
		if err := ks.PutDataKey(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if err := ks.PutDataKey(ctx, stowage.DataKey{ID: "id0", Object: "x", Wrapped: v1, Key: []byte{1}, Created: now}); err == nil {
		t.Error("PutDataKey accepted a duplicate id")
	}
	k, err := ks.GetDataKey(ctx, "id3")
	if err != nil || k.Object != "uploads/u1/data" || k.Wrapped != v1 || string(k.Key) != "\x03\x00\x01" || !k.Created.Equal(now) {
		t.Errorf("GetDataKey = %+v, %v", k, err)
	}
	_, err = ks.GetDataKey(ctx, "nope")
	wantNotFound(t, "GetDataKey", err)
	if s, err := ks.SampleDataKey(ctx, v1); err != nil || s.Wrapped != v1 {
		t.Errorf("SampleDataKey = %+v, %v", s, err)
	}
	_, err = ks.SampleDataKey(ctx, v2)
	wantNotFound(t, "SampleDataKey(v2)", err)

	if err := ks.MoveDataKeys(ctx, "uploads/u0/data", "blobs/sha256/aa/aa"); err != nil {
		t.Fatal(err)
	}
	if err := ks.DeleteDataKeys(ctx, "uploads/u1/data"); err != nil {
		t.Fatal(err)
	}
	k, _ = ks.GetDataKey(ctx, "id2")
	if k.Object != "blobs/sha256/aa/aa" {
		t.Errorf("after move: object %q", k.Object)
	}
	if _, err := ks.GetDataKey(ctx, "id1"); !errors.Is(err, stowage.ErrNotFound) {
		t.Errorf("after delete: id1 %v", err)
	}
	// Rewrap one key; a stale rewrap (old version no longer current) is
	// left; a batch counts what it rewrapped.
	k.Wrapped, k.Key = v2, []byte("new")
	if n, err := ks.RewrapDataKeys(ctx, []stowage.DataKey{k}, []stowage.KeyVersion{v1}); n != 1 || err != nil {
		t.Errorf("RewrapDataKeys = %v, %v", n, err)
	}
	if n, err := ks.RewrapDataKeys(ctx, []stowage.DataKey{k}, []stowage.KeyVersion{v1}); n != 0 || err != nil {
		t.Errorf("second RewrapDataKeys = %v, %v; want 0", n, err)
	}
	if got, _ := ks.GetDataKey(ctx, "id2"); got.Wrapped != v2 || string(got.Key) != "new" {
		t.Errorf("after rewrap: %+v", got)
	}
	left, err := ks.DataKeysNotWrappedBy(ctx, v2, "", 0)
	if err != nil || len(left) != 2 || left[0].ID != "id0" || left[1].ID != "id4" {
		t.Errorf("DataKeysNotWrappedBy = %+v, %v", left, err)
	}
	if page, _ := ks.DataKeysNotWrappedBy(ctx, v2, "id0", 1); len(page) != 1 || page[0].ID != "id4" {
		t.Errorf("DataKeysNotWrappedBy after id0 = %+v", page)
	}
	if err := ks.DeleteDataKey(ctx, "id4"); err != nil {
		t.Fatal(err)
	}
	if _, err := ks.GetDataKey(ctx, "id4"); !errors.Is(err, stowage.ErrNotFound) {
		t.Errorf("after DeleteDataKey: id4 %v", err)
	}
	// DeleteDataKeyOf forgets a key only while it belongs to the object.
	if err := ks.DeleteDataKeyOf(ctx, "id0", "uploads/u0/data"); err != nil {
		t.Fatal(err)
	}
	if _, err := ks.GetDataKey(ctx, "id0"); err != nil {
		t.Errorf("DeleteDataKeyOf removed a key of another object: %v", err)
	}
	if err := ks.DeleteDataKeyOf(ctx, "id0", "blobs/sha256/aa/aa"); err != nil {
		t.Fatal(err)
	}
	if _, err := ks.GetDataKey(ctx, "id0"); !errors.Is(err, stowage.ErrNotFound) {
		t.Errorf("after DeleteDataKeyOf: id0 %v", err)
	}
	if err := ks.DeleteDataKeyOf(ctx, "id0", "blobs/sha256/aa/aa"); err != nil {
		t.Errorf("DeleteDataKeyOf of a key already gone: %v", err)
	}
	counts, err := ks.CountDataKeys(ctx)
	want := []stowage.KeyVersionCount{{KeyVersion: v2, Count: 1}}
	if err != nil || fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Errorf("CountDataKeys = %v, %v; want %v", counts, err, want)
	}
}

// testDataKeysInTx: a transaction's data keys (stowage.DataKeyTx, for a
// value sealed in the same transaction) are the key store's: written
// with the transaction, or not at all.
func testDataKeysInTx(t *testing.T, db stowage.DB) {
	ks := keyStore(t, db)
	kv := stowage.KeyVersion{ID: "k", Version: 1}
	a := stowage.DataKey{ID: "a", Object: "setting:x", Wrapped: kv, Key: []byte{1}, Created: now}
	update(t, db, func(tx stowage.Tx) error { return tx.DataKeys().PutDataKey(a) })
	if got, err := ks.GetDataKey(ctx, "a"); err != nil || got.Object != a.Object {
		t.Errorf("the key store does not see a data key put in a transaction: %+v, %v", got, err)
	}
	b := a
	b.ID = "b"
	if err := ks.PutDataKey(ctx, b); err != nil {
		t.Fatal(err)
	}
	view(t, db, func(tx stowage.Tx) error {
		if got, err := tx.DataKeys().GetDataKey("b"); err != nil || got.Object != b.Object {
			t.Errorf("a transaction does not see a data key of the key store: %+v, %v", got, err)
		}
		_, err := tx.DataKeys().GetDataKey("nope")
		wantNotFound(t, "GetDataKey", err)
		return nil
	})
	boom := errors.New("boom")
	c := a
	c.ID = "c"
	if err := db.Update(ctx, func(tx stowage.Tx) error {
		if err := tx.DataKeys().PutDataKey(c); err != nil {
			return err
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("Update = %v", err)
	}
	_, err := ks.GetDataKey(ctx, "c")
	wantNotFound(t, "a data key put in a transaction rolled back", err)
}

// testKeySettings: the settings the key store shares between nodes
// (crypt.SettingStore) are the database's settings (stowage.SettingsTx),
// so those written before either existed are found.
func testKeySettings(t *testing.T, db stowage.DB) {
	ks := keyStore(t, db)
	_, err := ks.Setting(ctx, "encryption.kek:k")
	wantNotFound(t, "Setting", err)
	calls := 0
	if err := ks.UpdateSetting(ctx, "encryption.kek:k", func(v string, found bool) (string, error) {
		calls++
		if v != "" || found {
			t.Errorf("UpdateSetting of an unset setting: fn(%q, %v)", v, found)
		}
		return "one", nil
	}); err != nil || calls == 0 {
		t.Fatalf("UpdateSetting = %v after %d calls", err, calls)
	}
	view(t, db, func(tx stowage.Tx) error {
		if v, err := tx.Settings().GetSetting("encryption.kek:k"); err != nil || v != "one" {
			t.Errorf("the transaction's settings say %q, %v; want one", v, err)
		}
		return nil
	})
	update(t, db, func(tx stowage.Tx) error { return tx.Settings().PutSetting("encryption.kek:k", "two", now) })
	if v, err := ks.Setting(ctx, "encryption.kek:k"); err != nil || v != "two" {
		t.Errorf("Setting = %q, %v; want two", v, err)
	}
	// fn sees the value; its error writes nothing.
	boom := errors.New("boom")
	err = ks.UpdateSetting(ctx, "encryption.kek:k", func(v string, found bool) (string, error) {
		if v != "two" || !found {
			t.Errorf("UpdateSetting: fn(%q, %v), want two, true", v, found)
		}
		return "three", boom
	})
	if !errors.Is(err, boom) {
		t.Errorf("UpdateSetting = %v, want fn's error", err)
	}
	if v, _ := ks.Setting(ctx, "encryption.kek:k"); v != "two" {
		t.Errorf("after a failed update: %q, want two", v)
	}
	if err := ks.UpdateSetting(ctx, "encryption.kek:k", func(v string, _ bool) (string, error) { return v + "!", nil }); err != nil {
		t.Fatal(err)
	}
	if v, _ := ks.Setting(ctx, "encryption.kek:k"); v != "two!" {
		t.Errorf("after an update: %q, want two!", v)
	}
}
