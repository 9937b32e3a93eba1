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
	"math"
	"slices"
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
	// SweepEvery, if positive, limits the full pass (every blob row read
	// for unreferenced ones, not only the queue, and the storage sweep: the
	// walk of every stored object for ones no row knows; the part of a
	// collection that costs the registry's size rather than the work) to
	// runs after the last full pass is this old (recorded in the database,
	// so nodes share it). Zero: every run is a full pass (what an
	// operator's `stowage gc` does; the background collector passes
	// gc.sweep_interval).
	SweepEvery time.Duration
	// NoSweep makes this run read only the queue (`stowage gc
	// --sweep=false`): a collection that costs what changed since the last.
	NoSweep bool
	DryRun  bool
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
	// Swept: the run walked storage for objects no row knows. A run with
	// SweepEvery that left it out says when the last full sweep was
	// (LastSweep, RFC 3339 UTC).
	Swept     bool   `json:"swept"`
	LastSweep string `json:"lastSweep,omitempty"`
	Started   string `json:"started"`
	Duration  string `json:"duration"`
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

	// Whether this run is a full pass: the storage sweep, and every blob
	// row read for candidates instead of only the queue (a repair should
	// the queue ever miss one).
	every := opts.SweepEvery
	if opts.NoSweep {
		every = time.Duration(math.MaxInt64) // only for when it last ran
	}
	full, last, err := c.sweepDue(ctx, every)
	if err != nil && !opts.NoSweep {
		return rep, err
	}
	full = full && !opts.NoSweep // (reading when it last ran is for the report only then)
	began := c.p.Now()

	// 2. Unreferenced blobs, a page of candidates at a time: the queue of
	// digests that may have become garbage (CollectQueueTx), which every
	// unreferenced blob is in. A full pass first reads every blob row for
	// unreferenced ones and puts those still too young back in the queue;
	// a full dry run reads only the blob rows (it cannot repair the
	// queue, so it reports what the blob rows say).
	w := &waitTally{grace: grace, lease: lease}
	switch {
	case full && opts.DryRun:
		err = c.collectFrom(ctx, fromBlobs, opts.DryRun, grace, lease, w, &rep, progress)
	case full:
		if err = c.collectFrom(ctx, fromBlobs, opts.DryRun, grace, lease, nil, &rep, progress); err == nil {
			err = c.collectFrom(ctx, fromQueue, opts.DryRun, grace, lease, w, &rep, progress)
		}
	default:
		err = c.collectFrom(ctx, fromQueue, opts.DryRun, grace, lease, w, &rep, progress)
	}
	if err != nil {
		return rep, err
	}

	// 2b. What stays unreferenced but too young to collect (counted by the
	// walk), and what only the recycle bin keeps.
	rep.Waiting = w.report()
	if rep.Recycled, err = c.recycled(ctx); err != nil {
		return rep, err
	}

	// 3. Objects in storage that no row knows: left by a crash between
	// writing an object and recording it. Old enough ones are garbage.
	if full {
		if err := c.sweepOrphans(ctx, c.p.Now().Add(-lease), opts.DryRun, &rep, progress); err != nil {
			return rep, err
		}
		rep.Swept = true
		if !opts.DryRun {
			if err := c.p.DB.Update(ctx, func(tx stowage.Tx) error {
				return tx.Settings().PutSetting(lastSweepKey, began.UTC().Format(time.RFC3339Nano), began)
			}); err != nil {
				return rep, err
			}
		}
	} else if !last.IsZero() {
		rep.LastSweep = last.UTC().Format(time.RFC3339)
	}
	c.p.Log.Info("garbage collection done", "blobs", rep.BlobsDeleted, "bytes", rep.BytesFreed,
		"uploads", rep.UploadsExpired, "orphans", rep.OrphansDeleted, "dry_run", opts.DryRun)
	return rep, nil
}

// lastSweepKey is the setting that holds when the last full storage sweep
// began (RFC 3339): objects older than its cutoff were all checked then.
const lastSweepKey = "gc.last_sweep"

