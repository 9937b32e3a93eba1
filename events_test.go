package stowage_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/mgmt"
	"github.com/stowage/stowage/ociapi"
	"github.com/stowage/stowage/recyclebin"
	"github.com/stowage/stowage/storage/fs"
)

// The change feed: every committed change appends exactly one event in its
// own transaction (issue 14). These tests make each change through the
// engine on a SQLite file and read the feed back with plain SQL.

// feedEnv is an engine on a SQLite file (so the feed can be read with SQL
// from another connection) and a storage directory.
type feedEnv struct {
	reg  *stowage.Registry
	db   stowage.DB
	path string
	ctx  context.Context // carries actor
}

var actor = stowage.Actor{Name: "alice", Addr: "192.0.2.7", RequestID: "req-42", Method: "PUT", Host: "registry.example", UserAgent: "docker/27.0"}

func newFeedEnv(t testing.TB, opts stowage.Options) *feedEnv {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "stowage.db")
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return newFeedEnvOn(t, db, path, filepath.Join(dir, "storage"), opts)
}

func newFeedEnvOn(t testing.TB, db stowage.DB, path, storage string, opts stowage.Options) *feedEnv {
	t.Helper()
	store, err := fs.New(storage)
	if err != nil {
		t.Fatal(err)
	}
	return &feedEnv{reg: stowage.NewRegistry(db, store, opts), db: db, path: path,
		ctx: stowage.WithActor(context.Background(), actor)}
}

// readEvents returns the feed's events after seq `after`, in order.
func readEvents(t testing.TB, path string, after int64) []stowage.Event {
	t.Helper()
	raw, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	rows, err := raw.Query(`SELECT seq, time, kind, actor, addr, repo, digest, tag, media_type, size, reason, previous, origin, detail
		FROM events WHERE seq > ? ORDER BY seq`, after)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []stowage.Event
	for rows.Next() {
		var e stowage.Event
		var ns int64
		if err := rows.Scan(&e.Seq, &ns, &e.Kind, &e.Actor, &e.Addr, &e.Repo, &e.Digest, &e.Tag, &e.MediaType, &e.Size,
			&e.Reason, &e.Previous, &e.Origin, &e.Detail); err != nil {
			t.Fatal(err)
		}
		e.Time = time.Unix(0, ns)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func lastSeq(t testing.TB, path string) int64 {
	t.Helper()
	es := readEvents(t, path, 0)
	if len(es) == 0 {
		return 0
	}
	return es[len(es)-1].Seq
}

type fblob struct {
	d    stowage.Digest
	data []byte
}

func randBlob(n int) fblob {
	b := make([]byte, n)
	rand.Read(b)
	return fblob{stowage.Digest("sha256:" + sha(b)), b}
}

func (e *feedEnv) blob(t testing.TB, repo string, b fblob) {
	t.Helper()
	if _, err := e.reg.PutBlob(e.ctx, repo, b.d, bytes.NewReader(b.data), int64(len(b.data))); err != nil {
		t.Fatalf("push blob: %v", err)
	}
}

// imageBody returns a manifest of a fresh config and layer, both pushed to repo.
func (e *feedEnv) imageBody(t testing.TB, repo string, extra string) fblob {
	t.Helper()
	cfg, layer := randBlob(20), randBlob(30)
	e.blob(t, repo, cfg)
	e.blob(t, repo, layer)
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]%s}`,
		stowage.MediaTypeOCIManifest, cfg.d, len(cfg.data), layer.d, len(layer.data), extra)
	return fblob{stowage.Digest("sha256:" + sha([]byte(m))), []byte(m)}
}

func (e *feedEnv) put(repo string, ref stowage.Reference, m fblob, tags ...string) error {
	_, err := e.reg.PutManifest(e.ctx, repo, ref, stowage.MediaTypeOCIManifest, m.data, tags)
	return err
}

// image pushes a new image as repo:tag ("" = by digest).
func (e *feedEnv) image(t testing.TB, repo, tag string) fblob {
	t.Helper()
	m := e.imageBody(t, repo, "")
	ref := stowage.Reference{Tag: tag}
	if tag == "" {
		ref = stowage.Reference{Digest: m.d}
	}
	if err := e.put(repo, ref, m); err != nil {
		t.Fatalf("push %s:%s: %v", repo, tag, err)
	}
	return m
}

// referrer pushes an artifact whose subject is subject.
func (e *feedEnv) referrer(t testing.TB, repo string, subject fblob) fblob {
	t.Helper()
	m := e.imageBody(t, repo, fmt.Sprintf(`,"subject":{"mediaType":%q,"digest":%q,"size":%d}`, stowage.MediaTypeOCIManifest, subject.d, len(subject.data)))
	if err := e.put(repo, stowage.Reference{Digest: m.d}, m); err != nil {
		t.Fatal(err)
	}
	return m
}

// index pushes an index of children as repo:tag.
func (e *feedEnv) index(t testing.TB, repo, tag string, children ...fblob) fblob {
	t.Helper()
	var cs []string
	for _, c := range children {
		cs = append(cs, fmt.Sprintf(`{"mediaType":%q,"digest":%q,"size":%d}`, stowage.MediaTypeOCIManifest, c.d, len(c.data)))
	}
	body := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"manifests":[%s]}`, stowage.MediaTypeOCIIndex, strings.Join(cs, ","))
	m := fblob{stowage.Digest("sha256:" + sha([]byte(body))), []byte(body)}
	if _, err := e.reg.PutManifest(e.ctx, repo, stowage.Reference{Tag: tag}, stowage.MediaTypeOCIIndex, m.data, nil); err != nil {
		t.Fatal(err)
	}
	return m
}

