package stowage

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"time"
)

// The policies' part in the core. Package policy decides what retention and
// purges delete (pure plans) and runs them; the deleting itself goes
// through the core's delete path here, so locks, immutability, index
// children, referrers, the recycle bin, the freed-bytes count and the
// change feed's events work as for any delete.

// PurgeFilter selects tags: both expressions must match in full. Purges
// and the tag immutability rules use it.
type PurgeFilter struct {
	Repo, Tag *regexp.Regexp
}

// ParsePurgeFilter parses "REPO_REGEX:TAG_REGEX" (as acr purge does).
func ParsePurgeFilter(s string) (PurgeFilter, error) {
	i := strings.LastIndex(s, ":")
	if i <= 0 {
		return PurgeFilter{}, Errorf(CodeInvalidParameter, "filter %q: want REPOSITORY_REGEX:TAG_REGEX, e.g. 'team/.*:pr-.*'", s)
	}
	repo, err := regexp.Compile("^(?:" + s[:i] + ")$")
	if err != nil {
		return PurgeFilter{}, Errorf(CodeInvalidParameter, "filter %q: repository expression: %v", s, err)
	}
	tag, err := regexp.Compile("^(?:" + s[i+1:] + ")$")
	if err != nil {
		return PurgeFilter{}, Errorf(CodeInvalidParameter, "filter %q: tag expression: %v", s, err)
	}
	return PurgeFilter{repo, tag}, nil
}

// Deletion is a delete in progress in its transaction, driven by a policy.
type Deletion struct{ del *deletion }

// Tx is the delete's transaction, for reading what to delete.
func (d *Deletion) Tx() Tx { return d.del.tx }

// Now is the delete's time.
func (d *Deletion) Now() time.Time { return d.del.now }

// Untag removes tag and, if its manifest has no tag left, starts the
// manifest's untagged period. A delete-locked or immutable tag is passed
// over (nil); a missing one is ErrNotFound.
func (d *Deletion) Untag(tag string) error { return d.del.untag(tag) }

// DeleteManifest deletes manifest dg with its tags, its referrers (unless
// the registry keeps them) and the index children nothing else uses; why is
// the reason the report gives ("retention", "untagged"). A manifest that is
// delete-locked, carries an immutable tag or is an index's child is passed
// over (nil); a missing one is ErrNotFound.
func (d *Deletion) DeleteManifest(dg Digest, why string) error { return d.del.manifest(dg, why) }

// DeleteByPolicy runs fn as one delete in repo, in one transaction, and
// reports what it removed and exactly how many bytes the next collection
// frees. Locked things are passed over (a delete-locked repository: all of
// it). A dry run computes the same report with the same code and rolls
// back. Its events record ReasonFrom(ctx) as why.
func (r *Registry) DeleteByPolicy(ctx context.Context, repo string, dryRun bool, fn func(*Deletion) error) (DeleteReport, error) {
	return r.runDelete(ctx, repo, dryRun, true, func(del *deletion) error { return fn(&Deletion{del}) })
}

// PolicyBatch is one transaction of a policy pass that deletes in several
// repositories (DeleteByPolicyBatch).
type PolicyBatch struct {
	r       *Registry
	ctx     context.Context
	tx      Tx
	now     time.Time
	dryRun  bool
	reports []DeleteReport
}

// Tx is the batch's transaction, for reading what to delete.
func (b *PolicyBatch) Tx() Tx { return b.tx }

// Now is the batch's time.
func (b *PolicyBatch) Now() time.Time { return b.now }

// Delete runs fn as one delete in repo inside the batch's transaction, as
// DeleteByPolicy does in a transaction of its own: locked things are passed
// over (a delete-locked repository: all of it), and its report (what it
// removed, and the bytes the next collection frees, counted when fn
// returns) is the batch's next.
func (b *PolicyBatch) Delete(repo string, fn func(*Deletion) error) error {
	rep, err := b.r.deleteIn(b.ctx, b.tx, b.now, repo, b.dryRun, true, func(del *deletion) error { return fn(&Deletion{del}) })
	if err != nil {
		return err
	}
	b.reports = append(b.reports, rep)
	return nil
}

// DeleteByPolicyBatch runs fn as one transaction in which it deletes, with
// b.Delete, in as many repositories as it likes, and returns their reports
// in order. A policy pass over the whole registry is a sequence of such
// batches: its cost then follows what it deletes, not the number of
// repositories, and each transaction holds a bounded amount of work
// (policy.ApplyRetention). A dry run rolls the batch back. Its events
// record ReasonFrom(ctx) as why.
func (r *Registry) DeleteByPolicyBatch(ctx context.Context, dryRun bool, fn func(b *PolicyBatch) error) ([]DeleteReport, error) {
	var reports []DeleteReport
	now := r.now()
	err := r.db.Update(ctx, func(tx Tx) error {
		b := &PolicyBatch{r: r, ctx: ctx, tx: tx, now: now, dryRun: dryRun}
		err := fn(b)
		reports = b.reports
		if err == nil && dryRun {
			return errDryRun
		}
		return err
	})
	if errors.Is(err, errDryRun) {
		err = nil
	}
	if err != nil {
		return nil, err // rolled back: nothing was deleted
	}
	return reports, nil
}
