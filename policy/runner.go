package policy

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sort"
	"time"

	"github.com/stowage/stowage"
)

// Run is the result of one retention or purge run.
type Run struct {
	At         string `json:"at"`
	DryRun     bool   `json:"dryRun"`
	Manifests  int    `json:"manifestsDeleted"`
	Tags       int    `json:"tagsDeleted"`
	BlobsFreed int64  `json:"blobsFreed"`
	BytesFreed int64  `json:"bytesFreed"`
	// Repositories lists what was deleted, a report per repository, up to
	// about runListed manifests and tags; the totals above count
	// everything, and RepositoriesNotListed the repositories left out.
	Repositories          []stowage.DeleteReport `json:"repositories"`
	RepositoriesNotListed int                    `json:"repositoriesNotListed,omitempty"`
	Error                 string                 `json:"error,omitempty"`

	listed   int    // manifests and tags in Repositories
	lastRepo string // the repository of the last report added
}

// runListed bounds what a Run lists, so that a pass over a large registry
// holds, returns and stores (the last run's record) a bounded report.
const runListed = 1000

func (p *Run) add(rep stowage.DeleteReport) {
	if len(rep.Manifests) == 0 && len(rep.Tags) == 0 {
		return
	}
	p.Manifests += len(rep.Manifests)
	p.Tags += len(rep.Tags)
	p.BlobsFreed += rep.BlobsFreed
	p.BytesFreed += rep.BytesFreed
	// A repository whose deletes spanned two batches: one entry.
	if rep.Repository == p.lastRepo {
		if n := len(p.Repositories); n > 0 && p.Repositories[n-1].Repository == rep.Repository {
			last := &p.Repositories[n-1]
			last.BlobsFreed += rep.BlobsFreed
			last.BytesFreed += rep.BytesFreed
			p.list(last, rep.Manifests, rep.Tags)
		}
		return // else its first part was not listed, and is counted
	}
	p.lastRepo = rep.Repository
	if p.listed >= runListed {
		p.RepositoriesNotListed++
		return
	}
	entry := rep
	entry.Manifests, entry.Tags = []stowage.DeletedManifest{}, []string{}
	p.Repositories = append(p.Repositories, entry)
	p.list(&p.Repositories[len(p.Repositories)-1], rep.Manifests, rep.Tags)
}

// list adds ms and tags to e's lists as far as runListed allows; e's
// Truncated then counts the rest.
func (p *Run) list(e *stowage.DeleteReport, ms []stowage.DeletedManifest, tags []string) {
	k := min(len(ms), max(0, runListed-p.listed))
	t := min(len(tags), max(0, runListed-p.listed-k))
	if e.Truncated == nil && (k < len(ms) || t < len(tags)) {
		e.Truncated = &stowage.ReportTotals{Manifests: len(e.Manifests), Tags: len(e.Tags)}
	}
	if e.Truncated != nil {
		e.Truncated.Manifests += len(ms)
		e.Truncated.Tags += len(tags)
	}
	e.Manifests = append(e.Manifests, ms[:k]...)
	e.Tags = append(e.Tags, tags[:t]...)
	p.listed += k + t
}

// The settings the policies keep.
const (
	settingRetention        = "retention.policy"
	settingRetentionLastRun = "retention.last_run"
	settingPurgePolicies    = "purge.policies"
)

// Runner reads the registry's state, plans and applies the policies.
type Runner struct {
	// Batch is how many candidates one transaction of a retention pass
	// takes (0: retentionBatch).
	Batch int

	reg *stowage.Registry
	db  stowage.DB
	log *slog.Logger
	now func() time.Time
}

// New returns the runner of reg's policies.
func New(reg *stowage.Registry) *Runner {
	p := reg.Parts()
	return &Runner{reg: reg, db: p.DB, log: p.Log, now: p.Now}
}

// Retention returns the policy and its last run (nil if it never ran).
func (r *Runner) Retention(ctx context.Context) (Retention, *Run, error) {
	var p Retention
	var last *Run
	err := r.db.View(ctx, func(tx stowage.Tx) error {
		if err := stowage.GetSetting(tx, settingRetention, &p); err != nil {
			return err
		}
		var run Run
		if err := stowage.GetSetting(tx, settingRetentionLastRun, &run); err != nil {
			return err
		}
		if run.At != "" {
			last = &run
		}
		return nil
	})
	return p, last, err
}

