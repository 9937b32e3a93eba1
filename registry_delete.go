package stowage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// DeleteReport says what a delete removed (or, in a dry run, would remove)
// and exactly how much space garbage collection then frees.
type DeleteReport struct {
	DryRun     bool              `json:"dryRun"`
	Repository string            `json:"repository"`
	Manifests  []DeletedManifest `json:"manifests"`
	Tags       []string          `json:"tags"` // every tag removed
	// BlobsFreed and BytesFreed count the blobs (layers, configs and the
	// manifests themselves) that no manifest references any more after
	// this delete: what the next collection frees.
	BlobsFreed int64 `json:"blobsFreed"`
	BytesFreed int64 `json:"bytesFreed"`
	// RecycledUntil is set when soft delete kept the manifests in the
	// recycle bin: restorable until then, and their space freed only after.
	RecycledUntil string `json:"recycledUntil,omitempty"`
	// Truncated is set when the lists above hold only the first of what
	// was removed (a bounded answer about a very large delete); it counts
	// everything. BlobsFreed and BytesFreed always do.
	Truncated *ReportTotals `json:"truncated,omitempty"`
}

// ReportTotals counts what a truncated DeleteReport removed in all.
type ReportTotals struct {
	Manifests int `json:"manifests"`
	Tags      int `json:"tags"`
}

// Truncate keeps the first n manifests and the first n tags of the lists;
// Truncated then counts them all.
func (r *DeleteReport) Truncate(n int) {
	if len(r.Manifests) <= n && len(r.Tags) <= n {
		return
	}
	if r.Truncated == nil {
		r.Truncated = &ReportTotals{Manifests: len(r.Manifests), Tags: len(r.Tags)}
	}
	r.Manifests = r.Manifests[:min(n, len(r.Manifests))]
	r.Tags = r.Tags[:min(n, len(r.Tags))]
}

// DeletedManifest is one manifest a delete removed.
type DeletedManifest struct {
	Digest    Digest   `json:"digest"`
	MediaType string   `json:"mediaType"`
	Tags      []string `json:"tags,omitempty"`
	Reason    string   `json:"reason"` // "requested", "referrer", "index child"
}

// errDryRun rolls back a dry run's transaction after it computed its report.
var errDryRun = errors.New("dry run")

// deletion accumulates one delete inside its transaction.
type deletion struct {
	// ctx carries the actor and the reason (WithReason) its events record.
	ctx      context.Context
	now      time.Time
	tx       Tx
	repo     string
	report   *DeleteReport
	seen     map[Digest]bool
	keepRefs bool
	// skipLocked makes policies (retention, purge) pass over delete-locked
	// tags and manifests instead of failing.
	skipLocked bool
	// recycleUntil, when set, sends deleted manifests to the recycle bin
	// until then (soft delete).
	recycleUntil time.Time
	// affected lists every digest that may lose its last reference (each
	// manifest met, and what it references), once, in the order met.
	affected   []Digest
	affectedIn map[Digest]bool
	// src reads the repository's manifests, references and tags and
	// removes them: the database itself (point queries), or, when the
	// whole repository goes, a snapshot of it (registry_delete_repo.go).
	src deleteSource
	// everything: the whole repository goes, so a manifest another one
	// references may go too (its parent goes with it).
	everything bool
	hook       ChangeHook // Options.Changes
}

// affect records that d may lose its last reference.
func (del *deletion) affect(d Digest) {
	if !del.affectedIn[d] {
		del.affectedIn[d] = true
		del.affected = append(del.affected, d)
	}
}

// runDelete performs fn as one transaction (deleteIn). A dry run rolls
// everything back, so its answer comes from the very same code.
func (r *Registry) runDelete(ctx context.Context, repo string, dryRun, skipLocked bool, fn func(*deletion) error) (DeleteReport, error) {
	var report DeleteReport
	now := r.now()
	err := r.db.Update(ctx, func(tx Tx) error {
		var err error
		report, err = r.deleteIn(ctx, tx, now, repo, dryRun, skipLocked, fn)
		if err == nil && dryRun {
			return errDryRun
		}
		return err
	})
	if errors.Is(err, errDryRun) {
		err = nil
	}
	return report, err
}

