package stowage

import (
	"context"
	"errors"
	"time"
)

// The steps of garbage collection (package gc) that belong to the core:
// they end a blob's or an upload session's life, which the core's own paths
// do too (a push finishing a crashed collection's deletion: reserve; an
// aborted upload), and they touch what only the core holds (the manifest
// cache, the upload writers' leases).

// gcBatch is how many rows one transaction of a collection step the core
// runs handles (ExpireRecycled).
const gcBatch = 256

// DeleteBlobs is the last step of the blob state machine, deleting → gone,
// for blobs already in state 'deleting' (DESIGN §8: every path that deletes
// an object goes through it): it deletes each object, forgets its cached
// manifest bytes, then deletes the rows in one transaction (one statement per table). If an object
// cannot be deleted, the rows stay 'deleting' and the next collection (or a
// push of the digest: reserve) retries. It is core because reserve uses it
// to finish a deletion a crashed collection left, and the manifest cache is
// the core's.
func (r *Registry) DeleteBlobs(ctx context.Context, batch []BlobRecord) error {
	for _, b := range batch {
		if err := r.store.Delete(ctx, BlobKey(b.Digest)); err != nil {
			return err // the rows stay 'deleting': the next run retries
		}
		r.manifests.drop(b.Digest)
	}
	ds := make([]Digest, len(batch))
	for i, b := range batch {
		ds[i] = b.Digest
	}
	return r.db.Update(ctx, func(tx Tx) error { return tx.Blobs().DeleteBlobRows(ds) })
}

// errUploadLive rolls back ExpireUpload's transaction.
var errUploadLive = errors.New("upload is in use")

// ExpireUpload ends upload session u, and deletes its data, if in one
// transaction it is still idle since before and no writer holds its lease:
// the collector takes the lease itself (refused while a chunk streams in,
// however long it takes), checks the session's progress, and deletes it. It
// reports whether it ended the session. It is core because the writers'
// lease (its holder names, this node's, and its length) is the upload
// protocol's (registry_uploadlock.go).
func (r *Registry) ExpireUpload(ctx context.Context, u UploadRecord, before time.Time) (bool, error) {
	err := r.db.Update(ctx, func(tx Tx) error {
		if err := tx.Uploads().ClaimUpload(u.ID, r.nodeID+"/gc", r.uploadLease); err != nil {
			return err
		}
		cur, err := tx.Uploads().GetUpload(u.ID)
		if err != nil {
			return err
		}
		if !cur.Updated.Before(before) {
			return errUploadLive
		}
		return tx.Uploads().DeleteUpload(u.ID)
	})
	if errors.Is(err, ErrLocked) || errors.Is(err, ErrNotFound) || errors.Is(err, errUploadLive) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	r.deleteUploadData(ctx, u)
	return true, nil
}
