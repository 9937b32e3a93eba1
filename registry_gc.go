package stowage

import (
	"context"
	"errors"
	"strings"
	"time"
)

// GCOptions configures one garbage collection.
type GCOptions struct {
	// Grace: an unreferenced blob is kept this long after it lost its last
	// reference (or was pushed); zero means no grace period. Lease: a blob a
	// client saw or uploaded is kept this long after; zero means the
	// registry's lease (Options.Lease, default 1h).
	Grace, Lease time.Duration
	// MinAge, if set, replaces both for this run ("0s": everything
	// unreferenced now, for an operator who knows no push is in flight).
	MinAge *time.Duration
	// UploadExpiry: upload sessions idle this long are abandoned. Default 24h.
	UploadExpiry time.Duration
	DryRun       bool
	// Progress, if set, is called as work is done: a phase name, items done
	// and items known so far.
	Progress func(phase string, done, total int64)
}

// GCReport is what a collection did (or, in a dry run, would do).
type GCReport struct {
	DryRun         bool     `json:"dryRun"`
	BlobsDeleted   int64    `json:"blobsDeleted"`
	BytesFreed     int64    `json:"bytesFreed"`
	UploadsExpired int64    `json:"uploadsExpired"`
	OrphansDeleted int64    `json:"orphanObjectsDeleted"` // objects no database row knows (crash leftovers)
	OrphanBytes    int64    `json:"orphanBytesFreed"`
	Digests        []Digest `json:"digests,omitempty"`
	Started        string   `json:"started"`
	Duration       string   `json:"duration"`
}

const gcBatch = 256

// CollectGarbage deletes the blobs nothing references, online: pushes and
// pulls go on meanwhile. The fence, for each batch:
//
//  1. In one transaction, re-check every candidate (still unreferenced,
//     grace and lease over) and mark it 'deleting'. From here a writer of the
//     same digest waits (reserve), and no reader sees it.
//  2. Delete the objects.
//  3. Delete the rows (and the repository links).
//
// A manifest PUT that references a candidate either commits before step 1
// (then the re-check sees the reference) or fails its reference check after
// it. A client that HEADs or uploads a blob renews its lease, so within the
// lease the blob cannot be collected under it. A crash between steps leaves
// rows in 'deleting', which the next collection finishes first (or a push
// of the digest, while no collection runs: reserve).
//
// One collection runs at a time across every node sharing the database (the
// job lock "gc"): a collection asked for while another runs waits for it. A
// dry run changes nothing and does not wait.
func (r *Registry) CollectGarbage(ctx context.Context, opts GCOptions) (GCReport, error) {
	if opts.DryRun {
		return r.collectGarbage(ctx, opts)
	}
	var rep GCReport
	waiting := func() {
		if opts.Progress != nil {
			opts.Progress("waiting for the collection running on another node", 0, 0)
		}
	}
	err := ExclusiveJob(ctx, r.db, r.log, "gc", true, waiting, func(ctx context.Context) (err error) {
		rep, err = r.collectGarbage(ctx, opts)
		return err
	})
	return rep, err
}