// deleteIn performs fn as one delete in repo, inside tx, and computes the
// bytes it frees: of the digests it affected, those nothing references
// after it. Each was referenced when met (it is a manifest of repo, or a
// manifest of repo references it), so no "before" needs reading.
//
// Every tag and manifest it removes appends its event to the change feed in
// that transaction (untag, delete), with the actor ctx carries and, as the
// reason, ReasonFrom(ctx): a policy deletes under WithReason(ctx,
// ReasonRetention) and needs no other hook.
func (r *Registry) deleteIn(ctx context.Context, tx Tx, now time.Time, repo string, dryRun, skipLocked bool, fn func(*deletion) error) (DeleteReport, error) {
	report := DeleteReport{DryRun: dryRun, Repository: repo, Manifests: []DeletedManifest{}, Tags: []string{}}
	del := &deletion{ctx: ctx, now: now, tx: tx, repo: repo, report: &report, seen: map[Digest]bool{}, affectedIn: map[Digest]bool{},
		keepRefs: r.keepReferrers, skipLocked: skipLocked, hook: r.changes, src: txSource{tx, repo}}
	rec, err := tx.Repositories().GetRepository(repo)
	if err != nil {
		return report, err
	}
	if rec.Locks&LockDelete != 0 && !replicatedChange(ctx) {
		if skipLocked {
			return report, nil
		}
		return report, denied("repository "+repo, "delete", repo)
	}
	if del.recycleUntil, err = recycleUntil(tx, now); err != nil {
		return report, err
	}
	if !del.recycleUntil.IsZero() {
		report.RecycledUntil = del.recycleUntil.UTC().Format(time.RFC3339)
	}
	if err := fn(del); err != nil {
		return report, err
	}
	digests := slices.Clone(del.affected)
	slices.Sort(digests)
	// A repository delete frees what nothing outside the repository
	// references: the same answer once its rows are gone, and one a dry
	// run can give without removing them.
	except := ""
	if del.everything {
		except = repo
	}
	freed, err := unreferencedBlobs(tx, digests, except)
	if err != nil {
		return report, err
	}
	for _, b := range freed {
		report.BlobsFreed++
		report.BytesFreed += b.Size
	}
	if dryRun {
		// Restarting grace periods changes no answer and is rolled back:
		// skipped (10,000 row updates for a repository of 10,000).
		return report, nil
	}
	return report, tx.Blobs().MarkUnreferenced(digests, now)
}

// unreferencedBatch bounds the digests of one UnreferencedBlobs read.
const unreferencedBatch = 500

// unreferencedBlobs returns the rows of the blobs among ds nothing
// references, a few hundred digests per read.
func unreferencedBlobs(tx Tx, ds []Digest, except string) ([]BlobRecord, error) {
	var out []BlobRecord
	for len(ds) > 0 {
		n := min(len(ds), unreferencedBatch)
		bs, err := tx.Blobs().UnreferencedBlobs(ds[:n], except)
		if err != nil {
			return nil, err
		}
		out = append(out, bs...)
		ds = ds[n:]
	}
	return out, nil
}

// Untag removes one tag. The manifest stays (untagged if no other tag points
// at it), so nothing is freed.
func (r *Registry) Untag(ctx context.Context, repo, tag string, dryRun bool) (DeleteReport, error) {
	rep, err := r.runDelete(ctx, repo, dryRun, false, func(del *deletion) error { return del.untag(tag) })
	if errors.Is(err, ErrNotFound) {
		return rep, manifestUnknown(repo, Reference{Tag: tag})
	}
	return rep, err
}

