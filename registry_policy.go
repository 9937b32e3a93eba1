package stowage

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// RetentionPolicy deletes untagged manifests some days after they became
// untagged (seed 001). Days may be 0 (at once) to 365.
type RetentionPolicy struct {
	Enabled bool `json:"enabled"`
	Days    int  `json:"days"`
}

// PolicyRun is the result of one retention or purge run.
type PolicyRun struct {
	At           string         `json:"at"`
	DryRun       bool           `json:"dryRun"`
	Manifests    int            `json:"manifestsDeleted"`
	Tags         int            `json:"tagsDeleted"`
	BlobsFreed   int64          `json:"blobsFreed"`
	BytesFreed   int64          `json:"bytesFreed"`
	Repositories []DeleteReport `json:"repositories"`
	Error        string         `json:"error,omitempty"`
}

func (p *PolicyRun) add(rep DeleteReport) {
	if len(rep.Manifests) == 0 && len(rep.Tags) == 0 {
		return
	}
	p.Manifests += len(rep.Manifests)
	p.Tags += len(rep.Tags)
	p.BlobsFreed += rep.BlobsFreed
	p.BytesFreed += rep.BytesFreed
	p.Repositories = append(p.Repositories, rep)
}

const (
	settingRetention        = "retention.policy"
	settingRetentionLastRun = "retention.last_run"
)

// Retention returns the policy and its last run (nil if it never ran).
func (r *Registry) Retention(ctx context.Context) (RetentionPolicy, *PolicyRun, error) {
	var p RetentionPolicy
	var last *PolicyRun
	err := r.db.View(ctx, func(tx Tx) error {
		if err := GetSetting(tx, settingRetention, &p); err != nil {
			return err
		}
		var run PolicyRun
		if err := GetSetting(tx, settingRetentionLastRun, &run); err != nil {
			return err
		}
		if run.At != "" {
			last = &run
		}
		return nil
	})
	return p, last, err
}

// SetRetention stores the policy.
func (r *Registry) SetRetention(ctx context.Context, p RetentionPolicy) error {
	if p.Days < 0 || p.Days > 365 {
		return Errorf(CodeInvalidParameter, "retention days must be 0 to 365, not %d", p.Days)
	}
	return r.db.Update(ctx, func(tx Tx) error { return PutSetting(tx, settingRetention, p, r.now()) })
}

// ApplyRetention deletes, in every repository, the untagged manifests whose
// untagged period is longer than the policy's days (the index children of a
// tagged index are not untagged). A dry run only reports.
//
// One run at a time across the nodes sharing the database (the job lock
// "retention"); a run asked for while another runs waits for it.
func (r *Registry) ApplyRetention(ctx context.Context, dryRun bool) (PolicyRun, error) {
	if dryRun {
		return r.applyRetention(ctx, true)
	}
	var run PolicyRun
	err := ExclusiveJob(ctx, r.db, r.log, "retention", true, nil, func(ctx context.Context) (err error) {
		run, err = r.applyRetention(ctx, false)
		return err
	})
	return run, err
}

func (r *Registry) applyRetention(ctx context.Context, dryRun bool) (PolicyRun, error) {
	now := r.now()
	run := PolicyRun{At: now.UTC().Format(time.RFC3339), DryRun: dryRun, Repositories: []DeleteReport{}}
	p, _, err := r.Retention(ctx)
	if err != nil || !p.Enabled {
		return run, err
	}
	cutoff := now.Add(-time.Duration(p.Days) * 24 * time.Hour)
	err = EachRepository(ctx, r.db, func(repo string) error {
		rep, err := r.runDelete(ctx, repo, dryRun, true, func(del *deletion) error {
			ms, err := del.tx.Manifests().UntaggedManifests(repo, cutoff)
			if err != nil {
				return err
			}
			for _, m := range ms {
				if err := del.manifest(m.Digest, "retention"); err != nil {
					return err
				}
			}
			return nil
		})
		run.add(rep)
		return err
	})
	if err != nil {
		run.Error = err.Error()
	}
	if !dryRun {
		if e := r.db.Update(ctx, func(tx Tx) error { return PutSetting(tx, settingRetentionLastRun, run, now) }); e != nil && err == nil {
			err = e
		}
	}
	return run, err
}

