package main

import (
	"bytes"
	"encoding/base64"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stowage/stowage/config"
)

// TestKeysCommands: retiring the current version names it and the fix; a
// rotation reminds to back up the key file, by path.
func TestKeysCommands(t *testing.T) {
	dir := t.TempDir()
	m := startMain(t, dir)
	defer m.Close()
	base := "http://" + m.Addr
	pushImage(t, base, "team/app", "v1", []byte("a layer to wrap"))
	for _, tc := range []struct {
		name    string
		args    []string
		code    int
		out, er string
	}{
		{"retire current", []string{"keys", "retire", "1"}, 1, "", "1 is the current version; rotate first (stowage keys rotate), then retire 1"},
		{"rotate", []string{"keys", "rotate"}, 0, "back up the key file " + filepath.Join(dir, "keys", "service.json"), ""},
		{"retire new current", []string{"keys", "retire", "v2"}, 1, "", "2 is the current version; rotate first (stowage keys rotate), then retire 2"},
		{"rewrap only", []string{"keys", "rotate", "--rewrap-only"}, 0, "current key:", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := cli(t, append(tc.args, "--registry", base)...)
			if code != tc.code || !strings.Contains(out, tc.out) || !strings.Contains(errOut, tc.er) {
				t.Errorf("%v: exit %d\nstdout: %s\nstderr: %s\nwant exit %d, stdout with %q, stderr with %q", tc.args, code, out, errOut, tc.code, tc.out, tc.er)
			}
			if tc.name == "rewrap only" && strings.Contains(out, "back up") {
				t.Errorf("--rewrap-only adds no version, yet: %s", out)
			}
		})
	}
}

// TestKeysStatusEnvKey: a key from an environment variable lists no
// versions of its own; keys status still shows the current one, before any
// data key exists (outside review: it listed none).
func TestKeysStatusEnvKey(t *testing.T) {
	t.Setenv("STOWAGE_TEST_KEY", base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)))
	cfg := config.Default()
	cfg.Addr, cfg.DataDir, cfg.Encryption.KeyEnv = "127.0.0.1:0", t.TempDir(), "STOWAGE_TEST_KEY"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	m := NewMain(cfg, testWriter{t})
	if err := m.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	out, errOut, code := cli(t, "keys", "status", "--registry", "http://"+m.Addr)
	_, versions, _ := strings.Cut(out, "versions:\n")
	if code != 0 || !strings.Contains(out, "environment variable STOWAGE_TEST_KEY") ||
		!strings.Contains(versions, "version 1") || !strings.Contains(versions, "wraps 0 data keys (current)") {
		t.Errorf("keys status with the key from a variable: exit %d\n%s%s; want the current version listed", code, out, errOut)
	}
}