// want is an expected event: every field but Seq, Time and Detail must
// match exactly; Detail must hold each of details (JSON fragments).
type want struct {
	stowage.Event
	details []string
}

func mine(kind stowage.EventKind, repo string) stowage.Event {
	return stowage.Event{Kind: kind, Actor: actor.Name, Addr: actor.Addr, Repo: repo}
}

func checkEvents(t *testing.T, got []stowage.Event, wants []want) {
	t.Helper()
	if len(got) != len(wants) {
		t.Fatalf("%d new events, want %d: %+v", len(got), len(wants), got)
	}
	for i, w := range wants {
		g := got[i]
		if g.Seq <= 0 || g.Time.IsZero() {
			t.Errorf("event %d: seq %d, time %v: want both set", i, g.Seq, g.Time)
		}
		cmp := g
		cmp.Seq, cmp.Time, cmp.Detail = 0, time.Time{}, ""
		if cmp != w.Event {
			t.Errorf("event %d:\n got %+v\nwant %+v", i, cmp, w.Event)
		}
		if g.Detail != "" && !json.Valid([]byte(g.Detail)) {
			t.Errorf("event %d: detail %q is not JSON", i, g.Detail)
		}
		for _, d := range append(w.details, `"requestId":"req-42"`, `"userAgent":"docker/27.0"`) {
			if !strings.Contains(g.Detail, d) {
				t.Errorf("event %d (%s): detail %s lacks %s", i, g.Kind, g.Detail, d)
			}
		}
	}
}

