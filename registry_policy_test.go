package stowage_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stowage/stowage"
)

func (e *env) tags(t *testing.T, repo string) []string {
	t.Helper()
	tags, err := e.reg.ListTags(e.ctx, repo, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	return tags
}

func (e *env) hasManifest(repo string, d stowage.Digest) bool {
	_, err := e.reg.ResolveManifest(e.ctx, repo, stowage.Reference{Digest: d})
	return err == nil
}

// TestRetention: untagged manifests go once they have been untagged for
// longer than the policy's days, counted from the moment they lost their
// last tag; tagged manifests and the children of a tagged index stay.
func TestRetention(t *testing.T) {
	e := newEnv(t, nil)
	layer := newBlob(5000)
	m1 := e.image(t, "app", "latest", newBlob(11), layer)
	e.clock.Advance(10 * 24 * time.Hour)                  // m1 is old, but still tagged until now
	m2 := e.image(t, "app", "latest", newBlob(12), layer) // moves latest: m1 untagged from now
	// Pushed by digest, never tagged: counts from its creation.
	c3 := newBlob(13)
	e.push(t, "app", c3)
	body3 := manifestOf(c3, layer)
	res3, err := e.reg.PutManifest(e.ctx, "app", stowage.Reference{Digest: stowage.Digest("sha256:" + sha(body3))}, stowage.MediaTypeOCIManifest, body3, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A tagged index whose child is untagged but in use.
	child := e.image(t, "app", "tmp", newBlob(14), layer)
	if _, err := e.reg.Untag(e.ctx, "app", "tmp", false); err != nil {
		t.Fatal(err)
	}
	index := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"manifests":[{"mediaType":%q,"digest":%q,"size":%d,"platform":{"architecture":"amd64","os":"linux"}}]}`,
		stowage.MediaTypeOCIIndex, stowage.MediaTypeOCIManifest, child.d, len(child.data))
	if _, err := e.reg.PutManifest(e.ctx, "app", stowage.Reference{Tag: "multi"}, stowage.MediaTypeOCIIndex, []byte(index), nil); err != nil {
		t.Fatal(err)
	}

	if err := e.reg.SetRetention(e.ctx, stowage.RetentionPolicy{Enabled: true, Days: 400}); err == nil {
		t.Error("a 400-day policy was accepted; want 0 to 365")
	}
	run, err := e.reg.ApplyRetention(e.ctx, false)
	if err != nil || run.Manifests != 0 {
		t.Fatalf("with no policy: %+v, %v", run, err)
	}
	if err := e.reg.SetRetention(e.ctx, stowage.RetentionPolicy{Enabled: true, Days: 7}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(6 * 24 * time.Hour)
	if run, _ := e.reg.ApplyRetention(e.ctx, false); run.Manifests != 0 {
		t.Fatalf("after 6 days: deleted %d manifests, want none", run.Manifests)
	}
	e.clock.Advance(2 * 24 * time.Hour)
	dry, err := e.reg.ApplyRetention(e.ctx, true)
	if err != nil || dry.Manifests != 2 {
		t.Fatalf("dry run after 8 days: %+v, %v; want m1 and the never-tagged manifest", dry, err)
	}
	run, err = e.reg.ApplyRetention(e.ctx, false)
	if err != nil || run.Manifests != 2 || run.BytesFreed != dry.BytesFreed {
		t.Fatalf("after 8 days: %+v, %v (dry run said %+v)", run, err, dry)
	}
	for d, want := range map[stowage.Digest]bool{m1.d: false, res3.Digest: false, m2.d: true, child.d: true} {
		if got := e.hasManifest("app", d); got != want {
			t.Errorf("manifest %s present = %v, want %v", d, got, want)
		}
	}
	if _, last, _ := e.reg.Retention(e.ctx); last == nil || last.Manifests != 2 {
		t.Errorf("last run not recorded: %+v", last)
	}
	gc, err := collect(e.ctx, e.reg, gcOptions{MinAge: zero()})
	if err != nil || gc.BytesFreed != run.BytesFreed {
		t.Errorf("GC freed %d bytes, retention predicted %d (%v)", gc.BytesFreed, run.BytesFreed, err)
	}
}

// TestPurge: filter, age and keep select tags; --untagged also deletes the
// manifests left without tags.
func TestPurge(t *testing.T) {
	e := newEnv(t, nil)
	base := newBlob(3000)
	var pr []blob
	for i := 1; i <= 5; i++ {
		pr = append(pr, e.image(t, "ci/app", fmt.Sprintf("pr-%d", i), newBlob(20+i), base, newBlob(1000)))
		e.clock.Advance(24 * time.Hour)
	}
	release := e.image(t, "ci/app", "release-1", newBlob(30), base)
	other := e.image(t, "prod/app", "pr-1", newBlob(31), base) // repository not matched
	e.clock.Advance(5 * 24 * time.Hour)
	recent := e.image(t, "ci/app", "pr-6", newBlob(26), base) // too recent for --ago

	filter, err := stowage.ParsePurgeFilter("ci/.*:pr-.*")
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"nocolon", "ci/(:x", "ci:x("} {
		if _, err := stowage.ParsePurgeFilter(bad); err == nil {
			t.Errorf("filter %q accepted", bad)
		}
	}
	ago, _ := stowage.ParseAge("2d")
	opts := stowage.PurgeOptions{Filters: []stowage.PurgeFilter{filter}, Ago: ago, Keep: 2, Untagged: true, DryRun: true}
	dry, err := e.reg.Purge(e.ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	opts.DryRun = false
	run, err := e.reg.Purge(e.ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	// Each deleted image frees its manifest, its config (21 to 23 bytes) and
	// its own 1000-byte layer; the shared base layer stays.
	if want := size(pr[0], pr[1], pr[2]) + 21 + 22 + 23 + 3*1000; run.Tags != 3 || run.Manifests != 3 || run.BytesFreed != want || dry.BytesFreed != want {
		t.Errorf("purge: %d tags, %d manifests, %d bytes (dry run %d); want 3, 3, %d", run.Tags, run.Manifests, run.BytesFreed, dry.BytesFreed, want)
	}
	if got := e.tags(t, "ci/app"); fmt.Sprint(got) != "[pr-4 pr-5 pr-6 release-1]" {
		t.Errorf("tags left: %v, want the 2 newest old pr tags, the recent one and the release", got)
	}
	for i, m := range pr {
		if got, want := e.hasManifest("ci/app", m.d), i >= 3; got != want {
			t.Errorf("pr-%d manifest present = %v, want %v", i+1, got, want)
		}
	}
	if !e.hasManifest("ci/app", release.d) || !e.hasManifest("ci/app", recent.d) || !e.hasManifest("prod/app", other.d) {
		t.Error("purge deleted something outside its filter or age")
	}
	gc, err := collect(e.ctx, e.reg, gcOptions{MinAge: zero()})
	if err != nil || gc.BytesFreed != run.BytesFreed || run.BytesFreed == 0 {
		t.Errorf("GC freed %d bytes, purge predicted %d (dry run %d) (%v)", gc.BytesFreed, run.BytesFreed, dry.BytesFreed, err)
	}
	if d, _ := stowage.ParseAge("1d12h"); d != 36*time.Hour {
		t.Errorf("ParseAge(1d12h) = %v", d)
	}
}

// TestPurgePolicies: a scheduled purge runs when due, records its run, and
// waits for its period before running again.
func TestPurgePolicies(t *testing.T) {
	e := newEnv(t, nil)
	base := newBlob(2000)
	for i := 1; i <= 3; i++ {
		e.image(t, "ci/app", fmt.Sprintf("pr-%d", i), newBlob(40+i), base)
	}
	for _, bad := range []stowage.PurgePolicy{
		{Name: "x y", Filters: []string{"ci/.*:pr-.*"}, Every: "1d"},
		{Name: "nofilter", Every: "1d"},
		{Name: "often", Filters: []string{"ci/.*:pr-.*"}, Every: "10s"},
		{Name: "badago", Filters: []string{"ci/.*:pr-.*"}, Every: "1d", Ago: "soon"},
	} {
		if err := e.reg.SetPurgePolicy(e.ctx, bad); err == nil {
			t.Errorf("policy %+v accepted", bad)
		}
	}
	if err := e.reg.SetPurgePolicy(e.ctx, stowage.PurgePolicy{Name: "prs", Filters: []string{"ci/.*:pr-.*"}, Ago: "1d", Keep: 1, Untagged: true, Every: "1d"}); err != nil {
		t.Fatal(err)
	}
	if err := e.reg.RunDuePurgePolicies(e.ctx); err != nil { // nothing is a day old yet
		t.Fatal(err)
	}
	if got := e.tags(t, "ci/app"); len(got) != 3 {
		t.Fatalf("tags after a run with nothing old enough: %v", got)
	}
	e.clock.Advance(2 * 24 * time.Hour) // due again, and the tags are old enough
	if err := e.reg.RunDuePurgePolicies(e.ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.tags(t, "ci/app"); len(got) != 1 {
		t.Errorf("tags after the scheduled purge: %v, want the newest one", got)
	}
	ps, _ := e.reg.PurgePolicies(e.ctx)
	if len(ps) != 1 || ps[0].LastRun == nil || ps[0].LastRun.Tags != 2 {
		t.Fatalf("policy after its run: %+v", ps)
	}
	e.image(t, "ci/app", "pr-9", newBlob(49), base)
	e.clock.Advance(12 * time.Hour) // not due yet (period 1d)
	e.reg.RunDuePurgePolicies(e.ctx)
	if got := e.tags(t, "ci/app"); len(got) != 2 {
		t.Errorf("a policy ran before its period: tags %v", got)
	}
	if err := e.reg.DeletePurgePolicy(e.ctx, "prs"); err != nil {
		t.Fatal(err)
	}
	if err := e.reg.DeletePurgePolicy(e.ctx, "prs"); stowage.ErrorCodeOf(err) != stowage.CodeNameUnknown {
		t.Errorf("deleting a missing policy: %v", err)
	}
}
