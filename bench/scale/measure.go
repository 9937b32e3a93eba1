package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// line is one measured figure: latencies (ms) of repeated requests, or one
// duration, plus the server's peak RSS after it.
type line struct {
	N      int     `json:"n"`
	P50    float64 `json:"p50Ms"`
	P99    float64 `json:"p99Ms"`
	Max    float64 `json:"maxMs"`
	Note   string  `json:"note,omitempty"`
	PeakMB float64 `json:"peakRssMiB"`
}

type results struct {
	DB           string           `json:"db"`
	Manifests    int              `json:"manifests"`
	Repos        int              `json:"repositories"`
	BigTags      int              `json:"bigRepoTags"`
	BuildSeconds float64          `json:"buildSeconds"`
	Build        *buildRecord     `json:"build,omitempty"`
	Reused       bool             `json:"reused"`                // measured on a copy of a kept build
	CopySeconds  float64          `json:"copySeconds,omitempty"` // making that copy
	Binary       json.RawMessage  `json:"binary,omitempty"`      // stowage version --output json
	BinaryCommit string           `json:"binaryCommit,omitempty"`
	Measured     time.Time        `json:"measured"`
	Error        string           `json:"error,omitempty"`
	Lines        map[string]*line `json:"lines"`
	Order        []string         `json:"order"`
}

func (r *results) print(w io.Writer) {
	fmt.Fprintf(w, "%s: %d manifests, %d repositories, %d tags in %q; built in %.0f s; binary %s %s\n", r.DB, r.Manifests, r.Repos, r.BigTags, bigRepo, r.BuildSeconds, r.BinaryCommit, bytes.Join(bytes.Fields(r.Binary), nil))
	for _, k := range r.Order {
		l := r.Lines[k]
		fmt.Fprintf(w, "  %-28s n=%-5d p50 %8.2f ms  p99 %8.2f ms  max %8.2f ms  peak RSS %6.1f MiB  %s\n", k, l.N, l.P50, l.P99, l.Max, l.PeakMB, l.Note)
	}
}

type measure struct {
	bin, work, dataDir, storeDir, dbURL string
	pg                                  bool
	l                                   layout
	samples                             int
	res                                 *results
	logf                                func(string, ...any)
	slow                                time.Duration   // a request taking longer is recorded as timed out
	skip                                map[string]bool // groups not measured
	save                                func()          // writes the results so far (a stopped run keeps them)

	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
	url    string
	http   *http.Client
}

func (m *measure) add(name string, ds []time.Duration, note string) {
	l := &line{N: len(ds), Note: note, PeakMB: m.peakRSS()}
	if len(ds) > 0 {
		slices.Sort(ds)
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		l.P50, l.P99, l.Max = ms(ds[len(ds)/2]), ms(ds[min(len(ds)-1, len(ds)*99/100)]), ms(ds[len(ds)-1])
	}
	m.res.Lines[name] = l
	m.res.Order = append(m.res.Order, name)
	m.logf("%-28s p50 %.2f ms p99 %.2f ms max %.2f ms %s", name, l.P50, l.P99, l.Max, note)
	if m.save != nil {
		m.save()
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// start runs `stowage serve` and returns how long until /v2/ answered 200
// (waiting at most wait).
func (m *measure) start(wait time.Duration) (time.Duration, error) {
	port, err := freePort()
	if err != nil {
		return 0, err
	}
	m.url = fmt.Sprintf("http://127.0.0.1:%d", port)
	m.cmd = exec.Command(m.bin, "serve", "--addr", fmt.Sprintf("127.0.0.1:%d", port), "--data-dir", m.dataDir, "--log-level", "warn")
	m.cmd.Env = append(os.Environ(), "STOWAGE_DATABASE="+m.dbURL, "STOWAGE_STORAGE_PATH="+m.storeDir, "STOWAGE_ENCRYPTION=none",
		"STOWAGE_GC_INTERVAL=0s")
	logf, err := os.OpenFile(m.work+"/serve.log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	m.cmd.Stdout, m.cmd.Stderr = logf, logf
	t0 := time.Now()
	if err := m.cmd.Start(); err != nil {
		return 0, err
	}
	m.http = &http.Client{Timeout: m.slow, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	exited := make(chan struct{})
	m.exited = exited
	go func(c *exec.Cmd) { c.Wait(); close(exited) }(m.cmd)
	for deadline := t0.Add(wait); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		select {
		case <-exited:
			return 0, fmt.Errorf("stowage serve exited (log: %s/serve.log)", m.work)
		default:
		}
		resp, err := m.http.Get(m.url + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return time.Since(t0), nil
			}
		}
	}
	return 0, fmt.Errorf("stowage serve did not answer in %s (log: %s/serve.log)", wait, m.work)
}

func (m *measure) stop() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
	case <-time.After(60 * time.Second):
		m.cmd.Process.Kill()
		<-m.exited
	}
	m.cmd = nil
}

