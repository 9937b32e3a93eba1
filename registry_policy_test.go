package stowage_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/recyclebin"
	"github.com/stowage/stowage/storage/mem"
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

	if err := e.policies().SetRetention(e.ctx, policy.Retention{Enabled: true, Days: 400}); err == nil {
		t.Error("a 400-day policy was accepted; want 0 to 365")
	}
	run, err := e.policies().ApplyRetention(e.ctx, false)
	if err != nil || run.Manifests != 0 {
		t.Fatalf("with no policy: %+v, %v", run, err)
	}
	if err := e.policies().SetRetention(e.ctx, policy.Retention{Enabled: true, Days: 7}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(6 * 24 * time.Hour)
	if run, _ := e.policies().ApplyRetention(e.ctx, false); run.Manifests != 0 {
		t.Fatalf("after 6 days: deleted %d manifests, want none", run.Manifests)
	}
	e.clock.Advance(2 * 24 * time.Hour)
	dry, err := e.policies().ApplyRetention(e.ctx, true)
	if err != nil || dry.Manifests != 2 {
		t.Fatalf("dry run after 8 days: %+v, %v; want m1 and the never-tagged manifest", dry, err)
	}
	run, err = e.policies().ApplyRetention(e.ctx, false)
	if err != nil || run.Manifests != 2 || run.BytesFreed != dry.BytesFreed {
		t.Fatalf("after 8 days: %+v, %v (dry run said %+v)", run, err, dry)
	}
	for d, want := range map[stowage.Digest]bool{m1.d: false, res3.Digest: false, m2.d: true, child.d: true} {
		if got := e.hasManifest("app", d); got != want {
			t.Errorf("manifest %s present = %v, want %v", d, got, want)
		}
	}
	if _, last, _ := e.policies().Retention(e.ctx); last == nil || last.Manifests != 2 {
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
	ago, _ := policy.ParseAge("2d")
	opts := policy.PurgeOptions{Filters: []stowage.PurgeFilter{filter}, Ago: ago, Keep: 2, Untagged: true, DryRun: true}
	dry, err := e.policies().Purge(e.ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	opts.DryRun = false
	run, err := e.policies().Purge(e.ctx, opts)
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
	if d, _ := policy.ParseAge("1d12h"); d != 36*time.Hour {
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
	for _, bad := range []policy.PurgePolicy{
		{Name: "x y", Filters: []string{"ci/.*:pr-.*"}, Every: "1d"},
		{Name: "nofilter", Every: "1d"},
		{Name: "often", Filters: []string{"ci/.*:pr-.*"}, Every: "10s"},
		{Name: "badago", Filters: []string{"ci/.*:pr-.*"}, Every: "1d", Ago: "soon"},
	} {
		if err := e.policies().SetPurgePolicy(e.ctx, bad); err == nil {
			t.Errorf("policy %+v accepted", bad)
		}
	}
	if err := e.policies().SetPurgePolicy(e.ctx, policy.PurgePolicy{Name: "prs", Filters: []string{"ci/.*:pr-.*"}, Ago: "1d", Keep: 1, Untagged: true, Every: "1d"}); err != nil {
		t.Fatal(err)
	}
	if err := e.policies().RunDuePurgePolicies(e.ctx); err != nil { // nothing is a day old yet
		t.Fatal(err)
	}
	if got := e.tags(t, "ci/app"); len(got) != 3 {
		t.Fatalf("tags after a run with nothing old enough: %v", got)
	}
	e.clock.Advance(2 * 24 * time.Hour) // due again, and the tags are old enough
	if err := e.policies().RunDuePurgePolicies(e.ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.tags(t, "ci/app"); len(got) != 1 {
		t.Errorf("tags after the scheduled purge: %v, want the newest one", got)
	}
	ps, _ := e.policies().PurgePolicies(e.ctx)
	if len(ps) != 1 || ps[0].LastRun == nil || ps[0].LastRun.Tags != 2 {
		t.Fatalf("policy after its run: %+v", ps)
	}
	e.image(t, "ci/app", "pr-9", newBlob(49), base)
	e.clock.Advance(12 * time.Hour) // not due yet (period 1d)
	e.policies().RunDuePurgePolicies(e.ctx)
	if got := e.tags(t, "ci/app"); len(got) != 2 {
		t.Errorf("a policy ran before its period: tags %v", got)
	}
	if err := e.policies().DeletePurgePolicy(e.ctx, "prs"); err != nil {
		t.Fatal(err)
	}
	if err := e.policies().DeletePurgePolicy(e.ctx, "prs"); stowage.ErrorCodeOf(err) != stowage.CodeNameUnknown {
		t.Errorf("deleting a missing policy: %v", err)
	}
}

func (e *env) policies() *policy.Runner { return policy.New(e.reg) }

func (e *env) bin() *recyclebin.Bin { return recyclebin.New(e.reg) }

// eventsEnv is an env on an SQLite file, whose change feed the test reads
// with SQL, and whose transactions can be made to fail at their first event
// (failEvents): a change whose event fails must not commit either, which
// shows the two are in one transaction. It records the delete reason each
// write transaction's context carries.
type eventsEnv struct {
	*env
	sql        *sql.DB
	failEvents atomic.Bool
	mu         sync.Mutex
	reasons    []string
	seen       int64 // events.id read so far
}

var errEventFailed = errors.New("event append failed (test)")

func newEventsEnv(t *testing.T) *eventsEnv {
	t.Helper()
	path := filepath.Join(t.TempDir(), "meta.db")
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	rd, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rd.Close() })
	e := &eventsEnv{sql: rd}
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	store := mem.New()
	e.env = &env{reg: stowage.NewRegistry(hookDB{db, e}, store, stowage.Options{Now: c.Now}), store: store, clock: c, ctx: context.Background()}
	return e
}

// newEvents returns "kind/reason detail" of each event appended since the
// last call, in order.
func (e *eventsEnv) newEvents(t *testing.T) []string {
	t.Helper()
	rows, err := e.sql.Query(`SELECT id, kind, reason, detail FROM events WHERE id > ? ORDER BY id`, e.seen)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var kind, reason, detail string
		if err := rows.Scan(&e.seen, &kind, &reason, &detail); err != nil {
			t.Fatal(err)
		}
		out = append(out, kind+"/"+reason+" "+detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// takeReasons returns the reasons recorded since the last call.
func (e *eventsEnv) takeReasons() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.reasons
	e.reasons = nil
	return r
}

type hookDB struct {
	stowage.DB
	e *eventsEnv
}

func (d hookDB) Update(ctx context.Context, fn func(stowage.Tx) error) error {
	d.e.mu.Lock()
	d.e.reasons = append(d.e.reasons, stowage.ReasonFrom(ctx))
	d.e.mu.Unlock()
	return d.DB.Update(ctx, func(tx stowage.Tx) error { return fn(hookTx{tx, d.e}) })
}

type hookTx struct {
	stowage.Tx
	e *eventsEnv
}

func (t hookTx) Events() stowage.EventTx {
	if t.e.failEvents.Load() {
		return failingEvents{}
	}
	return t.Tx.Events()
}

type failingEvents struct{}

func (failingEvents) Append(stowage.Event) error { return errEventFailed }

// TestPolicyEvents: each change of a policy's settings, each restore and
// each recycle bin entry that expires appends exactly one event of its
// kind, in the transaction that makes the change (when the event cannot be
// written, the change does not happen either); dry runs append none.
func TestPolicyEvents(t *testing.T) {
	type check func(t *testing.T, e *eventsEnv) // that the change did not happen
	softDeleted := func(t *testing.T, e *eventsEnv) blob {
		if err := e.bin().SetSoftDelete(e.ctx, stowage.SoftDeletePolicy{Enabled: true, Days: 7}); err != nil {
			t.Fatal(err)
		}
		img := e.image(t, "app", "v1", newBlob(31), newBlob(310))
		if _, err := e.reg.DeleteImage(e.ctx, "app", stowage.Reference{Tag: "v1"}, false); err != nil {
			t.Fatal(err)
		}
		return img
	}
	prs := policy.PurgePolicy{Name: "prs", Filters: []string{"ci/.*:pr-.*"}, Ago: "1d", Every: "1d"}
	cases := []struct {
		name   string
		setup  func(t *testing.T, e *eventsEnv)
		do     func(e *eventsEnv) error
		want   []string // "kind/reason" and a part of the detail
		undone check    // nil: nothing to undo (a dry run)
	}{
		{"set retention", nil,
			func(e *eventsEnv) error {
				return e.policies().SetRetention(e.ctx, policy.Retention{Enabled: true, Days: 7})
			},
			[]string{`policy/ {"name":"retention","before":{"enabled":false,"days":0},"after":{"enabled":true,"days":7}}`},
			func(t *testing.T, e *eventsEnv) {
				if p, _, err := e.policies().Retention(e.ctx); err != nil || p.Enabled {
					t.Errorf("retention after a failed set: %+v %v", p, err)
				}
			}},
		{"set purge policy", nil,
			func(e *eventsEnv) error { return e.policies().SetPurgePolicy(e.ctx, prs) },
			[]string{`policy/ {"name":"purgePolicy","policy":"prs","before":null,"after":{"name":"prs","filters":["ci/.*:pr-.*"],"ago":"1d","keep":0,"untagged":false,"every":"1d"}}`},
			func(t *testing.T, e *eventsEnv) {
				if ps, err := e.policies().PurgePolicies(e.ctx); err != nil || len(ps) != 0 {
					t.Errorf("purge policies after a failed set: %+v %v", ps, err)
				}
			}},
		{"delete purge policy",
			func(t *testing.T, e *eventsEnv) {
				if err := e.policies().SetPurgePolicy(e.ctx, prs); err != nil {
					t.Fatal(err)
				}
			},
			func(e *eventsEnv) error { return e.policies().DeletePurgePolicy(e.ctx, "prs") },
			[]string{`policy/ {"name":"purgePolicy","policy":"prs","before":{"name":"prs","filters":["ci/.*:pr-.*"],"ago":"1d","keep":0,"untagged":false,"every":"1d"},"after":null}`},
			func(t *testing.T, e *eventsEnv) {
				if ps, err := e.policies().PurgePolicies(e.ctx); err != nil || len(ps) != 1 {
					t.Errorf("purge policies after a failed delete: %+v %v", ps, err)
				}
			}},
		{"set soft delete", nil,
			func(e *eventsEnv) error {
				return e.bin().SetSoftDelete(e.ctx, stowage.SoftDeletePolicy{Enabled: true, Days: 3})
			},
			[]string{`policy/ {"name":"softDelete","before":{"enabled":false,"days":0},"after":{"enabled":true,"days":3}}`},
			func(t *testing.T, e *eventsEnv) {
				if p, err := e.bin().SoftDelete(e.ctx); err != nil || p.Enabled {
					t.Errorf("soft delete after a failed set: %+v %v", p, err)
				}
			}},
		{"restore", func(t *testing.T, e *eventsEnv) { softDeleted(t, e) },
			func(e *eventsEnv) error {
				bin, err := e.bin().List(e.ctx, "app")
				if err != nil || len(bin) != 1 {
					return fmt.Errorf("recycle bin: %+v %v", bin, err)
				}
				_, err = e.bin().Restore(e.ctx, bin[0].ID)
				return err
			},
			[]string{`restore/ {"recycleId":1,"tags":["v1"]}`},
			func(t *testing.T, e *eventsEnv) {
				if bin, err := e.bin().List(e.ctx, "app"); err != nil || len(bin) != 1 || len(e.tags(t, "app")) != 0 {
					t.Errorf("after a failed restore: bin %+v %v, tags %v", bin, err, e.tags(t, "app"))
				}
			}},
		{"expiry", func(t *testing.T, e *eventsEnv) { softDeleted(t, e); e.clock.Advance(8 * 24 * time.Hour) },
			func(e *eventsEnv) error {
				_, err := collect(e.ctx, e.reg, gcOptions{MinAge: zero()})
				return err
			},
			[]string{`delete/expiry {"recycleId":1,"tags":["v1"]}`},
			func(t *testing.T, e *eventsEnv) {
				if bin, err := e.bin().List(e.ctx, "app"); err != nil || len(bin) != 1 {
					t.Errorf("after a failed expiry: bin %+v %v", bin, err)
				}
			}},
		{"retention dry run",
			func(t *testing.T, e *eventsEnv) {
				e.image(t, "app", "v1", newBlob(32))
				e.image(t, "app", "v1", newBlob(33)) // the first is untagged now
				if err := e.policies().SetRetention(e.ctx, policy.Retention{Enabled: true, Days: 0}); err != nil {
					t.Fatal(err)
				}
				e.clock.Advance(time.Hour)
			},
			func(e *eventsEnv) error {
				run, err := e.policies().ApplyRetention(e.ctx, true)
				if err == nil && run.Manifests != 1 {
					err = fmt.Errorf("dry run: %+v, want one manifest", run)
				}
				return err
			}, nil, nil},
		{"purge dry run",
			func(t *testing.T, e *eventsEnv) {
				e.image(t, "ci/app", "pr-1", newBlob(34))
				e.clock.Advance(time.Hour)
			},
			func(e *eventsEnv) error {
				f, _ := stowage.ParsePurgeFilter("ci/.*:pr-.*")
				run, err := e.policies().Purge(e.ctx, policy.PurgeOptions{Filters: []stowage.PurgeFilter{f}, Untagged: true, DryRun: true})
				if err == nil && (run.Manifests != 1 || run.Tags != 1) {
					err = fmt.Errorf("dry run: %+v, want one tag and its manifest", run)
				}
				return err
			}, nil, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, fail := range []bool{true, false} {
				if fail && c.undone == nil {
					continue
				}
				e := newEventsEnv(t)
				if c.setup != nil {
					c.setup(t, e)
				}
				e.newEvents(t)
				e.failEvents.Store(fail)
				err := c.do(e)
				e.failEvents.Store(false)
				got := e.newEvents(t)
				if fail {
					if !errors.Is(err, errEventFailed) {
						t.Errorf("with its event failing: %v, want the event's error", err)
					}
					c.undone(t, e)
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(c.want) {
					t.Fatalf("events %q, want %q", got, c.want)
				}
				for i := range got {
					kind, detail, _ := strings.Cut(c.want[i], " ")
					if !strings.HasPrefix(got[i], kind+" ") || !sameJSONFields(got[i][len(kind)+1:], detail) {
						t.Errorf("event %d: %q, want %q", i, got[i], c.want[i])
					}
				}
			}
		})
	}
}

// sameJSONFields reports whether the JSON object got has every field of
// want, with its value (got may have more: the request's facts).
func sameJSONFields(got, want string) bool {
	var g, w map[string]any
	if json.Unmarshal([]byte(got), &g) != nil || json.Unmarshal([]byte(want), &w) != nil {
		return false
	}
	for k, v := range w {
		if !reflect.DeepEqual(g[k], v) {
			return false
		}
	}
	return true
}

// TestPolicyDeletesCarryTheirReason: every transaction of a retention run
// and of a purge carries the policy's reason, so the delete events the
// core appends say why (and any it appends do say so).
func TestPolicyDeletesCarryTheirReason(t *testing.T) {
	e := newEventsEnv(t)
	e.image(t, "app", "v1", newBlob(41))
	e.image(t, "app", "v1", newBlob(42)) // the first is untagged now
	e.image(t, "ci/app", "pr-1", newBlob(43))
	if err := e.policies().SetRetention(e.ctx, policy.Retention{Enabled: true, Days: 0}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Hour)
	f, _ := stowage.ParsePurgeFilter("ci/.*:pr-.*")
	for _, c := range []struct {
		reason string
		run    func() (policy.Run, error)
	}{
		{stowage.ReasonRetention, func() (policy.Run, error) { return e.policies().ApplyRetention(e.ctx, false) }},
		{stowage.ReasonPurge, func() (policy.Run, error) {
			return e.policies().Purge(e.ctx, policy.PurgeOptions{Filters: []stowage.PurgeFilter{f}, Untagged: true})
		}},
	} {
		e.newEvents(t)
		e.takeReasons()
		run, err := c.run()
		if err != nil || run.Manifests != 1 {
			t.Fatalf("%s: %+v %v; want one manifest deleted", c.reason, run, err)
		}
		reasons := e.takeReasons()
		if len(reasons) == 0 {
			t.Errorf("%s: no write transaction", c.reason)
		}
		for _, r := range reasons {
			if r != c.reason {
				t.Errorf("%s: a transaction of the run carries reason %q", c.reason, r)
			}
		}
		for _, ev := range e.newEvents(t) {
			if (strings.HasPrefix(ev, "delete/") || strings.HasPrefix(ev, "untag/")) && !strings.HasPrefix(ev, "delete/"+c.reason+" ") && !strings.HasPrefix(ev, "untag/"+c.reason+" ") {
				t.Errorf("%s: event %q", c.reason, ev)
			}
		}
	}
}
