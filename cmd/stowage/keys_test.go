package main

import (
	"path/filepath"
	"strings"
	"testing"
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
