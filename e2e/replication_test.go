package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// ---- geo-replication: three real regions on loopback ----

// proxy is a TCP proxy between regions that the test can cut (a network
// partition: connections open and new are dropped) and restore.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  map[net.Conn]bool
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { ln.Close(); p.setCut(true) })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *proxy) URL() string { return "http://" + p.ln.Addr().String() }

func (p *proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		c.Close()
		return false
	}
	p.conns[c] = true
	return true
}

func (p *proxy) serve(c net.Conn) {
	if !p.track(c) {
		return
	}
	u, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil || !p.track(u) {
		c.Close()
		return
	}
	go func() { io.Copy(u, c); u.Close() }()
	io.Copy(c, u)
	c.Close()
}

// setCut cuts (true) or restores (false) the link.
func (p *proxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			c.Close()
		}
		p.conns = map[net.Conn]bool{}
	}
}

// geoRegion is one region: a stowage serve with its own data directory and
// SQLite database, on a fixed port (so it comes back there after a kill),
// reached by each peer through a proxy of its own (links: the one a peer
// uses, by the peer's name), so that a region can be cut off both ways.
type geoRegion struct {
	name, dir, addr, cfg string
	env                  []string          // extra environment (north's database)
	links                map[string]*proxy // peer name → the proxy that peer reaches this region through
	srv                  *server
}

func (g *geoRegion) URL() string { return "http://" + g.addr }

func (g *geoRegion) start(t *testing.T) {
	t.Helper()
	s := &server{t: t, DataDir: g.dir, Addr: g.addr, URL: g.URL(), log: &syncBuffer{}, done: make(chan struct{})}
	s.cmd = exec.Command(binPath, "serve", "--addr", g.addr, "--data-dir", g.dir, "--config", g.cfg, "--log-level", "info")
	// Access control on: the region's own first admin, and the password of
	// the peers' replication user in the variable their configuration names.
	s.cmd.Env = append(serverEnv(), "STOWAGE_AUTH=on", "STOWAGE_ADMIN_PASSWORD="+geoPassword, "GEO_PEER_PASSWORD="+geoReplPassword)
	s.cmd.Env = append(s.cmd.Env, g.env...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.err = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		if t.Failed() && !s.exited() {
			// Its goroutines (a region that stopped answering shows
			// where it waits), in the whole log kept in a file.
			_ = s.cmd.Process.Signal(syscall.SIGQUIT)
			select {
			case <-s.done:
			case <-time.After(5 * time.Second):
			}
		}
		if !s.exited() {
			s.Stop()
		}
		if t.Failed() {
			kept := "not kept"
			if f, err := os.CreateTemp("", "stowage-geo-"+g.name+"-*.log"); err == nil {
				f.WriteString(s.log.String())
				f.Close()
				kept = f.Name()
			}
			t.Logf("region %s (pid %d) output (all of it: %s):\n%s", g.name, s.cmd.Process.Pid, kept, tail(s.log.String(), 3000))
		}
	})
	if err := s.waitReady(20 * time.Second); err != nil {
		s.Kill9()
		t.Fatalf("region %s: %v\n%s", g.name, err, tail(s.log.String(), 3000))
	}
	g.srv = s
}

// geoPassword is every region's admin password: the test's requests log in
// with it (Basic).
const geoPassword = "geo-admin-password-1"

// The regions log in to each other as geoReplUser, a user with only
// content/read, content/write, metadata/read (referrers read-through) and
// replication/apply on every repository
// (scope map geoReplScopeMap; docs/replication.md, "The peers' identity").
const (
	geoReplUser     = "repl"
	geoReplPassword = "geo-repl-password-1"
	geoReplScopeMap = "replication"
)

var geoReplAuth = map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(geoReplUser+":"+geoReplPassword))}

var geoAuth = "Basic " + base64.StdEncoding.EncodeToString([]byte("admin:"+geoPassword))

func withAuth(hdr map[string]string) map[string]string {
	h := map[string]string{"Authorization": geoAuth}
	for k, v := range hdr {
		h[k] = v
	}
	return h
}

