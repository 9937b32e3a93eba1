package sqlite

import (
	"encoding/json"
	"time"

	"github.com/stowage/stowage"
)

// Queries of garbage collection (package gc) that take a batch of digests
// at a time, as one JSON array: one statement whatever the batch's size,
// searching the primary key (or an index on digest) once per element.
const (
	sqlExistingBlobs = `SELECT digest FROM blobs WHERE digest IN (SELECT value FROM json_each(?))`
	// CollectableBlobs' conditions, for the digests given.
	sqlMarkCollectable = `UPDATE blobs AS b SET state = 'deleting'
		WHERE digest IN (SELECT value FROM json_each(?1)) AND state IN ('pending', 'live')
		AND unreferenced_since <= ?2 AND last_used <= ?3
		AND NOT EXISTS (SELECT 1 FROM manifest_references r WHERE r.child = b.digest)
		AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.digest = b.digest)
		AND NOT EXISTS (SELECT 1 FROM recycle_refs x WHERE x.digest = b.digest)
		RETURNING ` + blobColumns
	sqlDeleteBlobsLinks = `DELETE FROM repository_blobs WHERE digest IN (SELECT value FROM json_each(?))`
	sqlDeleteBlobsRows  = `DELETE FROM blobs WHERE digest IN (SELECT value FROM json_each(?))`
)

// digestArray is ds as the JSON array the queries above take.
func digestArray(ds []stowage.Digest) (string, error) {
	b, err := json.Marshal(ds)
	return string(b), err
}

func (t *Tx) ExistingBlobs(ds []stowage.Digest) ([]stowage.Digest, error) {
	if len(ds) == 0 {
		return nil, nil
	}
	arg, err := digestArray(ds)
	if err != nil {
		return nil, err
	}
	rows, err := t.query(sqlExistingBlobs, arg)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []stowage.Digest
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			return nil, err
		}
		out = append(out, stowage.Digest(d))
	}
	return out, rows.Err()
}

func (t *Tx) MarkCollectable(ds []stowage.Digest, unrefBefore, usedBefore time.Time) ([]stowage.BlobRecord, error) {
	if len(ds) == 0 {
		return nil, nil
	}
	arg, err := digestArray(ds)
	if err != nil {
		return nil, err
	}
	return t.blobs(sqlMarkCollectable, arg, unrefBefore.UnixNano(), usedBefore.UnixNano())
}

func (t *Tx) DeleteBlobRows(ds []stowage.Digest) error {
	if len(ds) == 0 {
		return nil
	}
	arg, err := digestArray(ds)
	if err != nil {
		return err
	}
	if _, err := t.exec(sqlDeleteBlobsLinks, arg); err != nil {
		return err
	}
	_, err = t.exec(sqlDeleteBlobsRows, arg)
	return err
}

// What only the recycle bin keeps (the collector's report): the bin's
// references in digest order, each probed for a manifest that is it or
// references it.
const (
	sqlCountRecycled    = `SELECT count(*) FROM recycle_bin`
	sqlRecycleOnlyBlobs = `SELECT x.digest, max(b.size), max(rb.expires) FROM recycle_refs x
		JOIN recycle_bin rb ON rb.id = x.bin_id JOIN blobs b ON b.digest = x.digest
		WHERE x.digest > ?
		AND NOT EXISTS (SELECT 1 FROM manifest_references r WHERE r.child = x.digest)
		AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.digest = x.digest)
		GROUP BY x.digest ORDER BY x.digest LIMIT ?`
)

func (t *Tx) CountRecycled() (int64, error) {
	var n int64
	err := t.row(sqlCountRecycled).Scan(&n)
	return n, err
}

func (t *Tx) RecycleOnlyBlobs(after stowage.Digest, limit int) ([]stowage.RecycleHeld, error) {
	rows, err := t.query(sqlRecycleOnlyBlobs, string(after), limitOf(limit))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []stowage.RecycleHeld
	for rows.Next() {
		var h stowage.RecycleHeld
		var d string
		var exp int64
		if err := rows.Scan(&d, &h.Size, &exp); err != nil {
			return nil, err
		}
		h.Digest, h.Expires = stowage.Digest(d), time.Unix(0, exp).UTC()
		out = append(out, h)
	}
	return out, rows.Err()
}