// sweepDue reports whether this run sweeps storage: always when every is
// zero, else when the last full sweep began at least every ago (or never
// ran). last is when it began.
func (c *Collector) sweepDue(ctx context.Context, every time.Duration) (due bool, last time.Time, err error) {
	if every <= 0 {
		return true, time.Time{}, nil
	}
	var v string
	err = c.p.DB.View(ctx, func(tx stowage.Tx) (err error) {
		v, err = tx.Settings().GetSetting(lastSweepKey)
		return err
	})
	if errors.Is(err, stowage.ErrNotFound) {
		return true, time.Time{}, nil
	}
	if err != nil {
		return false, time.Time{}, err
	}
	if last, err = time.Parse(time.RFC3339Nano, v); err != nil {
		return true, time.Time{}, nil // unreadable: sweep, and write it anew
	}
	now := c.p.Now()
	if last.After(now.Add(time.Hour)) {
		// Written by a node whose clock ran ahead: it would hold every
		// sweep off until then. Sweep, and write this node's time.
		return true, last, nil
	}
	return !now.Before(last.Add(every)), last, nil
}

// source is where a walk of step 2 reads its candidates: a page of them
// in digest order after `after`.
type source int

const (
	// fromQueue: the collector's queue (CollectQueueTx.QueuedBlobs), with
	// entries that need no collecting (referenced, no blob row) among them.
	fromQueue source = iota
	// fromBlobs: every blob row, of which the unreferenced ones in state
	// pending or live (CollectableBlobs with cutoffs in the far future).
	fromBlobs
)

// Pages of step 2's walks: a queue page is checked by one statement and
// its entries that need no collecting removed by another; a page of blob
// rows (the full pass) is a walk of the table's primary key and one
// statement to enqueue. Either holds a bounded number of records, whatever
// the registry's size.
const (
	queuePage = 1024
	blobsPage = 4096
)

// page reads one page of src.
func (c *Collector) page(ctx context.Context, src source, after stowage.Digest) ([]stowage.QueuedBlob, error) {
	var page []stowage.QueuedBlob
	err := c.p.DB.View(ctx, func(tx stowage.Tx) error {
		if src == fromQueue {
			var err error
			page, err = tx.CollectQueue().QueuedBlobs(after, queuePage)
			return err
		}
		far := c.p.Now().Add(100 * 365 * 24 * time.Hour)
		bs, err := tx.Blobs().CollectableBlobs(far, far, after, blobsPage)
		page = make([]stowage.QueuedBlob, len(bs))
		for i, b := range bs {
			page[i] = stowage.QueuedBlob{BlobRecord: b}
		}
		return err
	})
	return page, err
}

