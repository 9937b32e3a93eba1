package main

import (
	"context"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stowage/stowage/config"
)

// noJSON lists the commands that print no result and so take no --output,
// each with the reason. Everything else is in jsonCases below.
var noJSON = map[string]string{
	"serve":       "runs the registry; it logs (log.format: json), it prints no result",
	"completion":  "prints a shell script",
	"help":        "prints the help text",
	"healthcheck": "its answer is its exit code (a container HEALTHCHECK); owned by the deploy work (issue 19), see the report",
	// A subcommand ("group sub") whose JSON another test checks.
	"replication backfill": "needs a region with a peer (this fixture has none): TestReplicationBackfillCLI runs it with --output json against two real regions",
	// Aliases of version and help.
	"--version": "alias", "-version": "alias", "-h": "alias", "-help": "alias", "--help": "alias",
}

// jsonCase is one command line, run with --output json against the real
// server; stdout must be one JSON document (or JSON lines) with the fields
// named (a dotted path reaches into objects and arrays: passwords.0.value).
type jsonCase struct {
	args []string
	keys []string
	// absent: fields that must not be there (a zero time for "never").
	absent []string
	lines  bool // JSON lines, one object per line (events)
	local  bool // no --registry: a command that does not talk to a server
	// save, when set, keeps a value of the answer for later rows ($NAME in args).
	save func(v any, vars map[string]string)
}

