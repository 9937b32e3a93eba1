package config

import (
	"fmt"
	"strconv"
	"time"
)

// Events configures the change feed (docs/events.md): how long it keeps
// events, and whether pulls are recorded too.
type Events struct {
	// MaxAge deletes events older than this (default 2160h, 90 days; 0: no
	// age limit).
	MaxAge Duration `yaml:"max_age"`
	// MaxCount keeps at most this many events (default 1000000; 0: no count
	// limit). Both 0: the feed grows without bound.
	MaxCount int64 `yaml:"max_count"`
	// Pulls records every manifest GET as a pull event (the audit trail of
	// reads). Off by default: pulls far outnumber changes.
	Pulls bool `yaml:"pulls"`
}

// defaultEvents is the feed's default retention.
var defaultEvents = Events{MaxAge: Duration(90 * 24 * time.Hour), MaxCount: 1_000_000}

// applyEnv reads STOWAGE_EVENTS_MAX_AGE, STOWAGE_EVENTS_MAX_COUNT and
// STOWAGE_EVENTS_PULLS.
func (e *Events) applyEnv(getenv func(string) string) error {
	if v := getenv("STOWAGE_EVENTS_MAX_AGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("STOWAGE_EVENTS_MAX_AGE=%q: want a duration such as 2160h (90 days), or 0 for no age limit", v)
		}
		e.MaxAge = Duration(d)
	}
	if v := getenv("STOWAGE_EVENTS_MAX_COUNT"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("STOWAGE_EVENTS_MAX_COUNT=%q: want a number of events such as 1000000, or 0 for no count limit", v)
		}
		e.MaxCount = n
	}
	if v := getenv("STOWAGE_EVENTS_PULLS"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("STOWAGE_EVENTS_PULLS=%q: want true or false", v)
		}
		e.Pulls = b
	}
	return nil
}

func (e Events) validate() []string {
	var errs []string
	if e.MaxAge < 0 {
		errs = append(errs, "events.max_age must not be negative (0: no age limit)")
	} else if e.MaxAge > 0 && e.MaxAge < Duration(time.Minute) {
		errs = append(errs, fmt.Sprintf("events.max_age %s is shorter than a minute: readers would fall behind between two polls (use e.g. 2160h for 90 days, or 0 for no age limit)", time.Duration(e.MaxAge)))
	}
	if e.MaxCount < 0 {
		errs = append(errs, "events.max_count must not be negative (0: no count limit)")
	}
	return errs
}