func (r *Registry) collectGarbage(ctx context.Context, opts GCOptions) (rep GCReport, err error) {
	start := r.now()
	rep = GCReport{DryRun: opts.DryRun, Started: start.UTC().Format(time.RFC3339)}
	grace, lease := max(opts.Grace, 0), opts.Lease
	if lease <= 0 {
		lease = r.lease
	}
	if opts.MinAge != nil {
		grace, lease = *opts.MinAge, *opts.MinAge
	}
	expiry := opts.UploadExpiry
	if expiry <= 0 {
		expiry = 24 * time.Hour
	}
	progress := opts.Progress
	if progress == nil {
		progress = func(string, int64, int64) {}
	}
	defer func() { rep.Duration = r.now().Sub(start).Round(time.Millisecond).String() }()

	// 0. Finish collections a crash interrupted.
	if !opts.DryRun {
		for {
			var batch []BlobRecord
			err := r.db.View(ctx, func(tx Tx) (err error) {
				batch, err = tx.Blobs().BlobsInState(BlobDeleting, "", gcBatch)
				return err
			})
			if err != nil {
				return rep, err
			}
			if len(batch) == 0 {
				break
			}
			if err := r.deleteBatch(ctx, batch, &rep); err != nil {
				return rep, err
			}
		}
	}

	// 0b. Recycle bin entries past their time lose their hold on blobs.
	if !opts.DryRun {
		if _, err := r.expireRecycled(ctx, start); err != nil {
			return rep, err
		}
	}

	// 1. Abandoned uploads.
	if err := r.expireUploads(ctx, start.Add(-expiry), opts.DryRun, &rep); err != nil {
		return rep, err
	}

	// 2. Unreferenced blobs, batch by batch. First count them, so progress
	// has a total (the count can only shrink: new candidates are too young).
	var total int64
	now0 := r.now()
	for after := Digest(""); ; {
		var cands []BlobRecord
		err := r.db.View(ctx, func(tx Tx) (err error) {
			cands, err = tx.Blobs().CollectableBlobs(now0.Add(-grace), now0.Add(-lease), after, 4096)
			return err
		})
		if err != nil {
			return rep, err
		}
		if len(cands) == 0 {
			break
		}
		total += int64(len(cands))
		after = cands[len(cands)-1].Digest
	}
	progress("blobs", 0, total)
	var after Digest
	for {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		now := r.now()
		unrefBefore, usedBefore := now.Add(-grace), now.Add(-lease)
		// Candidates come from a snapshot; each is re-checked where it is
		// marked. A range query inside the marking transaction would
		// conflict, under PostgreSQL's serializable isolation, with every
		// push that writes any blob row meanwhile, and keep failing.
		var cands []BlobRecord
		err := r.db.View(ctx, func(tx Tx) (err error) {
			cands, err = tx.Blobs().CollectableBlobs(unrefBefore, usedBefore, after, gcBatch)
			return err
		})
		if err != nil {
			return rep, err
		}
		if len(cands) == 0 {
			break
		}
		after = cands[len(cands)-1].Digest
		if opts.DryRun {
			for _, b := range cands {
				rep.BlobsDeleted++
				rep.BytesFreed += b.Size
				rep.Digests = append(rep.Digests, b.Digest)
			}
			progress("blobs", rep.BlobsDeleted, max(total, rep.BlobsDeleted))
			continue
		}
		for i := 0; i < len(cands); i += gcMarkBatch {
			batch, err := r.markCollectable(ctx, cands[i:min(i+gcMarkBatch, len(cands))], unrefBefore, usedBefore)
			if err != nil {
				return rep, err
			}
			if err := r.deleteBatch(ctx, batch, &rep); err != nil {
				return rep, err
			}
		}
		progress("blobs", rep.BlobsDeleted, max(total, rep.BlobsDeleted))
	}

	// 3. Objects in storage that no row knows: left by a crash between
	// writing an object and recording it. Old enough ones are garbage.
	if err := r.sweepOrphans(ctx, r.now().Add(-lease), opts.DryRun, &rep, progress); err != nil {
		return rep, err
	}
	r.log.Info("garbage collection done", "blobs", rep.BlobsDeleted, "bytes", rep.BytesFreed,
		"uploads", rep.UploadsExpired, "orphans", rep.OrphansDeleted, "dry_run", opts.DryRun)
	return rep, nil
}

// gcMarkBatch is how many candidates one marking transaction re-checks.
const gcMarkBatch = 32

