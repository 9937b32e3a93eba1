package postgres_test

import (
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/meta/postgres/pgtest"
)

// TestDequeueRacesAReferenceDelete: the collector drops a queue entry it
// saw referenced (Dequeue) while another transaction deletes that last
// reference. Whatever the interleaving, the entry must stay in the queue,
// or the blob is never collected (until the next full pass). The bad one:
// the collector's snapshot is taken, the delete commits (its trigger
// finds the entry still there and adds nothing), then the collector's
// Dequeue, still seeing the reference in its snapshot, deletes the entry.
// Serializable isolation must make one of the two lose: the trigger reads
// the entry, so the pair is a write skew PostgreSQL detects.
func TestDequeueRacesAReferenceDelete(t *testing.T) {
	db := open(t, pgtest.Schema(t, "stowage_test"))
	now := time.Unix(1, 0)
	layer, image := stowage.Digest(digestOf("layer")), stowage.Digest(digestOf("image"))
	if err := db.Update(ctx, func(tx stowage.Tx) error {
		if err := tx.Repositories().CreateRepository("r", now); err != nil {
			return err
		}
		if err := tx.Blobs().PutBlob(stowage.BlobRecord{Digest: layer, Size: 10, Created: now, State: stowage.BlobLive, LastUsed: now, UnreferencedSince: now}); err != nil {
			return err
		}
		return tx.Manifests().PutManifest(stowage.ManifestRecord{Repo: "r", Digest: image, MediaType: stowage.MediaTypeOCIManifest, Size: 5, Created: now},
			[]stowage.ManifestRef{{Digest: layer, Kind: stowage.RefBlob}})
	}); err != nil {
		t.Fatal(err)
	}
	snapshot, deleted := make(chan struct{}), make(chan error, 1)
	go func() {
		<-snapshot
		deleted <- db.Update(ctx, func(tx stowage.Tx) error { return tx.Manifests().DeleteManifest("r", image) })
	}()
	attempts := 0
	err := db.Update(ctx, func(tx stowage.Tx) error {
		attempts++
		if attempts == 1 {
			// The snapshot is this transaction's (its BEGIN ran a query);
			// the delete commits after it.
			if _, err := tx.CollectQueue().CountQueued(); err != nil {
				return err
			}
			close(snapshot)
			if err := <-deleted; err != nil {
				t.Errorf("deleting the image: %v", err)
			}
		}
		_, err := tx.CollectQueue().Dequeue([]stowage.Digest{layer})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var queued []stowage.QueuedBlob
	if err := db.View(ctx, func(tx stowage.Tx) (err error) {
		queued, err = tx.CollectQueue().QueuedBlobs("", 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, q := range queued {
		found = found || q.Digest == layer && !q.Referenced
	}
	if !found {
		t.Errorf("after a dequeue raced the delete of the layer's last reference (%d attempts): queue %+v, want the layer in it, unreferenced", attempts, queued)
	}
}