// waitFor waits (20 s at most) until the admin's GET of path in g answers
// 200 with want in its body.
func waitFor(t *testing.T, g *geoRegion, path, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, err := geoDo(context.Background(), http.MethodGet, g.URL(), path, nil, nil)
		if err == nil && r.Status == http.StatusOK && strings.Contains(string(r.Body), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: GET %s: %v %v, want %s", g.name, path, r, err, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// backfillResult is what `replication backfill --output json` prints.
type backfillResult struct {
	Running   bool
	Checked   int
	Shipped   int
	Applied   int
	LastError string
}

var jsonHdr = map[string]string{"Content-Type": "application/json"}

func jsonOf(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func geoDo(ctx context.Context, method, base, url string, hdr map[string]string, body any) (response, error) {
	return do(ctx, method, base, url, withAuth(hdr), body)
}

func geoMustDo(t testing.TB, method, base, url string, hdr map[string]string, body any) response {
	t.Helper()
	return mustDo(t, method, base, url, withAuth(hdr), body)
}

// geoCLI runs the stowage CLI logged in as the admin.
func geoCLI(t testing.TB, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Env = append(serverEnv(), "STOWAGE_USERNAME=admin", "STOWAGE_PASSWORD="+geoPassword)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// startRegions starts three regions in a full mesh, each peer reached
// through a proxy of its own. The peers log in to each other as the
// least-privilege replication user, bootstrapped before the regions are
// joined (the documented way without an admin between regions): each
// region is started once without replication, gets the scope map and the
// user (same password everywhere) through its API, and is stopped; then
// it starts joined. The identities replicate like any (last writer wins),
// and since each region has the user before any peer logs in as it, no
// login ever fails (failed logins would trip the login limits).
func startRegions(t *testing.T) []*geoRegion {
	names := []string{"east", "west", "north"}
	rs := make([]*geoRegion, len(names))
	for i, n := range names {
		rs[i] = &geoRegion{name: n, dir: filepath.Join(t.TempDir(), n), addr: fmt.Sprintf("127.0.0.1:%d", freePort(t)), links: map[string]*proxy{}}
	}
	for _, g := range rs {
		for _, p := range rs {
			if p != g {
				g.links[p.name] = newProxy(t, g.addr)
			}
		}
	}
	// With a PostgreSQL server for the tests (scripts/postgres-test.sh),
	// north keeps its metadata there: regions on either database.
	if os.Getenv("STOWAGE_TEST_POSTGRES") != "" {
		rs[2].env = []string{"STOWAGE_DATABASE=" + pgSchema(t)}
		t.Logf("north's metadata: PostgreSQL")
	}
	var wg sync.WaitGroup
	for _, g := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bootstrapPeerIdentity(t, g)
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for _, g := range rs {
		var b strings.Builder
		// A region on PostgreSQL keeps the pool's default size: its job
		// locks (one per peer's replicator, the webhooks, the policy
		// runner) hold connections of their own, outside the pool (with
		// pooled ones, 4 held locks hung every request: meta/postgres
		// TestJobLocksLeaveThePool).
		fmt.Fprintf(&b, "replication:\n  region: %s\n  peers:\n", g.name)
		for _, p := range rs {
			if p != g {
				fmt.Fprintf(&b, "    - {name: %s, url: %s, username: %s, password_env: GEO_PEER_PASSWORD}\n", p.name, p.links[g.name].URL(), geoReplUser)
			}
		}
		g.cfg = filepath.Join(t.TempDir(), g.name+".yaml")
		if err := os.WriteFile(g.cfg, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		g.start(t)
	}
	return rs
}

// bootstrapPeerIdentity starts g without replication, makes the peers'
// scope map and user there, and stops it (called from a goroutine: it
// reports with t.Error).
func bootstrapPeerIdentity(t *testing.T, g *geoRegion) {
	g.cfg = filepath.Join(t.TempDir(), g.name+"-bootstrap.yaml")
	if err := os.WriteFile(g.cfg, []byte("auth: {enabled: true}\n"), 0o600); err != nil {
		t.Error(err)
		return
	}
	s := &server{t: t, DataDir: g.dir, Addr: g.addr, URL: g.URL(), log: &syncBuffer{}, done: make(chan struct{})}
	s.cmd = exec.Command(binPath, "serve", "--addr", g.addr, "--data-dir", g.dir, "--config", g.cfg, "--log-level", "warn")
	s.cmd.Env = append(append(serverEnv(), "STOWAGE_AUTH=on", "STOWAGE_ADMIN_PASSWORD="+geoPassword), g.env...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Error(err)
		return
	}
	go func() { s.err = s.cmd.Wait(); close(s.done) }()
	defer s.Stop()
	if err := s.waitReady(20 * time.Second); err != nil {
		t.Errorf("region %s (bootstrap): %v\n%s", g.name, err, tail(s.log.String(), 3000))
		return
	}
	ctx := context.Background()
	for _, c := range []struct {
		method, path string
		body         any
		want         int
	}{
		{http.MethodPut, "/api/v1/auth/scope-maps/" + geoReplScopeMap, map[string]any{"description": "a geo-replication peer",
			"rules": []map[string]any{{"repository": "*", "actions": []string{"content/read", "content/write", "metadata/read", "replication/apply"}}}}, http.StatusCreated},
		{http.MethodPost, "/api/v1/auth/users", map[string]any{"name": geoReplUser, "password": geoReplPassword, "scopeMap": geoReplScopeMap}, http.StatusCreated},
	} {
		r, err := geoDo(ctx, c.method, g.URL(), c.path, jsonHdr, jsonOf(c.body))
		if err != nil || r.Status != c.want {
			t.Errorf("region %s: bootstrap %s %s: %v %v, want %d", g.name, c.method, c.path, r, err, c.want)
			return
		}
	}
}

// partition cuts g off from every other region, both ways (cut true), or
// heals it.
func partition(rs []*geoRegion, g *geoRegion, cut bool) {
	for _, p := range rs {
		if p != g {
			p.links[g.name].setCut(cut) // g → p
			g.links[p.name].setCut(cut) // p → g
		}
	}
}

// geoImage pushes a two-blob image (config, layer) to repo:tag in region
// blobs, the manifest to region man (the same one, or another: a split
// push), and returns its digest, or the refusal.
func geoImage(base, manBase, repo, tag, seed string) (string, error) {
	ctx := context.Background()
	cfg := []byte(fmt.Sprintf(`{"seed":%q}`, seed))
	layer := []byte(strings.Repeat("layer "+seed+" ", 300))
	for _, b := range [][]byte{cfg, layer} {
		r, err := geoDo(ctx, http.MethodPost, base, "/v2/"+repo+"/blobs/uploads/?digest="+sha256Digest(b), nil, b)
		if err != nil {
			return "", err
		}
		if r.Status != http.StatusCreated {
			return "", fmt.Errorf("blob: %s", r)
		}
	}
	m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}`,
		sha256Digest(cfg), len(cfg), sha256Digest(layer), len(layer)))
	r, err := geoDo(ctx, http.MethodPut, manBase, "/v2/"+repo+"/manifests/"+tag, map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, m)
	if err != nil {
		return "", err
	}
	if r.Status != http.StatusCreated {
		return "", fmt.Errorf("manifest: %s", r)
	}
	return sha256Digest(m), nil
}

const acceptOCI = "application/vnd.oci.image.manifest.v1+json"

// headLocal returns the digest region g holds for repo:ref without
// read-through ("" if none): what replication has delivered.
func headLocal(g *geoRegion, repo, ref string) string {
	r, err := geoDo(context.Background(), http.MethodHead, g.URL(), "/v2/"+repo+"/manifests/"+ref, map[string]string{"Accept": acceptOCI, "Stowage-Replication": "1"}, nil)
	if err != nil || r.Status != http.StatusOK {
		return ""
	}
	return r.Header.Get("Docker-Content-Digest")
}

// tagMap is every repo:tag → digest a region holds (without read-through).
func tagMap(t *testing.T, g *geoRegion, repos []string) map[string]string {
	out := map[string]string{}
	for _, repo := range repos {
		var tl struct{ Tags []string }
		r := geoMustDo(t, http.MethodGet, g.URL(), "/v2/"+repo+"/tags/list", map[string]string{"Stowage-Replication": "1"}, nil)
		if r.Status == http.StatusNotFound {
			continue
		}
		json.Unmarshal(r.Body, &tl)
		for _, tag := range tl.Tags {
			out[repo+":"+tag] = headLocal(g, repo, tag)
		}
	}
	return out
}

// converge waits until every region holds the same tag map (and returns
// it), or fails after timeout.
func converge(t *testing.T, rs []*geoRegion, repos []string, timeout time.Duration) map[string]string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		maps := make([]map[string]string, len(rs))
		same := true
		for i, g := range rs {
			maps[i] = tagMap(t, g, repos)
			if i > 0 && fmt.Sprint(maps[i]) != fmt.Sprint(maps[0]) {
				same = false
			}
		}
		if same {
			return maps[0]
		}
		if time.Now().After(deadline) {
			for i, g := range rs {
				t.Errorf("%s: %v", g.name, maps[i])
			}
			t.Fatalf("regions did not converge within %v", timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestGeoReplication(t *testing.T) {
	needServer(t)
	top := t // a region restarted in a subtest lives as long as the test
	rs := startRegions(t)
	east, west, north := rs[0], rs[1], rs[2]
	ctx := context.Background()
	// Access control is on: the regions reach each other with the peers'
	// credentials, never anonymously.
	if r, err := do(ctx, http.MethodGet, east.URL(), "/v2/", nil, nil); err != nil || r.Status != http.StatusUnauthorized {
		t.Fatalf("anonymous GET /v2/ on east: %v %v, want 401", r, err)
	}

	t.Run("pull right after push elsewhere", func(t *testing.T) {
		const n = 30
		fails := 0
		for i := 0; i < n; i++ {
			src, dst := rs[i%3], rs[(i+1)%3]
			tag := fmt.Sprintf("p%d", i)
			d, err := geoImage(src.URL(), src.URL(), "pull", tag, tag)
			if err != nil {
				t.Fatal(err)
			}
			// At once, in another region: the manifest by tag, then its layer.
			r := geoMustDo(t, http.MethodGet, dst.URL(), "/v2/pull/manifests/"+tag, map[string]string{"Accept": acceptOCI}, nil)
			if r.Status != http.StatusOK || r.Header.Get("Docker-Content-Digest") != d {
				fails++
				t.Errorf("pull %s from %s right after the push to %s: %s", tag, dst.name, src.name, r)
				continue
			}
			var m struct{ Layers []struct{ Digest string } }
			json.Unmarshal(r.Body, &m)
			b := geoMustDo(t, http.MethodGet, dst.URL(), "/v2/pull/blobs/"+m.Layers[0].Digest, nil, nil)
			if b.Status != http.StatusOK || sha256Digest(b.Body) != m.Layers[0].Digest {
				fails++
				t.Errorf("layer of %s from %s: %d", tag, dst.name, b.Status)
			}
		}
		t.Logf("pull right after push in another region: %d/%d succeeded", n-fails, n)
	})

	t.Run("split push", func(t *testing.T) {
		for i, pair := range [][2]*geoRegion{{east, west}, {west, north}, {north, east}} {
			tag := fmt.Sprintf("s%d", i)
			d, err := geoImage(pair[0].URL(), pair[1].URL(), "split", tag, tag)
			if err != nil {
				t.Fatalf("blobs to %s, manifest to %s: %v", pair[0].name, pair[1].name, err)
			}
			if got := headLocal(pair[1], "split", tag); got != d {
				t.Errorf("%s holds split:%s at %q, want %s", pair[1].name, tag, got, d)
			}
		}
		converge(t, rs, []string{"split"}, 20*time.Second)
	})

	t.Run("users, tokens and scope maps everywhere", func(t *testing.T) {
		// A scope map and a token made in east, and a user.
		geoMustDo(t, http.MethodPut, east.URL(), "/api/v1/auth/scope-maps/geo-team", jsonHdr,
			jsonOf(map[string]any{"rules": []map[string]any{{"repository": "geo-team/*", "actions": []string{"content/read", "content/write"}}}}))
		r := geoMustDo(t, http.MethodPost, east.URL(), "/api/v1/auth/tokens", jsonHdr, jsonOf(map[string]any{"name": "geo-ci", "scopeMap": "geo-team"}))
		expect(t, "create the token in east", r, http.StatusCreated, "")
		var tok struct{ Passwords []struct{ Value string } }
		if err := json.Unmarshal(r.Body, &tok); err != nil || len(tok.Passwords) == 0 || tok.Passwords[0].Value == "" {
			t.Fatalf("token: %s", r)
		}
		tokAuth := map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("geo-ci:"+tok.Passwords[0].Value))}
		r = geoMustDo(t, http.MethodPost, east.URL(), "/api/v1/auth/users", jsonHdr, jsonOf(map[string]any{"name": "geo-bob", "password": "geo-bob-password-1"}))
		expect(t, "create the user in east", r, http.StatusCreated, "")
		bobAuth := map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("geo-bob:geo-bob-password-1"))}
		// Both log in in west and north, once there (waiting through the
		// admin API: failed logins would trip the login limits).
		for _, g := range []*geoRegion{west, north} {
			waitFor(t, g, "/api/v1/auth/tokens/geo-ci", `"enabled"`)
			waitFor(t, g, "/api/v1/auth/users/geo-bob", `"geo-bob"`)
			for _, who := range []map[string]string{tokAuth, bobAuth} {
				if r, err := do(ctx, http.MethodGet, g.URL(), "/v2/", who, nil); err != nil || r.Status != http.StatusOK {
					t.Fatalf("a login made in east does not work in %s: %v %v", g.name, r, err)
				}
			}
		}
		// The token's scope holds in west: a push to geo-team/* succeeds,
		// elsewhere it is refused.
		push := func(base, repo string) int {
			b := []byte("token-layer " + repo)
			r, err := do(ctx, http.MethodPost, base, "/v2/"+repo+"/blobs/uploads/?digest="+sha256Digest(b), tokAuth, b)
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != http.StatusCreated {
				return r.Status
			}
			m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[]}`, sha256Digest(b), len(b)))
			r, err = do(ctx, http.MethodPut, base, "/v2/"+repo+"/manifests/v1", map[string]string{"Authorization": tokAuth["Authorization"], "Content-Type": acceptOCI}, m)
			if err != nil {
				t.Fatal(err)
			}
			return r.Status
		}
		if st := push(west.URL(), "geo-team/app"); st != http.StatusCreated {
			t.Errorf("push with east's token to west geo-team/app: %d, want 201", st)
		}
		if st := push(west.URL(), "other/app"); st != http.StatusForbidden {
			t.Errorf("push with east's token to west other/app: %d, want 403", st)
		}
		// Disabled in west: refused in east (and north).
		r = geoMustDo(t, http.MethodPatch, west.URL(), "/api/v1/auth/tokens/geo-ci", jsonHdr, jsonOf(map[string]any{"status": "disabled"}))
		expect(t, "disable the token in west", r, http.StatusOK, "")
		for _, g := range []*geoRegion{east, north} {
			waitFor(t, g, "/api/v1/auth/tokens/geo-ci", `"disabled"`)
			if r, err := do(ctx, http.MethodGet, g.URL(), "/v2/", tokAuth, nil); err != nil || r.Status != http.StatusUnauthorized {
				t.Fatalf("the token disabled in west still works in %s: %v %v", g.name, r, err)
			}
		}
	})

	t.Run("least-privilege peer identity", func(t *testing.T) {
		// The identity the regions log in to each other with (everything
		// above and below replicated with it): no admin, content/read,
		// content/write and replication/apply on "*", the same record in
		// every region (made in each before they were joined, then
		// replicated: the last made won everywhere).
		var recs []string
		for _, g := range rs {
			r := geoMustDo(t, http.MethodGet, g.URL(), "/api/v1/auth/users/"+geoReplUser, nil, nil)
			var u struct {
				Admin    bool
				ScopeMap string
				Updated  string
			}
			if err := json.Unmarshal(r.Body, &u); err != nil || r.Status != http.StatusOK || u.Admin || u.ScopeMap != geoReplScopeMap {
				t.Fatalf("%s: user %s: %s, want a non-admin with scope map %s", g.name, geoReplUser, r, geoReplScopeMap)
			}
			recs = append(recs, fmt.Sprintf("%+v", u))
		}
		t.Logf("the peers' user in east, west, north: %v", recs)
		repl := geoReplAuth
		// What a replicator does at a peer: HEAD a blob, upload it, apply a
		// change (here a removal of a tag no region has: a tombstone).
		b := []byte("least privilege")
		r, err := do(ctx, http.MethodHead, west.URL(), "/v2/geo-team/app/blobs/"+sha256Digest(b), repl, nil)
		if err != nil || r.Status != http.StatusNotFound {
			t.Errorf("HEAD a blob as geo-repl: %v %v, want 404", r, err)
		}
		r, err = do(ctx, http.MethodPost, west.URL(), "/v2/geo-team/app/blobs/uploads/?digest="+sha256Digest(b), repl, b)
		if err != nil || r.Status != http.StatusCreated {
			t.Errorf("upload a blob as geo-repl: %v %v, want 201", r, err)
		}
		ch := jsonOf(map[string]any{"kind": "untag", "origin": "east", "repo": "geo-team/app", "tags": []string{"never-pushed"},
			"hlc": fmt.Sprintf("%d.0.east", time.Now().UnixMilli())})
		apply := func(who map[string]string) response {
			h := map[string]string{"Content-Type": "application/json"}
			for k, v := range who {
				h[k] = v
			}
			r, err := do(ctx, http.MethodPost, west.URL(), "/api/v1/replication/apply", h, ch)
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		if r := apply(repl); r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"applied"`) {
			t.Errorf("apply as geo-repl: %s, want 200", r)
		}
		// Not an admin: no status, no user management, no delete; a user
		// without replication/apply cannot apply.
		for _, c := range []struct{ method, path string }{
			{http.MethodGet, "/api/v1/replication/status"},
			{http.MethodGet, "/api/v1/auth/users"},
			{http.MethodDelete, "/v2/geo-team/app/manifests/v1"},
		} {
			if r, err := do(ctx, c.method, west.URL(), c.path, repl, nil); err != nil || r.Status != http.StatusForbidden {
				t.Errorf("%s %s as geo-repl: %v %v, want 403", c.method, c.path, r, err)
			}
		}
		bob := map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("geo-bob:geo-bob-password-1"))}
		if r := apply(bob); r.Status != http.StatusForbidden && r.Status != http.StatusUnauthorized {
			t.Errorf("apply as geo-bob (no replication/apply): %s, want refused", r)
		}
	})

	t.Run("concurrent tag moves converge", func(t *testing.T) {
		for round := 0; round < 5; round++ {
			var wg sync.WaitGroup
			for _, g := range []*geoRegion{east, west, north} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := geoImage(g.URL(), g.URL(), "race", "latest", fmt.Sprintf("%s-%d", g.name, round)); err != nil {
						t.Error(err)
					}
				}()
			}
			wg.Wait()
		}
		got := converge(t, rs, []string{"race"}, 20*time.Second)
		if got["race:latest"] == "" {
			t.Fatalf("race:latest is nowhere: %v", got)
		}
	})

	t.Run("concurrent lock changes converge", func(t *testing.T) {
		for round := 0; round < 3; round++ {
			var wg sync.WaitGroup
			for i, g := range rs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					// Each region flips a different attribute, all at once.
					flag := []string{"--delete", "--write", "--list"}[i] + fmt.Sprintf("=%t", round%2 == 1)
					if out, err := geoCLI(t, "lock", "race:latest", flag, "--registry", g.URL()); err != nil {
						t.Errorf("lock in %s: %v\n%s", g.name, err, out)
					}
				}()
			}
			wg.Wait()
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			var seen []string
			for _, g := range rs {
				out, _ := geoCLI(t, "lock", "race:latest", "--registry", g.URL(), "--output", "json")
				seen = append(seen, out)
			}
			if seen[0] == seen[1] && seen[1] == seen[2] && seen[0] != "" {
				got := strings.Join(strings.Fields(seen[0]), " ")
				t.Logf("locks of race:latest everywhere: %s", got)
				// Each region's last change (its own attribute off) stays:
				// none reverted another's.
				for _, a := range []string{"deleteEnabled", "writeEnabled", "listEnabled"} {
					if !strings.Contains(got, `"`+a+`": false`) {
						t.Errorf("%s is not false everywhere: a concurrent change of another attribute reverted it", a)
					}
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("locks did not converge: %q", seen)
			}
			time.Sleep(100 * time.Millisecond)
		}
		// Unlocked again, for what follows.
		for _, g := range rs {
			geoCLI(t, "lock", "race:latest", "--delete=true", "--write=true", "--list=true", "--registry", g.URL())
		}
	})

	t.Run("delete everywhere, not resurrected", func(t *testing.T) {
		d, err := geoImage(east.URL(), east.URL(), "del", "v1", "del")
		if err != nil {
			t.Fatal(err)
		}
		converge(t, rs, []string{"del"}, 20*time.Second)
		r := geoMustDo(t, http.MethodDelete, west.URL(), "/v2/del/manifests/"+d, nil, nil)
		expect(t, "delete in west", r, http.StatusAccepted, "")
		got := converge(t, rs, []string{"del"}, 20*time.Second)
		if len(got) != 0 {
			t.Fatalf("after the delete: %v", got)
		}
		time.Sleep(500 * time.Millisecond)
		for _, g := range rs { // with read-through: still gone
			for _, ref := range []string{"v1", d} {
				r := geoMustDo(t, http.MethodGet, g.URL(), "/v2/del/manifests/"+ref, map[string]string{"Accept": acceptOCI}, nil)
				expect(t, g.name+" GET del:"+ref+" after the delete", r, http.StatusNotFound, "MANIFEST_UNKNOWN")
			}
		}
	})

	t.Run("repository delete everywhere", func(t *testing.T) {
		for i := 0; i < 3; i++ {
			if _, err := geoImage(north.URL(), north.URL(), "gone", fmt.Sprintf("v%d", i), fmt.Sprintf("gone%d", i)); err != nil {
				t.Fatal(err)
			}
		}
		if got := converge(t, rs, []string{"gone"}, 20*time.Second); len(got) != 3 {
			t.Fatalf("before the delete: %v", got)
		}
		r := geoMustDo(t, http.MethodDelete, east.URL(), "/api/v1/repositories/gone", nil, nil)
		expect(t, "delete-repo in east", r, http.StatusOK, "")
		if got := converge(t, rs, []string{"gone"}, 20*time.Second); len(got) != 0 {
			t.Fatalf("after the repository delete: %v", got)
		}
		for _, g := range rs {
			r := geoMustDo(t, http.MethodGet, g.URL(), "/v2/_catalog", map[string]string{"Stowage-Replication": "1"}, nil)
			if strings.Contains(string(r.Body), `"gone"`) {
				t.Errorf("%s still lists repository gone: %s", g.name, r.Body)
			}
			r = geoMustDo(t, http.MethodGet, g.URL(), "/v2/gone/manifests/v1", map[string]string{"Accept": acceptOCI}, nil)
			if r.Status != http.StatusNotFound {
				t.Errorf("%s: GET gone:v1 after the repository delete: %s", g.name, r)
			}
		}
	})

	t.Run("kill -9 mid-replication", func(t *testing.T) {
		var acked sync.Map
		var n atomic.Int32
		push := func(from, to int) {
			for i := from; i < to; i++ {
				tag := fmt.Sprintf("k%d", i)
				d, err := geoImage(east.URL(), east.URL(), "kill", tag, tag)
				if err != nil {
					t.Error(err)
					return
				}
				acked.Store(tag, d)
				n.Add(1)
			}
		}
		push(0, 10)
		west.srv.Kill9() // while east ships to it
		push(10, 20)
		west.start(top)
		push(20, 25)
		got := converge(t, rs, []string{"kill"}, 30*time.Second)
		acked.Range(func(k, v any) bool {
			if got["kill:"+k.(string)] != v.(string) {
				t.Errorf("acknowledged push kill:%s = %s is %q after the restart", k, v, got["kill:"+k.(string)])
			}
			return true
		})
		if int(n.Load()) != len(got) {
			t.Errorf("%d pushes acknowledged, %d tags converged", n.Load(), len(got))
		}
	})

	t.Run("partition and heal", func(t *testing.T) {
		partition(rs, north, true)
		want := map[string]string{}
		for i := 0; i < 5; i++ {
			for _, g := range []*geoRegion{east, north} {
				tag := fmt.Sprintf("%s%d", g.name, i)
				d, err := geoImage(g.URL(), g.URL(), "part", tag, tag)
				if err != nil {
					t.Fatal(err)
				}
				want["part:"+tag] = d
			}
		}
		time.Sleep(time.Second)
		if d := headLocal(north, "part", "east0"); d != "" {
			t.Errorf("north holds part:east0 while partitioned")
		}
		partition(rs, north, false)
		got := converge(t, rs, []string{"part"}, 60*time.Second)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("after healing: %v, want %v", got, want)
		}
	})

	t.Run("everything at once", func(t *testing.T) { testEverythingAtOnce(t, top, rs) })

	t.Run("conflicts forced with a partition", func(t *testing.T) { testConflictProbes(t, rs) })

	t.Run("lag", func(t *testing.T) {
		var lags []time.Duration
		for i := 0; i < 20; i++ {
			tag := fmt.Sprintf("l%d", i)
			d, err := geoImage(east.URL(), east.URL(), "lag", tag, tag)
			if err != nil {
				t.Fatal(err)
			}
			acked := time.Now()
			for _, g := range []*geoRegion{west, north} {
				for headLocal(g, "lag", tag) != d {
					if time.Since(acked) > 20*time.Second {
						t.Fatalf("lag:%s not in %s after 20s", tag, g.name)
					}
					time.Sleep(5 * time.Millisecond)
				}
				lags = append(lags, time.Since(acked))
			}
		}
		sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
		// The first pull in another region right after the push (before
		// replication delivers it, that is read-through: the log says
		// which) against a pull of the same image where it is local.
		var through, local []time.Duration
		pull := func(g *geoRegion, tag string) time.Duration {
			start := time.Now()
			r := geoMustDo(t, http.MethodGet, g.URL(), "/v2/lag/manifests/"+tag, map[string]string{"Accept": acceptOCI}, nil)
			var m struct{ Config, Layers []struct{ Digest string } }
			json.Unmarshal(r.Body, &m)
			geoMustDo(t, http.MethodGet, g.URL(), "/v2/lag/blobs/"+m.Layers[0].Digest, nil, nil)
			return time.Since(start)
		}
		for i := 0; i < 10; i++ {
			tag := fmt.Sprintf("rt%d", i)
			if _, err := geoImage(north.URL(), north.URL(), "lag", tag, tag); err != nil {
				t.Fatal(err)
			}
			local = append(local, pull(north, tag))
			through = append(through, pull(west, tag))
		}
		med := func(d []time.Duration) time.Duration {
			sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
			return d[len(d)/2].Round(100 * time.Microsecond)
		}
		t.Logf("pull (manifest by tag + layer): local p50 %v, first pull in another region right after the push p50 %v", med(local), med(through))
		t.Logf("replication lag, acknowledgement in east to visible in west and north (%d samples): p50 %v, p99 %v, max %v",
			len(lags), lags[len(lags)/2].Round(time.Millisecond), lags[len(lags)*99/100].Round(time.Millisecond), lags[len(lags)-1].Round(time.Millisecond))
	})

	// Status: every peer caught up, through the CLI.
	out, err := geoCLI(t, "replication", "status", "--registry", east.URL(), "--output", "json")
	if err != nil {
		t.Fatalf("replication status: %v\n%s", err, out)
	}
	var st struct {
		Region string
		Peers  []struct {
			Name      string
			State     string
			LagEvents int64
		}
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Region != "east" || len(st.Peers) != 2 {
		t.Fatalf("status: %v\n%s", err, out)
	}
	for _, p := range st.Peers {
		if p.LagEvents != 0 || p.State != "shipping" {
			t.Errorf("peer %s: %+v after convergence", p.Name, p)
		}
	}
	m := geoMustDo(t, http.MethodGet, east.URL(), "/metrics", nil, nil)
	for _, want := range []string{`stowage_replication_lag_events{peer="west",region="east"} 0`, `stowage_replication_shipping{peer="north",region="east"} 1`, "stowage_blobs "} {
		if !strings.Contains(string(m.Body), want) {
			t.Errorf("GET /metrics lacks %q:\n%s", want, tail(string(m.Body), 2000))
		}
	}
	// A back-fill of a converged peer: everything checked, nothing lacking.
	r := geoMustDo(t, http.MethodPost, east.URL(), "/api/v1/replication/backfill?peer=west", nil, nil)
	expect(t, "back-fill west from east", r, http.StatusAccepted, "")
	var bf *backfillResult
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		var st struct {
			Peers []struct {
				Name     string
				Backfill *backfillResult
			}
		}
		r := geoMustDo(t, http.MethodGet, east.URL(), "/api/v1/replication/status", nil, nil)
		json.Unmarshal(r.Body, &st)
		for _, p := range st.Peers {
			if p.Name == "west" && p.Backfill != nil && !p.Backfill.Running {
				bf = p.Backfill
			}
		}
		if bf != nil {
			break
		}
	}
	if bf == nil || bf.Checked == 0 || bf.Applied != 0 || bf.LastError != "" {
		t.Errorf("back-fill of west (converged): %+v, want some checked, none applied, no error", bf)
	} else {
		t.Logf("back-fill of a converged peer: %+v", *bf)
	}
	out, err = geoCLI(t, "replication", "status", "--registry", east.URL())
	if err != nil || !strings.Contains(out, "back-fill of west: done") {
		t.Errorf("replication status after a back-fill: %v\n%s", err, out)
	} else {
		t.Logf("replication status after a back-fill:\n%s", out)
	}
	out, err = geoCLI(t, "replication", "status", "lag:l0", "--registry", west.URL())
	if err != nil || strings.Count(out, "sha256:") != 3 || strings.Count(out, " yes ") != 3 {
		t.Errorf("replication status lag:l0: %v\n%s", err, out)
	}
	_ = ctx
}