// markCollectable is step 1: in one transaction, it re-checks each
// candidate with point reads (still in state pending or live, unreferenced
// by any manifest, reference or recycle bin entry, grace and lease over)
// and marks those that are still collectable 'deleting'. A manifest PUT
// that references one of them, or a HEAD that renews its lease, either
// commits first (then the re-check sees it) or conflicts with this
// transaction (SQLite: one writer; PostgreSQL: serializable), and loses or
// retries after it. The callback may run more than once: it only sets
// marked.
func (r *Registry) markCollectable(ctx context.Context, cands []BlobRecord, unrefBefore, usedBefore time.Time) ([]BlobRecord, error) {
	var marked []BlobRecord
	err := r.db.Update(ctx, func(tx Tx) error {
		marked = nil
		for _, c := range cands {
			b, err := tx.Blobs().GetBlob(c.Digest)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if b.State != BlobPending && b.State != BlobLive || b.UnreferencedSince.After(unrefBefore) || b.LastUsed.After(usedBefore) {
				continue
			}
			ref, err := tx.Blobs().BlobReferenced(b.Digest)
			if err != nil {
				return err
			}
			if ref {
				continue
			}
			if err := tx.Blobs().SetBlobState(b.Digest, BlobDeleting); err != nil {
				return err
			}
			marked = append(marked, b)
		}
		return nil
	})
	return marked, err
}