// SetRetention stores the policy, and records the change in the feed.
func (r *Runner) SetRetention(ctx context.Context, p Retention) error {
	if err := p.Validate(); err != nil {
		return err
	}
	now := r.now()
	return r.db.Update(ctx, func(tx stowage.Tx) error {
		var before Retention
		if err := stowage.GetSetting(tx, settingRetention, &before); err != nil {
			return err
		}
		if err := stowage.PutSetting(tx, settingRetention, p, now); err != nil {
			return err
		}
		return tx.Events().Append(policyEvent(ctx, now, map[string]any{"name": "retention", "before": before, "after": p}))
	})
}

// ApplyRetention deletes, in every repository, the untagged manifests whose
// untagged period is longer than the policy's days (the index children of a
// tagged index are not untagged). A dry run only reports.
//
// One run at a time across the nodes sharing the database (the job lock
// "retention"); a run asked for while another runs waits for it.
func (r *Runner) ApplyRetention(ctx context.Context, dryRun bool) (Run, error) {
	if dryRun {
		return r.applyRetention(ctx, true)
	}
	var run Run
	err := stowage.ExclusiveJob(ctx, r.db, r.log, "retention", true, nil, func(ctx context.Context) (err error) {
		run, err = r.applyRetention(ctx, false)
		return err
	})
	return run, err
}

// retentionBatch is how many candidates one transaction of a retention
// pass takes: enough to spread a commit over many deletions, few enough
// that a transaction holds the database (SQLite's one writer) briefly.
const retentionBatch = 256

// applyRetention deletes the untagged manifests in batches: each
// transaction reads the next page of candidates of the whole registry (in
// repository, creation, digest order, from where the last one ended) and
// deletes them, one stowage delete per repository of the page. Its cost
// grows with the deletions, not with the number of repositories, and its
// memory with the batch (the Run's listing is bounded too).
func (r *Runner) applyRetention(ctx context.Context, dryRun bool) (Run, error) {
	now := r.now()
	run := Run{At: now.UTC().Format(time.RFC3339), DryRun: dryRun, Repositories: []stowage.DeleteReport{}}
	p, _, err := r.Retention(ctx)
	if err != nil || !p.Enabled {
		return run, err
	}
	ctx = stowage.WithReason(ctx, stowage.ReasonRetention)
	cutoff := p.Cutoff(now)
	var from stowage.ManifestRecord // where the next batch starts
	var runErr error
	batch := r.Batch
	if batch <= 0 {
		batch = retentionBatch
	}
	for {
		var last stowage.ManifestRecord
		n := 0
		reps, err := r.reg.DeleteByPolicyBatch(ctx, dryRun, func(b *stowage.PolicyBatch) error {
			page, err := retentionPage(b.Tx(), cutoff, from, batch, dryRun)
			if n = len(page); err != nil || n == 0 {
				return err
			}
			last = page[n-1]
			for len(page) > 0 {
				i := 1
				for i < len(page) && page[i].Repo == page[0].Repo {
					i++
				}
				ms := page[:i]
				page = page[i:]
				if err := b.Delete(ms[0].Repo, func(del *stowage.Deletion) error {
					return apply(del, PlanRetention(p, ms), false)
				}); err != nil {
					return err
				}
			}
			return nil
		})
		for _, rep := range reps {
			run.add(rep)
		}
		if err != nil {
			run.Error, runErr = err.Error(), err
			break
		}
		if n == 0 {
			break
		}
		from = last
	}
	err = runErr
	if !dryRun {
		if e := r.db.Update(ctx, func(tx stowage.Tx) error {
			return stowage.PutSetting(tx, settingRetentionLastRun, run, now)
		}); e != nil && err == nil {
			err = e
		}
	}
	return run, err
}

