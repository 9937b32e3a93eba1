package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestScriptOutput: every command that prints takes --output json and
// prints one JSON document with the fields named; without a terminal, a
// job's progress is one summary line, not a redrawn bar.
func TestScriptOutput(t *testing.T) {
	m := startMain(t, t.TempDir())
	defer m.Close()
	base := "http://" + m.Addr
	pushImage(t, base, "team/app", "v1", []byte("script layer"))
	cli(t, "purge-policy", "set", "--registry", base, "nightly", "--filter", "ci/.*:pr-.*", "--every", "24h")
	for _, tc := range []struct {
		args []string
		keys []string // top-level JSON keys wanted
	}{
		{[]string{"version"}, []string{"version"}},
		{[]string{"gc"}, []string{"blobsDeleted", "bytesFreed"}},
		{[]string{"quota"}, []string{"registry", "repositories"}},
		{[]string{"quota", "show"}, []string{"registry"}},
		{[]string{"lock", "team/app:v1"}, []string{"target", "changeableAttributes"}},
		{[]string{"purge-policy", "list"}, []string{"policies"}},
		{[]string{"immutability", "show"}, []string{"rules"}},
		{[]string{"soft-delete"}, []string{"policy"}},
		{[]string{"soft-delete", "show"}, []string{"policy"}},
		{[]string{"soft-delete", "set", "--enabled=false"}, []string{"policy"}},
		{[]string{"retention", "show"}, []string{"policy"}},
		{[]string{"usage"}, []string{"physicalBytes"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			args := append(tc.args, "--output", "json")
			if tc.args[0] != "version" {
				args = append(args, "--registry", base)
			}
			out, errOut, code := cli(t, args...)
			var v map[string]any
			if code != 0 || json.Unmarshal([]byte(out), &v) != nil {
				t.Fatalf("exit %d, stdout not one JSON object:\n%s%s", code, out, errOut)
			}
			for _, k := range tc.keys {
				if _, ok := v[k]; !ok {
					t.Errorf("no %q in %s", k, out)
				}
			}
		})
	}

	// Subcommands that behave alike: alone, quota and soft-delete show.
	for _, cmd := range []string{"quota", "soft-delete"} {
		if out, errOut, code := cli(t, cmd, "--registry", base); code != 0 || out == "" {
			t.Errorf("%s alone: exit %d\n%s%s; want it to show", cmd, code, out, errOut)
		}
	}
	if _, errOut, code := cli(t, "soft-delete", "frob", "--registry", base); code != 2 || !strings.Contains(errOut, `unknown subcommand "frob"`) {
		t.Errorf("soft-delete frob: %d %s", code, errOut)
	}
	for _, cmd := range [][]string{{"quota"}, {"usage"}, {"keys", "status"}, {"recycle-bin"}, {"purge-policy", "list"}} {
		if _, errOut, code := cli(t, append(cmd, "--output", "yaml", "--registry", base)...); code != 2 || !strings.Contains(errOut, `--output "yaml": want table or json`) {
			t.Errorf("%v --output yaml: %d %s", cmd, code, errOut)
		}
	}

	// Not a terminal: no \r redraws, one summary line of progress.
	_, errOut, code := cli(t, "gc", "--registry", base, "--min-age", "0s")
	if code != 0 || strings.Contains(errOut, "\r") || strings.Count(errOut, "progress: ") != 1 || strings.Count(errOut, "\n") != 1 {
		t.Errorf("gc progress off a terminal: exit %d, stderr %q; want one summary line", code, errOut)
	}
}

// TestCompletion: a script for each shell, naming commands and subcommands.
func TestCompletion(t *testing.T) {
	for _, tc := range []struct {
		shell string
		code  int
		want  string
	}{
		{"bash", 0, "complete -o default -F _stowage stowage"},
		{"zsh", 0, "#compdef stowage"},
		{"fish", 0, "complete -c stowage"},
		{"powershell", 2, ""},
	} {
		out, errOut, code := cli(t, "completion", tc.shell)
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("completion %s: exit %d\n%s%s", tc.shell, code, out, errOut)
		}
		if code == 0 && (!strings.Contains(out, "soft-delete") || !strings.Contains(out, "rotate") || !strings.Contains(out, "purge-policy")) {
			t.Errorf("completion %s lacks commands or subcommands:\n%s", tc.shell, out)
		}
	}
}