// TestEventPerChange makes each kind of change through the engine and
// checks that it appended exactly its events, with the actor and fields.
func TestEventPerChange(t *testing.T) {
	type fixture struct {
		e    *feedEnv
		m, n fblob // images
		x    []fblob
	}
	cases := []struct {
		name   string
		opts   stowage.Options
		setup  func(t *testing.T, f *fixture)
		change func(t *testing.T, f *fixture) error
		want   func(f *fixture) []want
	}{
		{name: "push by new tag",
			setup: func(t *testing.T, f *fixture) { f.m = f.e.imageBody(t, "app", "") },
			change: func(t *testing.T, f *fixture) error {
				return f.e.put("app", stowage.Reference{Tag: "v1"}, f.m)
			},
			want: func(f *fixture) []want {
				e := mine(stowage.EventPush, "app")
				e.Digest, e.MediaType, e.Size, e.Tag = f.m.d, stowage.MediaTypeOCIManifest, int64(len(f.m.data)), "v1"
				return []want{{Event: e}}
			}},
		{name: "push moves a tag",
			setup: func(t *testing.T, f *fixture) {
				f.n = f.e.image(t, "app", "v1")
				f.m = f.e.imageBody(t, "app", "")
			},
			change: func(t *testing.T, f *fixture) error {
				return f.e.put("app", stowage.Reference{Tag: "v1"}, f.m)
			},
			want: func(f *fixture) []want {
				e := mine(stowage.EventPush, "app")
				e.Digest, e.MediaType, e.Size, e.Tag, e.Previous = f.m.d, stowage.MediaTypeOCIManifest, int64(len(f.m.data)), "v1", f.n.d
				return []want{{Event: e}}
			}},
		{name: "push the same manifest to its tag again",
			setup: func(t *testing.T, f *fixture) { f.m = f.e.image(t, "app", "v1") },
			change: func(t *testing.T, f *fixture) error {
				return f.e.put("app", stowage.Reference{Tag: "v1"}, f.m)
			},
			want: func(f *fixture) []want {
				e := mine(stowage.EventPush, "app")
				e.Digest, e.MediaType, e.Size, e.Tag = f.m.d, stowage.MediaTypeOCIManifest, int64(len(f.m.data)), "v1"
				return []want{{Event: e}}
			}},
		{name: "push by digest",
			setup: func(t *testing.T, f *fixture) { f.m = f.e.imageBody(t, "app", "") },
			change: func(t *testing.T, f *fixture) error {
				return f.e.put("app", stowage.Reference{Digest: f.m.d}, f.m)
			},
			want: func(f *fixture) []want {
				e := mine(stowage.EventPush, "app")
				e.Digest, e.MediaType, e.Size = f.m.d, stowage.MediaTypeOCIManifest, int64(len(f.m.data))
				return []want{{Event: e}}
			}},
		{name: "push by digest with tags (one event)",
			setup: func(t *testing.T, f *fixture) {
				f.n = f.e.image(t, "app", "b")
				f.m = f.e.imageBody(t, "app", "")
			},
			change: func(t *testing.T, f *fixture) error {
				return f.e.put("app", stowage.Reference{Digest: f.m.d}, f.m, "a", "b")
			},
			want: func(f *fixture) []want {
				e := mine(stowage.EventPush, "app")
				e.Digest, e.MediaType, e.Size, e.Tag = f.m.d, stowage.MediaTypeOCIManifest, int64(len(f.m.data)), "a"
				return []want{{Event: e, details: []string{`"tags":["a","b"]`, `"previous":{"b":"` + string(f.n.d) + `"}`}}}
			}},
		{name: "untag",
			setup: func(t *testing.T, f *fixture) { f.m = f.e.image(t, "app", "v1") },
			change: func(t *testing.T, f *fixture) error {
				_, err := f.e.reg.Untag(f.e.ctx, "app", "v1", false)
				return err
			},
			want: func(f *fixture) []want {
				e := mine(stowage.EventUntag, "app")
				e.Tag, e.Digest, e.Reason = "v1", f.m.d, stowage.ReasonUser
				return []want{{Event: e}}
			}},
		{name: "untag through the OCI delete by tag",
			setup: func(t *testing.T, f *fixture) { f.m = f.e.image(t, "app", "v1") },
			change: func(t *testing.T, f *fixture) error {
				return f.e.reg.DeleteManifest(f.e.ctx, "app", stowage.Reference{Tag: "v1"})
			},
			want: func(f *fixture) []want {
				e := mine(stowage.EventUntag, "app")
				e.Tag, e.Digest, e.Reason = "v1", f.m.d, stowage.ReasonUser
				return []want{{Event: e}}
			}},
		{name: "delete a manifest with its tags",
			setup: func(t *testing.T, f *fixture) {
				f.m = f.e.image(t, "app", "v1")
				if err := f.e.put("app", stowage.Reference{Tag: "v2"}, f.m); err != nil {
					t.Fatal(err)
				}
			},
			change: func(t *testing.T, f *fixture) error {
				return f.e.reg.DeleteManifest(f.e.ctx, "app", stowage.Reference{Digest: f.m.d})
			},
			want: func(f *fixture) []want {
				e := mine(stowage.EventDelete, "app")
				e.Digest, e.MediaType, e.Size, e.Reason = f.m.d, stowage.MediaTypeOCIManifest, int64(len(f.m.data)), stowage.ReasonUser
				return []want{{Event: e, details: []string{`"tags":["v1","v2"]`}}}
			}},
		{name: "delete by a policy's reason",
			setup: func(t *testing.T, f *fixture) { f.m = f.e.image(t, "app", "") },
			change: func(t *testing.T, f *fixture) error {
				_, err := f.e.reg.DeleteImage(stowage.WithReason(f.e.ctx, stowage.ReasonRetention), "app", stowage.Reference{Digest: f.m.d}, false)
				return err
			},
			want: func(f *fixture) []want {
				e := mine(stowage.EventDelete, "app")
				e.Digest, e.MediaType, e.Size, e.Reason = f.m.d, stowage.MediaTypeOCIManifest, int64(len(f.m.data)), stowage.ReasonRetention
				return []want{{Event: e}}
			}},
		{name: "delete takes its referrers, one event each",
			setup: func(t *testing.T, f *fixture) {
				f.m = f.e.image(t, "app", "v1")
				f.x = []fblob{f.e.referrer(t, "app", f.m)}
			},
			change: func(t *testing.T, f *fixture) error {
				_, err := f.e.reg.DeleteImage(f.e.ctx, "app", stowage.Reference{Tag: "v1"}, false)
				return err
			},
			want: func(f *fixture) []want {
				e := mine(stowage.EventDelete, "app")
				e.Digest, e.MediaType, e.Size, e.Reason = f.m.d, stowage.MediaTypeOCIManifest, int64(len(f.m.data)), stowage.ReasonUser
				r := mine(stowage.EventDelete, "app")
				r.Digest, r.MediaType, r.Size, r.Reason = f.x[0].d, stowage.MediaTypeOCIManifest, int64(len(f.x[0].data)), stowage.ReasonUser
				return []want{{Event: e, details: []string{`"tags":["v1"]`}}, {Event: r, details: []string{`"cascade":"referrer"`}}}
			}},
		{name: "delete an index takes its child",
			setup: func(t *testing.T, f *fixture) {
				f.n = f.e.image(t, "app", "")
				f.m = f.e.index(t, "app", "multi", f.n)
			},
			change: func(t *testing.T, f *fixture) error {
				_, err := f.e.reg.DeleteImage(f.e.ctx, "app", stowage.Reference{Digest: f.m.d}, false)
				return err
			},
			want: func(f *fixture) []want {
				e := mine(stowage.EventDelete, "app")
				e.Digest, e.MediaType, e.Size, e.Reason = f.m.d, stowage.MediaTypeOCIIndex, int64(len(f.m.data)), stowage.ReasonUser
				c := mine(stowage.EventDelete, "app")
				c.Digest, c.MediaType, c.Size, c.Reason = f.n.d, stowage.MediaTypeOCIManifest, int64(len(f.n.data)), stowage.ReasonUser
				return []want{{Event: e, details: []string{`"tags":["multi"]`}}, {Event: c, details: []string{`"cascade":"index child"`}}}
			}},
		{name: "soft delete names the recycle bin entry",
			setup: func(t *testing.T, f *fixture) {
				if err := recyclebin.New(f.e.reg).SetSoftDelete(f.e.ctx, stowage.SoftDeletePolicy{Enabled: true, Days: 7}); err != nil {
					t.Fatal(err)
				}
				f.m = f.e.image(t, "app", "v1")
			},
			change: func(t *testing.T, f *fixture) error {
				_, err := f.e.reg.DeleteImage(f.e.ctx, "app", stowage.Reference{Tag: "v1"}, false)
				return err
			},
			want: func(f *fixture) []want {
				e := mine(stowage.EventDelete, "app")
				e.Digest, e.MediaType, e.Size, e.Reason = f.m.d, stowage.MediaTypeOCIManifest, int64(len(f.m.data)), stowage.ReasonUser
				return []want{{Event: e, details: []string{`"recycleId":`, `"recycledUntil":`}}}
			}},
		{name: "delete a repository: one event",
			setup: func(t *testing.T, f *fixture) {
				f.e.image(t, "app", "v1")
				f.e.image(t, "app", "v2")
				f.e.image(t, "app", "")
			},
			change: func(t *testing.T, f *fixture) error {
				_, err := f.e.reg.DeleteRepository(f.e.ctx, "app", false)
				return err
			},
			want: func(f *fixture) []want {
				e := mine(stowage.EventRepositoryDelete, "app")
				e.Reason = stowage.ReasonUser
				return []want{{Event: e, details: []string{`"manifests":3`, `"tags":2`}}}
			}},
		{name: "dry runs record nothing",
			setup: func(t *testing.T, f *fixture) { f.m = f.e.image(t, "app", "v1") },
			change: func(t *testing.T, f *fixture) error {
				if _, err := f.e.reg.Untag(f.e.ctx, "app", "v1", true); err != nil {
					return err
				}
				if _, err := f.e.reg.DeleteImage(f.e.ctx, "app", stowage.Reference{Tag: "v1"}, true); err != nil {
					return err
				}
				_, err := f.e.reg.DeleteRepository(f.e.ctx, "app", true)
				return err
			},
			want: func(f *fixture) []want { return nil }},
		{name: "lock a repository",
			setup: func(t *testing.T, f *fixture) { f.e.image(t, "app", "v1") },
			change: func(t *testing.T, f *fixture) error {
				_, err := f.e.reg.SetLocks(f.e.ctx, "app", stowage.Reference{}, stowage.LockWrite, 0)
				return err
			},
			want: func(f *fixture) []want {
				return []want{{Event: mine(stowage.EventLock, "app"), details: []string{`"target":"app"`,
					`"before":{"deleteEnabled":true,"writeEnabled":true,"readEnabled":true,"listEnabled":true}`,
					`"after":{"deleteEnabled":true,"writeEnabled":false,"readEnabled":true,"listEnabled":true}`}}}
			}},
		{name: "unlock a tag",
			setup: func(t *testing.T, f *fixture) {
				f.e.image(t, "app", "v1")
				if _, err := f.e.reg.SetLocks(f.e.ctx, "app", stowage.Reference{Tag: "v1"}, stowage.LockDelete|stowage.LockRead, 0); err != nil {
					t.Fatal(err)
				}
			},
			change: func(t *testing.T, f *fixture) error {
				_, err := f.e.reg.SetLocks(f.e.ctx, "app", stowage.Reference{Tag: "v1"}, 0, stowage.LockDelete)
				return err
			},
			want: func(f *fixture) []want {
				e := mine(stowage.EventLock, "app")
				e.Tag = "v1"
				return []want{{Event: e, details: []string{`"target":"app:v1"`,
					`"before":{"deleteEnabled":false,"writeEnabled":true,"readEnabled":false,"listEnabled":true}`,
					`"after":{"deleteEnabled":true,"writeEnabled":true,"readEnabled":false,"listEnabled":true}`}}}
			}},
		{name: "lock a manifest",
			setup: func(t *testing.T, f *fixture) { f.m = f.e.image(t, "app", "v1") },
			change: func(t *testing.T, f *fixture) error {
				_, err := f.e.reg.SetLocks(f.e.ctx, "app", stowage.Reference{Digest: f.m.d}, stowage.LockList, 0)
				return err
			},
			want: func(f *fixture) []want {
				e := mine(stowage.EventLock, "app")
				e.Digest = f.m.d
				return []want{{Event: e, details: []string{`"target":"app@` + string(f.m.d) + `"`, `"listEnabled":false`}}}
			}},
		{name: "immutability rules",
			setup: func(t *testing.T, f *fixture) {
				if err := f.e.reg.SetImmutabilityRules(f.e.ctx, []string{"app:v.*"}); err != nil {
					t.Fatal(err)
				}
			},
			change: func(t *testing.T, f *fixture) error {
				return f.e.reg.SetImmutabilityRules(f.e.ctx, []string{"app:release-.*", "base:.*"})
			},
			want: func(f *fixture) []want {
				return []want{{Event: mine(stowage.EventPolicy, ""), details: []string{`"name":"immutability"`,
					`"before":["app:v.*"]`, `"after":["app:release-.*","base:.*"]`}}}
			}},
		{name: "set a quota",
			change: func(t *testing.T, f *fixture) error { return f.e.reg.SetQuota(f.e.ctx, "app", 1<<20) },
			want: func(f *fixture) []want {
				e := mine(stowage.EventQuota, "app")
				e.Size = 1 << 20
				return []want{{Event: e, details: []string{`"before":0`, `"after":1048576`}}}
			}},
		{name: "clear a quota",
			setup: func(t *testing.T, f *fixture) {
				if err := f.e.reg.SetQuota(f.e.ctx, "app", 5000); err != nil {
					t.Fatal(err)
				}
			},
			change: func(t *testing.T, f *fixture) error { return f.e.reg.SetQuota(f.e.ctx, "app", 0) },
			want: func(f *fixture) []want {
				return []want{{Event: mine(stowage.EventQuota, "app"), details: []string{`"before":5000`, `"after":0`}}}
			}},
		{name: "pull by tag, pulls recorded",
			opts:  stowage.Options{RecordPulls: true},
			setup: func(t *testing.T, f *fixture) { f.m = f.e.image(t, "app", "v1") },
			change: func(t *testing.T, f *fixture) error {
				ctx := stowage.WithActor(context.Background(), stowage.Actor{Name: actor.Name, Addr: actor.Addr, RequestID: actor.RequestID, UserAgent: actor.UserAgent, Method: "GET"})
				_, _, err := f.e.reg.GetManifest(ctx, "app", stowage.Reference{Tag: "v1"})
				return err
			},
			want: func(f *fixture) []want {
				e := mine(stowage.EventPull, "app")
				e.Digest, e.Tag, e.MediaType, e.Size = f.m.d, "v1", stowage.MediaTypeOCIManifest, int64(len(f.m.data))
				return []want{{Event: e}}
			}},
		{name: "HEAD is no pull",
			opts:  stowage.Options{RecordPulls: true},
			setup: func(t *testing.T, f *fixture) { f.m = f.e.image(t, "app", "v1") },
			change: func(t *testing.T, f *fixture) error {
				ctx := stowage.WithActor(context.Background(), stowage.Actor{Name: "bob", Method: "HEAD"})
				_, _, err := f.e.reg.GetManifest(ctx, "app", stowage.Reference{Tag: "v1"})
				return err
			},
			want: func(f *fixture) []want { return nil }},
		{name: "pulls not recorded by default",
			setup: func(t *testing.T, f *fixture) { f.m = f.e.image(t, "app", "v1") },
			change: func(t *testing.T, f *fixture) error {
				_, _, err := f.e.reg.GetManifest(f.e.ctx, "app", stowage.Reference{Digest: f.m.d})
				return err
			},
			want: func(f *fixture) []want { return nil }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := &fixture{e: newFeedEnv(t, tc.opts)}
			if tc.setup != nil {
				tc.setup(t, f)
			}
			seq := lastSeq(t, f.e.path)
			if err := tc.change(t, f); err != nil {
				t.Fatal(err)
			}
			checkEvents(t, readEvents(t, f.e.path, seq), tc.want(f))
		})
	}
}

