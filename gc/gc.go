// Package gc is garbage collection: it deletes the blobs nothing
// references, the upload sessions clients abandoned, and the objects in
// storage that no database row knows, online, while pushes and pulls go on.
//
// It reads and writes the database through a transaction's blob and upload
// stores (stowage.BlobTx, stowage.UploadTx), and leaves to the core the
// steps the core's own paths share (Core): ending a blob (deleting → gone),
// an upload session, and expired recycle bin entries.
package gc

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/stowage/stowage"
)

// Options configures one garbage collection.
type Options struct {
	// Grace: an unreferenced blob is kept this long after it lost its last
	// reference (or was pushed); zero means no grace period. Lease: a blob a
	// client saw or uploaded is kept this long after; zero means the
	// registry's lease (stowage.Options.Lease, default 1h).
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

// Report is what a collection did (or, in a dry run, would do).
type Report struct {
	DryRun         bool             `json:"dryRun"`
	BlobsDeleted   int64            `json:"blobsDeleted"`
	BytesFreed     int64            `json:"bytesFreed"`
	UploadsExpired int64            `json:"uploadsExpired"`
	OrphansDeleted int64            `json:"orphanObjectsDeleted"` // objects no database row knows (crash leftovers)
	OrphanBytes    int64            `json:"orphanBytesFreed"`
	Digests        []stowage.Digest `json:"digests,omitempty"`
	// Waiting: the blobs nothing references that this run left because
	// their grace period or lease is not over yet (what a later run, or one
	// with MinAge 0, collects). Nil if there are none.
	Waiting *Waiting `json:"waiting,omitempty"`
	// Recycled: the blobs only recycle bin entries (soft-deleted
	// manifests) keep; a run after the entries expire collects them. Nil
	// if there are none.
	Recycled *Recycled `json:"recycled,omitempty"`
	Started  string    `json:"started"`
	Duration string    `json:"duration"`
}

// Waiting counts unreferenced blobs kept for their grace period or lease.
type Waiting struct {
	Blobs int64 `json:"blobs"`
	Bytes int64 `json:"bytes"`
	// Earliest and Latest: when the first and the last of them become
	// collectable (RFC 3339, UTC), if no client uses them meanwhile.
	Earliest string `json:"earliest"`
	Latest   string `json:"latest"`
}

// Recycled counts the blobs that nothing but recycle bin entries keeps.
type Recycled struct {
	Entries int64 `json:"entries"` // recycle bin entries (all of them)
	Blobs   int64 `json:"blobs"`
	Bytes   int64 `json:"bytes"`
	// Earliest and Latest: when the first and the last of them are freed
	// (their last entry expires; RFC 3339, UTC), unless restored.
	Earliest string `json:"earliest"`
	Latest   string `json:"latest"`
}

// Core is what a collection needs of the registry it collects
// (*stowage.Registry): its parts, and the steps that end a blob, an upload
// session and a recycle bin entry, which the core's own paths share.
type Core interface {
	Parts() stowage.Parts
	// DeleteBlobs takes blobs in state 'deleting' to gone: objects, then
	// rows.
	DeleteBlobs(ctx context.Context, batch []stowage.BlobRecord) error
	// ExpireUpload ends session u and deletes its data if it is still idle
	// since before and no writer holds it; it reports whether it did.
	ExpireUpload(ctx context.Context, u stowage.UploadRecord, before time.Time) (bool, error)
	// ExpireRecycled removes recycle bin entries past their time.
	ExpireRecycled(ctx context.Context, now time.Time) (int, error)
}

// Collector collects one registry's garbage.
type Collector struct {
	core Core
	p    stowage.Parts
}

// New returns the collector of core (a *stowage.Registry).
func New(core Core) *Collector {
	return &Collector{core: core, p: core.Parts()}
}

const batchSize = 256

// Collect deletes the blobs nothing references, online: pushes and pulls go
// on meanwhile. The fence, for each batch:
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
func (c *Collector) Collect(ctx context.Context, opts Options) (Report, error) {
	if opts.DryRun {
		return c.collect(ctx, opts)
	}
	var rep Report
	waiting := func() {
		if opts.Progress != nil {
			opts.Progress("waiting for the collection running on another node", 0, 0)
		}
	}
	err := stowage.ExclusiveJob(ctx, c.p.DB, c.p.Log, "gc", true, waiting, func(ctx context.Context) (err error) {
		rep, err = c.collect(ctx, opts)
		return err
	})
	return rep, err
}

func (c *Collector) collect(ctx context.Context, opts Options) (rep Report, err error) {
	start := c.p.Now()
	rep = Report{DryRun: opts.DryRun, Started: start.UTC().Format(time.RFC3339)}
	grace, lease := max(opts.Grace, 0), opts.Lease
	if lease <= 0 {
		lease = c.p.Lease
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
	defer func() { rep.Duration = c.p.Now().Sub(start).Round(time.Millisecond).String() }()

	// 0. Finish collections a crash interrupted.
	if !opts.DryRun {
		for {
			var batch []stowage.BlobRecord
			err := c.p.DB.View(ctx, func(tx stowage.Tx) (err error) {
				batch, err = tx.Blobs().BlobsInState(stowage.BlobDeleting, "", batchSize)
				return err
			})
			if err != nil {
				return rep, err
			}
			if len(batch) == 0 {
				break
			}
			if err := c.deleteBatch(ctx, batch, &rep); err != nil {
				return rep, err
			}
		}
	}

	// 0b. Recycle bin entries past their time lose their hold on blobs.
	if !opts.DryRun {
		if _, err := c.core.ExpireRecycled(ctx, start); err != nil {
			return rep, err
		}
	}

	// 1. Abandoned uploads.
	if err := c.expireUploads(ctx, start.Add(-expiry), opts.DryRun, &rep); err != nil {
		return rep, err
	}

	// 2. Unreferenced blobs, batch by batch. First count them, so progress
	// has a total (the count can only shrink: new candidates are too young).
	var total int64
	now0 := c.p.Now()
	for after := stowage.Digest(""); ; {
		var cands []stowage.BlobRecord
		err := c.p.DB.View(ctx, func(tx stowage.Tx) (err error) {
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
	var after stowage.Digest
	for {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		now := c.p.Now()
		unrefBefore, usedBefore := now.Add(-grace), now.Add(-lease)
		// Candidates come from a snapshot; each is re-checked where it is
		// marked. A range query inside the marking transaction would
		// conflict, under PostgreSQL's serializable isolation, with every
		// push that writes any blob row meanwhile, and keep failing.
		var cands []stowage.BlobRecord
		err := c.p.DB.View(ctx, func(tx stowage.Tx) (err error) {
			cands, err = tx.Blobs().CollectableBlobs(unrefBefore, usedBefore, after, batchSize)
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
		for i := 0; i < len(cands); i += markBatch {
			batch, err := c.markCollectable(ctx, cands[i:min(i+markBatch, len(cands))], unrefBefore, usedBefore)
			if err != nil {
				return rep, err
			}
			if err := c.deleteBatch(ctx, batch, &rep); err != nil {
				return rep, err
			}
		}
		progress("blobs", rep.BlobsDeleted, max(total, rep.BlobsDeleted))
	}

	// 2b. What stays unreferenced but too young to collect, and what only
	// the recycle bin keeps.
	if rep.Waiting, err = c.waiting(ctx, grace, lease); err != nil {
		return rep, err
	}
	if rep.Recycled, err = c.recycled(ctx); err != nil {
		return rep, err
	}

	// 3. Objects in storage that no row knows: left by a crash between
	// writing an object and recording it. Old enough ones are garbage.
	if err := c.sweepOrphans(ctx, c.p.Now().Add(-lease), opts.DryRun, &rep, progress); err != nil {
		return rep, err
	}
	c.p.Log.Info("garbage collection done", "blobs", rep.BlobsDeleted, "bytes", rep.BytesFreed,
		"uploads", rep.UploadsExpired, "orphans", rep.OrphansDeleted, "dry_run", opts.DryRun)
	return rep, nil
}

// waiting counts the unreferenced blobs whose grace period or lease is not
// over: CollectableBlobs with cutoffs in the far future lists every
// unreferenced blob in state pending or live; those that would be
// collectable now (a dry run leaves them) are not waiting.
func (c *Collector) waiting(ctx context.Context, grace, lease time.Duration) (*Waiting, error) {
	now := c.p.Now()
	far := now.Add(100 * 365 * 24 * time.Hour)
	var w Waiting
	var earliest, latest time.Time
	for after := stowage.Digest(""); ; {
		var bs []stowage.BlobRecord
		err := c.p.DB.View(ctx, func(tx stowage.Tx) (err error) {
			bs, err = tx.Blobs().CollectableBlobs(far, far, after, 4096)
			return err
		})
		if err != nil {
			return nil, err
		}
		if len(bs) == 0 {
			break
		}
		after = bs[len(bs)-1].Digest
		for _, b := range bs {
			when := b.UnreferencedSince.Add(grace)
			if l := b.LastUsed.Add(lease); l.After(when) {
				when = l
			}
			if !when.After(now) {
				continue
			}
			w.Blobs++
			w.Bytes += b.Size
			if earliest.IsZero() || when.Before(earliest) {
				earliest = when
			}
			if when.After(latest) {
				latest = when
			}
		}
	}
	if w.Blobs == 0 {
		return nil, nil
	}
	w.Earliest, w.Latest = earliest.UTC().Format(time.RFC3339), latest.UTC().Format(time.RFC3339)
	return &w, nil
}

// errUndo rolls back the transaction of recycled.
var errUndo = errors.New("undone")

// recycled counts the blobs only recycle bin entries keep: in a
// transaction that is rolled back, it removes every entry and asks which
// of the digests they kept are still referenced (the same BlobReferenced
// the collector's re-check uses, so the count agrees with what a run after
// the expiry frees).
func (c *Collector) recycled(ctx context.Context) (*Recycled, error) {
	var r Recycled
	var earliest, latest time.Time
	err := c.p.DB.Update(ctx, func(tx stowage.Tx) error {
		r, earliest, latest = Recycled{}, time.Time{}, time.Time{}
		entries, err := tx.Recycle().ListRecycled("")
		if err != nil || len(entries) == 0 {
			return err
		}
		r.Entries = int64(len(entries))
		held := map[stowage.Digest]time.Time{} // digest -> when its last entry expires
		for _, e := range entries {
			if err := tx.Recycle().DeleteRecycled(e.ID); err != nil {
				return err
			}
			ds := []stowage.Digest{e.Manifest.Digest}
			for _, ref := range e.Refs {
				ds = append(ds, ref.Digest)
			}
			for _, d := range ds {
				if t, ok := held[d]; !ok || e.Expires.After(t) {
					held[d] = e.Expires
				}
			}
		}
		for d, exp := range held {
			ref, err := tx.Blobs().BlobReferenced(d)
			if err != nil {
				return err
			}
			if ref {
				continue
			}
			b, err := tx.Blobs().GetBlob(d)
			if errors.Is(err, stowage.ErrNotFound) {
				continue
			} else if err != nil {
				return err
			}
			r.Blobs++
			r.Bytes += b.Size
			if earliest.IsZero() || exp.Before(earliest) {
				earliest = exp
			}
			if exp.After(latest) {
				latest = exp
			}
		}
		return errUndo
	})
	if err != nil && !errors.Is(err, errUndo) {
		return nil, err
	}
	if r.Blobs == 0 {
		return nil, nil
	}
	r.Earliest, r.Latest = earliest.UTC().Format(time.RFC3339), latest.UTC().Format(time.RFC3339)
	return &r, nil
}

// markBatch is how many candidates one marking transaction re-checks.
const markBatch = 32

// markCollectable is step 1: in one transaction, it re-checks each
// candidate with point reads (still in state pending or live, unreferenced
// by any manifest, reference or recycle bin entry, grace and lease over)
// and marks those that are still collectable 'deleting'. A manifest PUT
// that references one of them, or a HEAD that renews its lease, either
// commits first (then the re-check sees it) or conflicts with this
// transaction (SQLite: one writer; PostgreSQL: serializable), and loses or
// retries after it. The callback may run more than once: it only sets
// marked.
func (c *Collector) markCollectable(ctx context.Context, cands []stowage.BlobRecord, unrefBefore, usedBefore time.Time) ([]stowage.BlobRecord, error) {
	var marked []stowage.BlobRecord
	err := c.p.DB.Update(ctx, func(tx stowage.Tx) error {
		marked = nil
		for _, cand := range cands {
			b, err := tx.Blobs().GetBlob(cand.Digest)
			if errors.Is(err, stowage.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if b.State != stowage.BlobPending && b.State != stowage.BlobLive || b.UnreferencedSince.After(unrefBefore) || b.LastUsed.After(usedBefore) {
				continue
			}
			ref, err := tx.Blobs().BlobReferenced(b.Digest)
			if err != nil {
				return err
			}
			if ref {
				continue
			}
			if err := tx.Blobs().SetBlobState(b.Digest, stowage.BlobDeleting); err != nil {
				return err
			}
			marked = append(marked, b)
		}
		return nil
	})
	return marked, err
}

// deleteBatch does steps 2 and 3 for blobs already marked 'deleting', and
// counts them once their rows are gone.
func (c *Collector) deleteBatch(ctx context.Context, batch []stowage.BlobRecord, rep *Report) error {
	if err := c.core.DeleteBlobs(ctx, batch); err != nil {
		return err
	}
	for _, b := range batch {
		rep.BlobsDeleted++
		rep.BytesFreed += b.Size
		rep.Digests = append(rep.Digests, b.Digest)
	}
	return nil
}

func (c *Collector) expireUploads(ctx context.Context, before time.Time, dryRun bool, rep *Report) error {
	for {
		var stale []stowage.UploadRecord
		err := c.p.DB.View(ctx, func(tx stowage.Tx) (err error) {
			stale, err = tx.Uploads().StaleUploads(before, batchSize)
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
			ok, err := c.core.ExpireUpload(ctx, u, before)
			if err != nil {
				return err
			}
			if ok {
				expired++
				rep.UploadsExpired++
			}
		}
		if expired == 0 {
			return nil // every one came back to life meanwhile: done
		}
	}
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
func (c *Collector) sweepOrphans(ctx context.Context, before time.Time, dryRun bool, rep *Report, progress func(string, int64, int64)) error {
	var orphans []stowage.ObjectInfo
	var seen int64
	err := c.p.Store.List(ctx, "blobs/", func(oi stowage.ObjectInfo) error {
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
		err := c.p.DB.View(ctx, func(tx stowage.Tx) error { _, err := tx.Blobs().GetBlob(d); return err })
		if errors.Is(err, stowage.ErrNotFound) {
			orphans = append(orphans, oi)
			return nil
		}
		return err
	})
	if err != nil {
		return err
	}
	err = c.p.Store.List(ctx, "uploads/", func(oi stowage.ObjectInfo) error {
		if oi.ModTime.After(before) {
			return nil
		}
		id, _, _ := strings.Cut(strings.TrimPrefix(oi.Key, "uploads/"), "/")
		err := c.p.DB.View(ctx, func(tx stowage.Tx) error { _, err := tx.Uploads().GetUpload(id); return err })
		if errors.Is(err, stowage.ErrNotFound) {
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
			err := c.p.DB.View(ctx, func(tx stowage.Tx) error { _, err := tx.Blobs().GetBlob(d); return err })
			if !errors.Is(err, stowage.ErrNotFound) {
				continue // a row appeared
			}
		case isBlob:
			claimed, err := c.claimOrphan(ctx, d, oi.Size)
			if err != nil {
				return err
			}
			if !claimed {
				continue // a push reserved it meanwhile: not an orphan
			}
			// Steps 2 and 3 (oi.Key is d's key: digestOfKey checks it).
			if err := c.core.DeleteBlobs(ctx, []stowage.BlobRecord{{Digest: d, Size: oi.Size}}); err != nil {
				return err // the row stays 'deleting': the next collection retries
			}
		case !dryRun:
			if err := c.p.Store.Delete(ctx, oi.Key); err != nil {
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
func (c *Collector) claimOrphan(ctx context.Context, d stowage.Digest, size int64) (claimed bool, err error) {
	now := c.p.Now()
	err = c.p.DB.Update(ctx, func(tx stowage.Tx) error {
		claimed = false
		_, err := tx.Blobs().GetBlob(d)
		if err == nil || !errors.Is(err, stowage.ErrNotFound) {
			return err
		}
		claimed = true
		return tx.Blobs().PutBlob(stowage.BlobRecord{Digest: d, Size: size, Created: now, State: stowage.BlobDeleting,
			LastUsed: now, UnreferencedSince: now})
	})
	return claimed, err
}

// digestOfKey inverts stowage.BlobKey.
func digestOfKey(key string) (stowage.Digest, bool) {
	parts := strings.Split(key, "/")
	if len(parts) != 4 || parts[0] != "blobs" {
		return "", false
	}
	d, err := stowage.ParseDigest(parts[1] + ":" + parts[3])
	return d, err == nil && stowage.BlobKey(d) == key
}
