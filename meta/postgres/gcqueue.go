package postgres

import (
	"github.com/jackc/pgx/v5"

	"github.com/stowage/stowage"
)

// The collector's queue (migration 0016, stowage.CollectQueueTx). Each
// statement is a walk of gc_queue's primary key, or one probe of it per
// digest given, plus index probes per entry (OFFSET 0, as in
// sqlCollectableBlobs: never a join over a whole table): the cost grows
// with the queue or the batch, never the registry.
const (
	sqlQueuedBlobs = `SELECT q.digest, COALESCE(b.size, 0), COALESCE(b.created, 0), COALESCE(b.state, ''),
			COALESCE(b.last_used, 0), COALESCE(b.unreferenced_since, 0),
			EXISTS (SELECT 1 FROM manifest_references r WHERE r.child = q.digest OFFSET 0)
			OR EXISTS (SELECT 1 FROM manifests m WHERE m.digest = q.digest OFFSET 0)
			OR EXISTS (SELECT 1 FROM recycle_refs x WHERE x.digest = q.digest OFFSET 0)
		FROM gc_queue q LEFT JOIN blobs b ON b.digest = q.digest
		WHERE q.digest > $1 ORDER BY q.digest LIMIT $2`
	sqlEnqueue = `INSERT INTO gc_queue (digest) SELECT unnest($1::text[]) ORDER BY 1 ON CONFLICT DO NOTHING`
	sqlDequeue = `DELETE FROM gc_queue q WHERE digest = ANY($1) AND (
			NOT EXISTS (SELECT 1 FROM blobs b WHERE b.digest = q.digest AND b.state IN ('pending', 'live'))
			OR EXISTS (SELECT 1 FROM manifest_references r WHERE r.child = q.digest OFFSET 0)
			OR EXISTS (SELECT 1 FROM manifests m WHERE m.digest = q.digest OFFSET 0)
			OR EXISTS (SELECT 1 FROM recycle_refs x WHERE x.digest = q.digest OFFSET 0))`
	sqlCountQueued = `SELECT count(*) FROM gc_queue`
)

func (t *Tx) CollectQueue() stowage.CollectQueueTx { return t }

func (t *Tx) QueuedBlobs(after stowage.Digest, limit int) ([]stowage.QueuedBlob, error) {
	return all(t, sqlQueuedBlobs, []any{string(after), limitOf(limit)}, func(row pgx.CollectableRow) (stowage.QueuedBlob, error) {
		var q stowage.QueuedBlob
		var ref bool
		var d, state string
		var created, used, unref int64
		if err := row.Scan(&d, &q.Size, &created, &state, &used, &unref, &ref); err != nil {
			return q, err
		}
		q.Digest, q.State, q.Referenced = stowage.Digest(d), stowage.BlobState(state), ref
		q.Created, q.LastUsed, q.UnreferencedSince = ts(created), ts(used), ts(unref)
		return q, nil
	})
}

func (t *Tx) Enqueue(ds []stowage.Digest) error {
	if len(ds) == 0 {
		return nil
	}
	_, err := t.exec(sqlEnqueue, digestArray(ds))
	return err
}

func (t *Tx) Dequeue(ds []stowage.Digest) (int64, error) {
	if len(ds) == 0 {
		return 0, nil
	}
	tag, err := t.exec(sqlDequeue, digestArray(ds))
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

func (t *Tx) CountQueued() (int64, error) {
	var n int64
	err := t.one(sqlCountQueued, nil, &n)
	return n, err
}