// TestRefusedChangeAppendsNoEvent: a change the engine refuses leaves the
// feed as it was.
func TestRefusedChangeAppendsNoEvent(t *testing.T) {
	type fixture struct {
		e    *feedEnv
		m, n fblob
	}
	cases := []struct {
		name   string
		setup  func(t *testing.T, f *fixture)
		change func(t *testing.T, f *fixture) error
		code   stowage.ErrorCode
	}{
		{"move a write-locked tag", func(t *testing.T, f *fixture) {
			f.e.image(t, "app", "v1")
			f.m = f.e.imageBody(t, "app", "")
			if _, err := f.e.reg.SetLocks(f.e.ctx, "app", stowage.Reference{Tag: "v1"}, stowage.LockWrite, 0); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, f *fixture) error {
			return f.e.put("app", stowage.Reference{Tag: "v1"}, f.m)
		}, stowage.CodeDenied},
		{"push into a write-locked repository", func(t *testing.T, f *fixture) {
			f.m = f.e.imageBody(t, "app", "")
			if _, err := f.e.reg.SetLocks(f.e.ctx, "app", stowage.Reference{}, stowage.LockWrite, 0); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, f *fixture) error {
			return f.e.put("app", stowage.Reference{Tag: "v1"}, f.m)
		}, stowage.CodeDenied},
		{"move an immutable tag", func(t *testing.T, f *fixture) {
			f.e.image(t, "app", "v1")
			f.m = f.e.imageBody(t, "app", "")
			if err := f.e.reg.SetImmutabilityRules(f.e.ctx, []string{"app:v.*"}); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, f *fixture) error {
			return f.e.put("app", stowage.Reference{Tag: "v1"}, f.m)
		}, stowage.CodeDenied},
		{"push past the quota", func(t *testing.T, f *fixture) {
			f.m = f.e.imageBody(t, "app", "")
			if err := f.e.reg.SetQuota(f.e.ctx, "app", 60); err != nil { // the blobs (50 bytes) fit, the manifest not
				t.Fatal(err)
			}
		}, func(t *testing.T, f *fixture) error {
			return f.e.put("app", stowage.Reference{Tag: "v1"}, f.m)
		}, stowage.CodeDenied},
		{"push a manifest whose layer is missing", func(t *testing.T, f *fixture) {
			f.m = f.e.imageBody(t, "other", "")
		}, func(t *testing.T, f *fixture) error {
			return f.e.put("app", stowage.Reference{Tag: "v1"}, f.m)
		}, stowage.CodeManifestBlobUnknown},
		{"push an invalid manifest", nil, func(t *testing.T, f *fixture) error {
			_, err := f.e.reg.PutManifest(f.e.ctx, "app", stowage.Reference{Tag: "v1"}, stowage.MediaTypeOCIManifest, []byte(`{"schemaVersion":2}`), nil)
			return err
		}, stowage.CodeManifestInvalid},
		{"untag an immutable tag", func(t *testing.T, f *fixture) {
			f.e.image(t, "app", "v1")
			if err := f.e.reg.SetImmutabilityRules(f.e.ctx, []string{"app:v.*"}); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, f *fixture) error {
			_, err := f.e.reg.Untag(f.e.ctx, "app", "v1", false)
			return err
		}, stowage.CodeDenied},
		{"untag a delete-locked tag", func(t *testing.T, f *fixture) {
			f.e.image(t, "app", "v1")
			if _, err := f.e.reg.SetLocks(f.e.ctx, "app", stowage.Reference{Tag: "v1"}, stowage.LockDelete, 0); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, f *fixture) error {
			_, err := f.e.reg.Untag(f.e.ctx, "app", "v1", false)
			return err
		}, stowage.CodeDenied},
		{"delete a delete-locked manifest", func(t *testing.T, f *fixture) {
			f.m = f.e.image(t, "app", "v1")
			if _, err := f.e.reg.SetLocks(f.e.ctx, "app", stowage.Reference{Digest: f.m.d}, stowage.LockDelete, 0); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, f *fixture) error {
			_, err := f.e.reg.DeleteImage(f.e.ctx, "app", stowage.Reference{Digest: f.m.d}, false)
			return err
		}, stowage.CodeDenied},
		{"delete an index's child", func(t *testing.T, f *fixture) {
			f.n = f.e.image(t, "app", "")
			f.e.index(t, "app", "multi", f.n)
		}, func(t *testing.T, f *fixture) error {
			_, err := f.e.reg.DeleteImage(f.e.ctx, "app", stowage.Reference{Digest: f.n.d}, false)
			return err
		}, stowage.CodeDenied},
		{"delete a repository with a delete-locked manifest", func(t *testing.T, f *fixture) {
			f.e.image(t, "app", "v2")
			f.m = f.e.image(t, "app", "v1")
			if _, err := f.e.reg.SetLocks(f.e.ctx, "app", stowage.Reference{Tag: "v1"}, stowage.LockDelete, 0); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, f *fixture) error {
			_, err := f.e.reg.DeleteRepository(f.e.ctx, "app", false)
			return err
		}, stowage.CodeDenied},
		{"lock a tag that does not exist", nil, func(t *testing.T, f *fixture) error {
			_, err := f.e.reg.SetLocks(f.e.ctx, "app", stowage.Reference{Tag: "nope"}, stowage.LockWrite, 0)
			return err
		}, stowage.CodeManifestUnknown},
		{"clear a quota that is not set", nil, func(t *testing.T, f *fixture) error {
			return f.e.reg.SetQuota(f.e.ctx, "app", 0)
		}, stowage.CodeNameUnknown},
		{"an invalid immutability rule", nil, func(t *testing.T, f *fixture) error {
			return f.e.reg.SetImmutabilityRules(f.e.ctx, []string{"no colon"})
		}, stowage.CodeInvalidParameter},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := &fixture{e: newFeedEnv(t, stowage.Options{})}
			if tc.setup != nil {
				tc.setup(t, f)
			}
			seq := lastSeq(t, f.e.path)
			err := tc.change(t, f)
			if stowage.ErrorCodeOf(err) != tc.code {
				t.Fatalf("err = %v, want %s", err, tc.code)
			}
			if got := readEvents(t, f.e.path, seq); len(got) != 0 {
				t.Errorf("a refused change appended %+v", got)
			}
		})
	}
}