// retentionPage reads the next batch candidates after from. A dry
// run's batches each roll back, so it never splits a repository between
// two (the second would judge the rest from the state before the first):
// its page runs on to the end of its last repository. A real run may split
// one, since the second batch sees the first one's deletes committed.
func retentionPage(tx stowage.Tx, cutoff time.Time, from stowage.ManifestRecord, batch int, whole bool) ([]stowage.ManifestRecord, error) {
	page, err := tx.Manifests().UntaggedManifestsAfter(cutoff, from, batch)
	if err != nil || !whole || len(page) < batch {
		return page, err
	}
	for {
		last := page[len(page)-1]
		more, err := tx.Manifests().UntaggedManifestsAfter(cutoff, last, batch)
		if err != nil {
			return nil, err
		}
		i := 0
		for i < len(more) && more[i].Repo == last.Repo {
			i++
		}
		page = append(page, more[:i]...)
		if i < len(more) || len(more) < batch {
			return page, nil
		}
	}
}

// apply carries out plan in del: its tags, then its manifests (one a cascade
// took already is skipped when missingOK).
func apply(del *stowage.Deletion, plan Plan, missingOK bool) error {
	for _, t := range plan.Tags {
		if err := del.Untag(t.Name); err != nil {
			return err
		}
	}
	for _, m := range plan.Manifests {
		if err := del.DeleteManifest(m.Digest, m.Why); err != nil && !(missingOK && errors.Is(err, stowage.ErrNotFound)) {
			return err
		}
	}
	return nil
}

// Purge removes matching tags older than Ago (keeping the Keep newest per
// repository) and, with Untagged, the manifests left without tags. Each
// repository is one transaction, with an exact count of the bytes freed.
func (r *Runner) Purge(ctx context.Context, opts PurgeOptions) (Run, error) {
	now := r.now()
	run := Run{At: now.UTC().Format(time.RFC3339), DryRun: opts.DryRun, Repositories: []stowage.DeleteReport{}}
	if len(opts.Filters) == 0 {
		return run, stowage.Errorf(stowage.CodeInvalidParameter, "purge needs at least one filter")
	}
	var repos []string
	if err := stowage.EachRepository(ctx, r.db, func(repo string) error {
		if opts.Matches(repo) {
			repos = append(repos, repo)
		}
		return nil
	}); err != nil {
		return run, err
	}
	ctx = stowage.WithReason(ctx, stowage.ReasonPurge)
	for i, repo := range repos {
		rep, err := r.reg.DeleteByPolicy(ctx, repo, opts.DryRun, func(del *stowage.Deletion) error {
			tags, err := del.Tx().Tags().TagRecords(repo)
			if err != nil {
				return err
			}
			untag := PlanPurgeTags(opts, repo, tags, now)
			if err := apply(del, untag, false); err != nil || !opts.Untagged {
				return err
			}
			// Which manifests are left without tags is known once the
			// tags are gone (locked and immutable ones stayed).
			ms, err := del.Tx().Manifests().UntaggedManifests(repo, del.Now())
			if err != nil {
				return err
			}
			return apply(del, PlanPurgeUntagged(opts, untag, ms, now), true)
		})
		if err != nil {
			run.Error = err.Error()
			return run, err
		}
		run.add(rep)
		if opts.Progress != nil {
			opts.Progress(int64(i+1), int64(len(repos)))
		}
	}
	return run, nil
}

// PurgePolicies lists the scheduled purges, by name.
func (r *Runner) PurgePolicies(ctx context.Context) ([]PurgePolicy, error) {
	var ps []PurgePolicy
	err := r.db.View(ctx, func(tx stowage.Tx) error { return stowage.GetSetting(tx, settingPurgePolicies, &ps) })
	if ps == nil {
		ps = []PurgePolicy{}
	}
	return ps, err
}

// SetPurgePolicy creates or replaces the policy of that name, and records
// the change in the feed.
func (r *Runner) SetPurgePolicy(ctx context.Context, p PurgePolicy) error {
	if _, _, err := p.Options(); err != nil {
		return err
	}
	p.LastRun = nil
	return r.updatePolicies(ctx, p.Name, &p, func(ps []PurgePolicy) ([]PurgePolicy, error) {
		for i := range ps {
			if ps[i].Name == p.Name {
				q := p
				q.LastRun = ps[i].LastRun
				ps[i] = q
				return ps, nil
			}
		}
		ps = append(ps, p)
		sort.Slice(ps, func(i, j int) bool { return ps[i].Name < ps[j].Name })
		return ps, nil
	})
}