// jsonCases covers every command and subcommand that prints, in an order
// that builds the state the later ones need.
func jsonCases(dataDir string) []jsonCase {
	return []jsonCase{
		{args: []string{"version"}, keys: []string{"version", "go"}, local: true},
		{args: []string{"whoami"}, keys: []string{"name", "kind"}},
		{args: []string{"usage"}, keys: []string{"physicalBytes", "repositoryUsage.0.name"}},
		{args: []string{"usage", "team/app"}, keys: []string{"name", "manifestUsage"}},
		{args: []string{"delete", "team/app:v2", "--dry-run"}, keys: []string{"dryRun", "manifests", "bytesFreed"}},
		{args: []string{"untag", "team/keep:v1", "--dry-run"}, keys: []string{"dryRun", "tags"}},
		{args: []string{"delete-repo", "team/keep", "--dry-run"}, keys: []string{"dryRun", "repository"}},
		{args: []string{"soft-delete", "set", "--enabled=true", "--days", "7"}, keys: []string{"policy.enabled", "policy.days"}},
		{args: []string{"soft-delete", "show"}, keys: []string{"policy.enabled"}},
		{args: []string{"delete", "team/app:v2"}, keys: []string{"manifests", "recycledUntil"}},
		{args: []string{"recycle-bin"}, keys: []string{"entries.0.id", "entries.0.repository", "entries.0.digest", "entries.0.deletedTime", "entries.0.expiresTime"},
			save: func(v any, vars map[string]string) { vars["$ID"] = jsonString(lookup(v, "entries.0.id")) }},
		{args: []string{"restore", "$ID"}, keys: []string{"repository", "digest", "tags"}},
		{args: []string{"gc", "--dry-run"}, keys: []string{"dryRun", "blobsDeleted"}},
		{args: []string{"gc"}, keys: []string{"bytesFreed", "blobsDeleted"}},
		{args: []string{"retention", "set", "--enabled=false", "--days", "7"}, keys: []string{"policy"}},
		{args: []string{"retention", "show"}, keys: []string{"policy"}},
		{args: []string{"retention", "run", "--dry-run"}, keys: []string{"dryRun", "manifestsDeleted"}},
		{args: []string{"purge", "--filter", "team/.*:pr-.*", "--dry-run"}, keys: []string{"dryRun", "tagsDeleted", "bytesFreed"}},
		{args: []string{"purge-policy", "set", "nightly", "--filter", "team/.*:pr-.*", "--every", "24h"}, keys: []string{"policy.name", "policy.every"}},
		{args: []string{"purge-policy", "list"}, keys: []string{"policies.0.name"}},
		{args: []string{"purge-policy", "delete", "nightly"}, keys: []string{"deleted"}},
		{args: []string{"lock", "team/app:v1", "--write=false"}, keys: []string{"target", "changeableAttributes.writeEnabled"}},
		{args: []string{"lock", "team/app:v1"}, keys: []string{"target", "changeableAttributes.writeEnabled"}},
		{args: []string{"immutability", "set", "team/.*:v.*"}, keys: []string{"rules.0"}},
		{args: []string{"immutability", "show"}, keys: []string{"rules"}},
		{args: []string{"keys", "status"}, keys: []string{"encryption", "status.provider", "status.current.id", "status.current.version", "status.dataKeys.0.id", "status.dataKeys.0.version", "status.dataKeys.0.count"},
			absent: []string{"status.current.ID", "status.data_keys"}},
		{args: []string{"keys", "rotate"}, keys: []string{"current.id", "current.version", "rewrapped", "backUpKeyFile", "note"}, absent: []string{"current.ID", "RotateProgress"}},
		{args: []string{"keys", "rotate"}, keys: []string{"current.version", "rewrapped"}},
		{args: []string{"keys", "retire", "2"}, keys: []string{"retired"}},
		{args: []string{"scrub"}, keys: []string{"blobs", "ok", "copiesChecked"}},
		{args: []string{"storage", "status"}, keys: []string{"description", "mirrors.0.copies.0.state", "shardSets.0.shards"},
			absent: []string{"mirrors.0.copies.0.lastErrorAt", "mirrors.0.copies.1.lastErrorAt"}},
		{args: []string{"storage", "rebalance", "--dry-run"}, keys: []string{"scanned", "misplaced", "dryRun"}},
		{args: []string{"quota", "set", "team/app", "1GiB"}, keys: []string{"registry", "repositories.0.limitBytes"}},
		{args: []string{"quota", "set", "team/keep", "1GiB"}, keys: []string{"repositories.1.limitBytes"}},
		{args: []string{"quota", "show"}, keys: []string{"registry.usedBytes"}},
		{args: []string{"quota", "show", "team/app"}, keys: []string{"registry.usedBytes", "repositories.0.repository"}, absent: []string{"repositories.1"}},
		{args: []string{"quota", "remove", "team/app"}, keys: []string{"registry"}},
		{args: []string{"scope-map", "create", "team-read", "--rule", "team/*=content/read,metadata/read"}, keys: []string{"name", "rules.0.repository"}},
		{args: []string{"scope-map", "list"}, keys: []string{"scopeMaps.0.name"}},
		{args: []string{"scope-map", "show", "team-read"}, keys: []string{"name", "rules"}},
		// The one-time passwords are fields, not only text.
		{args: []string{"token", "create", "ci", "--scope-map", "team-read"}, keys: []string{"name", "scopeMap", "passwords.0.value", "passwords.1.value"}},
		{args: []string{"token", "list"}, keys: []string{"tokens.0.name"}},
		{args: []string{"token", "show", "ci"}, keys: []string{"name", "status"}},
		{args: []string{"token", "update", "ci", "--expiry", "24h"}, keys: []string{"name", "expiry"}},
		{args: []string{"token", "disable", "ci"}, keys: []string{"name", "status"}},
		{args: []string{"token", "enable", "ci"}, keys: []string{"name", "status"}},
		{args: []string{"token", "delete-password", "ci", "--which", "password2"}, keys: []string{"token", "deleted"}},
		{args: []string{"token", "password", "ci", "--which", "password2"}, keys: []string{"name", "value"}},
		{args: []string{"token", "delete", "ci"}, keys: []string{"deleted"}},
		{args: []string{"user", "create", "bob", "--scope-map", "team-read"}, keys: []string{"user.name", "password"}},
		{args: []string{"user", "list"}, keys: []string{"users.0.name"}},
		{args: []string{"user", "show", "bob"}, keys: []string{"name", "scopeMap"}},
		{args: []string{"user", "update", "bob", "--disabled=true"}, keys: []string{"name", "disabled"}},
		{args: []string{"user", "passwd", "bob"}, keys: []string{"name", "password"}},
		{args: []string{"user", "delete", "bob"}, keys: []string{"deleted"}},
		{args: []string{"scope-map", "delete", "team-read"}, keys: []string{"deleted"}},
		{args: []string{"anonymous-pull", "on"}, keys: []string{"enabled"}},
		{args: []string{"anonymous-pull", "off"}, keys: []string{"enabled"}},
		{args: []string{"anonymous-pull"}, keys: []string{"enabled"}},
		{args: []string{"webhook", "create", "hook", "--uri", "$BASE/healthz", "--actions", "push"}, keys: []string{"webhook.name", "webhook.serviceUri", "webhook.actions"}},
		{args: []string{"webhook", "list"}, keys: []string{"webhooks.0.name"}},
		{args: []string{"webhook", "show", "hook"}, keys: []string{"webhook.name"}},
		{args: []string{"webhook", "update", "hook", "--actions", "push,delete"}, keys: []string{"webhook.name", "webhook.actions.1"}},
		{args: []string{"webhook", "ping", "hook"}, keys: []string{}},
		{args: []string{"webhook", "events", "hook"}, keys: []string{}},
		{args: []string{"webhook", "delete", "hook"}, keys: []string{}},
		{args: []string{"export", "--filter", "team/app:.*", "-o", filepath.Join(dataDir, "export")}, keys: []string{"images", "blobs", "bytes", "seq"}},
		{args: []string{"import", filepath.Join(dataDir, "export"), "--repository", "copy/app"}, keys: []string{"images", "tags.0", "blobsMounted"}},
		{args: []string{"cache-rule", "create", "hub", "--source", "hub/*", "--upstream", "registry.invalid/library/*"}, keys: []string{"name", "source", "upstream", "tagTTL"}},
		{args: []string{"cache-rule", "list"}, keys: []string{"rules.0.name"}},
		{args: []string{"cache-rule", "show", "hub"}, keys: []string{"name", "upstream"}},
		{args: []string{"cache-rule", "delete", "hub"}, keys: []string{}},
		{args: []string{"replication", "status"}, keys: []string{"readThrough", "peers"}},
		{args: []string{"events"}, keys: []string{"seq", "kind"}, lines: true},
		{args: []string{"migrate", "--data-dir", filepath.Join(dataDir, "other")}, keys: []string{"database", "versionBefore", "versionAfter", "applied"}, local: true},
		// migrate-metadata needs PostgreSQL: TestMigrateMetadataToPostgres
		// runs it with --output json (the coverage check counts this row).
		{args: []string{"migrate-metadata"}, local: true},
	}
}