// rollbackDB runs each Update's fn to the end (events appended included),
// then fails the transaction, as a commit that fails would.
type rollbackDB struct{ stowage.DB }

var errCommit = errors.New("injected: commit failed")

func (d rollbackDB) Update(ctx context.Context, fn func(stowage.Tx) error) error {
	return d.DB.Update(ctx, func(tx stowage.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return errCommit
	})
}

// TestRolledBackChangeLeavesNoEvent: the event is part of the change's
// transaction, so a transaction that fails after appending it leaves
// neither the change nor the event.
func TestRolledBackChangeLeavesNoEvent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "stowage.db")
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	good := newFeedEnvOn(t, db, path, filepath.Join(dir, "storage"), stowage.Options{})
	m := good.image(t, "app", "v1")
	next := good.imageBody(t, "app", "")
	if err := good.reg.SetQuota(good.ctx, "app", 1<<20); err != nil {
		t.Fatal(err)
	}
	bad := newFeedEnvOn(t, rollbackDB{db}, path, filepath.Join(dir, "storage"), stowage.Options{})
	seq := lastSeq(t, path)
	for name, change := range map[string]func() error{
		"push":  func() error { return bad.put("app", stowage.Reference{Tag: "v1"}, next) },
		"untag": func() error { _, err := bad.reg.Untag(bad.ctx, "app", "v1", false); return err },
		"delete": func() error {
			_, err := bad.reg.DeleteImage(bad.ctx, "app", stowage.Reference{Digest: m.d}, false)
			return err
		},
		"delete repository": func() error { _, err := bad.reg.DeleteRepository(bad.ctx, "app", false); return err },
		"lock": func() error {
			_, err := bad.reg.SetLocks(bad.ctx, "app", stowage.Reference{}, stowage.LockWrite, 0)
			return err
		},
		"quota":        func() error { return bad.reg.SetQuota(bad.ctx, "app", 0) },
		"immutability": func() error { return bad.reg.SetImmutabilityRules(bad.ctx, []string{"app:.*"}) },
	} {
		if err := change(); !errors.Is(err, errCommit) {
			t.Errorf("%s: err = %v, want the injected commit failure", name, err)
		}
	}
	if got := readEvents(t, path, seq); len(got) != 0 {
		t.Errorf("rolled-back changes left events: %+v", got)
	}
	// And the changes themselves are not there either.
	if rec, err := good.reg.ResolveManifest(good.ctx, "app", stowage.Reference{Tag: "v1"}); err != nil || rec.Digest != m.d {
		t.Errorf("app:v1 = %v, %v: want it unchanged at %s", rec.Digest, err, m.d)
	}
}

