package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
	// Run in the shells (outside review): bash completes a group's
	// subcommand's flags (it asks stowage WORD1 WORD2 --help, here the
	// test binary as stowage); fish stops offering subcommands once one
	// is given.
	dir := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	shim := "#!/bin/sh\nSTOWAGE_TEST_ARGS=\"$(printf '%s\\n' \"$@\")\" exec " + self + " -test.run='^TestHelperServe$'\n"
	if err := os.WriteFile(filepath.Join(dir, "stowage"), []byte(shim), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, sh := range []string{"bash", "fish"} {
		script, _, _ := cli(t, "completion", sh)
		os.WriteFile(filepath.Join(dir, "comp."+sh), []byte(script), 0o644)
	}
	env := append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"), "HOME="+dir, "XDG_CONFIG_HOME="+dir, "XDG_DATA_HOME="+dir)
	for _, tc := range []struct {
		words string // the command line, the last word being completed
		want  []string
	}{
		{"stowage gc --", []string{"--dry-run", "--min-age"}},
		{"stowage token create x --", []string{"--scope-map", "--expiry"}},
		{"stowage keys rotate --", []string{"--rewrap-only", "--output"}},
		{"stowage retention set --", []string{"--days", "--enabled"}},
		{"stowage storage rebalance --", []string{"--dry-run"}},
		{"stowage keys r", []string{"rotate", "retire"}},
	} {
		script := `source ` + filepath.Join(dir, "comp.bash") + `; COMP_WORDS=(` + tc.words + `); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _stowage; echo "${COMPREPLY[*]}"`
		cmd := exec.Command("bash", "-c", script)
		cmd.Env = env
		got, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, got)
		}
		for _, w := range tc.want {
			if !slices.Contains(strings.Fields(string(got)), w) {
				t.Errorf("bash completion of %q: %q, want %s", tc.words, strings.TrimSpace(string(got)), w)
			}
		}
	}
	for _, tc := range []struct {
		line    string
		want    []string
		notWant []string
	}{
		{"stowage keys ", []string{"rotate", "retire", "status"}, nil},
		{"stowage keys rotate ", nil, []string{"retire", "status"}},
		{"stowage token create ", nil, []string{"list", "delete"}},
	} {
		cmd := exec.Command("fish", "--no-config", "-c", "source "+filepath.Join(dir, "comp.fish")+"; complete -C '"+tc.line+"'")
		cmd.Env = env
		got, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("fish: %v\n%s", err, got)
		}
		lines := strings.Fields(string(got))
		for _, w := range tc.want {
			if !slices.Contains(lines, w) {
				t.Errorf("fish completion of %q: %q, want %s", tc.line, got, w)
			}
		}
		for _, w := range tc.notWant {
			if slices.Contains(lines, w) {
				t.Errorf("fish completion of %q: %q offers %s", tc.line, got, w)
			}
		}
	}
}
