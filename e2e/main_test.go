// Package e2e runs the real stowage binary as a child process and talks to it
// over HTTP: with go-containerregistry (ggcr_test.go), with raw requests for
// the error paths, and under kill -9 (crash_test.go).
//
// The package is skipped with -short. Set STOWAGE_E2E_RACE=1 to build the
// server with -race as well.
package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stowage/stowage/internal/testenv"
)

// binPath is the stowage binary built once by TestMain ("" with -short).
var binPath string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		// Every test calls needServer, which skips; nothing is built.
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "stowage-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "stowage")
	if err := buildBinary(binPath); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build stowage:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildBinary runs `go build -o out ./cmd/stowage` in the module root.
func buildBinary(out string) error {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(gomod))
	if mod == "" || mod == os.DevNull {
		return errors.New("not inside a Go module (go env GOMOD is empty)")
	}
	args := []string{"build", "-o", out}
	if os.Getenv("STOWAGE_E2E_RACE") != "" {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/stowage")
	cmd := exec.Command("go", args...)
	cmd.Dir = filepath.Dir(mod)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%v: %w\n%s", cmd.Args, err, stderr.String())
	}
	return nil
}

// needServer skips the test in -short mode (fails it where the CI stage
// requires e2e: STOWAGE_REQUIRE_E2E).
func needServer(t testing.TB) {
	t.Helper()
	if testing.Short() || binPath == "" {
		testenv.Skip(t, "e2e", "e2e: skipped in -short mode (runs the real server)")
	}
}

// ---- the server process ----

// server is one `stowage serve` child process.
type server struct {
	t       testing.TB
	DataDir string
	Addr    string // 127.0.0.1:port
	URL     string // http://127.0.0.1:port

	cmd  *exec.Cmd
	log  *syncBuffer
	done chan struct{} // closed when the process has exited
	err  error         // from Wait, valid after done
}

// syncBuffer collects the server's output; it is written by exec's copier
// goroutine and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// freePort returns a port free on 127.0.0.1 now, below the kernel's
// ephemeral range (as scripts/lib.sh pick_port): a port from ":0" is an
// ephemeral one, which any outgoing connection may take before the server
// that is handed it listens (a peer's address is written into another
// server's configuration before it starts, so that server cannot retry on
// another port).
func freePort(t testing.TB) int {
	t.Helper()
	lo := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 21024 {
				lo = n
			}
		}
	}
	for range 100 {
		p := 20000 + mrand.IntN(lo-20000)
		if ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
			ln.Close()
			return p
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startServer starts `stowage serve` on a free loopback port over dataDir and
// waits until GET /v2/ answers 200. env holds NAME=value variables and
// --flag=value arguments. The process is stopped in t.Cleanup.
func startServer(t testing.TB, dataDir string, env ...string) *server {
	t.Helper()
	needServer(t)
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		s, err := tryStart(t, dataDir, env...)
		if err == nil {
			return s
		}
		lastErr = err
		// The free port may have been taken between the probe and the
		// server's listen; anything else will fail the same way again.
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	t.Fatalf("start stowage: %v", lastErr)
	return nil
}

func tryStart(t testing.TB, dataDir string, env ...string) (*server, error) {
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s := &server{t: t, DataDir: dataDir, Addr: addr, URL: "http://" + addr, log: &syncBuffer{}, done: make(chan struct{})}
	for _, e := range env {
		if strings.HasPrefix(e, "STOWAGE_TLS_CERT_FILE=") {
			s.URL = "https://" + addr
		}
	}
	args := []string{"serve", "--addr", addr, "--data-dir", dataDir, "--log-level", "warn"}
	var vars []string
	for _, e := range env { // "--flag=value" items are flags, the rest variables
		if strings.HasPrefix(e, "--") {
			args = append(args, e)
		} else {
			vars = append(vars, e)
		}
	}
	s.cmd = exec.Command(binPath, args...)
	s.cmd.Env = append(serverEnv(), vars...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		if !s.exited() {
			s.Stop()
		}
		if t.Failed() {
			t.Logf("server %s (pid %d) output:\n%s", s.Addr, s.cmd.Process.Pid, tail(s.log.String(), 4000))
		}
	})
	if err := s.waitReady(20 * time.Second); err != nil {
		s.Kill9()
		return nil, fmt.Errorf("%w\nserver output:\n%s", err, tail(s.log.String(), 4000))
	}
	return s, nil
}