// DeleteImage deletes the manifest a tag or digest names, with every tag
// pointing at it, its referrers (unless configured to keep them), and, for an
// index, the child manifests nothing else in the repository uses. A manifest
// that an index of the repository lists is refused (DENIED, naming the
// index): delete the index.
func (r *Registry) DeleteImage(ctx context.Context, repo string, ref Reference, dryRun bool) (DeleteReport, error) {
	rep, err := r.runDelete(ctx, repo, dryRun, false, func(del *deletion) error {
		d := ref.Digest
		if !ref.IsDigest() {
			var err error
			if d, err = del.tx.Tags().GetTag(repo, ref.Tag); err != nil {
				return err
			}
		}
		return del.manifest(d, "requested")
	})
	if errors.Is(err, ErrNotFound) {
		return rep, manifestUnknown(repo, ref)
	}
	return rep, err
}

// DeleteRepository deletes a repository: all its manifests, tags, blob links
// and uploads in progress. Upload sessions end even while a writer holds
// one's lease: the writer stops (its lease renewal finds the session gone),
// fails with BLOB_UPLOAD_UNKNOWN and deletes the session's data, and records
// nothing (recordBlob requires the session, so a final PUT in flight cannot
// bring the repository back). Idle sessions' data goes with the next
// collection's orphan sweep.
func (r *Registry) DeleteRepository(ctx context.Context, repo string, dryRun bool) (DeleteReport, error) {
	rep, err := r.runDelete(ctx, repo, dryRun, false, func(del *deletion) error {
		del.everything = true
		// The whole repository in three reads; its rows go in one
		// bulk delete at the end (registry_delete_repo.go).
		snap, err := readRepoSnapshot(del.tx, repo)
		if err != nil {
			return err
		}
		if !r.pointDeletes {
			del.src = snap
		}
		for _, m := range snap.list {
			if err := del.manifest(m.Digest, "requested"); err != nil {
				return err
			}
		}
		// What it frees is counted from the references outside the
		// repository (deleteIn), so a dry run, rolled back anyway, skips
		// removing the rows: on a big repository most of its cost.
		if !dryRun {
			if err := del.tx.Repositories().DeleteRepository(repo); err != nil {
				return err
			}
		}
		// One event for the repository, none per manifest (event.go).
		e := NewEvent(ctx, EventRepositoryDelete, repo)
		e.Time, e.Reason = del.now, ReasonFrom(ctx)
		e.Detail = EventDetail(ctx, map[string]any{"manifests": len(del.report.Manifests), "tags": len(del.report.Tags)})
		return appendChange(ctx, del.hook, del.tx, e)
	})
	if errors.Is(err, ErrNotFound) {
		return rep, nameUnknown(repo)
	}
	return rep, err
}

// untag removes a tag and, if its manifest has no tag left, starts the
// manifest's untagged period (what retention counts from).
func (del *deletion) untag(tag string) error {
	t, err := del.tx.Tags().GetTagRecord(del.repo, tag)
	if err != nil {
		return err
	}
	d := t.Digest
	waive := replicatedChange(del.ctx) // registry_locks.go
	if t.Locks&LockDelete != 0 && !waive {
		if del.skipLocked {
			return nil
		}
		return denied("tag "+del.repo+":"+tag, "delete", del.repo+":"+tag)
	}
	// An immutable tag cannot be removed either: untagging and pushing
	// again would move it.
	if rule, err := immutableRule(del.tx, del.repo, tag); err != nil {
		return err
	} else if rule != "" && !waive {
		if del.skipLocked {
			return nil
		}
		return immutableTag(del.repo, tag, rule)
	}
	if err := del.tx.Tags().DeleteTag(del.repo, tag); err != nil {
		return err
	}
	del.report.Tags = append(del.report.Tags, tag)
	e := NewEvent(del.ctx, EventUntag, del.repo)
	e.Time, e.Tag, e.Digest, e.Reason = del.now, tag, d, ReasonFrom(del.ctx)
	if err := appendChange(del.ctx, del.hook, del.tx, e); err != nil {
		return err
	}
	return markIfUntagged(del.tx, del.repo, d, del.now)
}

