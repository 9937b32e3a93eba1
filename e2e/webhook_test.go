package e2e

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// hookReceiver is a webhook receiver on 127.0.0.1 that can go down (its
// listener closed: connections refused) and come back on the same port.
type hookReceiver struct {
	t      *testing.T
	addr   string
	secret string
	mu     sync.Mutex
	srv    *http.Server
	got    []hookDelivery
}

type hookDelivery struct {
	seq     int64
	header  http.Header
	payload struct {
		ID        string `json:"id"`
		Timestamp string `json:"timestamp"`
		Action    string `json:"action"`
		Target    struct {
			MediaType, Digest, Repository, Tag string
			Size, Length                       int64
		} `json:"target"`
		Request struct{ ID, Host, Method, Useragent string } `json:"request"`
		Source  struct{ Region string }                      `json:"source"`
	}
}

func (h *hookReceiver) up() {
	h.t.Helper()
	addr := h.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var ln net.Listener
	var err error
	for range 50 { // the port of a receiver just closed may linger briefly
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		h.t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(h.serve)}
	h.mu.Lock()
	h.srv = srv
	h.mu.Unlock()
	go srv.Serve(ln)
}

func (h *hookReceiver) down() {
	h.mu.Lock()
	srv := h.srv
	h.mu.Unlock()
	srv.Close()
}