// serverEnv is the test's environment without STOWAGE_* variables, so that a
// developer's settings cannot change what the tests run against.
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "STOWAGE_") {
			env = append(env, kv)
		}
	}
	return env
}

func (s *server) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	// /healthz answers without credentials (access control may be on); the
	// readiness probe does not check the certificate (the tests do).
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	for {
		select {
		case <-s.done:
			return fmt.Errorf("stowage exited before it was ready: %v", s.err)
		default:
		}
		resp, err := client.Get(s.URL + "/healthz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("GET %s/healthz did not answer 200 within %v (last error: %v)", s.URL, timeout, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func (s *server) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM (graceful shutdown) and waits; after 15 s it sends
// SIGKILL. It reports an unclean exit of a graceful shutdown as an error.
func (s *server) Stop() {
	s.t.Helper()
	if s.exited() {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		if s.err != nil {
			s.t.Errorf("stowage (pid %d) did not exit cleanly after SIGTERM: %v\n%s", s.cmd.Process.Pid, s.err, tail(s.log.String(), 4000))
		}
	case <-time.After(15 * time.Second):
		s.t.Errorf("stowage (pid %d) still running 15s after SIGTERM; killing it", s.cmd.Process.Pid)
		s.Kill9()
	}
}

// Kill9 kills the process with SIGKILL and waits until it is gone (so its
// data directory lock is free).
func (s *server) Kill9() {
	if s.exited() {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// ---- raw HTTP helpers ----

// httpClient is for raw requests; it never follows redirects, so Location
// headers can be checked.
var httpClient = &http.Client{
	Timeout: 60 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

// response is a fully read HTTP response.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// ErrorCode returns the first OCI error code in the body ("" if none).
func (r response) ErrorCode() string {
	var e struct {
		Errors []struct {
			Code string `json:"code"`
		} `json:"errors"`
	}
	if json.Unmarshal(r.Body, &e) != nil || len(e.Errors) == 0 {
		return ""
	}
	return e.Errors[0].Code
}

func (r response) String() string {
	return fmt.Sprintf("%d %s", r.Status, tail(string(r.Body), 300))
}

// do sends a request with httpClient; url may be a path (joined to base)
// or absolute. body may be nil, []byte (sent with Content-Length) or an
// io.Reader (sent chunked, without Content-Length).
func do(ctx context.Context, method, base, url string, hdr map[string]string, body any) (response, error) {
	return doWith(ctx, httpClient, method, base, url, hdr, body)
}

// doWith is do with another client.
func doWith(ctx context.Context, client *http.Client, method, base, url string, hdr map[string]string, body any) (response, error) {
	if strings.HasPrefix(url, "/") {
		url = base + url
	}
	req, err := newRequest(ctx, method, url, hdr, body)
	if err != nil {
		return response{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

func newRequest(ctx context.Context, method, url string, hdr map[string]string, body any) (*http.Request, error) {
	var rd io.Reader
	length := int64(0)
	switch b := body.(type) {
	case nil:
	case []byte:
		rd, length = bytes.NewReader(b), int64(len(b))
	case io.Reader:
		rd, length = b, -1
	default:
		panic(fmt.Sprintf("newRequest: body of type %T", body))
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, err
	}
	if rd != nil {
		req.ContentLength = length
		if length < 0 {
			req.Body = io.NopCloser(rd) // hide the type so net/http sends it chunked
		}
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return req, nil
}

// mustDo is do for the test goroutine: a transport error fails the test.
func mustDo(t testing.TB, method, base, url string, hdr map[string]string, body any) response {
	t.Helper()
	r, err := do(context.Background(), method, base, url, hdr, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return r
}

// expect checks a response's status and, if code is not empty, its OCI error code.
func expect(t testing.TB, what string, r response, status int, code string) bool {
	t.Helper()
	if r.Status != status || code != "" && r.ErrorCode() != code {
		want := fmt.Sprint(status)
		if code != "" {
			want += " " + code
		}
		t.Errorf("%s: got %s, want %s", what, r, want)
		return false
	}
	return true
}

func sha256Digest(b []byte) string {
	h := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(h[:])
}