// lookup follows a dotted path (a.0.b) through decoded JSON.
func lookup(v any, path string) any {
	for _, p := range strings.Split(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = x[p]; !ok {
				return nil
			}
		case []any:
			i, err := strconv.Atoi(p)
			if err != nil || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return strings.Trim(string(b), `"`)
}

// commandsOfRun lists the commands main.go's run dispatches (the case
// labels of its switch), so a command added there is seen here.
func commandsOfRun(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "main.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var cmds []string
	ast.Inspect(f, func(n ast.Node) bool {
		if fd, ok := n.(*ast.FuncDecl); ok && fd.Name.Name != "run" {
			return false
		}
		if cc, ok := n.(*ast.CaseClause); ok {
			for _, e := range cc.List {
				if lit, ok := e.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					s, _ := strconv.Unquote(lit.Value)
					cmds = append(cmds, s)
				}
			}
		}
		return true
	})
	if len(cmds) < 20 {
		t.Fatalf("found only %d commands in main.go's run: %v", len(cmds), cmds)
	}
	return cmds
}

// startCLIServer starts the real server with access control on and a
// storage topology of shards, one of them a mirror, so that every command
// has something to act on; it returns the base URL and sets the admin's
// credentials for the CLI.
func startCLIServer(t *testing.T) (*Main, string) {
	t.Helper()
	dir := t.TempDir()
	yes := true
	fs := func(name string) config.NamedStorage {
		return config.NamedStorage{Name: name, Storage: config.Storage{Filesystem: &config.Filesystem{Path: filepath.Join(dir, name), Fsync: &yes}}}
	}
	cfg := config.Default()
	cfg.Addr, cfg.DataDir, cfg.Auth.Enabled = "127.0.0.1:0", filepath.Join(dir, "data"), true
	cfg.Storage = config.Storage{Shard: &config.ShardSet{Shards: []config.NamedStorage{
		{Name: "a", Storage: config.Storage{Mirror: &config.Mirror{Copies: []config.NamedStorage{fs("east"), fs("west")}}}},
		fs("b"),
	}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	m := NewMain(cfg, testWriter{t})
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	pw, err := os.ReadFile(filepath.Join(cfg.DataDir, InitialAdminPasswordFile))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("STOWAGE_USERNAME", "admin")
	t.Setenv("STOWAGE_PASSWORD", strings.TrimSpace(string(pw)))
	base := "http://" + m.Addr
	old := http.DefaultClient.Transport
	http.DefaultClient.Transport = basicAuthTransport{"admin", strings.TrimSpace(string(pw))}
	defer func() { http.DefaultClient.Transport = old }()
	pushImage(t, base, "team/app", "v1", []byte("cli layer one"))
	pushImage(t, base, "team/app", "v2", []byte("cli layer two"))
	pushImage(t, base, "team/keep", "v1", []byte("cli layer three"))
	return m, base
}

// TestEveryCommandPrintsJSON runs every command and subcommand that prints
// with --output json against the real server: stdout must parse as JSON
// and hold the fields named. A command added to main.go, or a subcommand
// added to the completion table, that is neither here nor in noJSON fails
// the test; -o json is refused in one line that names --output.
func TestEveryCommandPrintsJSON(t *testing.T) {
	_, base := startCLIServer(t)
	dataDir := t.TempDir()
	cases := jsonCases(dataDir)
	// migrate upgrades an existing database (an empty SQLite file: schema 0).
	os.MkdirAll(filepath.Join(dataDir, "other"), 0o700)
	os.WriteFile(filepath.Join(dataDir, "other", "stowage.db"), nil, 0o600)

	// Coverage: every command, every subcommand.
	covered := func(path ...string) bool {
		return slices.ContainsFunc(cases, func(c jsonCase) bool {
			return len(c.args) >= len(path) && slices.Equal(c.args[:len(path)], path)
		})
	}
	for _, cmd := range append(commandsOfRun(t), commandNames()...) {
		if _, ok := noJSON[cmd]; !ok && !covered(cmd) {
			t.Errorf("command %q prints but no row of jsonCases runs it with --output json (add one, or a reason to noJSON)", cmd)
		}
	}
	for group, subs := range subcommands {
		if _, ok := noJSON[group]; ok {
			continue
		}
		for _, sub := range subs {
			if _, ok := noJSON[group+" "+sub]; !ok && !covered(group, sub) {
				t.Errorf("subcommand %q of %s: no row of jsonCases runs it with --output json", sub, group)
			}
		}
	}

	vars := map[string]string{"$BASE": base}
	for _, c := range cases {
		args := slices.Clone(c.args)
		for i, a := range args {
			if v, ok := vars[a]; ok {
				args[i] = v
			} else if rest, ok := strings.CutPrefix(a, "$BASE"); ok {
				args[i] = base + rest
			}
		}
		name := strings.Join(args, " ")
		if args[0] == "migrate-metadata" {
			continue // TestMigrateMetadataToPostgres
		}
		args = append(args, "--output", "json")
		if !c.local {
			args = append(args, "--registry", base)
		}
		out, errOut, code := cli(t, args...)
		if code != 0 {
			t.Errorf("stowage %s --output json: exit %d\n%s%s", name, code, out, errOut)
			continue
		}
		var docs []any
		if c.lines {
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				var v any
				if err := json.Unmarshal([]byte(line), &v); err != nil {
					t.Errorf("stowage %s --output json: a line is not JSON (%v): %q", name, err, line)
				}
				docs = append(docs, v)
			}
		} else {
			var v any
			if err := json.Unmarshal([]byte(out), &v); err != nil {
				t.Errorf("stowage %s --output json: stdout is not one JSON document (%v):\n%s", name, err, out)
				continue
			}
			docs = append(docs, v)
		}
		for _, k := range c.keys {
			if v := lookup(docs[0], k); v == nil || v == "" {
				t.Errorf("stowage %s --output json: no %s in\n%s", name, k, out)
			}
		}
		for _, k := range c.absent {
			if v := lookup(docs[0], k); v != nil {
				t.Errorf("stowage %s --output json: %s is there (%v), want it left out", name, k, v)
			}
		}
		if c.save != nil {
			c.save(docs[0], vars)
		}
	}

	// -o is no alias of --output (export -o FILE will take it): one line
	// naming --output, before anything is done.
	for _, c := range cases {
		path := c.args[:1]
		if _, group := subcommands[c.args[0]]; group && len(c.args) > 1 {
			path = c.args[:2]
		}
		if _, help, _ := cli(t, append(slices.Clone(path), "--help")...); strings.Contains(help, "\n  -o ") || strings.Contains(help, "\n  -o\n") {
			continue // a command whose -o is its own (export -o FILE)
		}
		args := append(slices.Clone(c.args), "-o", "json", "--registry", base)
		out, errOut, code := cli(t, args...)
		if code != 2 || out != "" || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "--output json") {
			t.Errorf("stowage %s: exit %d\n%s%s; want exit 2 and one line naming --output json", strings.Join(args, " "), code, out, errOut)
		}
	}
}

