package policy_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/policy"
)

var now = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func ago(d time.Duration) time.Time { return now.Add(-d) }

const day = 24 * time.Hour

func dg(n int) stowage.Digest { return stowage.Digest(fmt.Sprintf("sha256:%064x", n)) }

func filters(t *testing.T, ss ...string) []stowage.PurgeFilter {
	t.Helper()
	var fs []stowage.PurgeFilter
	for _, s := range ss {
		f, err := stowage.ParsePurgeFilter(s)
		if err != nil {
			t.Fatal(err)
		}
		fs = append(fs, f)
	}
	return fs
}

func digests(p policy.Plan) []string {
	var out []string
	for _, m := range p.Manifests {
		out = append(out, fmt.Sprintf("%d:%s", m.Digest[len(m.Digest)-1]-'0', m.Why))
	}
	return out
}

func tagNames(p policy.Plan) []string {
	var out []string
	for _, t := range p.Tags {
		out = append(out, t.Name)
	}
	return out
}

func TestPlanRetention(t *testing.T) {
	untagged := []stowage.ManifestRecord{{Digest: dg(1)}, {Digest: dg(2)}}
	for _, c := range []struct {
		name string
		p    policy.Retention
		in   []stowage.ManifestRecord
		want []string
	}{
		{"off", policy.Retention{Days: 7}, untagged, nil},
		{"on", policy.Retention{Enabled: true, Days: 7}, untagged, []string{"1:retention", "2:retention"}},
		{"on, nothing untagged", policy.Retention{Enabled: true}, nil, nil},
	} {
		if got := digests(policy.PlanRetention(c.p, c.in)); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	for _, c := range []struct {
		days int
		want time.Time
		ok   bool
	}{{0, now, true}, {7, ago(7 * day), true}, {365, ago(365 * day), true}, {-1, time.Time{}, false}, {366, time.Time{}, false}} {
		p := policy.Retention{Enabled: true, Days: c.days}
		if err := p.Validate(); (err == nil) != c.ok {
			t.Errorf("Validate(%d days): %v", c.days, err)
		}
		if c.ok && !p.Cutoff(now).Equal(c.want) {
			t.Errorf("Cutoff(%d days) = %v, want %v", c.days, p.Cutoff(now), c.want)
		}
	}
}

func TestPlanPurgeTags(t *testing.T) {
	tags := []stowage.TagRecord{
		{Name: "pr-1", Digest: dg(1), Updated: ago(10 * day)},
		{Name: "pr-2", Digest: dg(2), Updated: ago(9 * day)},
		{Name: "pr-3", Digest: dg(3), Updated: ago(8 * day)},
		{Name: "pr-4", Digest: dg(4), Updated: ago(2 * day)}, // exactly Ago old in "ago 2d"
		{Name: "pr-5", Digest: dg(5), Updated: ago(time.Hour)},
		{Name: "release", Digest: dg(6), Updated: ago(30 * day)},
	}
	for _, c := range []struct {
		name    string
		filters []string
		repo    string
		ago     time.Duration
		keep    int
		want    []string // newest first
	}{
		{"every match", []string{"ci/.*:pr-.*"}, "ci/app", 0, 0, []string{"pr-5", "pr-4", "pr-3", "pr-2", "pr-1"}},
		{"older than ago, the boundary included", []string{"ci/.*:pr-.*"}, "ci/app", 2 * day, 0, []string{"pr-4", "pr-3", "pr-2", "pr-1"}},
		{"keep the newest", []string{"ci/.*:pr-.*"}, "ci/app", 2 * day, 2, []string{"pr-2", "pr-1"}},
		{"keep more than match", []string{"ci/.*:pr-.*"}, "ci/app", 2 * day, 9, nil},
		{"tag expression matches in full", []string{"ci/.*:pr"}, "ci/app", 0, 0, nil},
		{"another repository", []string{"ci/.*:pr-.*"}, "prod/app", 0, 0, nil},
		{"two filters", []string{"ci/.*:pr-1", "ci/app:rel.*"}, "ci/app", 0, 0, []string{"pr-1", "release"}},
		{"a filter for another repository", []string{"prod/.*:.*", "ci/app:pr-2"}, "ci/app", 0, 0, []string{"pr-2"}},
	} {
		o := policy.PurgeOptions{Filters: filters(t, c.filters...), Ago: c.ago, Keep: c.keep}
		if got := tagNames(policy.PlanPurgeTags(o, c.repo, tags, now)); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestPlanPurgeUntagged(t *testing.T) {
	removed := policy.Plan{Tags: []stowage.TagRecord{{Name: "pr-1", Digest: dg(1)}}}
	untagged := []stowage.ManifestRecord{
		{Digest: dg(1), Created: ago(time.Hour)}, // its tag was just removed: goes, however new
		{Digest: dg(2), Created: ago(5 * day)},   // untagged before, old enough
		{Digest: dg(3), Created: ago(time.Hour)}, // untagged before, too new
		{Digest: dg(4), Created: ago(3 * day)},   // exactly Ago old
	}
	for _, c := range []struct {
		name     string
		untagged bool
		ago      time.Duration
		want     []string
	}{
		{"without --untagged", false, 3 * day, nil},
		{"with --untagged", true, 3 * day, []string{"1:untagged", "2:untagged", "4:untagged"}},
		{"with --untagged, no age", true, 0, []string{"1:untagged", "2:untagged", "3:untagged", "4:untagged"}},
	} {
		o := policy.PurgeOptions{Untagged: c.untagged, Ago: c.ago}
		if got := digests(policy.PlanPurgeUntagged(o, removed, untagged, now)); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestPurgeOptionsMatches(t *testing.T) {
	o := policy.PurgeOptions{Filters: filters(t, "ci/.*:.*", "prod/app:v.*")}
	for repo, want := range map[string]bool{"ci/app": true, "ci": false, "prod/app": true, "prod/app2": false, "x/ci/app": false} {
		if got := o.Matches(repo); got != want {
			t.Errorf("Matches(%q) = %v, want %v", repo, got, want)
		}
	}
}

func TestParseAge(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"30d", 30 * day, true}, {"1d12h", 36 * time.Hour, true}, {"90m", 90 * time.Minute, true}, {"0d", 0, true},
		{"", 0, true}, {"-1d", 0, false}, {"xd", 0, false}, {"soon", 0, false}, {"1d-1h", 0, false},
	} {
		got, err := policy.ParseAge(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("ParseAge(%q) = %v, %v; want %v, ok %v", c.in, got, err, c.want, c.ok)
		}
	}
}

func TestPurgePolicyOptions(t *testing.T) {
	ok := policy.PurgePolicy{Name: "prs", Filters: []string{"ci/.*:pr-.*"}, Ago: "1d", Keep: 2, Untagged: true, Every: "7d"}
	o, every, err := ok.Options()
	if err != nil || every != 7*day || o.Ago != day || o.Keep != 2 || !o.Untagged || len(o.Filters) != 1 {
		t.Fatalf("Options() = %+v, %v, %v", o, every, err)
	}
	for _, c := range []struct {
		name   string
		change func(*policy.PurgePolicy)
	}{
		{"bad name", func(p *policy.PurgePolicy) { p.Name = "x y" }},
		{"no filter", func(p *policy.PurgePolicy) { p.Filters = nil }},
		{"bad filter", func(p *policy.PurgePolicy) { p.Filters = []string{"nocolon"} }},
		{"bad ago", func(p *policy.PurgePolicy) { p.Ago = "soon" }},
		{"too often", func(p *policy.PurgePolicy) { p.Every = "10s" }},
		{"no period", func(p *policy.PurgePolicy) { p.Every = "" }},
		{"negative keep", func(p *policy.PurgePolicy) { p.Keep = -1 }},
	} {
		p := ok
		c.change(&p)
		if _, _, err := p.Options(); stowage.ErrorCodeOf(err) != stowage.CodeInvalidParameter {
			t.Errorf("%s: %v, want INVALID_PARAMETER", c.name, err)
		}
	}
}

func TestDue(t *testing.T) {
	run := func(at time.Time) *policy.Run { return &policy.Run{At: at.Format(time.RFC3339)} }
	for _, c := range []struct {
		name string
		last *policy.Run
		want bool
	}{
		{"never ran", nil, true},
		{"ran a period ago", run(ago(day)), true},
		{"ran less than a period ago", run(ago(day - time.Minute)), false},
		{"unreadable last run", &policy.Run{At: "yesterday"}, true},
	} {
		if got := policy.Due(c.last, day, now); got != c.want {
			t.Errorf("%s: Due = %v, want %v", c.name, got, c.want)
		}
	}
}
