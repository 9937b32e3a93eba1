package postgres

import (
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stowage/stowage"
)

// Queries of garbage collection (package gc) that take a batch of digests
// at a time, as one array: one statement (one round trip) whatever the
// batch's size, searching the primary key (or an index on digest) once
// per element. OFFSET 0 keeps each NOT EXISTS an index probe per row
// (as in sqlCollectableBlobs), never a join over a whole table.
const (
	sqlExistingBlobs = `SELECT digest FROM blobs WHERE digest = ANY($1)`
	// CollectableBlobs' conditions, for the digests given.
	sqlMarkCollectable = `UPDATE blobs b SET state = 'deleting'
		WHERE digest = ANY($1) AND state IN ('pending', 'live')
		AND unreferenced_since <= $2 AND last_used <= $3
		AND NOT EXISTS (SELECT 1 FROM manifest_references r WHERE r.child = b.digest OFFSET 0)
		AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.digest = b.digest OFFSET 0)
		AND NOT EXISTS (SELECT 1 FROM recycle_refs x WHERE x.digest = b.digest OFFSET 0)
		RETURNING ` + blobColumns
	sqlDeleteBlobsLinks = `DELETE FROM repository_blobs WHERE digest = ANY($1)`
	sqlDeleteBlobsRows  = `DELETE FROM blobs WHERE digest = ANY($1)`
)

// digestArray is ds as the text[] the queries above take.
func digestArray(ds []stowage.Digest) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = string(d)
	}
	return out
}

func (t *Tx) ExistingBlobs(ds []stowage.Digest) ([]stowage.Digest, error) {
	if len(ds) == 0 {
		return nil, nil
	}
	got, err := t.strings(sqlExistingBlobs, digestArray(ds))
	if err != nil {
		return nil, err
	}
	out := make([]stowage.Digest, len(got))
	for i, d := range got {
		out[i] = stowage.Digest(d)
	}
	return out, nil
}

func (t *Tx) MarkCollectable(ds []stowage.Digest, unrefBefore, usedBefore time.Time) ([]stowage.BlobRecord, error) {
	if len(ds) == 0 {
		return nil, nil
	}
	return t.blobs(sqlMarkCollectable, digestArray(ds), unrefBefore.UnixNano(), usedBefore.UnixNano())
}

func (t *Tx) DeleteBlobRows(ds []stowage.Digest) error {
	if len(ds) == 0 {
		return nil
	}
	arg := digestArray(ds)
	if _, err := t.exec(sqlDeleteBlobsLinks, arg); err != nil {
		return err
	}
	_, err := t.exec(sqlDeleteBlobsRows, arg)
	return err
}

// What only the recycle bin keeps (the collector's report): the bin's
// references in digest order, each probed for a manifest that is it or
// references it.
const (
	sqlCountRecycled    = `SELECT count(*) FROM recycle_bin`
	sqlRecycleOnlyBlobs = `SELECT x.digest, max(b.size), max(rb.expires) FROM recycle_refs x
		JOIN recycle_bin rb ON rb.id = x.bin_id JOIN blobs b ON b.digest = x.digest
		WHERE x.digest > $1
		AND NOT EXISTS (SELECT 1 FROM manifest_references r WHERE r.child = x.digest OFFSET 0)
		AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.digest = x.digest OFFSET 0)
		GROUP BY x.digest ORDER BY x.digest LIMIT $2`
)

func (t *Tx) CountRecycled() (int64, error) {
	var n int64
	err := t.one(sqlCountRecycled, nil, &n)
	return n, err
}

func (t *Tx) RecycleOnlyBlobs(after stowage.Digest, limit int) ([]stowage.RecycleHeld, error) {
	return all(t, sqlRecycleOnlyBlobs, []any{string(after), limitOf(limit)}, func(row pgx.CollectableRow) (stowage.RecycleHeld, error) {
		var h stowage.RecycleHeld
		var d string
		var exp int64
		err := row.Scan(&d, &h.Size, &exp)
		h.Digest, h.Expires = stowage.Digest(d), ts(exp)
		return h, err
	})
}