// groupsAlone says what each command with subcommands does alone (the
// rule in docs/cli.md): "view" runs its view (groupView: the subcommand
// that changes nothing and needs no argument) and prints what that prints;
// "usage" prints a short usage naming its subcommands and exits 2. A group
// added to the subcommands table must be added here.
var groupsAlone = map[string]string{
	"retention":      "view",
	"purge-policy":   "view",
	"immutability":   "view",
	"soft-delete":    "view",
	"keys":           "view",
	"storage":        "view",
	"quota":          "view",
	"user":           "view",
	"scope-map":      "view",
	"token":          "view",
	"anonymous-pull": "view", // its subcommands are on and off; alone it shows
	"webhook":        "view",
	"cache-rule":     "view",
	"replication":    "view",
	"completion":     "usage",
}

// TestGroupsAlone: every group alone behaves by the one rule, against the
// real server; a command or subcommand that lacks its argument gets a
// short usage (at most three lines), not the whole help.
func TestGroupsAlone(t *testing.T) {
	_, base := startCLIServer(t)
	for group := range subcommands {
		if _, ok := groupsAlone[group]; !ok {
			t.Errorf("group %q: not in groupsAlone; decide what it does alone (docs/cli.md) and add it", group)
		}
	}
	for group, view := range groupView {
		if !slices.Contains(subcommands[group], view) || groupsAlone[group] != "view" {
			t.Errorf("groupView[%q] = %q: not one of its subcommands %v, or groupsAlone disagrees", group, view, subcommands[group])
		}
	}
	for group, want := range groupsAlone {
		t.Run(group, func(t *testing.T) {
			out, errOut, code := cli(t, group, "--registry", base)
			switch want {
			case "view":
				view := groupView[group]
				wantOut, _, wantCode := cli(t, group, view, "--registry", base)
				if view == "" {
					wantOut, wantCode = out, 0
				}
				if code != 0 || wantCode != 0 || out != wantOut || out == "" {
					t.Errorf("%s alone: exit %d\n%s%s; want exit 0 and what '%s %s' prints:\n%s", group, code, out, errOut, group, view, wantOut)
				}
				if out, errOut, code := cli(t, group, "--output", "json", "--registry", base); code != 0 || !json.Valid([]byte(out)) {
					t.Errorf("%s --output json: exit %d\n%s%s", group, code, out, errOut)
				}
			case "usage":
				if code != 2 || out != "" || strings.Count(errOut, "\n") > 3 {
					t.Errorf("%s alone: exit %d\nstdout: %s\nstderr: %s; want exit 2 and a short usage", group, code, out, errOut)
				}
				for _, sub := range subcommands[group] {
					if !strings.Contains(errOut, sub) {
						t.Errorf("%s alone: the usage does not name %s:\n%s", group, sub, errOut)
					}
				}
			}
		})
	}
	for _, args := range [][]string{
		{"lock"}, {"delete"}, {"untag"}, {"delete-repo"}, {"restore"},
		{"keys", "retire"}, {"purge-policy", "set"}, {"purge-policy", "delete"}, {"quota", "set"},
		{"user", "show"}, {"user", "create"}, {"scope-map", "show"}, {"token", "create"}, {"token", "delete"},
		{"anonymous-pull", "maybe"}, {"completion", "bash", "zsh"},
	} {
		if args[0] == "completion" {
			continue // below, without --registry
		}
		out, errOut, code := cli(t, append(args, "--registry", base)...)
		if code != 2 || out != "" || strings.Count(errOut, "\n") > 3 || !strings.Contains(errOut, "Usage: stowage "+args[0]) || !strings.Contains(errOut, "--help") {
			t.Errorf("stowage %s: exit %d\nstdout: %s\nstderr: %s; want exit 2 and a short usage (at most 3 lines)", strings.Join(args, " "), code, out, errOut)
		}
	}
	if out, errOut, code := cli(t, "completion", "bash", "zsh"); code != 2 || out != "" || strings.Count(errOut, "\n") > 3 || !strings.Contains(errOut, "Usage: stowage completion") {
		t.Errorf("stowage completion bash zsh: exit %d\n%s%s", code, out, errOut)
	}
	// Flags before the subcommand: not the view with a stray argument.
	if out, errOut, code := cli(t, "token", "--registry", base, "delete", "ci"); code != 2 || out != "" || !strings.Contains(errOut, "the subcommand comes first: stowage token delete") {
		t.Errorf("stowage token --registry URL delete ci: exit %d\n%s%s", code, out, errOut)
	}
}