// collectFrom walks src a page at a time. Each entry is one of:
//
//   - nothing to collect: no blob row in state pending or live, or
//     referenced. Removed from the queue (CollectQueueTx.Dequeue
//     re-checks it, so one referenced no more stays).
//   - collectable: unreferenced, grace period and lease over. Fenced and
//     deleted (markCollectable re-checks it: Collect's doc), or counted in
//     a dry run.
//   - waiting: unreferenced but too young. Counted in w (if not nil).
//
// Read from the blob rows (a full pass), every entry is unreferenced and
// the page goes into the queue first.
//
// Candidates come from a snapshot; each is re-checked where it is marked.
// A range query inside the marking transaction would conflict, under
// PostgreSQL's serializable isolation, with every push that writes any
// blob row meanwhile, and keep failing.
func (c *Collector) collectFrom(ctx context.Context, src source, dryRun bool, grace, lease time.Duration, w *waitTally, rep *Report, progress func(string, int64, int64)) error {
	// Progress: phase "blobs", the blobs collected (or, in a dry run,
	// collectable) so far out of an upper bound: the queue's length when
	// the walk began (what this run examines), unknown (0) while a full
	// pass reads the blob rows.
	var total int64
	if src == fromQueue {
		if err := c.p.DB.View(ctx, func(tx stowage.Tx) (err error) {
			total, err = tx.CollectQueue().CountQueued()
			return err
		}); err != nil {
			return err
		}
	}
	progress("blobs", rep.BlobsDeleted, max(total, rep.BlobsDeleted))
	for after := stowage.Digest(""); ; {
		if err := ctx.Err(); err != nil {
			return err
		}
		page, err := c.page(ctx, src, after)
		if err != nil {
			return err
		}
		if len(page) == 0 {
			return nil
		}
		after = page[len(page)-1].Digest
		now := c.p.Now()
		unrefBefore, usedBefore := now.Add(-grace), now.Add(-lease)
		var drop, all []stowage.Digest
		var cands []stowage.BlobRecord
		for _, q := range page {
			all = append(all, q.Digest)
			switch {
			case q.Referenced || q.State != stowage.BlobPending && q.State != stowage.BlobLive:
				drop = append(drop, q.Digest)
			case !q.UnreferencedSince.After(unrefBefore) && !q.LastUsed.After(usedBefore):
				cands = append(cands, q.BlobRecord)
			default:
				if w != nil {
					w.add(q.BlobRecord, now)
				}
			}
		}
		if dryRun {
			for _, b := range cands {
				rep.BlobsDeleted++
				rep.BytesFreed += b.Size
				rep.Digests = append(rep.Digests, b.Digest)
			}
			progress("blobs", rep.BlobsDeleted, max(total, rep.BlobsDeleted))
			continue
		}
		// A full pass puts the page (every entry unreferenced) in the queue:
		// what is collected leaves it with its blob row, and what is not
		// (too young, or used again before its fence) is found by later runs.
		if src == fromBlobs || len(drop) > 0 {
			if err := c.p.DB.Update(ctx, func(tx stowage.Tx) error {
				if src == fromBlobs {
					return tx.CollectQueue().Enqueue(all)
				}
				_, err := tx.CollectQueue().Dequeue(drop)
				return err
			}); err != nil {
				return err
			}
		}
		for i := 0; i < len(cands); i += markBatch {
			batch, err := c.markCollectable(ctx, cands[i:min(i+markBatch, len(cands))], unrefBefore, usedBefore)
			if err != nil {
				return err
			}
			if err := c.deleteBatch(ctx, batch, rep); err != nil {
				return err
			}
		}
		progress("blobs", rep.BlobsDeleted, max(total, rep.BlobsDeleted))
	}
}

// waitTally counts the unreferenced blobs whose grace period or lease is
// not over (Report.Waiting).
type waitTally struct {
	grace, lease     time.Duration
	w                Waiting
	earliest, latest time.Time
}

// add counts b, not collectable at now.
func (t *waitTally) add(b stowage.BlobRecord, now time.Time) {
	when := b.UnreferencedSince.Add(t.grace)
	if l := b.LastUsed.Add(t.lease); l.After(when) {
		when = l
	}
	if !when.After(now) {
		return
	}
	t.w.Blobs++
	t.w.Bytes += b.Size
	if t.earliest.IsZero() || when.Before(t.earliest) {
		t.earliest = when
	}
	if when.After(t.latest) {
		t.latest = when
	}
}

// report is the tally for the report: nil if nothing waits.
func (t *waitTally) report() *Waiting {
	if t.w.Blobs == 0 {
		return nil
	}
	w := t.w
	w.Earliest, w.Latest = t.earliest.UTC().Format(time.RFC3339), t.latest.UTC().Format(time.RFC3339)
	return &w
}

// recycled counts the blobs only recycle bin entries keep (what a run
// after the entries expire frees), a page at a time in digest order: the
// bin's references probed for a manifest that is or references them
// (RecycleTx.RecycleOnlyBlobs, the conditions of the collector's re-check
// without the bin).
func (c *Collector) recycled(ctx context.Context) (*Recycled, error) {
	var r Recycled
	err := c.p.DB.View(ctx, func(tx stowage.Tx) (err error) {
		r.Entries, err = tx.Recycle().CountRecycled()
		return err
	})
	if err != nil || r.Entries == 0 {
		return nil, err
	}
	var earliest, latest time.Time
	for after := stowage.Digest(""); ; {
		var page []stowage.RecycleHeld
		err := c.p.DB.View(ctx, func(tx stowage.Tx) (err error) {
			page, err = tx.Recycle().RecycleOnlyBlobs(after, 4096)
			return err
		})
		if err != nil {
			return nil, err
		}
		if len(page) == 0 {
			break
		}
		after = page[len(page)-1].Digest
		for _, h := range page {
			r.Blobs++
			r.Bytes += h.Size
			if earliest.IsZero() || h.Expires.Before(earliest) {
				earliest = h.Expires
			}
			if h.Expires.After(latest) {
				latest = h.Expires
			}
		}
	}
	if r.Blobs == 0 {
		return nil, nil
	}
	r.Earliest, r.Latest = earliest.UTC().Format(time.RFC3339), latest.UTC().Format(time.RFC3339)
	return &r, nil
}