// TestEventSurvivesCrash pushes in a child process that kills itself with
// SIGKILL as soon as the push is acknowledged, then opens the database
// again: the push's event is there (it committed with the push).
func TestEventSurvivesCrash(t *testing.T) {
	if dir := os.Getenv("STOWAGE_TEST_FEED_CRASH_DIR"); dir != "" {
		crashAfterPush(t, dir)
		return
	}
	if testing.Short() {
		t.Skip("starts a child process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestEventSurvivesCrash$", "-test.count=1")
	cmd.Env = append(os.Environ(), "STOWAGE_TEST_FEED_CRASH_DIR="+dir)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child: %v, want killed by SIGKILL\n%s", err, out)
	}
	var acked stowage.Digest
	for _, line := range strings.Split(string(out), "\n") {
		if d, ok := strings.CutPrefix(line, "ACKED "); ok {
			acked = stowage.Digest(strings.TrimSpace(d))
		}
	}
	if acked == "" {
		t.Fatalf("the child acknowledged no push:\n%s", out)
	}
	path := filepath.Join(dir, "stowage.db")
	db, err := sqlite.Open(context.Background(), path) // recovers the journal
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var found []stowage.Event
	for _, e := range readEvents(t, path, 0) {
		if e.Kind == stowage.EventPush && e.Digest == acked {
			found = append(found, e)
		}
	}
	if len(found) != 1 || found[0].Tag != "crash" || found[0].Actor != actor.Name || found[0].Addr != actor.Addr {
		t.Fatalf("after the crash, push events of the acknowledged %s: %+v; want exactly one, tag crash, by %s", acked, found, actor.Name)
	}
}

