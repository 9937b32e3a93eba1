package webhook_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/feed"
	"github.com/stowage/stowage/meta/postgres"
	"github.com/stowage/stowage/meta/postgres/pgtest"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/storage/crypt"
	"github.com/stowage/stowage/storage/fs"
	"github.com/stowage/stowage/webhook"
)

// receiver is a real HTTP server on 127.0.0.1 that records what it is sent.
// While down, it answers 503 (or, with refuse, closes the connection).
type receiver struct {
	t    *testing.T
	srv  *http.Server
	URL  string
	mu   sync.Mutex
	got  []delivery
	down bool
	// failOnce: tags whose first delivery is answered 500.
	failOnce map[string]bool
}

type delivery struct {
	header http.Header
	body   []byte
	p      webhook.Payload
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{t: t}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.URL = "http://" + ln.Addr().String() + "/hook"
	r.srv = &http.Server{Handler: r}
	go r.srv.Serve(ln)
	t.Cleanup(func() { r.srv.Close() })
	return r
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	var p webhook.Payload
	if err := json.Unmarshal(b, &p); err != nil {
		r.t.Errorf("receiver: body is not a payload: %v: %s", err, b)
	}
	if r.failOnce[p.Target.Tag] {
		delete(r.failOnce, p.Target.Tag)
		http.Error(w, "flaky", http.StatusInternalServerError)
		return
	}
	r.got = append(r.got, delivery{req.Header.Clone(), b, p})
	w.WriteHeader(http.StatusOK)
}

func (r *receiver) setDown(d bool) {
	r.mu.Lock()
	r.down = d
	r.mu.Unlock()
}

func (r *receiver) deliveries() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.got...)
}