// markIfUntagged records that d became untagged now, if no tag is left on it.
func markIfUntagged(tx Tx, repo string, d Digest, now time.Time) error {
	left, err := tx.Tags().TagsOf(repo, d)
	if err != nil || len(left) > 0 {
		return err
	}
	return tx.Manifests().SetUntaggedSince(repo, d, now)
}

// manifest deletes one manifest and what goes with it.
func (del *deletion) manifest(d Digest, reason string) error {
	if del.seen[d] {
		return nil
	}
	del.seen[d] = true
	tx, repo, src := del.tx, del.repo, del.src
	m, err := src.manifest(d)
	if err != nil {
		return err
	}
	refs, err := src.refs(d)
	if err != nil {
		return err
	}
	del.affect(d)
	for _, ref := range refs {
		del.affect(ref.Digest)
	}
	tags, err := src.tagsOf(d)
	if err != nil {
		return err
	}
	// Locks: a delete-locked manifest, or one a delete-locked tag points
	// at, stays. Asked for directly, that is DENIED; as a cascade or in a
	// policy, it is passed over.
	lockedBy := ""
	// A replicated delete passes the locks and rules of the manifest it
	// names (registry_locks.go); what it cascades to keeps them, as where
	// the delete was made (those removals are replicated on their own).
	waive := reason == "requested" && replicatedChange(del.ctx)
	if m.Locks&LockDelete != 0 {
		lockedBy = "manifest " + repo + "@" + string(d)
	}
	var tagLocks map[string]Locks // what the recycle bin keeps
	var immutable error
	for _, t := range tags {
		tr, err := src.tagRecord(t)
		if err != nil {
			return err
		}
		if tr.Locks&LockDelete != 0 && lockedBy == "" {
			lockedBy = "tag " + repo + ":" + t
		}
		// An immutable tag stays with its manifest (deleting the manifest
		// and pushing another under the tag would move it), except when
		// the whole repository goes.
		if !del.everything && !waive && immutable == nil && lockedBy == "" {
			rule, err := immutableRule(tx, repo, t)
			if err != nil {
				return err
			}
			if rule != "" {
				immutable = immutableTag(repo, t, rule)
			}
		}
		if tr.Locks != 0 {
			if tagLocks == nil {
				tagLocks = map[string]Locks{}
			}
			tagLocks[t] = tr.Locks
		}
	}
	if waive {
		lockedBy = ""
	}
	if lockedBy != "" {
		if del.skipLocked || reason != "requested" {
			// Passed over, and left unseen: asked for later in this same
			// delete (delete-repo asks for every manifest), it is refused.
			delete(del.seen, d)
			return nil
		}
		return denied(lockedBy, "delete", strings.NewReplacer("manifest ", "", "tag ", "").Replace(lockedBy))
	}
	if immutable != nil {
		if del.skipLocked || reason != "requested" {
			delete(del.seen, d)
			return nil
		}
		return immutable
	}
	// A manifest that another manifest of repo references (an index's
	// platform manifest) stays while that one does: the index would no
	// longer pull. Asked for directly, that is DENIED; in a cascade (a
	// referrer that is also a child) or a policy, it is passed over, and
	// left unseen so that deleting its index later in this same delete
	// can still take it.
	if !del.everything {
		parents, err := src.parents(d)
		if err != nil {
			return err
		}
		if len(parents) > 0 {
			if del.skipLocked || reason != "requested" {
				delete(del.seen, d)
				return nil
			}
			return inUse("manifest", "index", repo, d, parents, "delete that index first (its platform manifests that nothing else uses and no tag names go with it)")
		}
	}
	for _, t := range tags {
		if err := src.deleteTag(t); err != nil {
			return err
		}
	}
	del.report.Tags = append(del.report.Tags, tags...)
	del.report.Manifests = append(del.report.Manifests, DeletedManifest{Digest: d, MediaType: m.MediaType, Tags: tags, Reason: reason})
	var recycled int64
	if !del.recycleUntil.IsZero() {
		if recycled, err = tx.Recycle().PutRecycled(RecycledManifest{Manifest: m, Refs: refs, Tags: tags, TagLocks: tagLocks, Deleted: del.now, Expires: del.recycleUntil}); err != nil {
			return err
		}
	}
	if err := src.deleteManifest(d); err != nil {
		return err
	}
	if !del.everything { // a repository delete is one event (DeleteRepository)
		if err := appendChange(del.ctx, del.hook, tx, del.deleteEvent(m, tags, reason, recycled)); err != nil {
			return err
		}
	}
	if !del.keepRefs {
		referrers, err := src.referrers(d)
		if err != nil {
			return err
		}
		for _, rf := range referrers {
			if err := del.manifest(rf.Digest, "referrer"); err != nil {
				return err
			}
		}
	}
	// An index's children go too, unless tagged or used by another manifest.
	for _, ref := range refs {
		if ref.Kind != RefManifest || del.seen[ref.Digest] {
			continue
		}
		if _, err := src.manifest(ref.Digest); errors.Is(err, ErrNotFound) {
			continue
		}
		tags, err := src.tagsOf(ref.Digest)
		if err != nil {
			return err
		}
		parents, err := src.parents(ref.Digest)
		if err != nil {
			return err
		}
		if len(tags) == 0 && len(parents) == 0 {
			if err := del.manifest(ref.Digest, "index child"); err != nil {
				return err
			}
		}
	}
	return nil
}

