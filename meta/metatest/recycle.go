package metatest

import (
	"reflect"
	"testing"

	"github.com/stowage/stowage"
)

// testRecycleKeepsLocks: a new manifest row takes the record's locks (a
// restore writes them back) and a manifest put again keeps its own; a
// recycle bin entry keeps the manifest's locks and its tags' locks.
func testRecycleKeepsLocks(t *testing.T, db stowage.DB) {
	m := stowage.ManifestRecord{Repo: "r", Digest: dg(1), MediaType: stowage.MediaTypeOCIManifest, Size: 5, Created: now,
		Locks: stowage.LockRead | stowage.LockWrite}
	update(t, db, func(tx stowage.Tx) error {
		if err := tx.Repositories().CreateRepository("r", now); err != nil {
			return err
		}
		return tx.Manifests().PutManifest(m, nil)
	})
	again := m
	again.Locks = 0
	update(t, db, func(tx stowage.Tx) error { return tx.Manifests().PutManifest(again, nil) })
	view(t, db, func(tx stowage.Tx) error {
		got, err := tx.Manifests().GetManifest("r", m.Digest)
		if err != nil || got.Locks != m.Locks {
			t.Errorf("manifest locks = %v (%v), want %v (inserted with them, then put again without)", got.Locks, err, m.Locks)
		}
		return nil
	})
	tagLocks := map[string]stowage.Locks{"v1": stowage.LockWrite, "v2": stowage.LockList | stowage.LockRead}
	var withLocks, without int64
	update(t, db, func(tx stowage.Tx) (err error) {
		if withLocks, err = tx.Recycle().PutRecycled(stowage.RecycledManifest{Manifest: m, Tags: []string{"v1", "v2", "v3"}, TagLocks: tagLocks,
			Deleted: now, Expires: now.Add(1e9)}); err != nil {
			return err
		}
		plain := m
		plain.Digest, plain.Locks = dg(2), 0
		without, err = tx.Recycle().PutRecycled(stowage.RecycledManifest{Manifest: plain, Tags: []string{"x"}, Deleted: now, Expires: now.Add(1e9)})
		return err
	})
	view(t, db, func(tx stowage.Tx) error {
		e, err := tx.Recycle().GetRecycled(withLocks)
		if err != nil {
			t.Fatal(err)
		}
		if e.Manifest.Locks != m.Locks || !reflect.DeepEqual(e.TagLocks, tagLocks) {
			t.Errorf("recycled entry: manifest locks %v, tag locks %v; want %v, %v", e.Manifest.Locks, e.TagLocks, m.Locks, tagLocks)
		}
		e, err = tx.Recycle().GetRecycled(without)
		if err != nil {
			t.Fatal(err)
		}
		if e.Manifest.Locks != 0 || len(e.TagLocks) != 0 || e.Manifest.Digest != dg(2) {
			t.Errorf("recycled entry without locks: %+v", e)
		}
		return nil
	})
}