// deleteBatch does steps 2 and 3 for blobs already marked 'deleting'.
func (r *Registry) deleteBatch(ctx context.Context, batch []BlobRecord, rep *GCReport) error {
	for _, b := range batch {
		if err := r.store.Delete(ctx, BlobKey(b.Digest)); err != nil {
			return err // the rows stay 'deleting': the next run retries
		}
		r.manifests.drop(b.Digest)
	}
	// The callback may run more than once (retries): count after the commit.
	err := r.db.Update(ctx, func(tx Tx) error {
		for _, b := range batch {
			if err := tx.Blobs().DeleteBlob(b.Digest); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, b := range batch {
		rep.BlobsDeleted++
		rep.BytesFreed += b.Size
		rep.Digests = append(rep.Digests, b.Digest)
	}
	return nil
}

func (r *Registry) expireUploads(ctx context.Context, before time.Time, dryRun bool, rep *GCReport) error {
	for {
		var stale []UploadRecord
		err := r.db.View(ctx, func(tx Tx) (err error) {
			stale, err = tx.Uploads().StaleUploads(before, gcBatch)
			return err
		})
		if err != nil || len(stale) == 0 {
			return err
		}
		if dryRun {
			rep.UploadsExpired += int64(len(stale))
			return nil
		}
		expired := 0
		for _, u := range stale {
			ok, err := r.expireUpload(ctx, u.ID, before)
			if err != nil {
				return err
			}
			if ok {
				expired++
				rep.UploadsExpired++
				r.deleteUploadData(ctx, u)
			}
		}
		if expired == 0 {
			return nil // every one came back to life meanwhile: done
		}
	}
}

// errUploadLive rolls back expireUpload's transaction.
var errUploadLive = errors.New("upload is in use")

// expireUpload deletes session id if, in one transaction, it is still
// stale and no writer holds its lease: the collector takes the lease
// itself (refused while a chunk streams in, however long it takes), checks
// the session's progress, and deletes it.
func (r *Registry) expireUpload(ctx context.Context, id string, before time.Time) (bool, error) {
	err := r.db.Update(ctx, func(tx Tx) error {
		if err := tx.Uploads().ClaimUpload(id, r.nodeID+"/gc", r.uploadLease); err != nil {
			return err
		}
		u, err := tx.Uploads().GetUpload(id)
		if err != nil {
			return err
		}
		if !u.Updated.Before(before) {
			return errUploadLive
		}
		return tx.Uploads().DeleteUpload(id)
	})
	if errors.Is(err, ErrLocked) || errors.Is(err, ErrNotFound) || errors.Is(err, errUploadLive) {
		return false, nil
	}
	return err == nil, err
}

// sweepOrphans deletes blob objects older than `before` that have no row,
// and upload data whose session is gone. This is the one walk of storage,
// and it only removes what the database says is not there.
//
// A blob orphan is deleted through the collector's fence (DESIGN §8), or a
// push of the same digest between the check and the delete would be
// acknowledged and then lose its object:
//
//  1. In one transaction, check that d still has no row and insert one in
//     state 'deleting'. A push that reserved d first has a row (the orphan is
//     skipped); a push that reserves d later waits in reserve until the row
//     is gone, and a push in flight fails in markLive.
//  2. Delete the object.
//  3. Delete the row.
//
// A crash between 1 and 3 leaves the 'deleting' row, which the next
// collection finishes (step 0). A delete that a power loss forgets leaves an
// object without a row again: the next sweep finds it.
func (r *Registry) sweepOrphans(ctx context.Context, before time.Time, dryRun bool, rep *GCReport, progress func(string, int64, int64)) error {
	var orphans []ObjectInfo
	var seen int64
	err := r.store.List(ctx, "blobs/", func(oi ObjectInfo) error {
		seen++
		if seen%1024 == 0 {
			progress("storage scan", seen, seen)
		}
		if oi.ModTime.After(before) {
			return nil
		}
		d, ok := digestOfKey(oi.Key)
		if !ok {
			return nil
		}
		err := r.db.View(ctx, func(tx Tx) error { _, err := tx.Blobs().GetBlob(d); return err })
		if errors.Is(err, ErrNotFound) {
			orphans = append(orphans, oi)
			return nil
		}
		return err
	})
	if err != nil {
		return err
	}
	err = r.store.List(ctx, "uploads/", func(oi ObjectInfo) error {
		if oi.ModTime.After(before) {
			return nil
		}
		id, _, _ := strings.Cut(strings.TrimPrefix(oi.Key, "uploads/"), "/")
		err := r.db.View(ctx, func(tx Tx) error { _, err := tx.Uploads().GetUpload(id); return err })
		if errors.Is(err, ErrNotFound) {
			orphans = append(orphans, oi)
			return nil
		}
		return err
	})
	if err != nil {
		return err
	}
	for _, oi := range orphans {
		d, isBlob := digestOfKey(oi.Key)
		switch {
		case isBlob && dryRun:
			err := r.db.View(ctx, func(tx Tx) error { _, err := tx.Blobs().GetBlob(d); return err })
			if !errors.Is(err, ErrNotFound) {
				continue // a row appeared
			}
		case isBlob:
			claimed, err := r.claimOrphan(ctx, d, oi.Size)
			if err != nil {
				return err
			}
			if !claimed {
				continue // a push reserved it meanwhile: not an orphan
			}
			if err := r.store.Delete(ctx, oi.Key); err != nil {
				return err // the row stays 'deleting': the next collection retries
			}
			r.manifests.drop(d)
			if err := r.db.Update(ctx, func(tx Tx) error { return tx.Blobs().DeleteBlob(d) }); err != nil {
				return err
			}
		case !dryRun:
			if err := r.store.Delete(ctx, oi.Key); err != nil {
				return err
			}
		}
		rep.OrphansDeleted++
		rep.OrphanBytes += oi.Size
	}
	return nil
}

// claimOrphan is step 1 of deleting a blob orphan: it records d as
// 'deleting' if, in this transaction, d still has no row. The callback may
// run more than once: it only sets claimed.
func (r *Registry) claimOrphan(ctx context.Context, d Digest, size int64) (claimed bool, err error) {
	now := r.now()
	err = r.db.Update(ctx, func(tx Tx) error {
		claimed = false
		_, err := tx.Blobs().GetBlob(d)
		if err == nil || !errors.Is(err, ErrNotFound) {
			return err
		}
		claimed = true
		return tx.Blobs().PutBlob(BlobRecord{Digest: d, Size: size, Created: now, State: BlobDeleting,
			LastUsed: now, UnreferencedSince: now})
	})
	return claimed, err
}

// digestOfKey inverts BlobKey.
func digestOfKey(key string) (Digest, bool) {
	parts := strings.Split(key, "/")
	if len(parts) != 4 || parts[0] != "blobs" {
		return "", false
	}
	d, err := ParseDigest(parts[1] + ":" + parts[3])
	return d, err == nil && BlobKey(d) == key
}