// deleteEvent is the change feed's record of deleting m, which took tags
// with it: why (Reason, from the context: user, retention, purge, ...), and
// in Detail the tags, whether it went as a referrer or index child of
// another deleted manifest ("cascade"), and its recycle bin entry.
func (del *deletion) deleteEvent(m ManifestRecord, tags []string, reason string, recycled int64) Event {
	e := NewEvent(del.ctx, EventDelete, del.repo)
	e.Time, e.Digest, e.MediaType, e.Size, e.Reason = del.now, m.Digest, m.MediaType, m.Size, ReasonFrom(del.ctx)
	fields := map[string]any{}
	if len(tags) > 0 {
		fields["tags"] = tags
	}
	if reason == "referrer" || reason == "index child" {
		fields["cascade"] = reason
	}
	if recycled != 0 {
		fields["recycleId"] = recycled
		fields["recycledUntil"] = del.recycleUntil.UTC().Format(time.RFC3339)
	}
	if len(fields) > 0 {
		e.Detail = EventDetail(del.ctx, fields)
	}
	return e
}

// inUse is the DENIED error for deleting d (what: "blob" or "manifest")
// while manifests of repo (users, each a user: "manifest" or "index") still
// reference it.
func inUse(what, user, repo string, d Digest, users []Digest, advice string) error {
	more := ""
	if len(users) > 1 {
		more = fmt.Sprintf(" (and %d more)", len(users)-1)
	}
	return &Error{Code: CodeDenied,
		Message: fmt.Sprintf("%s %s is used by %s %s@%s%s, which could then no longer be pulled: %s", what, d, user, repo, users[0], more, advice),
		Detail:  map[string]any{"digest": string(d), "manifests": users}}
}

// immutableTag is the refusal to remove repo:tag, which an immutability
// rule protects.
func immutableTag(repo, tag, rule string) error {
	return Errorf(CodeDenied, "tag %s:%s is immutable (policy rule %q): it cannot be removed or moved; delete the whole repository, or change the rules with 'stowage immutability set'", repo, tag, rule)
}
