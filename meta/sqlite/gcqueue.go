package sqlite

import (
	"github.com/stowage/stowage"
)

// The collector's queue (migration 0022, stowage.CollectQueueTx). Each
// statement is a walk of gc_queue's primary key, or one probe of it per
// digest given, plus index probes per entry: the cost grows with the queue
// or the batch, never the registry.
const (
	sqlQueuedBlobs = `SELECT q.digest, coalesce(b.size, 0), coalesce(b.created, 0), coalesce(b.state, ''),
			coalesce(b.last_used, 0), coalesce(b.unreferenced_since, 0),
			EXISTS (SELECT 1 FROM manifest_references r WHERE r.child = q.digest)
			OR EXISTS (SELECT 1 FROM manifests m WHERE m.digest = q.digest)
			OR EXISTS (SELECT 1 FROM recycle_refs x WHERE x.digest = q.digest)
		FROM gc_queue q LEFT JOIN blobs b ON b.digest = q.digest
		WHERE q.digest > ? ORDER BY q.digest LIMIT ?`
	// WHERE true: SQLite's upsert after a SELECT needs it to parse.
	sqlEnqueue = `INSERT INTO gc_queue (digest) SELECT value FROM json_each(?) WHERE true ON CONFLICT DO NOTHING`
	sqlDequeue = `DELETE FROM gc_queue WHERE digest IN (SELECT value FROM json_each(?)) AND (
			NOT EXISTS (SELECT 1 FROM blobs b WHERE b.digest = gc_queue.digest AND b.state IN ('pending', 'live'))
			OR EXISTS (SELECT 1 FROM manifest_references r WHERE r.child = gc_queue.digest)
			OR EXISTS (SELECT 1 FROM manifests m WHERE m.digest = gc_queue.digest)
			OR EXISTS (SELECT 1 FROM recycle_refs x WHERE x.digest = gc_queue.digest))`
	sqlCountQueued = `SELECT count(*) FROM gc_queue`
)

func (t *Tx) CollectQueue() stowage.CollectQueueTx { return t }

func (t *Tx) QueuedBlobs(after stowage.Digest, limit int) ([]stowage.QueuedBlob, error) {
	rows, err := t.query(sqlQueuedBlobs, string(after), limitOf(limit))
	return scanAll(rows, err, func(scan func(...any) error) (stowage.QueuedBlob, error) {
		var q stowage.QueuedBlob
		var ref bool
		b, err := scanBlob(func(dest ...any) error { return scan(append(dest, &ref)...) })
		q.BlobRecord, q.Referenced = b, ref
		return q, err
	})
}

func (t *Tx) Enqueue(ds []stowage.Digest) error {
	if len(ds) == 0 {
		return nil
	}
	arg, err := digestArray(ds)
	if err != nil {
		return err
	}
	_, err = t.exec(sqlEnqueue, arg)
	return err
}

func (t *Tx) Dequeue(ds []stowage.Digest) (int64, error) {
	if len(ds) == 0 {
		return 0, nil
	}
	arg, err := digestArray(ds)
	if err != nil {
		return 0, err
	}
	res, err := t.exec(sqlDequeue, arg)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (t *Tx) CountQueued() (int64, error) {
	var n int64
	err := t.row(sqlCountQueued).Scan(&n)
	return n, err
}
