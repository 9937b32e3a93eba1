package policy

import (
	"regexp"
	"time"

	"github.com/stowage/stowage"
)

// PurgePolicy is a purge that runs on a schedule (every Every), like a
// scheduled 'acr purge' task.
type PurgePolicy struct {
	Name     string   `json:"name"`
	Filters  []string `json:"filters"` // REPO_REGEX:TAG_REGEX
	Ago      string   `json:"ago"`     // e.g. 30d
	Keep     int      `json:"keep"`
	Untagged bool     `json:"untagged"`
	Every    string   `json:"every"` // e.g. 24h, 7d
	LastRun  *Run     `json:"lastRun,omitempty"`
}

var policyName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$`)

// Options checks the policy and returns the purge it runs and its period.
func (p PurgePolicy) Options() (PurgeOptions, time.Duration, error) {
	if !policyName.MatchString(p.Name) {
		return PurgeOptions{}, 0, stowage.Errorf(stowage.CodeInvalidParameter, "purge policy name %q: use letters, digits, '.', '_' and '-'", p.Name)
	}
	opts := PurgeOptions{Keep: p.Keep, Untagged: p.Untagged}
	if len(p.Filters) == 0 {
		return opts, 0, stowage.Errorf(stowage.CodeInvalidParameter, "purge policy %s needs at least one filter REPO_REGEX:TAG_REGEX", p.Name)
	}
	for _, f := range p.Filters {
		pf, err := stowage.ParsePurgeFilter(f)
		if err != nil {
			return opts, 0, err
		}
		opts.Filters = append(opts.Filters, pf)
	}
	var err error
	if p.Ago != "" {
		if opts.Ago, err = ParseAge(p.Ago); err != nil {
			return opts, 0, stowage.Errorf(stowage.CodeInvalidParameter, "purge policy %s: ago %q: want e.g. 30d or 12h", p.Name, p.Ago)
		}
	}
	every, err := ParseAge(p.Every)
	if err != nil || every < time.Minute {
		return opts, 0, stowage.Errorf(stowage.CodeInvalidParameter, "purge policy %s: every %q: want a period of at least 1m, e.g. 24h or 7d", p.Name, p.Every)
	}
	if p.Keep < 0 {
		return opts, 0, stowage.Errorf(stowage.CodeInvalidParameter, "purge policy %s: keep must not be negative", p.Name)
	}
	return opts, every, nil
}

// Due reports whether a policy that runs every period is due at now: it
// never ran, or its last run is at least a period old (or unreadable).
func Due(last *Run, every time.Duration, now time.Time) bool {
	if last == nil {
		return true
	}
	at, err := time.Parse(time.RFC3339, last.At)
	return err != nil || now.Sub(at) >= every
}
