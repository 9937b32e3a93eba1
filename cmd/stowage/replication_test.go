package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stowage/stowage/config"
	"github.com/stowage/stowage/replication"
)

// startRegion starts a real server as region name with peers (name→URL);
// stop stops it (once; the test's end stops it too).
func startRegion(t *testing.T, name string, peers map[string]string) (m *Main, stop func()) {
	t.Helper()
	cfg := config.Default()
	cfg.Addr, cfg.DataDir = "127.0.0.1:0", filepath.Join(t.TempDir(), "data")
	cfg.Replication.Region = name
	for p, u := range peers {
		cfg.Replication.Peers = append(cfg.Replication.Peers, config.Peer{Name: p, URL: u})
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	m = NewMain(cfg, testWriter{t})
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() { once.Do(func() { m.Close() }) }
	t.Cleanup(stop)
	return m, stop
}

// TestReplicationBackfillCLI runs `stowage replication backfill` against
// two real regions (east with data, west its peer): it starts the
// back-fill, follows it to the end and reports it (text and --output json;
// --detach returns at once); a back-fill that fails exits 1 with its error;
// Ctrl-C stops following and leaves the back-fill running; a missing or
// unknown peer is refused.
func TestReplicationBackfillCLI(t *testing.T) {
	old := fillPoll
	fillPoll = 50 * time.Millisecond
	defer func() { fillPoll = old }()
	// A peer that never answers: a back-fill of it runs until its context
	// ends (for Ctrl-C).
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		http.Error(w, "gone", http.StatusServiceUnavailable)
	}))
	defer hang.Close()
	defer close(release)

	west, stopWest := startRegion(t, "west", nil)
	east, _ := startRegion(t, "east", map[string]string{"west": "http://" + west.Addr, "slow": hang.URL})
	base := "http://" + east.Addr
	pushImage(t, base, "team/app", "v1", []byte("backfill layer one"))
	pushImage(t, base, "team/app", "v2", []byte("backfill layer two"))
	pushImage(t, base, "team/tools", "latest", []byte("backfill layer three"))

	out, errOut, code := cli(t, "replication", "backfill", "west", "--registry", base, "--output", "json")
	var res backfillResult
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil {
		t.Fatalf("replication backfill west --output json: exit %d\n%s%s", code, out, errOut)
	}
	if b := res.Backfill; res.Peer != "west" || b == nil || b.Running || b.ReposTotal != 2 || b.Repos != 2 || b.Checked != 3 || b.LastError != "" || b.Trigger != "requested" {
		t.Errorf("back-fill result: %s; want west, done, 2 of 2 repositories, 3 checked, no error", out)
	}
	for _, ref := range []string{"team/app:v1", "team/app:v2", "team/tools:latest"} {
		repo, tag, _ := strings.Cut(ref, ":")
		resp, err := http.Head("http://" + west.Addr + "/v2/" + repo + "/manifests/" + tag)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("west after the back-fill: HEAD %s: %v %v", ref, resp.StatusCode, err)
		}
	}
	out, errOut, code = cli(t, "replication", "backfill", "west", "--registry", base)
	if code != 0 || !strings.HasPrefix(out, "back-fill of west done in ") || !strings.Contains(out, "2/2 repositories, 3 checked, 0 shipped") || strings.Contains(errOut, "\r") {
		t.Errorf("replication backfill west (not a terminal): exit %d\n%s%s; want one result line, no bar", code, out, errOut)
	}
	out, errOut, code = cli(t, "replication", "backfill", "west", "--detach", "--registry", base, "--output", "json")
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.Backfill == nil {
		t.Errorf("replication backfill west --detach --output json: exit %d\n%s%s", code, out, errOut)
	}
	// The status shows the last one (done, or running: it was detached).
	if out, _, code := cli(t, "replication", "status", "--registry", base); code != 0 || !strings.Contains(out, "back-fill of west: ") || strings.Contains(out, "()") {
		t.Errorf("replication status after a back-fill: exit %d\n%s", code, out)
	}

	// Ctrl-C while following: exit 130, the back-fill goes on.
	cctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var o, e strings.Builder
	if code := run(cctx, []string{"replication", "backfill", "slow", "--registry", base}, &o, &e); code != 130 || !strings.Contains(e.String(), "goes on in the registry") {
		t.Errorf("replication backfill slow, interrupted: exit %d\n%s%s; want 130 and that it goes on", code, o.String(), e.String())
	}
	out, _, _ = cli(t, "replication", "status", "--registry", base, "--output", "json")
	var st replication.Status
	json.Unmarshal([]byte(out), &st)
	if i := slices.IndexFunc(st.Peers, func(p replication.PeerStatus) bool { return p.Name == "slow" }); i < 0 || st.Peers[i].Backfill == nil || !st.Peers[i].Backfill.Running {
		t.Errorf("after Ctrl-C the back-fill of slow is not running:\n%s", out)
	}
	ms := scrape(t, base)
	if v, ok := ms[`stowage_replication_backfill_running{peer="slow",region="east"}`]; !ok || v != 1 {
		t.Errorf("stowage_replication_backfill_running of slow = %v (%v), want 1", v, ok)
	}
	if v, ok := ms[`stowage_replication_auto_backfills_total{peer="west",region="east"}`]; !ok || v != 0 {
		t.Errorf("stowage_replication_auto_backfills_total of west = %v (%v), want 0 (none was automatic)", v, ok)
	}
	// Running again follows it rather than starting a second one.
	cctx2, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	o.Reset()
	e.Reset()
	if code := run(cctx2, []string{"replication", "backfill", "slow", "--registry", base}, &o, &e); code != 130 || !strings.Contains(e.String(), "a back-fill of slow is running") {
		t.Errorf("replication backfill slow while one runs: exit %d\n%s%s; want it followed", code, o.String(), e.String())
	}

	// A back-fill that fails: exit 1 with its error.
	stopWest()
	out, errOut, code = cli(t, "replication", "backfill", "west", "--registry", base)
	if code != 1 || !strings.Contains(out, "back-fill of west failed") || !strings.Contains(errOut, "stowage: ") || !strings.Contains(errOut, "team/app") {
		t.Errorf("replication backfill of a peer that is down: exit %d\n%s%s; want exit 1 and the error", code, out, errOut)
	}
	out, _, code = cli(t, "replication", "backfill", "west", "--registry", base, "--output", "json")
	if code != 1 || json.Unmarshal([]byte(out), &res) != nil || res.Backfill == nil || res.Backfill.LastError == "" {
		t.Errorf("replication backfill of a peer that is down --output json: exit %d\n%s; want exit 1 and the JSON with lastError", code, out)
	}

	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"replication", "backfill"}, 2, "Usage: stowage replication backfill PEER"},
		{[]string{"replication", "backfill", "north"}, 1, `no peer named "north" (its peers: `},
	} {
		out, errOut, code := cli(t, append(c.args, "--registry", base)...)
		if code != c.code || out != "" || !strings.Contains(errOut, c.want) {
			t.Errorf("stowage %s: exit %d\n%s%s; want exit %d and %q", strings.Join(c.args, " "), code, out, errOut, c.code, c.want)
		}
	}
}
