// Package policy decides and runs what the registry deletes on its own:
// the untagged-manifest retention policy, purges (run by hand) and purge
// policies (purges on a schedule).
//
// The decisions are pure functions (PlanRetention, PlanPurgeTags,
// PlanPurgeUntagged) from what the database says and the time to a Plan:
// which tags and manifests go, and why. A Runner reads that state, asks for
// the plan, and applies it through the core's delete path
// (stowage.Registry.DeleteByPolicy), one repository per transaction, with
// the reason (stowage.ReasonRetention, stowage.ReasonPurge) that the delete
// events record. A dry run computes the same deletes and rolls them back.
package policy

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/stowage/stowage"
)

// Plan is what a policy removes from one repository, in order: the tags
// first, then the manifests. Locked and immutable ones are passed over
// when it is applied.
type Plan struct {
	Tags      []stowage.TagRecord
	Manifests []Target
}

// Target is one manifest a plan deletes, and why (the reason its report
// gives: "retention", "untagged").
type Target struct {
	Digest stowage.Digest
	Why    string
}

// Retention deletes untagged manifests some days after they became
// untagged. Days may be 0 (at once) to 365.
type Retention struct {
	Enabled bool `json:"enabled"`
	Days    int  `json:"days"`
}

// Validate checks the policy.
func (p Retention) Validate() error {
	if p.Days < 0 || p.Days > 365 {
		return stowage.Errorf(stowage.CodeInvalidParameter, "retention days must be 0 to 365, not %d", p.Days)
	}
	return nil
}

// Cutoff is the moment before which a manifest must have become untagged
// for the policy to delete it at now.
func (p Retention) Cutoff(now time.Time) time.Time {
	return now.Add(-time.Duration(p.Days) * 24 * time.Hour)
}

// PlanRetention returns what p deletes from a repository whose untagged
// manifests (no tag, not an index's child) untagged since before
// p.Cutoff(now) are untagged: all of them, if p is on.
func PlanRetention(p Retention, untagged []stowage.ManifestRecord) Plan {
	var plan Plan
	if !p.Enabled {
		return plan
	}
	for _, m := range untagged {
		plan.Manifests = append(plan.Manifests, Target{m.Digest, "retention"})
	}
	return plan
}

// PurgeOptions selects what a purge deletes.
type PurgeOptions struct {
	Filters  []stowage.PurgeFilter
	Ago      time.Duration // only tags last pushed longer ago than this
	Keep     int           // per repository, keep this many of the newest matching tags
	Untagged bool          // also delete manifests left without tags (older than Ago)
	DryRun   bool
	Progress func(done, total int64)
}

// Matches reports whether a filter selects repository repo.
func (o PurgeOptions) Matches(repo string) bool {
	return slices.ContainsFunc(o.Filters, func(f stowage.PurgeFilter) bool { return f.Repo.MatchString(repo) })
}

// PlanPurgeTags returns the tags of repo a purge removes at now: those a
// filter matches, last pushed at least Ago before now, less the Keep newest
// of them. tags are the repository's tag records.
func PlanPurgeTags(o PurgeOptions, repo string, tags []stowage.TagRecord, now time.Time) Plan {
	cutoff := now.Add(-o.Ago)
	var match []stowage.TagRecord
	for _, t := range tags {
		if t.Updated.After(cutoff) {
			continue
		}
		for _, f := range o.Filters {
			if f.Repo.MatchString(repo) && f.Tag.MatchString(t.Name) {
				match = append(match, t)
				break
			}
		}
	}
	sort.SliceStable(match, func(i, j int) bool { return match[i].Updated.After(match[j].Updated) })
	if o.Keep > 0 {
		match = match[min(o.Keep, len(match)):]
	}
	return Plan{Tags: match}
}

// PlanPurgeUntagged returns, with o.Untagged, the manifests a purge deletes
// after removing the tags of removed: of the manifests now untagged (no
// tag, not an index's child), those it untagged and those created at least
// Ago before now.
func PlanPurgeUntagged(o PurgeOptions, removed Plan, untagged []stowage.ManifestRecord, now time.Time) Plan {
	var plan Plan
	if !o.Untagged {
		return plan
	}
	cutoff := now.Add(-o.Ago)
	for _, m := range untagged {
		byUs := slices.ContainsFunc(removed.Tags, func(t stowage.TagRecord) bool { return t.Digest == m.Digest })
		if !byUs && m.Created.After(cutoff) {
			continue
		}
		plan.Manifests = append(plan.Manifests, Target{m.Digest, "untagged"})
	}
	return plan
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
