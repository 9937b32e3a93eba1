package stowage

import (
	"context"
	"errors"
	"regexp"
	"sort"
	"time"
)

// PurgePolicy is a purge that runs on a schedule (every Every), like a
// scheduled 'acr purge' task.
type PurgePolicy struct {
	Name     string     `json:"name"`
	Filters  []string   `json:"filters"` // REPO_REGEX:TAG_REGEX
	Ago      string     `json:"ago"`     // e.g. 30d
	Keep     int        `json:"keep"`
	Untagged bool       `json:"untagged"`
	Every    string     `json:"every"` // e.g. 24h, 7d
	LastRun  *PolicyRun `json:"lastRun,omitempty"`
}

const settingPurgePolicies = "purge.policies"

var policyName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$`)

// options checks the policy and turns it into PurgeOptions.
func (p PurgePolicy) options() (PurgeOptions, time.Duration, error) {
	if !policyName.MatchString(p.Name) {
		return PurgeOptions{}, 0, Errorf(CodeInvalidParameter, "purge policy name %q: use letters, digits, '.', '_' and '-'", p.Name)
	}
	opts := PurgeOptions{Keep: p.Keep, Untagged: p.Untagged}
	if len(p.Filters) == 0 {
		return opts, 0, Errorf(CodeInvalidParameter, "purge policy %s needs at least one filter REPO_REGEX:TAG_REGEX", p.Name)
	}
	for _, f := range p.Filters {
		pf, err := ParsePurgeFilter(f)
		if err != nil {
			return opts, 0, err
		}
		opts.Filters = append(opts.Filters, pf)
	}
	var err error
	if p.Ago != "" {
		if opts.Ago, err = ParseAge(p.Ago); err != nil {
			return opts, 0, Errorf(CodeInvalidParameter, "purge policy %s: ago %q: want e.g. 30d or 12h", p.Name, p.Ago)
		}
	}
	every, err := ParseAge(p.Every)
	if err != nil || every < time.Minute {
		return opts, 0, Errorf(CodeInvalidParameter, "purge policy %s: every %q: want a period of at least 1m, e.g. 24h or 7d", p.Name, p.Every)
	}
	if p.Keep < 0 {
		return opts, 0, Errorf(CodeInvalidParameter, "purge policy %s: keep must not be negative", p.Name)
	}
	return opts, every, nil
}

// PurgePolicies lists the scheduled purges, by name.
func (r *Registry) PurgePolicies(ctx context.Context) ([]PurgePolicy, error) {
	var ps []PurgePolicy
	err := r.db.View(ctx, func(tx Tx) error { return GetSetting(tx, settingPurgePolicies, &ps) })
	if ps == nil {
		ps = []PurgePolicy{}
	}
	return ps, err
}

// SetPurgePolicy creates or replaces the policy of that name.
func (r *Registry) SetPurgePolicy(ctx context.Context, p PurgePolicy) error {
	if _, _, err := p.options(); err != nil {
		return err
	}
	p.LastRun = nil
	return r.updatePolicies(ctx, func(ps []PurgePolicy) ([]PurgePolicy, error) {
		for i := range ps {
			if ps[i].Name == p.Name {
				p.LastRun = ps[i].LastRun
				ps[i] = p
				return ps, nil
			}
		}
		ps = append(ps, p)
		sort.Slice(ps, func(i, j int) bool { return ps[i].Name < ps[j].Name })
		return ps, nil
	})
}

// DeletePurgePolicy removes a policy.
func (r *Registry) DeletePurgePolicy(ctx context.Context, name string) error {
	return r.updatePolicies(ctx, func(ps []PurgePolicy) ([]PurgePolicy, error) {
		for i := range ps {
			if ps[i].Name == name {
				return append(ps[:i], ps[i+1:]...), nil
			}
		}
		return nil, Errorf(CodeNameUnknown, "there is no purge policy %q", name)
	})
}

func (r *Registry) updatePolicies(ctx context.Context, fn func([]PurgePolicy) ([]PurgePolicy, error)) error {
	return r.db.Update(ctx, func(tx Tx) error {
		var ps []PurgePolicy
		if err := GetSetting(tx, settingPurgePolicies, &ps); err != nil {
			return err
		}
		ps, err := fn(ps)
		if err != nil {
			return err
		}
		return PutSetting(tx, settingPurgePolicies, ps, r.now())
	})
}

// RunDuePurgePolicies runs every policy whose period has passed since its
// last run, and records each run. It returns the first error (the other
// policies still run). One node at a time runs them (the job lock "purge");
// if another node is running them now, it returns nil at once: that node
// runs what is due, and each run is recorded before the lock is released.
func (r *Registry) RunDuePurgePolicies(ctx context.Context) error {
	err := ExclusiveJob(ctx, r.db, r.log, "purge", false, nil, r.runDuePurgePolicies)
	if errors.Is(err, ErrLocked) {
		return nil
	}
	return err
}

func (r *Registry) runDuePurgePolicies(ctx context.Context) error {
	ps, err := r.PurgePolicies(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range ps {
		opts, every, err := p.options()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if p.LastRun != nil {
			if at, err := time.Parse(time.RFC3339, p.LastRun.At); err == nil && r.now().Sub(at) < every {
				continue
			}
		}
		run, err := r.Purge(ctx, opts)
		if err != nil {
			run.Error = err.Error()
			errs = append(errs, err)
		}
		r.log.Info("scheduled purge ran", "policy", p.Name, "tags", run.Tags, "manifests", run.Manifests, "bytes_freed_after_gc", run.BytesFreed)
		run.Repositories = nil // keep the stored record small
		name := p.Name
		if err := r.updatePolicies(ctx, func(ps []PurgePolicy) ([]PurgePolicy, error) {
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