// peakRSS is the server's VmHWM in MiB.
func (m *measure) peakRSS() float64 {
	if m.cmd == nil || m.cmd.Process == nil {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", m.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, ln := range strings.Split(string(b), "\n") {
		if f := strings.Fields(ln); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// req sends one request and returns its duration, status and body.
func (m *measure) req(method, path string, body []byte, hdr map[string]string) (time.Duration, int, []byte, http.Header, error) {
	r, err := http.NewRequest(method, m.url+path, bytes.NewReader(body))
	if err != nil {
		return 0, 0, nil, nil, err
	}
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	t0 := time.Now()
	resp, err := m.http.Do(r)
	if err != nil {
		return 0, 0, nil, nil, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return time.Since(t0), resp.StatusCode, b, resp.Header, err
}

// times runs fn n times and returns the durations; a wrong status fails.
// With budget > 0 it stops once it has one duration and spent budget.
func (m *measure) times(n int, budget time.Duration, fn func(i int) (method, path string, want int)) ([]time.Duration, error) {
	var ds []time.Duration
	t0 := time.Now()
	for i := range n {
		if budget > 0 && len(ds) > 0 && time.Since(t0) > budget {
			break
		}
		method, path, want := fn(i)
		d, code, b, _, err := m.req(method, path, nil, nil)
		if err != nil {
			return ds, err
		}
		if code != want {
			return ds, fmt.Errorf("%s %s: status %d, want %d: %.300s", method, path, code, want, b)
		}
		ds = append(ds, d)
	}
	return ds, nil
}

// addOrTimeout adds the line, or records that a request timed out (after
// the durations before it, if any); other errors fail.
func (m *measure) addOrTimeout(name string, ds []time.Duration, note string, err error) error {
	if err == nil {
		m.add(name, ds, note)
		return nil
	}
	var ue *url.Error
	if !errors.As(err, &ue) || !ue.Timeout() {
		return err
	}
	m.add(name, ds, strings.TrimPrefix(note+"; ", "; ")+fmt.Sprintf("a request TIMED OUT after %s", m.slow))
	return nil
}

// cli runs the stowage CLI against the server and returns its duration.
func (m *measure) cli(args ...string) (time.Duration, []byte, error) {
	c := exec.Command(m.bin, append(args, "--registry", m.url)...)
	t0 := time.Now()
	out, err := c.CombinedOutput()
	if err != nil {
		return 0, out, fmt.Errorf("stowage %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return time.Since(t0), out, nil
}

// sample is a manifest to fetch.
type sample struct {
	repo, ref string
	digest    string
}

func (m *measure) samplesOf(n int, seed uint64) []sample {
	r := rand.New(rand.NewPCG(seed, 3))
	base := baseBlob()
	var out []sample
	for len(out) < n {
		i := r.IntN(m.l.repos)
		c := m.l.repoManifests(i)
		if c == 0 {
			continue
		}
		j := r.IntN(c)
		cfg, layer := repoBlobs(i)
		body := manifestBody(i, j, cfg, base, layer)
		d := fmt.Sprintf("sha256:%x", sha256.Sum256(body))
		ref := d
		if !untagged(i, j) && r.IntN(2) == 0 {
			ref = tagName(j)
		}
		out = append(out, sample{repoName(i), ref, d})
	}
	return out
}

func (m *measure) manifests(name string, ss []sample, method string) error {
	var ds []time.Duration
	for _, s := range ss {
		d, code, b, h, err := m.req(method, "/v2/"+s.repo+"/manifests/"+s.ref, nil, map[string]string{"Accept": mediaType})
		if err != nil {
			return err
		}
		if code != 200 || h.Get("Docker-Content-Digest") != s.digest {
			return fmt.Errorf("%s %s@%s: status %d digest %q, want 200 %s: %.200s", method, s.repo, s.ref, code, h.Get("Docker-Content-Digest"), s.digest, b)
		}
		if method == http.MethodGet && fmt.Sprintf("sha256:%x", sha256.Sum256(b)) != s.digest {
			return fmt.Errorf("GET %s@%s: body does not match its digest", s.repo, s.ref)
		}
		ds = append(ds, d)
	}
	m.add(name, ds, fmt.Sprintf("%d distinct manifests", len(ss)))
	return nil
}

// Budgets of the repeated measurements of slow requests: they stop after
// one sample once they took this long.
const (
	slowBudget = 2 * time.Minute  // a full usage answer, delete-repo dry-run
	pageBudget = time.Minute      // repeated pages
	walkBudget = 10 * time.Minute // a walk of every page
)

func (m *measure) run(ctx context.Context) error {
	// 1. The first start of this binary on the registry (it may migrate
	// it), then a start and the first reads after it.
	before, _ := schemaVersion(ctx, m.dbURL)
	d, err := m.start(time.Hour)
	if err != nil {
		return err
	}
	after, _ := schemaVersion(ctx, m.dbURL)
	note := fmt.Sprintf("schema %d, no migration", after)
	if after != before {
		note = fmt.Sprintf("migrated schema %d → %d", before, after)
	}
	m.add("first start", []time.Duration{d}, note)
	m.stop()
	if d, err = m.start(10 * time.Minute); err != nil {
		return err
	}
	m.add("start", []time.Duration{d}, "exec to /v2/ 200")
	n := m.samples
	get, head := m.samplesOf(n, 1), m.samplesOf(n, 2)
	if !m.skip["manifests"] {
		if err := m.manifests("manifest GET cold", get, http.MethodGet); err != nil {
			return err
		}
		if err := m.manifests("manifest HEAD cold", head, http.MethodHead); err != nil {
			return err
		}
		if err := m.manifests("manifest GET warm", get, http.MethodGet); err != nil {
			return err
		}
		if err := m.manifests("manifest HEAD warm", head, http.MethodHead); err != nil {
			return err
		}
	}
	// A restart, now that the page cache holds the database.
	m.stop()
	if d, err = m.start(10 * time.Minute); err != nil {
		return err
	}
	m.add("restart", []time.Duration{d}, "exec to /v2/ 200")
	if !m.skip["manifests"] {
		hot := get[:1]
		for len(hot) < n {
			hot = append(hot, get[0])
		}
		if err := m.manifests("manifest GET one hot", hot, http.MethodGet); err != nil {
			return err
		}
	}

	// 2. Listings.
	r := rand.New(rand.NewPCG(5, 5))
	if !m.skip["listings"] {
		if err := m.listings(r); err != nil {
			return err
		}
	}

	// 3. Space: usage (the full answers, then by pages) and delete dry-runs.
	if !m.skip["usage"] {
		ds, err := m.times(5, slowBudget, func(int) (string, string, int) { return http.MethodGet, "/api/v1/usage", 200 })
		if err := m.addOrTimeout("usage registry (HTTP)", ds, fmt.Sprintf("%d repositories", m.l.repos), err); err != nil {
			return err
		}
		ds, err = m.times(5, slowBudget, func(int) (string, string, int) { return http.MethodGet, "/api/v1/usage/" + bigRepo, 200 })
		if err := m.addOrTimeout("usage big repo (HTTP)", ds, fmt.Sprintf("%d manifests", m.l.big), err); err != nil {
			return err
		}
		ds, err = m.times(min(n, 50), slowBudget, func(i int) (string, string, int) {
			return http.MethodGet, "/api/v1/usage/" + repoName(1+r.IntN(m.l.repos-1)), 200
		})
		if err := m.addOrTimeout("usage small repo (HTTP)", ds, "random regular repository", err); err != nil {
			return err
		}
		if d, _, err = m.cli("usage", "--output", "json"); err != nil {
			return err
		}
		m.add("usage registry (CLI)", []time.Duration{d}, "")
	}
	if !m.skip["paged"] {
		if err := m.paged("usage registry", "/api/v1/usage", "repositoryUsage", m.l.repos); err != nil {
			return err
		}
		if err := m.paged("usage big repo", "/api/v1/usage/"+bigRepo, "manifestUsage", m.l.big); err != nil {
			return err
		}
	}
	if !m.skip["delete"] {
		ds, err := m.times(min(n, 50), slowBudget, func(i int) (string, string, int) {
			s := get[i]
			return http.MethodDelete, "/api/v1/images/" + s.repo + "@" + s.digest + "?dry_run=true", 200
		})
		if err := m.addOrTimeout("delete dry-run (image)", ds, "", err); err != nil {
			return err
		}
		ds, err = m.times(3, slowBudget, func(i int) (string, string, int) {
			return http.MethodDelete, "/api/v1/repositories/" + bigRepo + "?dry_run=true", 200
		})
		if err := m.addOrTimeout("delete-repo dry-run big", ds, fmt.Sprintf("%d manifests", m.l.big), err); err != nil {
			return err
		}
	}

	// 4. Pushes over HTTP at this size.
	if !m.skip["push"] {
		if err := m.pushes(min(n, 100)); err != nil {
			return err
		}
	}

	// 5. Passes: GC with nothing to collect, retention (10%), GC of it.
	if !m.skip["passes"] {
		return m.passes()
	}
	return nil
}

func (m *measure) listings(r *rand.Rand) error {
	n := m.samples
	ds, err := m.times(min(n, 200), pageBudget, func(int) (string, string, int) {
		return http.MethodGet, "/v2/_catalog?n=100&last=" + repoName(r.IntN(m.l.repos)), 200
	})
	if err != nil {
		return err
	}
	m.add("catalog page (n=100)", ds, "random start")
	t0 := time.Now()
	pages, repos := 0, 0
	for next := "/v2/_catalog?n=1000"; next != ""; pages++ {
		_, code, b, h, err := m.req(http.MethodGet, next, nil, nil)
		if err != nil || code != 200 {
			return fmt.Errorf("catalog walk: %v %d %.200s", err, code, b)
		}
		var v struct{ Repositories []string }
		json.Unmarshal(b, &v)
		repos += len(v.Repositories)
		next = m.linkNext(h.Get("Link"))
	}
	if repos < m.l.repos {
		return fmt.Errorf("catalog walk found %d repositories, want %d", repos, m.l.repos)
	}
	m.add("catalog full walk", []time.Duration{time.Since(t0)}, fmt.Sprintf("%d pages of 1000", pages))
	ds, err = m.times(min(n, 200), pageBudget, func(int) (string, string, int) {
		return http.MethodGet, "/v2/" + bigRepo + "/tags/list?n=100&last=" + tagName(r.IntN(m.l.big)), 200
	})
	if err != nil {
		return err
	}
	m.add("tag list page (n=100)", ds, fmt.Sprintf("repository of %d tags", m.l.big))
	ds, err = m.times(5, slowBudget, func(int) (string, string, int) { return http.MethodGet, "/v2/" + bigRepo + "/tags/list", 200 })
	if err != nil {
		return err
	}
	m.add("tag list full", ds, fmt.Sprintf("%d tags in one answer", m.l.big))
	return nil
}

// paged measures a paged usage answer (path?n=100, the next page in a Link
// header): a walk of every page by the Link header, its rows (the array
// key of each page) counted against want, then up to 200 pages fetched at
// random among those the walk was sent to. A server that gives no Link
// header to n=100 does not page: both lines say so, and nothing fails.
func (m *measure) paged(label, path, key string, want int) error {
	pageLine, walkLine := label+" page (n=100)", label+" walk (n=100, by Link)"
	unsupported := func(why string) error {
		m.add(pageLine, nil, "not supported: "+why)
		m.add(walkLine, nil, "not supported: "+why)
		return nil
	}
	first := path + "?n=100"
	t0 := time.Now()
	_, code, b, h, err := m.req(http.MethodGet, first, nil, nil)
	if err != nil {
		if err := m.addOrTimeout(walkLine, nil, "first page", err); err != nil {
			return err
		}
		return nil
	}
	if code != 200 {
		return unsupported(fmt.Sprintf("status %d to n=100", code))
	}
	next := m.linkNext(h.Get("Link"))
	if next == "" {
		return unsupported(fmt.Sprintf("no Link header with n=100 (%d rows in the answer)", countRows(b, key)))
	}
	pages, rows, stopped := []string{first}, countRows(b, key), false
	for next != "" {
		if time.Since(t0) > walkBudget {
			stopped = true
			break
		}
		pages = append(pages, next)
		_, code, b, h, err = m.req(http.MethodGet, next, nil, nil)
		if err != nil || code != 200 {
			return fmt.Errorf("%s: GET %s: %v %d %.200s", walkLine, next, err, code, b)
		}
		rows += countRows(b, key)
		next = m.linkNext(h.Get("Link"))
	}
	walk := time.Since(t0)
	note := fmt.Sprintf("%d pages, %d rows", len(pages), rows)
	switch {
	case stopped:
		note += fmt.Sprintf(", STOPPED after %s (not every page)", walkBudget)
	case rows != want:
		note += fmt.Sprintf(", WANT %d rows", want)
	}
	r := rand.New(rand.NewPCG(9, 9))
	ds, err := m.times(min(m.samples, 200), pageBudget, func(int) (string, string, int) {
		return http.MethodGet, pages[r.IntN(len(pages))], 200
	})
	if err := m.addOrTimeout(pageLine, ds, "random page of the walk", err); err != nil {
		return err
	}
	m.add(walkLine, []time.Duration{walk}, note)
	return nil
}

// countRows counts the rows of a usage answer: the array at key, or the
// longest array at its top level.
func countRows(b []byte, key string) int {
	var v map[string]json.RawMessage
	if json.Unmarshal(b, &v) != nil {
		return 0
	}
	count := func(raw json.RawMessage) int {
		var a []json.RawMessage
		if json.Unmarshal(raw, &a) != nil {
			return 0
		}
		return len(a)
	}
	if raw, ok := v[key]; ok {
		return count(raw)
	}
	most := 0
	for _, raw := range v {
		most = max(most, count(raw))
	}
	return most
}

func (m *measure) passes() error {
	// The first collection is a full pass (every blob row, every stored
	// object); the next ones read the queue of what changed (--sweep=false,
	// what the background collector runs between its daily full passes).
	d, _, err := m.cli("gc", "--min-age", "0s", "--output", "json")
	if err != nil {
		return err
	}
	m.add("gc, full pass, nothing to collect", []time.Duration{d}, "")
	d, _, err = m.cli("gc", "--min-age", "0s", "--sweep=false", "--output", "json")
	if err != nil {
		return err
	}
	m.add("gc, nothing to collect", []time.Duration{d}, "")
	if _, _, err = m.cli("retention", "set", "--days", "7"); err != nil {
		return err
	}
	d, out, err := m.cli("retention", "run", "--output", "json")
	if err != nil {
		return err
	}
	var run struct {
		Manifests int `json:"manifestsDeleted"`
	}
	json.Unmarshal(out, &run)
	m.add("retention pass", []time.Duration{d}, fmt.Sprintf("deleted %d manifests", run.Manifests))
	d, out, err = m.cli("gc", "--min-age", "0s", "--sweep=false", "--output", "json")
	if err != nil {
		return err
	}
	deleted := "?"
	if f := regexp.MustCompile(`"blobsDeleted":\s*(\d+)`).FindSubmatch(out); f != nil {
		deleted = string(f[1])
	}
	m.add("gc, 10% to collect", []time.Duration{d}, "deleted "+deleted+" blobs")
	return nil
}

// linkNext is the path of a Link header's next page.
func (m *measure) linkNext(link string) string {
	next := linkNext(link)
	if strings.HasPrefix(next, "http://") || strings.HasPrefix(next, "https://") {
		if u, err := url.Parse(next); err == nil {
			return u.RequestURI()
		}
	}
	return next
}

func linkNext(link string) string {
	// </v2/_catalog?last=x&n=1000>; rel="next"
	if i, j := strings.Index(link, "<"), strings.Index(link, ">"); i >= 0 && j > i {
		return link[i+1 : j]
	}
	return ""
}

// pushes pushes n small images to new repositories over HTTP (config and
// layer monolithically, then the manifest by tag).
func (m *measure) pushes(n int) error {
	var ds []time.Duration
	for i := range n {
		repo := fmt.Sprintf("push/%04d", i)
		cfg, layer := newBlob([]byte(fmt.Sprintf(`{"push":%d}`, i))), newBlob([]byte(fmt.Sprintf("layer %d %d", i, time.Now().UnixNano())))
		t0 := time.Now()
		for _, b := range []blobData{cfg, layer} {
			_, code, body, h, err := m.req(http.MethodPost, "/v2/"+repo+"/blobs/uploads/", nil, nil)
			if err != nil || code != 202 {
				return fmt.Errorf("push start: %v %d %.200s", err, code, body)
			}
			loc := h.Get("Location")
			sep := "?"
			if strings.Contains(loc, "?") {
				sep = "&"
			}
			loc = strings.TrimPrefix(loc, m.url)
			_, code, body, _, err = m.req(http.MethodPut, loc+sep+"digest="+string(b.d), b.data, map[string]string{"Content-Type": "application/octet-stream"})
			if err != nil || code != 201 {
				return fmt.Errorf("push blob: %v %d %.200s", err, code, body)
			}
		}
		man := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":%s,"layers":[%s]}`, mediaType, cfg.desc(configType), layer.desc(layerType)))
		_, code, body, _, err := m.req(http.MethodPut, "/v2/"+repo+"/manifests/v1", man, map[string]string{"Content-Type": mediaType})
		if err != nil || code != 201 {
			return fmt.Errorf("push manifest: %v %d %.200s", err, code, body)
		}
		ds = append(ds, time.Since(t0))
	}
	m.add("push small image (HTTP)", ds, "2 blobs + manifest, new repository")
	return nil
}