// PurgeFilter selects tags: both expressions must match in full.
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

// ParseAge parses a duration that may use days: "30d", "1d12h", "90m".
func ParseAge(s string) (time.Duration, error) {
	var total time.Duration
	if i := strings.Index(s, "d"); i > 0 {
		days, err := strconv.Atoi(s[:i])
		if err != nil || days < 0 {
			return 0, fmt.Errorf("invalid age %q", s)
		}
		total, s = time.Duration(days)*24*time.Hour, s[i+1:]
	}
	if s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return 0, fmt.Errorf("invalid age %q: want e.g. 30d, 12h or 1d12h", s)
		}
		total += d
	}
	return total, nil
}

// PurgeOptions selects what Purge deletes.
type PurgeOptions struct {
	Filters  []PurgeFilter
	Ago      time.Duration // only tags last pushed longer ago than this
	Keep     int           // per repository, keep this many of the newest matching tags
	Untagged bool          // also delete manifests left without tags (older than Ago)
	DryRun   bool
	Progress func(done, total int64)
}

// Purge removes matching tags older than Ago (keeping the Keep newest per
// repository) and, with Untagged, the manifests left without tags. Each
// repository is one transaction, with an exact count of the bytes freed.
func (r *Registry) Purge(ctx context.Context, opts PurgeOptions) (PolicyRun, error) {
	now := r.now()
	run := PolicyRun{At: now.UTC().Format(time.RFC3339), DryRun: opts.DryRun, Repositories: []DeleteReport{}}
	if len(opts.Filters) == 0 {
		return run, Errorf(CodeInvalidParameter, "purge needs at least one filter")
	}
	var repos []string
	if err := EachRepository(ctx, r.db, func(repo string) error {
		for _, f := range opts.Filters {
			if f.Repo.MatchString(repo) {
				repos = append(repos, repo)
				break
			}
		}
		return nil
	}); err != nil {
		return run, err
	}
	cutoff := now.Add(-opts.Ago)
	for i, repo := range repos {
		rep, err := r.runDelete(ctx, repo, opts.DryRun, true, func(del *deletion) error {
			tags, err := del.tx.Tags().TagRecords(repo)
			if err != nil {
				return err
			}
			var match []TagRecord
			for _, t := range tags {
				if t.Updated.After(cutoff) {
					continue
				}
				for _, f := range opts.Filters {
					if f.Repo.MatchString(repo) && f.Tag.MatchString(t.Name) {
						match = append(match, t)
						break
					}
				}
			}
			sort.Slice(match, func(i, j int) bool { return match[i].Updated.After(match[j].Updated) })
			if opts.Keep > 0 {
				match = match[min(opts.Keep, len(match)):]
			}
			for _, t := range match {
				if err := del.untag(t.Name); err != nil {
					return err
				}
			}
			if !opts.Untagged {
				return nil
			}
			// The manifests this purge left without tags, and those untagged
			// for longer than Ago already.
			ms, err := del.tx.Manifests().UntaggedManifests(repo, del.now)
			if err != nil {
				return err
			}
			for _, m := range ms {
				if !wasUntaggedBy(m.Digest, match) && m.Created.After(cutoff) {
					continue
				}
				if err := del.manifest(m.Digest, "untagged"); err != nil && !errors.Is(err, ErrNotFound) {
					return err
				}
			}
			return nil
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

func wasUntaggedBy(d Digest, removed []TagRecord) bool {
	for _, t := range removed {
		if t.Digest == d {
			return true
		}
	}
	return false
}