// TestStrayArguments: every command and subcommand declares how many
// positional arguments it takes (maxArgs), and a word more (dry-run
// without its dashes) is refused with exit 2 before anything runs, naming
// the word and, for a command with --dry-run, that flag. A command added
// to main.go's run or a subcommand added to the completion table without
// a line in maxArgs fails here.
func TestStrayArguments(t *testing.T) {
	_, base := startCLIServer(t)
	var paths [][]string
	for _, cmd := range commandsOfRun(t) {
		if subs, group := subcommands[cmd]; group {
			for _, sub := range subs {
				paths = append(paths, []string{cmd, sub})
			}
			continue
		}
		paths = append(paths, []string{cmd})
	}
	local := map[string]bool{"serve": true, "migrate": true, "migrate-metadata": true, "healthcheck": true, "completion": true, "version": true,
		"--version": true, "-version": true, "help": true, "-h": true, "-help": true, "--help": true}
	for _, p := range paths {
		name := strings.Join(p, " ")
		n, ok := maxArgs[name]
		if !ok {
			t.Errorf("%s: no line in maxArgs (args.go): declare how many arguments it takes", name)
			continue
		}
		if n < 0 {
			continue // any number (immutability set RULE...)
		}
		args := slices.Clone(p)
		for i := 0; i < n; i++ {
			args = append(args, "x"+strconv.Itoa(i))
		}
		if p[0] == "help" || p[0] == "-h" || p[0] == "-help" || p[0] == "--help" {
			args[len(args)-1] = "gc"
		}
		args = append(args, "dry-run")
		if !local[p[0]] {
			args = append(args, "--registry", base)
		}
		out, errOut, code := cli(t, args...)
		want := `unexpected argument "dry-run"`
		if _, help, _ := cli(t, append(slices.Clone(p), "--help")...); strings.Contains(help, "\n  -dry-run") {
			want += "; did you mean --dry-run?"
		}
		if code != 2 || out != "" || !strings.Contains(errOut, want) {
			t.Errorf("stowage %s: exit %d\nstdout: %s\nstderr: %s; want exit 2 and %s", strings.Join(args, " "), code, out, errOut, want)
		}
	}
	// The destructive ones the review ran: nothing happened.
	for _, args := range [][]string{
		{"purge", "--filter", "team/app:v1", "dry-run"},
		{"retention", "run", "dry-run"},
		{"storage", "rebalance", "dry-run"},
		{"keys", "rotate", "extra"},
		{"gc", "dry-run"},
	} {
		if out, errOut, code := cli(t, append(args, "--registry", base)...); code != 2 || out != "" || !strings.Contains(errOut, "unexpected argument") {
			t.Errorf("stowage %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
	}
	if out, _, code := cli(t, "usage", "team/app", "--output", "json", "--registry", base); code != 0 || !strings.Contains(out, `"v1"`) {
		t.Errorf("team/app:v1 is gone after a refused purge:\n%s", out)
	}
	if out, _, _ := cli(t, "keys", "status", "--output", "json", "--registry", base); !strings.Contains(out, `"current": {`) || strings.Contains(out, `"version": 2`) {
		t.Errorf("keys rotate extra rotated (or keys status --output json changed):\n%s", out)
	}
}