// serve checks the signature with its own HMAC-SHA256 (the docs' recipe),
// refuses a bad one with 401, and records the event.
func (h *hookReceiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	ts := r.Header.Get("X-Stowage-Timestamp")
	mac := hmac.New(sha256.New, []byte(h.secret))
	io.WriteString(mac, ts+".")
	mac.Write(body)
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	sec, err := strconv.ParseInt(ts, 10, 64)
	if !hmac.Equal([]byte(r.Header.Get("X-Stowage-Signature")), []byte(want)) || err != nil || time.Since(time.Unix(sec, 0)).Abs() > 5*time.Minute {
		h.t.Errorf("receiver: a delivery whose signature does not verify: %s %s", r.Header.Get("X-Stowage-Signature"), body)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var d hookDelivery
	d.header = r.Header.Clone()
	d.seq, _ = strconv.ParseInt(r.Header.Get("X-Stowage-Event-Seq"), 10, 64)
	if err := json.Unmarshal(body, &d.payload); err != nil {
		h.t.Errorf("receiver: %v: %s", err, body)
	}
	h.mu.Lock()
	h.got = append(h.got, d)
	h.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (h *hookReceiver) deliveries() []hookDelivery {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hookDelivery(nil), h.got...)
}

// waitTags waits (bounded) until every tag in tags was delivered as a push.
func (h *hookReceiver) waitTags(tags []string, timeout time.Duration) []hookDelivery {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := h.deliveries()
		seen := map[string]bool{}
		for _, d := range got {
			if d.payload.Action == "push" {
				seen[d.payload.Target.Tag] = true
			}
		}
		missing := 0
		for _, tag := range tags {
			if !seen[tag] {
				missing++
			}
		}
		if missing == 0 {
			return got
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("receiver: %d of %d pushes not delivered after %s", missing, len(tags), timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pushTagged pushes a small image to repo:tag over the OCI API.
func pushTagged(t *testing.T, base, repo, tag string) string {
	t.Helper()
	config := []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","config":{"Labels":{"tag":%q}}}`, tag))
	layer := []byte("layer " + repo + ":" + tag)
	cd, ld := pushBlob(t, base, repo, config), pushBlob(t, base, repo, layer)
	m := manifestJSON(t, descriptor{mtConfig, cd, int64(len(config))}, descriptor{mtLayer, ld, int64(len(layer))})
	r := mustDo(t, http.MethodPut, base, "/v2/"+repo+"/manifests/"+tag, map[string]string{"Content-Type": mtManifest, "User-Agent": "e2e-pusher/1"}, m)
	if r.Status != http.StatusCreated {
		t.Fatalf("push %s:%s: %s", repo, tag, r)
	}
	return sha256Digest(m)
}

// TestWebhookDelivery runs the real server and CLI against a local
// receiver: create (secret and header from the environment and flags), ping,
// pushes delivered and signed; the receiver goes down, more pushes, the
// server is stopped with them pending and started again, the receiver comes
// back: every push arrives, in order per repository (duplicates counted).
// The secret and token are in no file of the data directory and in no CLI
// output.
func TestWebhookDelivery(t *testing.T) {
	needServer(t)
	const secret, token = "e2e-hook-secret-70c1b3", "e2e-token-d94a61f0"
	t.Setenv("HOOK_SECRET", secret)
	rcv := &hookReceiver{t: t, secret: secret}
	rcv.up()
	t.Cleanup(rcv.down)
	dir := t.TempDir()
	s := startServer(t, dir)
	cli := func(args ...string) string {
		t.Helper()
		out, err := stowageCLI(t, append(append([]string{"webhook"}, args...), "--registry", s.URL)...)
		if err != nil {
			t.Fatalf("stowage webhook %v: %v\n%s", args, err, out)
		}
		if strings.Contains(out, secret) || strings.Contains(out, token) {
			t.Errorf("stowage webhook %v printed a secret:\n%s", args, out)
		}
		return out
	}
	uri := "http://" + rcv.addr + "/hook"
	out := cli("create", "ci", "--uri", uri, "--actions", "push,delete", "--scope", "app*:*", "--secret-env", "HOOK_SECRET",
		"--header", "Authorization=Bearer "+token)
	if !strings.Contains(out, "webhook ci created") {
		t.Fatalf("create: %s", out)
	}
	if out = cli("ping", "ci"); !strings.Contains(out, "ping delivered: the receiver answered 204") {
		t.Fatalf("ping: %s", out)
	}
	if got := rcv.deliveries(); len(got) != 1 || got[0].payload.Action != "ping" || got[0].header.Get("Authorization") != "Bearer "+token {
		t.Fatalf("ping delivery: %+v", got)
	}

	var tags []string
	push := func(i int) {
		repo := []string{"app", "app-web"}[i%2]
		tag := "v" + strconv.Itoa(i)
		pushTagged(t, s.URL, repo, tag)
		tags = append(tags, tag)
	}
	for i := range 4 {
		push(i)
	}
	pushTagged(t, s.URL, "other", "v1") // out of scope
	got := rcv.waitTags(tags, 30*time.Second)
	for _, d := range got[1:] {
		p := d.payload
		if p.Target.Repository == "other" || p.Target.MediaType != mtManifest || p.Target.Size == 0 || p.Target.Digest == "" ||
			p.Request.Method != "PUT" || p.Request.Useragent != "e2e-pusher/1" || p.Request.Host != s.Addr || p.Source.Region == "" || p.ID == "" {
			t.Errorf("delivery: %+v", p)
		}
	}

	// The receiver goes down; pushes go on; the server stops with them
	// pending, and starts again; then the receiver comes back.
	rcv.down()
	for i := 4; i < 12; i++ {
		push(i)
	}
	time.Sleep(1500 * time.Millisecond) // a few failed attempts
	out = cli("events", "ci", "-n", "3")
	if !strings.Contains(out, "connection refused") {
		t.Errorf("events while the receiver is down: %s", out)
	}
	s.Stop()
	s = startServer(t, dir)
	rcv.up()
	got = rcv.waitTags(tags, 60*time.Second)
	time.Sleep(500 * time.Millisecond)
	got = rcv.deliveries()
	count, last, dups := map[string]int{}, map[string]int64{}, 0
	for _, d := range got[1:] {
		p := d.payload
		if count[p.Target.Tag]++; count[p.Target.Tag] > 1 {
			dups++
			continue
		}
		if d.seq < last[p.Target.Repository] {
			t.Errorf("%s:%s (seq %d) after seq %d of its repository", p.Target.Repository, p.Target.Tag, d.seq, last[p.Target.Repository])
		}
		last[p.Target.Repository] = d.seq
	}
	t.Logf("%d pushes, %d deliveries, %d duplicates (at most one page of 10 may be sent again after a restart)", len(tags), len(got)-1, dups)
	if dups > 10 {
		t.Errorf("%d duplicates", dups)
	}

	// show and events tell what happened; secrets are only "set".
	out = cli("show", "ci")
	for _, want := range []string{"secret:      set", "Authorization: set", "scope:       app*:*", "status:      enabled"} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	out = cli("show", "ci", "--output", "json")
	var shown struct {
		Webhook struct {
			Headers   map[string]string `json:"customHeaders"`
			SecretSet bool              `json:"secretSet"`
		} `json:"webhook"`
		Status struct{ Pending, Cursor, Newest int64 } `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &shown); err != nil || !shown.Webhook.SecretSet || shown.Webhook.Headers["Authorization"] != "set" || shown.Status.Pending != 0 {
		t.Errorf("show --output json: %v\n%s", err, out)
	}
	out = cli("events", "ci", "--output", "json", "-n", "0")
	if !strings.Contains(out, `"status": 204`) || !strings.Contains(out, `"delivered": true`) {
		t.Errorf("events --output json: %s", out)
	}
	if out = cli("list"); !strings.Contains(out, "ci") || !strings.Contains(out, uri) {
		t.Errorf("list: %s", out)
	}
	s.Stop() // its files at rest
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err == nil && (bytes.Contains(b, []byte(secret)) || bytes.Contains(b, []byte(token))) {
			t.Errorf("%s holds the webhook's secret or token in the clear", path)
		}
		return nil
	})
	s = startServer(t, dir)
	if out = cli("delete", "ci"); !strings.Contains(out, "webhook ci deleted") {
		t.Errorf("delete: %s", out)
	}
	if out, err := stowageCLI(t, "webhook", "show", "ci", "--registry", s.URL); err == nil || !strings.Contains(out, "no webhook named") {
		t.Errorf("show after delete: %v %s", err, out)
	}
}