// DeletePurgePolicy removes a policy, and records the change in the feed.
func (r *Runner) DeletePurgePolicy(ctx context.Context, name string) error {
	return r.updatePolicies(ctx, name, nil, func(ps []PurgePolicy) ([]PurgePolicy, error) {
		for i := range ps {
			if ps[i].Name == name {
				return append(ps[:i], ps[i+1:]...), nil
			}
		}
		return nil, stowage.Errorf(stowage.CodeNameUnknown, "there is no purge policy %q", name)
	})
}

// updatePolicies changes the stored policies with fn in one transaction.
// A change of policy name's settings (name non-empty; after: its new
// settings, nil when deleted) appends its policy event there too.
func (r *Runner) updatePolicies(ctx context.Context, name string, after *PurgePolicy, fn func([]PurgePolicy) ([]PurgePolicy, error)) error {
	now := r.now()
	return r.db.Update(ctx, func(tx stowage.Tx) error {
		var ps []PurgePolicy
		if err := stowage.GetSetting(tx, settingPurgePolicies, &ps); err != nil {
			return err
		}
		var before *PurgePolicy
		for _, p := range ps {
			if p.Name == name {
				p.LastRun = nil
				before = &p
			}
		}
		ps, err := fn(ps)
		if err != nil {
			return err
		}
		if err := stowage.PutSetting(tx, settingPurgePolicies, ps, now); err != nil {
			return err
		}
		if name == "" {
			return nil
		}
		return tx.Events().Append(policyEvent(ctx, now, map[string]any{"name": "purgePolicy", "policy": name, "before": before, "after": after}))
	})
}

// RunDuePurgePolicies runs every policy whose period has passed since its
// last run, and records each run. It returns the first error (the other
// policies still run). One node at a time runs them (the job lock "purge");
// if another node is running them now, it returns nil at once: that node
// runs what is due, and each run is recorded before the lock is released.
func (r *Runner) RunDuePurgePolicies(ctx context.Context) error {
	err := stowage.ExclusiveJob(ctx, r.db, r.log, "purge", false, nil, r.runDuePurgePolicies)
	if errors.Is(err, stowage.ErrLocked) {
		return nil
	}
	return err
}

func (r *Runner) runDuePurgePolicies(ctx context.Context) error {
	ps, err := r.PurgePolicies(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range ps {
		opts, every, err := p.Options()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !Due(p.LastRun, every, r.now()) {
			continue
		}
		run, err := r.Purge(ctx, opts)
		if err != nil {
			run.Error = err.Error()
			errs = append(errs, err)
		}
		r.log.Info("scheduled purge ran", "policy", p.Name, "tags", run.Tags, "manifests", run.Manifests, "bytes_freed_after_gc", run.BytesFreed)
		run.Repositories = nil // keep the stored record small
		name := p.Name
		if err := r.updatePolicies(ctx, "", nil, func(ps []PurgePolicy) ([]PurgePolicy, error) {
			for i := range ps {
				if ps[i].Name == name {
					ps[i].LastRun = &run
				}
			}
			return ps, nil
		}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// policyEvent records a change of a policy's settings; fields say which
// ("name": "retention", or "purgePolicy" with "policy": its name) and what
// they were "before" and are "after" (nil: none, e.g. a policy created or
// deleted), as every policy event of the feed does.
func policyEvent(ctx context.Context, now time.Time, fields map[string]any) stowage.Event {
	e := stowage.NewEvent(ctx, stowage.EventPolicy, "")
	e.Time = now
	e.Detail = detail(e.Detail, fields)
	return e
}

// detail adds fields to the JSON object base (what NewEvent put there, if
// anything: the request's facts).
func detail(base string, fields map[string]any) string {
	m := map[string]any{}
	if base != "" {
		_ = json.Unmarshal([]byte(base), &m)
	}
	for k, v := range fields {
		m[k] = v
	}
	b, _ := json.Marshal(m) // plain values: cannot fail
	return string(b)
}
