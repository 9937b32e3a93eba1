package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// TestCacheRuleCLI: stowage cache-rule create, list, show and delete against
// the real server; the password is read from stdin and never shown.
func TestCacheRuleCLI(t *testing.T) {
	m := startMain(t, t.TempDir())
	defer m.Close()
	base := "http://" + m.Addr
	run := func(stdin string, args ...string) (string, string, int) {
		var out, errb bytes.Buffer
		code := runCacheRuleStdin(context.Background(), append(args, "--registry", base), strings.NewReader(stdin), &out, &errb)
		return out.String(), errb.String(), code
	}
	out, errOut, code := run("s3cret-token\n", "create", "ghcr", "--source", "ghcr/*", "--upstream", "ghcr.io/my-org/*", "--username", "me", "--password-stdin", "--tag-ttl", "30m")
	if code != 0 || !strings.Contains(out, "me (password sealed)") || !strings.Contains(out, "30m0s") {
		t.Fatalf("create: exit %d\n%s%s", code, out, errOut)
	}
	if _, errOut, code := run("", "create", "ghcr2", "--source", "ghcr/*", "--upstream", "ghcr.io/x/*"); code != 1 || !strings.Contains(errOut, "exists") {
		t.Errorf("a second rule for ghcr/*: exit %d %s", code, errOut)
	}
	for _, bad := range [][]string{
		{"create", "x", "--source", "a/*", "--upstream", "ghcr.io/x"},
		{"create", "x", "--source", "a", "--upstream", "ghcr.io/x", "--tag-ttl", "soon"},
		{"create", "x"},
		{"show"},
		{"frob"},
	} {
		if _, _, code := run("", bad...); code == 0 {
			t.Errorf("%v accepted", bad)
		}
	}
	out, _, code = run("", "list", "--output", "json")
	var list struct {
		Rules []map[string]any `json:"rules"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list.Rules) != 1 || list.Rules[0]["hasPassword"] != true {
		t.Fatalf("list: exit %d %s", code, out)
	}
	if strings.Contains(out, "s3cret") {
		t.Error("list shows the password")
	}
	if out, _, code := run("", "show", "ghcr"); code != 0 || !strings.Contains(out, "ghcr.io/my-org/*") || strings.Contains(out, "s3cret") {
		t.Errorf("show: exit %d %s", code, out)
	}
	if out, _, code := run("", "delete", "ghcr"); code != 0 || !strings.Contains(out, "deleted") {
		t.Errorf("delete: exit %d %s", code, out)
	}
	if _, errOut, code := run("", "delete", "ghcr"); code != 1 || !strings.Contains(errOut, "no cache rule named ghcr") {
		t.Errorf("delete again: exit %d %s", code, errOut)
	}
	if out, _, _ := run("", "list"); !strings.Contains(out, "no cache rules") {
		t.Errorf("list after delete: %s", out)
	}
}
