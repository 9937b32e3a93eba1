package e2e

// Tests against registries no one here wrote (issue 17): Debian's
// docker-registry (CNCF distribution 2.8) with htpasswd (Basic) auth, and a
// second Stowage with access control on (the Docker token flow), as the
// source of `stowage import --from` and the upstream of pull-through cache
// rules. scripts/remote-test.sh runs them with
// STOWAGE_REQUIRE_DOCKER_REGISTRY=1.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/stowage/stowage/internal/testenv"
	"golang.org/x/crypto/bcrypt"
)

const distributionBin = "/usr/bin/docker-registry"

// distribution is a docker-registry child process.
type distribution struct {
	Addr string
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan struct{}
}

// startDistribution starts docker-registry on a free port with htpasswd
// auth (user, pass; none when user is ""), stopped by its PID in cleanup.
func startDistribution(t *testing.T, user, pass string) *distribution {
	t.Helper()
	needServer(t)
	if _, err := os.Stat(distributionBin); err != nil {
		testenv.Skip(t, "docker_registry", "e2e: "+distributionBin+" is not installed (apt-get install docker-registry)")
	}
	dir := t.TempDir()
	authCfg := ""
	if user != "" {
		h, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "htpasswd"), []byte(user+":"+string(h)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		authCfg = fmt.Sprintf("auth:\n  htpasswd:\n    realm: e2e\n    path: %s\n", filepath.Join(dir, "htpasswd"))
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
%s`, filepath.Join(dir, "data"), addr, authCfg)
	if err := os.WriteFile(filepath.Join(dir, "config.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	d := &distribution{Addr: addr, log: &syncBuffer{}, done: make(chan struct{})}
	d.cmd = exec.Command(distributionBin, "serve", filepath.Join(dir, "config.yml"))
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start docker-registry: %v", err)
	}
	go func() { d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		d.Stop()
		if t.Failed() {
			t.Logf("docker-registry (pid %d) output:\n%s", d.cmd.Process.Pid, tail(d.log.String(), 3000))
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 || resp.StatusCode == 401 {
				return d
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("docker-registry did not answer /v2/ within 15 s: %v\n%s", err, d.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop ends the process (by its PID) and waits.
func (d *distribution) Stop() {
	select {
	case <-d.done:
		return
	default:
	}
	d.cmd.Process.Kill()
	<-d.done
}

// multiPlatform returns a two-platform OCI index of random images.
func multiPlatform(t *testing.T) v1.ImageIndex {
	t.Helper()
	var idx v1.ImageIndex = empty.Index
	idx = mutate.IndexMediaType(idx, types.OCIImageIndex)
	for _, arch := range []string{"amd64", "arm64"} {
		img, err := random.Image(64<<10, 2)
		if err != nil {
			t.Fatal(err)
		}
		img = mutate.MediaType(img, types.OCIManifestSchema1)
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img,
			Descriptor: v1.Descriptor{MediaType: types.OCIManifestSchema1, Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	return idx
}

// sbomFor returns a small artifact whose subject is sub.
func sbomFor(t *testing.T, sub v1.Descriptor) v1.Image {
	t.Helper()
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, "application/vnd.example.sbom.v1+json")
	return mutate.Subject(img, sub).(v1.Image)
}

// pushWithReferrer pushes a two-platform index to ref and an SBOM that
// refers to it, and returns the index's and the SBOM's digests.
func pushWithReferrer(t *testing.T, ref name.Tag, opts ...remote.Option) (v1.ImageIndex, v1.Hash, v1.Hash) {
	t.Helper()
	idx := multiPlatform(t)
	if err := remote.WriteIndex(ref, idx, opts...); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	d := digestOf(t, idx)
	mt, _ := idx.MediaType()
	raw, _ := idx.RawManifest()
	sbom := sbomFor(t, v1.Descriptor{MediaType: mt, Digest: d, Size: int64(len(raw))})
	sd := digestOf(t, sbom)
	if err := remote.Write(ref.Context().Digest(sd.String()), sbom, opts...); err != nil {
		t.Fatalf("push the SBOM: %v", err)
	}
	return idx, d, sd
}

// stowageRun runs the stowage binary and returns stdout, stderr and the exit code.
func stowageRun(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binPath, args...)
	cmd.Env = serverEnv()
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(2*time.Minute, func() { cmd.Process.Kill() })
	err := cmd.Wait()
	timer.Stop()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

type importReport struct {
	Digest       string
	Manifests    int
	Referrers    int
	Blobs        int
	BlobsPresent int
}

// checkCopied checks that repo on s has the index, both platforms and the
// SBOM as a referrer of the index.
func checkCopied(t *testing.T, s *server, repo string, idx v1.ImageIndex, sbom v1.Hash, opts ...remote.Option) {
	t.Helper()
	r, err := name.NewRepository(s.Addr+"/"+repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	d := digestOf(t, idx)
	got, err := remote.Index(r.Digest(d.String()), opts...)
	if err != nil {
		t.Fatalf("the imported index %s: %v", d, err)
	}
	im, _ := idx.IndexManifest()
	for _, m := range im.Manifests {
		img, err := got.Image(m.Digest)
		if err != nil {
			t.Fatalf("platform %s: %v", m.Digest, err)
		}
		ls, _ := img.Layers()
		for _, l := range ls {
			if _, err := readAllLayer(l); err != nil {
				t.Fatalf("layer of %s: %v", m.Digest, err)
			}
		}
	}
	refs, err := remote.Referrers(r.Digest(d.String()), append(opts, remote.WithReferrersTagFallback(false))...)
	if err != nil {
		t.Fatal(err)
	}
	rm, _ := refs.IndexManifest()
	if len(rm.Manifests) != 1 || rm.Manifests[0].Digest != sbom {
		t.Errorf("referrers of the imported index: %+v, want the SBOM %s", rm.Manifests, sbom)
	}
}

func readAllLayer(l v1.Layer) (int64, error) {
	rc, err := l.Compressed()
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	var n int64
	buf := make([]byte, 32<<10)
	for {
		k, err := rc.Read(buf)
		n += int64(k)
		if err != nil {
			if err.Error() == "EOF" {
				return n, nil
			}
			return n, err
		}
	}
}

// TestImportFromDistribution: `stowage import --from` copies a two-platform
// index and its SBOM (which distribution 2.8 keeps under the referrers tag
// schema: it has no referrers API) from docker-registry with htpasswd
// auth; the digests are the source's.
func TestImportFromDistribution(t *testing.T) {
	const user, pass = "e2e-user", "e2e-dist-password"
	dist := startDistribution(t, user, pass)
	basic := remote.WithAuth(&authn.Basic{Username: user, Password: pass})
	src, err := name.NewTag(dist.Addr+"/src/app:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	idx, d, sbom := pushWithReferrer(t, src, basic)

	s := startServer(t, t.TempDir())
	from := dist.Addr + "/src/app:v1"
	// Without credentials: distribution refuses, and so does the import.
	if _, errOut, code := stowageRun(t, "", "import", "--registry", s.URL, "--from", from, "--plain-http"); code != 1 || !strings.Contains(errOut, "credentials") {
		t.Errorf("import without credentials: exit %d, %s", code, errOut)
	}
	out, errOut, code := stowageRun(t, pass+"\n", "import", "--registry", s.URL, "--from", from, "--to", "imported/app:v1",
		"--username", user, "--password-stdin", "--referrers", "--plain-http", "--output", "json")
	var rep importReport
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil {
		t.Fatalf("import: exit %d\n%s%s", code, out, errOut)
	}
	if rep.Digest != d.String() || rep.Manifests != 4 || rep.Referrers != 1 {
		t.Errorf("report %+v; want %s, 4 manifests (index, 2 images, SBOM), 1 referrer", rep, d)
	}
	checkCopied(t, s, "imported/app", idx, sbom)
	if strings.Contains(s.log.String(), pass) {
		t.Error("the server's log shows the source's password")
	}
	// Again, by digest: nothing is copied twice.
	out, errOut, code = stowageRun(t, pass, "import", "--registry", s.URL, "--from", dist.Addr+"/src/app@"+d.String(), "--to", "imported/app",
		"--username", user, "--password-stdin", "--referrers", "--plain-http", "--output", "json")
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || rep.Blobs != 0 || rep.BlobsPresent == 0 {
		t.Errorf("second import: exit %d %+v\n%s", code, rep, errOut)
	}
}

// TestImportFromTokenStowage: the source is a Stowage with access control
// on, so the import goes through the Docker token flow (401 with a Bearer
// challenge, a token from its realm with the credentials, per scope).
func TestImportFromTokenStowage(t *testing.T) {
	const adminPass = "e2e-token-admin-password"
	up := startServer(t, t.TempDir(), "STOWAGE_AUTH=on", "STOWAGE_ADMIN_PASSWORD="+adminPass)
	auth := remote.WithAuth(&authn.Basic{Username: "admin", Password: adminPass})
	src, err := name.NewTag(up.Addr+"/team/app:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	idx, d, sbom := pushWithReferrer(t, src, auth)

	s := startServer(t, t.TempDir())
	out, errOut, code := stowageRun(t, adminPass, "import", "--registry", s.URL, "--from", up.Addr+"/team/app:v1",
		"--username", "admin", "--password-stdin", "--referrers", "--plain-http", "--output", "json")
	var rep importReport
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || rep.Digest != d.String() || rep.Referrers != 1 {
		t.Fatalf("import: exit %d %+v\n%s%s", code, rep, out, errOut)
	}
	checkCopied(t, s, "team/app", idx, sbom)
	// A wrong password is refused by the token service.
	if _, errOut, code := stowageRun(t, "wrong-password", "import", "--registry", s.URL, "--from", up.Addr+"/team/app:v1",
		"--username", "admin", "--password-stdin", "--plain-http"); code != 1 || !strings.Contains(errOut, "username and password") {
		t.Errorf("wrong password: exit %d %s", code, errOut)
	}
}

// countingProxy is a reverse proxy in front of an upstream that counts the
// blob GETs it passes (what the upstream side sees).
type countingProxy struct {
	Addr   string
	mu     sync.Mutex
	counts map[string]int // digest → GETs of /v2/…/blobs/<digest>
}

func startCountingProxy(t *testing.T, upstream string) *countingProxy {
	t.Helper()
	target, _ := url.Parse("http://" + upstream)
	p := &countingProxy{counts: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if i := strings.Index(r.URL.Path, "/blobs/sha256:"); i >= 0 && r.Method == http.MethodGet {
			p.mu.Lock()
			p.counts[r.URL.Path[i+len("/blobs/"):]]++
			p.mu.Unlock()
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.Addr = strings.TrimPrefix(srv.URL, "http://")
	return p
}

func (p *countingProxy) count(d string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[d]
}

// cranePath finds crane (scripts/remote-test.sh installs it, pinned, into
// .cache/bin and sets STOWAGE_CRANE).
func cranePath(t *testing.T) string {
	if p := os.Getenv("STOWAGE_CRANE"); p != "" {
		return p
	}
	if p, err := exec.LookPath("crane"); err == nil {
		return p
	}
	testenv.Skip(t, "crane", "e2e: crane is not installed (scripts/remote-test.sh installs it)")
	return ""
}

func runCrane(t *testing.T, crane string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(crane, args...)
	cmd.Env = append(serverEnv(), "HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// blobsOf lists every blob digest of an index (configs and layers).
func blobsOf(t *testing.T, idx v1.ImageIndex) []string {
	t.Helper()
	var out []string
	im, _ := idx.IndexManifest()
	for _, m := range im.Manifests {
		img, err := idx.Image(m.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cd, _ := img.ConfigName()
		out = append(out, cd.String())
		ls, _ := img.Layers()
		for _, l := range ls {
			d, _ := l.Digest()
			out = append(out, d.String())
		}
	}
	return out
}

// TestPullThroughDistribution: a cache rule whose upstream is Debian's
// docker-registry with htpasswd auth (behind a proxy that counts blob
// fetches). Ten concurrent pulls of an uncached two-platform image fetch
// each blob once; crane pulls through it; with the upstream stopped, the
// image still pulls.
func TestPullThroughDistribution(t *testing.T) {
	const user, pass = "e2e-user", "e2e-cache-password"
	crane := cranePath(t)
	dist := startDistribution(t, user, pass)
	basic := remote.WithAuth(&authn.Basic{Username: user, Password: pass})
	for _, tag := range []string{"app:v1", "tool:v1"} {
		ref, _ := name.NewTag(dist.Addr+"/library/"+tag, name.Insecure)
		if err := remote.WriteIndex(ref, multiPlatform(t), basic); err != nil {
			t.Fatal(err)
		}
	}
	app, _ := name.NewTag(dist.Addr+"/library/app:v1", name.Insecure)
	upIdx, err := remote.Index(app, basic)
	if err != nil {
		t.Fatal(err)
	}
	proxy := startCountingProxy(t, dist.Addr)

	s := startServer(t, t.TempDir())
	out, errOut, code := stowageRun(t, pass, "cache-rule", "create", "hub", "--registry", s.URL, "--source", "hub/*",
		"--upstream", proxy.Addr+"/library/*", "--username", user, "--password-stdin", "--plain-http", "--tag-ttl", "1s")
	if code != 0 || !strings.Contains(out, "password sealed") {
		t.Fatalf("cache-rule create: exit %d\n%s%s", code, out, errOut)
	}

	// Ten clients at once, nothing cached yet.
	cached, _ := name.NewTag(s.Addr+"/hub/app:v1", name.Insecure)
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			idx, err := remote.Index(cached)
			if err == nil {
				err = pullAll(idx)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent pull: %v", err)
		}
	}
	for _, d := range blobsOf(t, upIdx) {
		if n := proxy.count(d); n != 1 {
			t.Errorf("blob %s: %d upstream fetches for 10 concurrent pulls, want 1", d, n)
		}
	}

	// crane, cold (tool) and warm (app).
	for _, img := range []string{"hub/tool:v1", "hub/app:v1"} {
		if out, err := runCrane(t, crane, "pull", "--insecure", "--platform", "linux/arm64", s.Addr+"/"+img, filepath.Join(t.TempDir(), "img.tar")); err != nil {
			t.Fatalf("crane pull %s: %v\n%s", img, err, out)
		}
	}
	dg, err := runCrane(t, crane, "digest", "--insecure", s.Addr+"/hub/app:v1")
	if err != nil || strings.TrimSpace(dg) != digestOf(t, upIdx).String() {
		t.Fatalf("crane digest = %q, %v; want %s", dg, err, digestOf(t, upIdx))
	}
	waitTagged(t, s, "hub/app", "v1")
	waitTagged(t, s, "hub/tool", "v1")

	// The upstream stops; after the tag TTL, the cached image still pulls.
	dist.Stop()
	time.Sleep(1100 * time.Millisecond)
	if out, err := runCrane(t, crane, "pull", "--insecure", "--platform", "linux/amd64", s.Addr+"/hub/app:v1", filepath.Join(t.TempDir(), "img.tar")); err != nil {
		t.Fatalf("crane pull with the upstream stopped: %v\n%s", err, out)
	}
	if idx, err := remote.Index(cached); err != nil || pullAll(idx) != nil {
		t.Fatalf("pull with the upstream stopped: %v", err)
	}
	if !strings.Contains(s.log.String(), "serving a cached tag") {
		t.Error("the stale tag was not logged")
	}
	if strings.Contains(s.log.String(), pass) {
		t.Error("the server's log shows the upstream password")
	}
	// Cached content is ordinary content: usage counts it.
	out, _, code = stowageRun(t, "", "usage", "--registry", s.URL, "--output", "json")
	if code != 0 || !strings.Contains(out, "hub/app") {
		t.Errorf("usage does not show the cached repository:\n%s", out)
	}
}

// pullAll reads every platform's config and layers.
func pullAll(idx v1.ImageIndex) error {
	im, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	for _, m := range im.Manifests {
		img, err := idx.Image(m.Digest)
		if err != nil {
			return err
		}
		if _, err := img.RawConfigFile(); err != nil {
			return err
		}
		ls, err := img.Layers()
		if err != nil {
			return err
		}
		for _, l := range ls {
			if _, err := readAllLayer(l); err != nil {
				return err
			}
		}
	}
	return nil
}

// waitTagged waits (bounded) until repo:tag is stored on s (the background
// copy of a pull-through image ends after the pull).
func waitTagged(t *testing.T, s *server, repo, tag string) {
	t.Helper()
	for i := 0; i < 100; i++ {
		resp, err := http.Get(s.URL + "/api/v1/usage/" + repo)
		if err == nil {
			b := new(bytes.Buffer)
			b.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && strings.Contains(b.String(), `"`+tag+`"`) {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s:%s was not stored within 10 s", repo, tag)
}