// crashAfterPush is the child of TestEventSurvivesCrash.
func crashAfterPush(t *testing.T, dir string) {
	e := newFeedEnvOn(t, mustOpen(t, filepath.Join(dir, "stowage.db")), filepath.Join(dir, "stowage.db"), filepath.Join(dir, "storage"), stowage.Options{})
	m := e.imageBody(t, "app", "")
	if err := e.put("app", stowage.Reference{Tag: "crash"}, m); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("ACKED %s\n", m.d)
	os.Stdout.Sync()
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // never reached
}

func mustOpen(t testing.TB, path string) stowage.DB {
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// TestActorFromRequest: without access control, the OCI and management
// handlers record the caller as anonymous at its address, with the
// request's ID and user agent.
func TestActorFromRequest(t *testing.T) {
	e := newFeedEnv(t, stowage.Options{RecordPulls: true})
	m := e.imageBody(t, "app", "")
	mux := http.NewServeMux()
	mux.Handle("/v2/", ociapi.New(e.reg, nil))
	mux.Handle("/api/v1/", mgmt.New(e.reg, nil))
	mux.Handle("/acr/v1/", mgmt.NewACR(e.reg, nil))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	do := func(method, path, body string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		req.Header.Set("Content-Type", stowage.MediaTypeOCIManifest)
		req.Header.Set("X-Request-Id", "r-"+method)
		req.Header.Set("User-Agent", "tester/1")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode >= 300 {
			t.Fatalf("%s %s: %d", method, path, res.StatusCode)
		}
	}
	seq := lastSeq(t, e.path)
	do(http.MethodPut, "/v2/app/manifests/v1", string(m.data))
	do(http.MethodHead, "/v2/app/manifests/v1", "")
	do(http.MethodGet, "/v2/app/manifests/v1", "")
	do(http.MethodPatch, "/acr/v1/app/_tags/v1", `{"writeEnabled":false}`)
	do(http.MethodDelete, "/api/v1/images/app@"+string(m.d), "")
	got := readEvents(t, e.path, seq)
	kinds := []stowage.EventKind{stowage.EventPush, stowage.EventPull, stowage.EventLock, stowage.EventDelete}
	if len(got) != len(kinds) {
		t.Fatalf("events %+v, want kinds %v", got, kinds)
	}
	for i, g := range got {
		if g.Kind != kinds[i] || g.Actor != "" || g.Addr != "127.0.0.1" || !strings.Contains(g.Detail, `"userAgent":"tester/1"`) || !strings.Contains(g.Detail, `"requestId":"r-`) {
			t.Errorf("event %d = %+v: want %s by anonymous at 127.0.0.1 with the request's ID and user agent", i, g, kinds[i])
		}
	}
}

// BenchmarkPull measures a manifest GET by tag with pulls recorded and not
// (off must cost nothing: no write at all).
func BenchmarkPull(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("record=%v", on), func(b *testing.B) {
			e := newFeedEnv(b, stowage.Options{RecordPulls: on})
			e.image(b, "app", "v1")
			ctx := stowage.WithActor(context.Background(), stowage.Actor{Name: "bob", Method: "GET"})
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := e.reg.GetManifest(ctx, "app", stowage.Reference{Tag: "v1"}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