// markBatch is how many candidates one marking transaction re-checks: a
// page of candidates, in one statement of point lookups. Each marking
// transaction, and each deletion of the rows after it, is a commit (an
// fsync on SQLite, synchronous=FULL): at 32 a batch, collecting 5,000
// blobs took ~320 of them, most of the collection's time.
const markBatch = batchSize

// markCollectable is step 1: in one transaction, it re-checks the
// candidates with point reads (still in state pending or live,
// unreferenced by any manifest, reference or recycle bin entry, grace and
// lease over) and marks those that are still collectable 'deleting', in
// one statement (BlobTx.MarkCollectable). A manifest PUT that references
// one of them, or a HEAD that renews its lease, either commits first (then
// the re-check sees it) or conflicts with this transaction (SQLite: one
// writer; PostgreSQL: serializable), and loses or retries after it. The
// callback may run more than once: it only sets marked.
func (c *Collector) markCollectable(ctx context.Context, cands []stowage.BlobRecord, unrefBefore, usedBefore time.Time) ([]stowage.BlobRecord, error) {
	ds := make([]stowage.Digest, len(cands))
	for i, b := range cands {
		ds[i] = b.Digest
	}
	var marked []stowage.BlobRecord
	err := c.p.DB.Update(ctx, func(tx stowage.Tx) (err error) {
		marked, err = tx.Blobs().MarkCollectable(ds, unrefBefore, usedBefore)
		return err
	})
	slices.SortFunc(marked, func(a, b stowage.BlobRecord) int { return strings.Compare(string(a.Digest), string(b.Digest)) })
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

// sweepPage is how many listed objects the orphan sweep checks at once:
// one query for a page of blob objects (ExistingBlobs), one transaction to
// claim a page's orphans and one to delete their rows, one read
// transaction for a page of upload objects. The sweep holds at most one
// page (a few hundred KiB), whatever the number of stored objects.
const sweepPage = 1024

// sweepOrphans deletes blob objects older than `before` that have no row,
// and upload data whose session is gone. This is the one walk of storage,
// and it only removes what the database says is not there. Objects are
// checked a page at a time while the walk goes on, so its cost is the
// listing plus one indexed lookup per object, and its memory one page.
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
// object without a row again: the next sweep finds it. An object written
// after `before` (a push in flight, whose row may come later) is never
// looked at.
func (c *Collector) sweepOrphans(ctx context.Context, before time.Time, dryRun bool, rep *Report, progress func(string, int64, int64)) error {
	page := make([]stowage.ObjectInfo, 0, sweepPage)
	flush := func(check func([]stowage.ObjectInfo) error) error {
		if len(page) == 0 {
			return nil
		}
		err := check(page)
		page = page[:0]
		return err
	}
	blobs := func(p []stowage.ObjectInfo) error { return c.sweepBlobPage(ctx, p, dryRun, rep) }
	var seen int64
	err := c.p.Store.List(ctx, "blobs/", func(oi stowage.ObjectInfo) error {
		seen++
		if seen%1024 == 0 {
			progress("storage scan", seen, seen)
		}
		if oi.ModTime.After(before) {
			return nil
		}
		if _, ok := digestOfKey(oi.Key); !ok {
			return nil
		}
		page = append(page, oi)
		if len(page) == sweepPage {
			return flush(blobs)
		}
		return nil
	})
	if err == nil {
		err = flush(blobs)
	}
	if err != nil {
		return err
	}
	uploads := func(p []stowage.ObjectInfo) error { return c.sweepUploadPage(ctx, p, dryRun, rep) }
	err = c.p.Store.List(ctx, "uploads/", func(oi stowage.ObjectInfo) error {
		if oi.ModTime.After(before) {
			return nil
		}
		page = append(page, oi)
		if len(page) == sweepPage {
			return flush(uploads)
		}
		return nil
	})
	if err == nil {
		err = flush(uploads)
	}
	return err
}

// sweepBlobPage checks a page of blob objects (each key one that
// stowage.BlobKey gives) with one query, and deletes, through the fence,
// those that have no row.
func (c *Collector) sweepBlobPage(ctx context.Context, page []stowage.ObjectInfo, dryRun bool, rep *Report) error {
	ds := make([]stowage.Digest, len(page))
	for i, oi := range page {
		ds[i], _ = digestOfKey(oi.Key)
	}
	var known []stowage.Digest
	err := c.p.DB.View(ctx, func(tx stowage.Tx) (err error) {
		known, err = tx.Blobs().ExistingBlobs(ds)
		return err
	})
	if err != nil {
		return err
	}
	has := make(map[stowage.Digest]bool, len(known))
	for _, d := range known {
		has[d] = true
	}
	var orphans []stowage.BlobRecord
	for i, oi := range page {
		if !has[ds[i]] {
			orphans = append(orphans, stowage.BlobRecord{Digest: ds[i], Size: oi.Size})
		}
	}
	if len(orphans) == 0 {
		return nil
	}
	if !dryRun {
		if orphans, err = c.claimOrphans(ctx, orphans); err != nil {
			return err
		}
		// Steps 2 and 3 (each key is its digest's: digestOfKey checks it).
		if err := c.core.DeleteBlobs(ctx, orphans); err != nil {
			return err // the rows stay 'deleting': the next collection retries
		}
	}
	for _, o := range orphans {
		rep.OrphansDeleted++
		rep.OrphanBytes += o.Size
	}
	return nil
}

// claimOrphans is step 1 of deleting blob orphans: in one transaction, it
// records as 'deleting' those of orphans that still have no row, and
// returns them (the others were reserved by a push meanwhile: not
// orphans). The callback may run more than once: it only sets claimed.
func (c *Collector) claimOrphans(ctx context.Context, orphans []stowage.BlobRecord) (claimed []stowage.BlobRecord, err error) {
	now := c.p.Now()
	ds := make([]stowage.Digest, len(orphans))
	for i, o := range orphans {
		ds[i] = o.Digest
	}
	err = c.p.DB.Update(ctx, func(tx stowage.Tx) error {
		claimed = claimed[:0]
		known, err := tx.Blobs().ExistingBlobs(ds)
		if err != nil {
			return err
		}
		has := make(map[stowage.Digest]bool, len(known))
		for _, d := range known {
			has[d] = true
		}
		for _, o := range orphans {
			if has[o.Digest] {
				continue
			}
			has[o.Digest] = true // a digest listed twice is claimed once
			if err := tx.Blobs().PutBlob(stowage.BlobRecord{Digest: o.Digest, Size: o.Size, Created: now, State: stowage.BlobDeleting,
				LastUsed: now, UnreferencedSince: now}); err != nil {
				return err
			}
			claimed = append(claimed, o)
		}
		return nil
	})
	return claimed, err
}

// sweepUploadPage deletes the objects of a page of upload data whose
// session is gone, looking each session up once, in one read transaction.
// A session's ID is never reused, so data whose session is gone stays
// garbage.
func (c *Collector) sweepUploadPage(ctx context.Context, page []stowage.ObjectInfo, dryRun bool, rep *Report) error {
	var gone map[string]bool
	err := c.p.DB.View(ctx, func(tx stowage.Tx) error {
		gone = map[string]bool{}
		for _, oi := range page {
			id := uploadOfKey(oi.Key)
			if _, ok := gone[id]; ok {
				continue
			}
			_, err := tx.Uploads().GetUpload(id)
			if err != nil && !errors.Is(err, stowage.ErrNotFound) {
				return err
			}
			gone[id] = err != nil
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, oi := range page {
		if !gone[uploadOfKey(oi.Key)] {
			continue
		}
		if !dryRun {
			if err := c.p.Store.Delete(ctx, oi.Key); err != nil {
				return err
			}
		}
		rep.OrphansDeleted++
		rep.OrphanBytes += oi.Size
	}
	return nil
}

// uploadOfKey is the upload session ID an object under uploads/ belongs to.
func uploadOfKey(key string) string {
	id, _, _ := strings.Cut(strings.TrimPrefix(key, "uploads/"), "/")
	return id
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
