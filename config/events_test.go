package config

import (
	"strings"
	"testing"
	"time"
)

func TestEventsConfig(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		env        map[string]string
		err        string // substring of the error; "" = valid
		want       Events
	}{
		{"default", "", nil, "", Events{MaxAge: Duration(2160 * time.Hour), MaxCount: 1_000_000}},
		{"yaml", "events:\n  max_age: 720h\n  max_count: 5000\n  pulls: true\n", nil, "", Events{MaxAge: Duration(720 * time.Hour), MaxCount: 5000, Pulls: true}},
		{"no limits", "events: {max_age: 0s, max_count: 0}\n", nil, "", Events{}},
		{"env over yaml", "events: {max_age: 720h}\n", map[string]string{"STOWAGE_EVENTS_MAX_AGE": "24h", "STOWAGE_EVENTS_MAX_COUNT": "10", "STOWAGE_EVENTS_PULLS": "true"}, "",
			Events{MaxAge: Duration(24 * time.Hour), MaxCount: 10, Pulls: true}},
		{"negative age", "events: {max_age: -1h}\n", nil, "events.max_age must not be negative", Events{}},
		{"tiny age", "events: {max_age: 10s}\n", nil, "shorter than a minute", Events{}},
		{"negative count", "events: {max_count: -5}\n", nil, "events.max_count must not be negative", Events{}},
		{"typo", "events: {maxcount: 5}\n", nil, `unknown key "maxcount" under events; did you mean max_count?`, Events{}},
		{"bad env age", "", map[string]string{"STOWAGE_EVENTS_MAX_AGE": "90d"}, "STOWAGE_EVENTS_MAX_AGE", Events{}},
		{"bad env count", "", map[string]string{"STOWAGE_EVENTS_MAX_COUNT": "lots"}, "STOWAGE_EVENTS_MAX_COUNT", Events{}},
		{"bad env pulls", "", map[string]string{"STOWAGE_EVENTS_PULLS": "sometimes"}, "STOWAGE_EVENTS_PULLS", Events{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := loadConfig(t, tc.yaml, tc.env)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error %v, want one containing %q", err, tc.err)
			case tc.err == "" && c.Events != tc.want:
				t.Errorf("events = %+v, want %+v", c.Events, tc.want)
			}
		})
	}
}