// waitFor waits (bounded) until the receiver holds at least n deliveries.
func (r *receiver) waitFor(n int) []delivery {
	r.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if got := r.deliveries(); len(got) >= n {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
	got := r.deliveries()
	r.t.Fatalf("receiver got %d deliveries, want %d", len(got), n)
	return nil
}

type env struct {
	t    *testing.T
	ctx  context.Context
	dir  string
	db   stowage.DB
	reg  *stowage.Registry
	feed *feed.Feed
	keys webhook.Keyring
	svc  *webhook.Service
	stop func()
}

// openDB opens the metadata database of a test: SQLite in dir, or, when
// the test runs under TestPostgres, a PostgreSQL schema of its own.
type openDB func(t *testing.T, dir string) stowage.DB

func openSQLite(t *testing.T, dir string) stowage.DB {
	db, err := sqlite.Open(context.Background(), filepath.Join(dir, "stowage.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func newEnv(t *testing.T, withKeys bool) *env { return newEnvOn(t, withKeys, openSQLite) }

func newEnvOn(t *testing.T, withKeys bool, open openDB) *env {
	ctx := context.Background()
	dir := t.TempDir()
	db := open(t, dir)
	store, err := fs.New(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	// Changes made as a request would: an actor with a request ID.
	ctx = stowage.WithActor(ctx, stowage.Actor{Name: "alice", Addr: "127.0.0.1", RequestID: "req-1", Method: "PUT", Host: "x", UserAgent: "test-agent/1"})
	e := &env{t: t, ctx: ctx, dir: dir, db: db, reg: stowage.NewRegistry(db, store, stowage.Options{})}
	fst, _ := feed.Of(db)
	cursors, _ := feed.CursorsOf(db)
	e.feed = feed.New(fst, feed.Options{Poll: 10 * time.Millisecond, Cursors: cursors})
	if withKeys {
		ring, err := crypt.OpenFileKeyring(filepath.Join(dir, "keys.json"), true)
		if err != nil {
			t.Fatal(err)
		}
		e.keys = ring
	}
	e.svc = e.service()
	return e
}

func (e *env) service() *webhook.Service {
	svc, err := webhook.New(e.db, e.feed, webhook.Options{Keys: e.keys, Region: "test-region", Host: "registry.test",
		Timeout: 2 * time.Second, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, Poll: time.Second, Sync: 50 * time.Millisecond})
	if err != nil {
		e.t.Fatal(err)
	}
	return svc
}

// run starts deliveries; the returned function stops them and waits.
func (e *env) run(svc *webhook.Service) func() {
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan struct{})
	go func() { defer close(done); svc.Run(ctx) }()
	stop := func() { cancel(); <-done }
	e.t.Cleanup(stop)
	return stop
}

func digestOf(b []byte) stowage.Digest {
	s := sha256.Sum256(b)
	return stowage.Digest("sha256:" + hex.EncodeToString(s[:]))
}

func (e *env) push(repo, tag string) stowage.Digest {
	e.t.Helper()
	config := []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","tag":%q,"repo":%q}`, tag, repo))
	layer := []byte("layer of " + repo + ":" + tag)
	for _, b := range [][]byte{config, layer} {
		if _, err := e.reg.PutBlob(e.ctx, repo, digestOf(b), bytes.NewReader(b), int64(len(b))); err != nil {
			e.t.Fatal(err)
		}
	}
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`,
		stowage.MediaTypeOCIManifest, digestOf(config), len(config), digestOf(layer), len(layer))
	res, err := e.reg.PutManifest(e.ctx, repo, stowage.Reference{Tag: tag}, stowage.MediaTypeOCIManifest, []byte(m), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return res.Digest
}

func ptr[T any](v T) *T { return &v }

// verify checks a delivery's signature with an implementation of its own
// (not webhook.Sign): HMAC-SHA256 of "<timestamp>.<body>".
func verify(secret string, d delivery) error {
	ts := d.header.Get("X-Stowage-Timestamp")
	sig, ok := strings.CutPrefix(d.header.Get("X-Stowage-Signature"), "sha256=")
	if ts == "" || !ok {
		return errors.New("no timestamp or signature header")
	}
	if sec, err := strconv.ParseInt(ts, 10, 64); err != nil || time.Since(time.Unix(sec, 0)).Abs() > 5*time.Minute {
		return fmt.Errorf("timestamp %q is not within 5 minutes of now", ts)
	}
	mac := hmac.New(sha256.New, []byte(secret))
	io.WriteString(mac, ts+".")
	mac.Write(d.body)
	want := mac.Sum(nil)
	got, err := hex.DecodeString(sig)
	if err != nil || !hmac.Equal(got, want) {
		return fmt.Errorf("signature %s does not verify", sig)
	}
	return nil
}

// TestPayloadPerAction drives real changes through the engine (push, lock,
// untag, delete, retention, purge, repository delete) and checks what the
// receiver gets for each: ACR's fields, the region, a signature that an
// independent HMAC verifies.
func TestPayloadPerAction(t *testing.T) {
	t.Parallel()
	testPayloadPerAction(t, openSQLite)
}

func testPayloadPerAction(t *testing.T, open openDB) {
	e := newEnvOn(t, true, open)
	rcv := newReceiver(t)
	const secret = "hook-secret-5b1f"
	e.push("before/created", "v0") // before the webhook: not sent
	if _, err := e.svc.Create(e.ctx, "all", webhook.Spec{URI: &rcv.URL, Actions: []string{"*"}, Secret: ptr(secret),
		Headers: map[string]string{"Authorization": "Bearer tok-9f2e"}}); err != nil {
		t.Fatal(err)
	}
	e.run(e.svc)

	v1 := e.push("app", "v1")
	if _, err := e.reg.SetLocks(e.ctx, "app", stowage.Reference{Tag: "v1"}, stowage.LockDelete, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.SetLocks(e.ctx, "app", stowage.Reference{Tag: "v1"}, 0, stowage.LockDelete); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.Untag(e.ctx, "app", "v1", false); err != nil {
		t.Fatal(err)
	}
	v2 := e.push("app", "v2")
	if _, err := e.reg.DeleteImage(e.ctx, "app", stowage.Reference{Digest: v2}, false); err != nil {
		t.Fatal(err)
	}
	pol := policy.New(e.reg)
	if err := pol.SetRetention(e.ctx, policy.Retention{Enabled: true, Days: 0}); err != nil {
		t.Fatal(err)
	}
	if run, err := pol.ApplyRetention(context.Background(), false); err != nil || run.Manifests != 1 {
		t.Fatalf("retention: %+v, %v (want the untagged v1 deleted)", run, err)
	}
	pr := e.push("app", "pr-7")
	f, _ := stowage.ParsePurgeFilter("app:pr-.*")
	if run, err := pol.Purge(context.Background(), policy.PurgeOptions{Filters: []stowage.PurgeFilter{f}, Untagged: true}); err != nil || run.Tags != 1 {
		t.Fatalf("purge: %+v, %v", run, err)
	}
	e.push("gone", "x")
	if _, err := e.reg.DeleteRepository(e.ctx, "gone", false); err != nil {
		t.Fatal(err)
	}

	type want struct {
		action, repo, tag string
		digest            stowage.Digest
		reason, method    string
	}
	wants := []want{
		{"push", "app", "v1", v1, "", "PUT"},
		{"lock", "app", "v1", "", "", "PATCH"},
		{"lock", "app", "v1", "", "", "PATCH"},
		{"untag", "app", "v1", v1, "user", "DELETE"},
		{"push", "app", "v2", v2, "", "PUT"},
		{"delete", "app", "", v2, "user", "DELETE"},
		{"delete", "app", "", v1, "retention", ""},
		{"push", "app", "pr-7", pr, "", "PUT"},
		{"untag", "app", "pr-7", pr, "purge", ""},
		{"delete", "app", "", pr, "purge", ""},
		{"push", "gone", "x", "", "", "PUT"},
		{"repository.delete", "gone", "", "", "user", "DELETE"},
	}
	got := rcv.waitFor(len(wants))
	time.Sleep(100 * time.Millisecond)
	if got = rcv.deliveries(); len(got) != len(wants) {
		for _, d := range got {
			t.Logf("got %s", d.body)
		}
		t.Fatalf("got %d deliveries, want %d", len(got), len(wants))
	}
	ids := map[string]bool{}
	lastSeq := int64(0)
	for i, w := range wants {
		d := got[i]
		p := d.p
		if p.Action != w.action || p.Target.Repository != w.repo || p.Target.Tag != w.tag || w.digest != "" && p.Target.Digest != string(w.digest) ||
			p.Reason != w.reason || p.Request.Method != w.method {
			t.Errorf("delivery %d = %s\nwant %+v", i, d.body, w)
		}
		if p.Action == "push" && (p.Target.MediaType != stowage.MediaTypeOCIManifest || p.Target.Size == 0 || p.Target.Length != p.Target.Size) {
			t.Errorf("push target: %s", d.body)
		}
		if p.Request.Method != "" && (p.Request.Host != "registry.test" || p.Request.ID != "req-1" || p.Request.UserAgent != "test-agent/1" || p.Actor == nil || p.Actor.Name != "alice") {
			t.Errorf("request.host: %s", d.body)
		}
		if p.Source.Region != "test-region" || p.ID == "" || ids[p.ID] || p.Timestamp.IsZero() {
			t.Errorf("id, timestamp or source: %s", d.body)
		}
		ids[p.ID] = true
		if d.header.Get("X-Stowage-Event-Id") != p.ID || d.header.Get("Authorization") != "Bearer tok-9f2e" || d.header.Get("Content-Type") != "application/json" {
			t.Errorf("headers of delivery %d: %v", i, d.header)
		}
		seq, _ := strconv.ParseInt(d.header.Get("X-Stowage-Event-Seq"), 10, 64)
		if seq <= lastSeq {
			t.Errorf("delivery %d: seq %d after %d: out of order", i, seq, lastSeq)
		}
		lastSeq = seq
		if err := verify(secret, d); err != nil {
			t.Errorf("delivery %d: %v", i, err)
		}
		if verify("another-secret", d) == nil {
			t.Errorf("delivery %d verifies with the wrong secret", i)
		}
		tampered := d
		tampered.body = bytes.Replace(d.body, []byte(`"app"`), []byte(`"evil"`), 1)
		if w.repo == "app" && verify(secret, tampered) == nil {
			t.Errorf("delivery %d: a changed body still verifies", i)
		}
	}
	// The log has every attempt, newest first.
	ds := waitLog(e, "all", len(wants))
	if len(ds) != len(wants) || ds[0].Action != "repository.delete" || ds[0].Status != 200 || ds[0].Error != "" {
		t.Fatalf("delivery log: %+v", ds)
	}
	_, st, err := e.svc.Show(e.ctx, "all")
	if err != nil || st.Delivered != int64(len(wants)) || st.Pending != 0 {
		t.Fatalf("status: %+v, %v", st, err)
	}
	if c := e.svc.Stats()["all"]; c.Delivered != int64(len(wants)) || c.FailedAttempts != 0 {
		t.Fatalf("Stats: %+v", c)
	}
}

// TestReceiverDownThenUp: a receiver that is down for a while gets every
// event afterwards, in order per repository, none lost.
func TestReceiverDownThenUp(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	rcv := newReceiver(t)
	rcv.setDown(true)
	if _, err := e.svc.Create(e.ctx, "ci", webhook.Spec{URI: &rcv.URL, Actions: []string{"push"}}); err != nil {
		t.Fatal(err)
	}
	e.run(e.svc)
	const n = 12
	for i := range n {
		e.push([]string{"a", "b", "c"}[i%3], "t"+strconv.Itoa(i))
	}
	// Failing attempts are logged and retried with backoff.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ds, _ := e.svc.Deliveries(e.ctx, "ci", 0)
		if len(ds) >= 3 {
			if ds[0].Status != 503 || ds[0].Error == "" || ds[0].Attempt < 2 {
				t.Fatalf("failed attempt: %+v", ds[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no failed attempts recorded while the receiver is down")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := rcv.deliveries(); len(got) != 0 {
		t.Fatalf("delivered while down: %d", len(got))
	}
	rcv.setDown(false)
	got := rcv.waitFor(n)
	checkAll(t, got, n, 0)
}

// TestFlakyReceiver: a receiver that fails some events once, in the middle
// of a page, gets each event exactly once, in order: the retry resends from
// the failed event, not the page's events already delivered.
func TestFlakyReceiver(t *testing.T) {
	t.Parallel()
	testFlakyReceiver(t, openSQLite)
}

func testFlakyReceiver(t *testing.T, open openDB) {
	e := newEnvOn(t, false, open)
	rcv := newReceiver(t)
	rcv.failOnce = map[string]bool{"t2": true, "t5": true, "t6": true}
	if _, err := e.svc.Create(e.ctx, "ci", webhook.Spec{URI: &rcv.URL, Actions: []string{"push"}}); err != nil {
		t.Fatal(err)
	}
	const n = 9 // one page
	for i := range n {
		e.push("app", "t"+strconv.Itoa(i))
	}
	e.run(e.svc)
	rcv.waitFor(n)
	time.Sleep(100 * time.Millisecond)
	got := rcv.deliveries()
	checkAll(t, got, n, 0)
	for i, d := range got {
		if d.p.Target.Tag != "t"+strconv.Itoa(i) {
			t.Errorf("delivery %d: %s, want t%d", i, d.p.Target.Tag, i)
		}
	}
	ds := waitLog(e, "ci", n+3)
	if len(ds) != n+3 {
		t.Errorf("log: %d attempts, want %d", len(ds), n+3)
	}
}

// checkAll checks that deliveries hold events 1..n of pushes exactly once
// each, apart from at most dups duplicates, and in order per repository.
func checkAll(t *testing.T, got []delivery, n, dups int) {
	t.Helper()
	seen := map[string]int{}
	last := map[string]int64{}
	for _, d := range got {
		seen[d.p.Target.Tag]++
		seq, _ := strconv.ParseInt(d.header.Get("X-Stowage-Event-Seq"), 10, 64)
		if seen[d.p.Target.Tag] == 1 && seq < last[d.p.Target.Repository] {
			t.Errorf("%s:%s (seq %d) arrived after seq %d of its repository", d.p.Target.Repository, d.p.Target.Tag, seq, last[d.p.Target.Repository])
		}
		last[d.p.Target.Repository] = max(last[d.p.Target.Repository], seq)
	}
	extra := 0
	for i := range n {
		c := seen["t"+strconv.Itoa(i)]
		if c == 0 {
			t.Errorf("event of t%d lost", i)
		}
		extra += max(c-1, 0)
	}
	if extra > dups {
		t.Errorf("%d duplicate deliveries, want at most %d", extra, dups)
	}
	t.Logf("%d deliveries of %d events: %d duplicates", len(got), n, extra)
}

// TestRestartMidStream: deliveries stopped with events pending (the
// receiver slow, a page in flight) resume after a restart from the cursor:
// every event is delivered; duplicates only of the page in flight.
func TestRestartMidStream(t *testing.T) {
	t.Parallel()
	testRestartMidStream(t, openSQLite)
}

func testRestartMidStream(t *testing.T, open openDB) {
	e := newEnvOn(t, false, open)
	var slow sync.Mutex // held: the receiver blocks
	rcv := newReceiver(t)
	block := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		slow.Lock()
		slow.Unlock()
		rcv.ServeHTTP(w, r)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go block.Serve(ln)
	t.Cleanup(func() { block.Close() })
	uri := "http://" + ln.Addr().String() + "/hook"
	if _, err := e.svc.Create(e.ctx, "ci", webhook.Spec{URI: &uri, Actions: []string{"push"}}); err != nil {
		t.Fatal(err)
	}
	const n = 30
	for i := range n {
		e.push([]string{"a", "b"}[i%2], "t"+strconv.Itoa(i))
	}
	stop := e.run(e.svc)
	rcv.waitFor(10)
	slow.Lock() // the next delivery hangs: stop with it in flight
	time.Sleep(50 * time.Millisecond)
	stop()
	slow.Unlock() // the request in flight reaches the receiver after all
	time.Sleep(50 * time.Millisecond)
	before := len(rcv.deliveries())
	if before >= n {
		t.Fatalf("all %d delivered before the stop; the test needs events pending", before)
	}
	c, _, _ := mustCursor(t, e)
	t.Logf("stopped after %d deliveries, cursor at %d", before, c)

	// A new service over the same database: a restarted server.
	e.run(e.service())
	got := rcv.waitFor(n)
	time.Sleep(100 * time.Millisecond)
	got = rcv.deliveries()
	// Duplicates: only the events of the page in flight that had been
	// delivered before the stop (those after the saved cursor).
	checkAll(t, got, n, webhook.PageSize)
	c2, _, _ := mustCursor(t, e)
	if dup := len(got) - n; dup > before-int(c) || c2 < int64(n) {
		t.Errorf("%d duplicates with %d delivered and the cursor at %d before the restart; cursor now %d", dup, before, c, c2)
	}
}

func mustCursor(t *testing.T, e *env) (int64, bool, error) {
	cs, _ := feed.CursorsOf(e.db)
	c, ok, err := cs.Cursor(e.ctx, webhook.CursorName("ci"))
	if err != nil || !ok {
		t.Fatalf("cursor: %v, %v", ok, err)
	}
	return c.Seq, ok, err
}

// TestScope: which events a scope lets through.
func TestScope(t *testing.T) {
	t.Parallel()
	push := func(repo, tag string) stowage.Event {
		return stowage.Event{Kind: stowage.EventPush, Repo: repo, Tag: tag}
	}
	del := stowage.Event{Kind: stowage.EventDelete, Repo: "app", Digest: "sha256:x", Reason: "user", Detail: `{"tags":["v1","stable"]}`}
	for _, tc := range []struct {
		scope string
		e     stowage.Event
		want  bool
	}{
		{"", push("any/thing", "v1"), true},
		{"*", push("x", ""), true},
		{"app:*", push("app", "v1"), true},
		{"app:*", push("app", ""), true},
		{"app:*", push("app2", "v1"), false},
		{"app:v1", push("app", "v1"), true},
		{"app:v1", push("app", "v2"), false},
		{"app:v1", push("app", ""), false},
		{"app", push("app", "latest"), true}, // ACR: app = app:latest
		{"app", push("app", "v1"), false},
		{"app*", push("app-web", "latest"), true},
		{"team/*:*", push("team/a/b", "x"), true},
		{"team/*:*", push("other/a", "x"), false},
		{"app:v1.*", push("app", "v1.2.3"), true},
		{"app:v1.*", push("app", "v10"), false},
		{"app:stable", del, true},
		{"app:v2", del, false},
		{"app:v2", stowage.Event{Kind: stowage.EventRepositoryDelete, Repo: "app"}, true},
		{"other:*", stowage.Event{Kind: stowage.EventRepositoryDelete, Repo: "app"}, false},
		{"app:v1", stowage.Event{Kind: stowage.EventPush, Repo: "app", Tag: "a", Detail: `{"tags":["a","v1"]}`}, true},
	} {
		s, err := webhook.ParseScope(tc.scope)
		if err != nil {
			t.Fatalf("ParseScope(%q): %v", tc.scope, err)
		}
		if got := webhook.Matches(webhook.Actions, s, tc.e); got != tc.want {
			t.Errorf("scope %q, %s %s:%s: %t, want %t", tc.scope, tc.e.Kind, tc.e.Repo, tc.e.Tag, got, tc.want)
		}
	}
	for _, bad := range []string{"app:", ":v1", "app@sha256:x", "a b"} {
		if _, err := webhook.ParseScope(bad); err == nil {
			t.Errorf("ParseScope(%q) accepted", bad)
		}
	}
	// Actions filter too; retention deletes only with "retention".
	ret := stowage.Event{Kind: stowage.EventDelete, Repo: "app", Reason: stowage.ReasonRetention}
	all, _ := webhook.ParseScope("")
	if webhook.Matches([]webhook.Action{webhook.ActionDelete}, all, ret) || !webhook.Matches([]webhook.Action{webhook.ActionRetain}, all, ret) {
		t.Error("a retention delete: sent to delete, or not to retention")
	}
	if webhook.Matches(webhook.Actions, all, stowage.Event{Kind: stowage.EventDelete, Repo: "app", Reason: stowage.ReasonExpiry}) {
		t.Error("a recycle bin expiry was sent")
	}
}

// TestScopeDelivery: a scoped webhook next to an unscoped one.
func TestScopeDelivery(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	scoped, all := newReceiver(t), newReceiver(t)
	if _, err := e.svc.Create(e.ctx, "scoped", webhook.Spec{URI: &scoped.URL, Actions: []string{"push"}, Scope: ptr("web/*:v*")}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Create(e.ctx, "all", webhook.Spec{URI: &all.URL, Actions: []string{"push", "untag"}}); err != nil {
		t.Fatal(err)
	}
	e.run(e.svc)
	e.push("web/front", "v1")
	e.push("web/front", "latest")
	e.push("api", "v1")
	e.push("web/back", "v2")
	if _, err := e.reg.Untag(e.ctx, "web/back", "v2", false); err != nil {
		t.Fatal(err)
	}
	all.waitFor(5)
	got := scoped.waitFor(2)
	time.Sleep(100 * time.Millisecond)
	if got = scoped.deliveries(); len(got) != 2 || got[0].p.Target.Repository != "web/front" || got[1].p.Target.Repository != "web/back" {
		t.Fatalf("scoped got %d deliveries", len(got))
	}
}

// TestSecretsNotInPlaintext: the secret and header values are in no file of
// the data directory, not in the API's view, not in the change feed.
func TestSecretsNotInPlaintext(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	rcv := newReceiver(t)
	secret, token := "s3cr3t-b8d1f0a7c2", "tok-e41c9a77d05b"
	if _, err := e.svc.Create(e.ctx, "ci", webhook.Spec{URI: &rcv.URL, Actions: []string{"push"}, Secret: &secret,
		Headers: map[string]string{"authorization": "Bearer " + token}}); err != nil {
		t.Fatal(err)
	}
	// Update the URI only: the sealed secrets stay; then the secret only.
	if w, err := e.svc.Update(e.ctx, "ci", webhook.Spec{URI: &rcv.URL}); err != nil || !w.HasSecret || w.Headers["Authorization"] != "set" {
		t.Fatalf("update of the URI only: %+v, %v (the secret and header must stay set)", w, err)
	}
	secret2 := secret + "-2"
	if _, err := e.svc.Update(e.ctx, "ci", webhook.Spec{Secret: &secret2}); err != nil {
		t.Fatal(err)
	}
	e.run(e.svc)
	e.push("app", "v1")
	d := rcv.waitFor(1)[0]
	if err := verify(secret2, d); err != nil || d.header.Get("Authorization") != "Bearer "+token {
		t.Fatalf("after updating the secret: %v, Authorization %q", err, d.header.Get("Authorization"))
	}
	for _, s := range []string{secret, secret2, token} {
		filepath.Walk(e.dir, func(path string, fi os.FileInfo, err error) error {
			if err != nil || fi.IsDir() {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s holds %q in the clear", path, s)
			}
			return nil
		})
	}
	hs, _ := e.svc.List(e.ctx)
	h, st, _ := e.svc.Show(e.ctx, "ci")
	ds, _ := e.svc.Deliveries(e.ctx, "ci", 0)
	b, _ := json.Marshal([]any{hs, h, st, ds})
	for _, s := range []string{secret, secret2, token} {
		if bytes.Contains(b, []byte(s)) {
			t.Errorf("the API's view holds %q: %s", s, b)
		}
	}
	if !h.HasSecret || h.Headers["Authorization"] != "set" {
		t.Errorf("show: %+v", h)
	}
	p, _ := e.feed.Read(e.ctx, feed.Query{Limit: feed.MaxLimit})
	b, _ = json.Marshal(p)
	if bytes.Contains(b, []byte(secret)) || bytes.Contains(b, []byte(token)) {
		t.Errorf("the change feed holds a secret: %s", b)
	}
	// Deleting the webhook deletes its sealing key and cursor.
	if err := e.svc.Delete(e.ctx, "ci"); err != nil {
		t.Fatal(err)
	}
	cs, _ := feed.CursorsOf(e.db)
	if _, ok, _ := cs.Cursor(e.ctx, webhook.CursorName("ci")); ok {
		t.Error("the cursor outlived its webhook")
	}
}

// TestNoKeyring: without an encryption key a webhook cannot keep secrets.
func TestNoKeyring(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	uri := "http://127.0.0.1:9/x"
	_, err := e.svc.Create(e.ctx, "ci", webhook.Spec{URI: &uri, Actions: []string{"push"}, Secret: ptr("x")})
	if stowage.ErrorCodeOf(err) != stowage.CodeUnsupported || !strings.Contains(err.Error(), "encryption") {
		t.Fatalf("create with a secret and no keyring: %v", err)
	}
	if _, err := e.svc.Create(e.ctx, "ci", webhook.Spec{URI: &uri, Actions: []string{"push"}}); err != nil {
		t.Fatalf("create without secrets: %v", err)
	}
}

// TestValidation: bad names, URIs, actions and headers are refused.
func TestValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	good := "https://ci.example.com/hook"
	for _, tc := range []struct {
		name string
		sp   webhook.Spec
		want string
	}{
		{"bad name!", webhook.Spec{URI: &good, Actions: []string{"push"}}, "webhook name"},
		{"ci", webhook.Spec{Actions: []string{"push"}}, "service URI"},
		{"ci", webhook.Spec{URI: ptr("ftp://x/"), Actions: []string{"push"}}, "http"},
		{"ci", webhook.Spec{URI: ptr("https://u:p@x/"), Actions: []string{"push"}}, "credentials"},
		{"ci", webhook.Spec{URI: &good}, "action"},
		{"ci", webhook.Spec{URI: &good, Actions: []string{"pull"}}, "unknown webhook action"},
		{"ci", webhook.Spec{URI: &good, Actions: []string{"push"}, Scope: ptr("a:")}, "scope"},
		{"ci", webhook.Spec{URI: &good, Actions: []string{"push"}, Headers: map[string]string{"X-Stowage-Signature": "x"}}, "custom header"},
		{"ci", webhook.Spec{URI: &good, Actions: []string{"push"}, Headers: map[string]string{"X": "a\nb"}}, "line break"},
	} {
		_, err := e.svc.Create(e.ctx, tc.name, tc.sp)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("create %s %+v: %v, want %q", tc.name, tc.sp, err, tc.want)
		}
	}
	if _, err := e.svc.Create(e.ctx, "ci", webhook.Spec{URI: &good, Actions: []string{"tag-delete", "push"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Create(e.ctx, "ci", webhook.Spec{URI: &good, Actions: []string{"push"}}); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("second create: %v", err)
	}
	if _, err := e.svc.Update(e.ctx, "nope", webhook.Spec{}); stowage.ErrorCodeOf(err) != stowage.CodeNameUnknown {
		t.Errorf("update of a missing webhook: %v", err)
	}
}

// TestDisabled: a disabled webhook is sent nothing, and its cursor moves
// on: enabled again, it gets what happens from then on.
func TestDisabled(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	rcv := newReceiver(t)
	if _, err := e.svc.Create(e.ctx, "ci", webhook.Spec{URI: &rcv.URL, Actions: []string{"push"}, Enabled: ptr(false)}); err != nil {
		t.Fatal(err)
	}
	e.run(e.svc)
	e.push("app", "while-disabled")
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, st, _ := e.svc.Show(e.ctx, "ci")
		if st.Pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cursor of a disabled webhook did not move: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := e.svc.Update(e.ctx, "ci", webhook.Spec{Enabled: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	e.push("app", "after")
	got := rcv.waitFor(1)
	time.Sleep(100 * time.Millisecond)
	if got = rcv.deliveries(); len(got) != 1 || got[0].p.Target.Tag != "after" {
		t.Fatalf("deliveries: %d (first %+v)", len(got), got[0].p.Target)
	}
}

// TestPing: a ping is sent now, signed, and recorded; a receiver that is
// down is reported, not an error.
func TestPing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	rcv := newReceiver(t)
	if _, err := e.svc.Create(e.ctx, "ci", webhook.Spec{URI: &rcv.URL, Actions: []string{"push"}, Secret: ptr("k")}); err != nil {
		t.Fatal(err)
	}
	d, err := e.svc.Ping(e.ctx, "ci")
	if err != nil || d.Status != 200 || d.Error != "" {
		t.Fatalf("ping: %+v, %v", d, err)
	}
	got := rcv.deliveries()
	if len(got) != 1 || got[0].p.Action != "ping" || verify("k", got[0]) != nil {
		t.Fatalf("ping delivery: %+v", got)
	}
	rcv.setDown(true)
	if d, err := e.svc.Ping(e.ctx, "ci"); err != nil || d.Status != 503 || d.Error == "" {
		t.Fatalf("ping of a receiver that is down: %+v, %v", d, err)
	}
	if ds, _ := e.svc.Deliveries(e.ctx, "ci", 0); len(ds) != 2 {
		t.Fatalf("log: %+v", ds)
	}
}

// TestFellBehind: events deleted by the feed's retention by count before a
// webhook was sent them are reported in its log, and it goes on after them.
func TestFellBehind(t *testing.T) {
	t.Parallel()
	testFellBehind(t, openSQLite)
}

func testFellBehind(t *testing.T, open openDB) {
	e := newEnvOn(t, false, open)
	rcv := newReceiver(t)
	if _, err := e.svc.Create(e.ctx, "ci", webhook.Spec{URI: &rcv.URL, Actions: []string{"push"}}); err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		e.push("app", "t"+strconv.Itoa(i))
	}
	fst, _ := feed.Of(e.db)
	cursors, _ := feed.CursorsOf(e.db)
	if n, err := feed.New(fst, feed.Options{Retention: feed.Retention{MaxCount: 3}, Cursors: cursors}).Trim(e.ctx); err != nil || n != 3 {
		t.Fatalf("trim: %d, %v", n, err)
	}
	e.run(e.svc)
	got := rcv.waitFor(3)
	if got[0].p.Target.Tag != "t3" || got[2].p.Target.Tag != "t5" {
		t.Fatalf("after falling behind: %s ... %s, want t3 ... t5", got[0].p.Target.Tag, got[2].p.Target.Tag)
	}
	ds := waitLog(e, "ci", 4)
	if len(ds) != 4 || !strings.Contains(ds[3].Error, "events lost") || !strings.Contains(ds[3].Error, "events 1 to 3") {
		t.Fatalf("log: %+v", ds)
	}
}

// TestOneNodeDelivers: two services on one database (two nodes): one
// delivers (the job lock "webhooks"), each event once; when it stops, the
// other takes over from the cursor.
func TestOneNodeDelivers(t *testing.T) {
	t.Parallel()
	testOneNodeDelivers(t, openSQLite)
}

func testOneNodeDelivers(t *testing.T, open openDB) {
	e := newEnvOn(t, false, open)
	rcv := newReceiver(t)
	if _, err := e.svc.Create(e.ctx, "ci", webhook.Spec{URI: &rcv.URL, Actions: []string{"push"}}); err != nil {
		t.Fatal(err)
	}
	stopA := e.run(e.svc)
	// A takes the lock first (a fixed 100 ms sleep was not always enough
	// under -race on a loaded machine: B took it, and the test failed).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, st, _ := e.svc.Show(e.ctx, "ci"); st.Running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first node did not start delivering within 10 s")
		}
	}
	b := e.service()
	e.run(b)
	for i := range 5 {
		e.push("app", "t"+strconv.Itoa(i))
	}
	rcv.waitFor(5)
	if _, st, _ := b.Show(e.ctx, "ci"); st.Running || st.Delivered != 0 {
		t.Errorf("the second node delivers too: %+v", st)
	}
	stopA()
	for i := 5; i < 10; i++ {
		e.push("app", "t"+strconv.Itoa(i))
	}
	rcv.waitFor(10)
	time.Sleep(100 * time.Millisecond)
	checkAll(t, rcv.deliveries(), 10, 0)
	if _, st, _ := b.Show(e.ctx, "ci"); !st.Running || st.Delivered != 5 {
		t.Errorf("the second node did not take over: %+v", st)
	}
}

// TestKeyRotation: `stowage keys rotate` rewraps a webhook's sealing key
// with the other data keys (onto the new key version); its secrets still
// open.
func TestKeyRotation(t *testing.T) {
	t.Parallel()
	testKeyRotation(t, openSQLite)
}

func testKeyRotation(t *testing.T, open openDB) {
	e := newEnvOn(t, true, open)
	rcv := newReceiver(t)
	if _, err := e.svc.Create(e.ctx, "ci", webhook.Spec{URI: &rcv.URL, Actions: []string{"push"}, Secret: ptr("rot-secret")}); err != nil {
		t.Fatal(err)
	}
	ring := e.keys.(*crypt.FileKeyring)
	old, _ := ring.Current(e.ctx)
	p, err := crypt.NewManager(e.db.(crypt.KeyStore), ring).Rotate(e.ctx, crypt.RotateOptions{NewVersion: true})
	if err != nil || p.Rewrapped < 1 {
		t.Fatalf("rotate: %+v, %v (want the webhook's key rewrapped)", p, err)
	}
	var dk stowage.DataKey
	e.db.View(e.ctx, func(tx stowage.Tx) (err error) {
		ws, _ := webhook.Of(e.db)
		r, _ := ws.Webhook(e.ctx, "ci")
		dk, err = tx.DataKeys().GetDataKey(r.DataKey)
		return err
	})
	if dk.Wrapped == old || dk.Object != "webhook:ci" {
		t.Fatalf("the webhook's data key after rotation: wrapped by %s (old %s), object %q", dk.Wrapped, old, dk.Object)
	}
	svc := e.service() // a restarted server: nothing cached
	if d, err := svc.Ping(e.ctx, "ci"); err != nil || d.Error != "" || verify("rot-secret", rcv.deliveries()[0]) != nil {
		t.Fatalf("ping after rotation: %+v, %v", d, err)
	}
}

// TestPostgres runs the delivery tests on PostgreSQL (scripts/postgres-test.sh
// runs it; without a server it skips): its job lock, its serializable
// transactions for the delivery log, its feed sequencer.
func TestPostgres(t *testing.T) {
	pgtest.Server(t)
	open := func(t *testing.T, dir string) stowage.DB {
		db, err := postgres.Open(context.Background(), pgtest.Schema(t, "webhook_test"), postgres.Options{MaxConns: 8})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	for name, body := range map[string]func(*testing.T, openDB){
		"PayloadPerAction": testPayloadPerAction, "RestartMidStream": testRestartMidStream, "FlakyReceiver": testFlakyReceiver,
		"FellBehind": testFellBehind, "OneNodeDelivers": testOneNodeDelivers, "KeyRotation": testKeyRotation,
	} {
		t.Run(name, func(t *testing.T) { body(t, open) })
	}
}

// waitLog returns webhook name's delivery log once it has n entries, or
// after 10 s: a receiver gets a delivery before the delivery is logged.
func waitLog(e *env, name string, n int) []webhook.Delivery {
	var ds []webhook.Delivery
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		ds, _ = e.svc.Deliveries(e.ctx, name, 0)
		if len(ds) >= n || time.Now().After(deadline) {
			return ds
		}
	}
}
