package replication

import (
	"context"
	"errors"
	"time"

	"github.com/stowage/stowage"
)

// BlobName is the Clock name of repo's blob d: a tombstone (Digest "")
// records that a client deleted it here (DELETE /v2/<repo>/blobs/<d>), so
// read-through does not fetch it back from a peer that still has it.
// Blob deletes are not replicated (each region's blobs follow its
// manifests); the tombstone is this region's only.
func BlobName(d stowage.Digest) string { return "blob:" + string(d) }

// BlobDeleted is the engine's BlobDeleteHook: it records the tombstone
// of the deleted blob in the delete's transaction.
func (c Clocks) BlobDeleted(ctx context.Context, tx stowage.Tx, repo string, d stowage.Digest) error {
	ct, ok := tx.(ClockTx)
	if !ok {
		return nil
	}
	cs := ct.ReplicationClocks()
	last, err := cs.GetClock(repo, BlobName(d))
	if err != nil && !errors.Is(err, stowage.ErrNotFound) {
		return err
	}
	return cs.PutClock(Clock{Repo: repo, Name: BlobName(d), HLC: Tick(last.HLC, time.Now(), c.Region)})
}

// clearBlobTombstone lifts the tombstone of repo's blob d: a manifest
// pushed here references it (its layers were uploaded to another region),
// so it is wanted again.
func (rt *ReadThrough) clearBlobTombstone(ctx context.Context, repo string, d stowage.Digest) error {
	return rt.Reg.DB().Update(ctx, func(tx stowage.Tx) error {
		ct, ok := tx.(ClockTx)
		if !ok {
			return nil
		}
		c, err := ct.ReplicationClocks().GetClock(repo, BlobName(d))
		if errors.Is(err, stowage.ErrNotFound) || err == nil && !c.Removed() {
			return nil
		}
		if err != nil {
			return err
		}
		// Live, with the zero reading: never later than a change (a
		// repository delete compares with LatestLive).
		return ct.ReplicationClocks().PutClock(Clock{Repo: repo, Name: BlobName(d), Digest: d})
	})
}
