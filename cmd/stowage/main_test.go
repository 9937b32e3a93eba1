package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stowage/stowage/config"
)

func TestRunCommands(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("adr: 1.2.3.4:5\n"), 0o644)
	invalid := filepath.Join(dir, "invalid.yaml")
	os.WriteFile(invalid, []byte("log:\n  level: loud\nshutdown_timeout: soon\n"), 0o644)
	for _, tc := range []struct {
		name     string
		args     []string
		code     int
		out, err string // substrings wanted
	}{
		{"no args", nil, 2, "", "Usage:"},
		{"help", []string{"--help"}, 0, "serve", ""},
		{"help serve", []string{"help", "serve"}, 0, "", "data-dir"},
		{"help with a flag", []string{"help", "--output", "json"}, 0, "serve", ""},
		{"help with an unknown flag", []string{"help", "--bogus"}, 2, "", "stowage help: flag provided but not defined: --bogus\nRun 'stowage help'"},
		{"healthcheck with an unknown flag", []string{"healthcheck", "--bogus"}, 2, "", "stowage healthcheck: flag provided but not defined: -bogus\nRun 'stowage healthcheck --help' for its flags.\n"},
		{"a typo of serve", []string{"sever"}, 2, "", "did you mean serve?"},
		{"version", []string{"version"}, 0, "stowage ", ""},
		{"unknown", []string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{"unknown key", []string{"serve", "--config", bad}, 2, "", `bad.yaml, line 1: unknown key "adr"; did you mean addr?`},
		{"bad duration", []string{"serve", "--config", invalid}, 2, "", "is not a duration"},
		{"bad addr", []string{"serve", "--addr", "localhost", "--data-dir", dir}, 2, "", "want host:port"},
		{"missing config", []string{"serve", "--config", filepath.Join(dir, "nope.yaml")}, 2, "", "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(context.Background(), tc.args, &out, &errb)
			if code != tc.code || !strings.Contains(out.String(), tc.out) || !strings.Contains(errb.String(), tc.err) {
				t.Errorf("run(%q) = %d\nstdout: %s\nstderr: %s\nwant code %d, stdout containing %q, stderr containing %q",
					tc.args, code, out.String(), errb.String(), tc.code, tc.out, tc.err)
			}
		})
	}
}

func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	os.WriteFile(file, []byte("addr: 127.0.0.1:6000\ndata_dir: /from/file\nlog:\n  level: debug\n"), 0o644)
	c := config.Default()
	if err := c.Load(file); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"STOWAGE_DATA_DIR": "/from/env"}
	if err := c.ApplyEnv(func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:6000" || c.DataDir != "/from/env" || c.Log.Level != "debug" ||
		c.Database.SQLite != "/from/env/stowage.db" || c.Storage.Filesystem.Path != "/from/env/storage" || !*c.Storage.Filesystem.Fsync {
		t.Errorf("precedence wrong: %+v (fs %+v)", c, c.Storage.Filesystem)
	}
}

func startMain(t *testing.T, dir string) *Main {
	t.Helper()
	cfg := config.Default()
	cfg.Addr, cfg.DataDir = "127.0.0.1:0", dir
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	m := NewMain(cfg, testWriter{t})
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestGracefulShutdown: a blob upload in flight when Close is called
// finishes and is acknowledged; the blob is there after a restart.
func TestGracefulShutdown(t *testing.T) {
	dir := t.TempDir()
	m := startMain(t, dir)
	// A second server on the same data directory is refused.
	cfg := m.Config
	if err := NewMain(cfg, io.Discard).Run(context.Background()); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second server on the same data dir: err = %v, want 'in use'", err)
	}

	data := bytes.Repeat([]byte("stowage"), 300_000)
	sum := sha256.Sum256(data)
	d := "sha256:" + hex.EncodeToString(sum[:])
	pr, pw := io.Pipe()
	req, _ := http.NewRequest(http.MethodPost, "http://"+m.Addr+"/v2/graceful/blobs/uploads/?digest="+d, pr)
	req.ContentLength = int64(len(data))
	done := make(chan *http.Response, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
		}
		done <- resp
	}()
	pw.Write(data[:100_000])
	// Wait until the handler is writing the blob: the request is in flight.
	for i := 0; ; i++ {
		if entries, _ := os.ReadDir(filepath.Join(dir, "storage", "tmp")); len(entries) > 0 {
			break
		}
		if i == 100 {
			t.Fatal("the upload never reached the server")
		}
		time.Sleep(50 * time.Millisecond)
	}
	closed := make(chan error, 1)
	go func() { closed <- m.Close() }()
	time.Sleep(200 * time.Millisecond)
	pw.Write(data[100_000:])
	pw.Close()
	resp := <-done
	if resp == nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("in-flight upload during shutdown: %v, want 201", resp)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}

	m2 := startMain(t, dir)
	defer m2.Close()
	r, err := http.Head("http://" + m2.Addr + "/v2/graceful/blobs/" + d)
	if err != nil || r.StatusCode != http.StatusOK {
		t.Fatalf("after restart: %v %v, want 200", r, err)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
