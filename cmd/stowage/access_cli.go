package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/auth"
	"github.com/stowage/stowage/config"
)

// The access control commands (user, scope-map, token, anonymous-pull,
// whoami) and quota: thin clients of /api/v1/auth/ and /api/v1/quotas.

const userUsage = `Usage: stowage user create|list|show|delete|passwd|update NAME [flags]

Manages users (access control must be on: see docs/access.md). Admins may do
everything; other users have the rights of their scope map.

  create NAME [--admin] [--scope-map M]   the password is read from stdin
                                          (--password-stdin) or generated and printed once
  list
  show NAME
  delete NAME                             the last admin cannot be deleted
  passwd NAME                             set a new password (stdin or generated)
  update NAME [--admin=BOOL] [--disabled=BOOL] [--scope-map M]

Example:
  stowage user create ci --scope-map team-a-push
`

const scopeMapUsage = `Usage: stowage scope-map create|list|show|delete NAME [flags]

A scope map lists repository patterns with the actions allowed on them, as in
Azure Container Registry. Patterns: an exact name (team-a/app), a prefix with
/* (team-a/* matches everything below team-a/), or * for all. Actions:
content/read, content/write, content/delete, metadata/read, metadata/write.

  create NAME --rule PATTERN=ACTION[,ACTION...] [--rule ...] [--description D]
                 (replaces the scope map if it exists)
  list           built-in scope maps first (_repositories_pull, _push, _admin…)
  show NAME
  delete NAME    refused while a token or user uses it

Example:
  stowage scope-map create team-a-read --rule 'team-a/*=content/read,metadata/read'
`

const tokenUsage = `Usage: stowage token create|list|show|update|disable|enable|delete|password|delete-password NAME [flags]

Tokens are repository-scoped credentials: a name and up to two passwords
(password1, password2, for rotation), bound to one scope map, with an
optional expiry. Log in with the token's name as the user name.

  create NAME --scope-map M [--expiry 720h|2027-01-31] [--disabled]
                 prints both passwords once: they are not stored
  list
  show NAME
  update NAME [--scope-map M] [--expiry D | --no-expiry]
  disable NAME   refused at once (also bearer tokens issued before)
  enable NAME
  delete NAME
  password NAME [--which password1|password2] [--expiry D]
                 generate a new password (the other one keeps working)
  delete-password NAME --which password1|password2

Example:
  stowage token create ci-team-a --scope-map team-a-read --expiry 2160h
  docker login registry.example.com -u ci-team-a --password-stdin
`

const quotaUsage = `Usage: stowage quota [show [REPO]] | set REPO SIZE | remove REPO

Shows the registry's storage limit (from its tier or limits.storage) and the
per-repository quotas, with what each holds now, each layer counted once.
A push that would pass a limit is refused with DENIED before its bytes are
kept. SIZE: 500MB, 10GiB, 1.5TiB.

Example:
  stowage quota set team-a/app 20GiB
`

func authPath(parts ...string) string {
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return auth.AdminPrefix + strings.Join(parts, "/")
}

// readPassword reads one line from stdin when asked, else generates one.
func readPassword(stdin bool) (string, bool, error) {
	if stdin {
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil && err != io.EOF {
			return "", false, err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			return "", false, fmt.Errorf("no password on stdin")
		}
		return line, false, nil
	}
	return newPassword(), true, nil
}

func runUser(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	sub, args, code, ok := subcommand("user", args, userUsage, stderr)
	if !ok {
		return code
	}
	var scopeMap, output *string
	var admin, disabled, pwStdin *bool
	fl, reg, ok := parseAdmin("user "+sub, userUsage, args, stderr, func(fl *flag.FlagSet) {
		admin = fl.Bool("admin", false, "create: make an admin; update: --admin=true or --admin=false")
		disabled = fl.Bool("disabled", false, "update: --disabled=true or --disabled=false")
		scopeMap = fl.String("scope-map", "\x00", "the rights of a user who is not an admin (update: \"\" removes it)")
		pwStdin = fl.Bool("password-stdin", false, "read the password from stdin (default: generate one and print it)")
		output = outputFlag(fl)
	})
	if !ok {
		return exitCode(fl, ok)
	}
	c := newClient(*reg, stdout, stderr)
	name := fl.Arg(0)
	if sub != "list" && name == "" {
		return shortUsage(stderr, "user "+sub, userUsage, "want a user NAME")
	}
	if sub == "list" && !noArguments(fl, "user list", stderr) {
		return 2
	}
	var u auth.UserInfo
	switch sub {
	case "list":
		var v struct {
			Users []auth.UserInfo `json:"users"`
		}
		if err := c.do(ctx, http.MethodGet, authPath("users"), &v); err != nil {
			return fail(stderr, err)
		}
		if *output == "json" {
			return printJSON(stdout, v)
		}
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tADMIN\tDISABLED\tSCOPE MAP\tCREATED")
		for _, u := range v.Users {
			fmt.Fprintf(tw, "%s\t%v\t%v\t%s\t%s\n", u.Name, u.Admin, u.Disabled, dash(u.ScopeMap), u.Created.UTC().Format(time.RFC3339))
		}
		tw.Flush()
		return 0
	case "show":
		if err := c.do(ctx, http.MethodGet, authPath("users", name), &u); err != nil {
			return fail(stderr, err)
		}
		return printJSON(stdout, u)
	case "delete":
		if err := c.do(ctx, http.MethodDelete, authPath("users", name), nil); err != nil {
			return fail(stderr, err)
		}
		if *output == "json" {
			return printJSON(stdout, map[string]string{"deleted": name})
		}
		fmt.Fprintf(stdout, "deleted user %s\n", name)
		return 0
	case "create", "passwd":
		pw, generated, err := readPassword(*pwStdin)
		if err != nil {
			return fail(stderr, err)
		}
		if sub == "create" {
			spec := auth.UserSpec{Name: name, Password: pw, Admin: *admin}
			if *scopeMap != "\x00" {
				spec.ScopeMap = *scopeMap
			}
			body, _ := json.Marshal(spec)
			if err := c.send(ctx, http.MethodPost, authPath("users"), body, &u); err != nil {
				return fail(stderr, err)
			}
		} else {
			body, _ := json.Marshal(map[string]string{"password": pw})
			if err := c.send(ctx, http.MethodPut, authPath("users", name, "password"), body, nil); err != nil {
				return fail(stderr, err)
			}
		}
		if *output == "json" {
			// The generated password is in a field (shown once: not stored).
			v := struct {
				User     *auth.UserInfo `json:"user,omitempty"`
				Name     string         `json:"name"`
				Password string         `json:"password,omitempty"`
			}{Name: name}
			if sub == "create" {
				v.User = &u
			}
			if generated {
				v.Password = pw
			}
			return printJSON(stdout, v)
		}
		if sub == "create" {
			fmt.Fprintf(stdout, "created user %s (admin: %v, scope map: %s)\n", u.Name, u.Admin, dash(u.ScopeMap))
		} else {
			fmt.Fprintf(stdout, "changed the password of %s\n", name)
		}
		if generated {
			fmt.Fprintf(stdout, "password: %s\n(shown once; it is not stored)\n", pw)
		}
		return 0
	case "update":
		var ch auth.UserChange
		if flagSet(fl, "admin") {
			ch.Admin = admin
		}
		if flagSet(fl, "disabled") {
			ch.Disabled = disabled
		}
		if *scopeMap != "\x00" {
			ch.ScopeMap = scopeMap
		}
		body, _ := json.Marshal(ch)
		if err := c.send(ctx, http.MethodPatch, authPath("users", name), body, &u); err != nil {
			return fail(stderr, err)
		}
		return printJSON(stdout, u)
	}
	return unknownSub(stderr, "user", sub, userUsage)
}

// flagSet reports whether a flag was given on the command line.
func flagSet(fl *flag.FlagSet, name string) bool {
	set := false
	fl.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func unknownSub(stderr io.Writer, cmd, sub, usage string) int {
	hint := ""
	if s := config.Closest(sub, subcommands[cmd]); s != "" {
		hint = "; did you mean " + s + "?"
	}
	fmt.Fprintf(stderr, "stowage %s: unknown subcommand %q%s\nRun 'stowage %s --help' for its subcommands.\n", cmd, sub, hint, cmd)
	return 2
}

type ruleFlags []auth.Rule

func (r *ruleFlags) String() string { return "" }
func (r *ruleFlags) Set(v string) error {
	pattern, actions, ok := strings.Cut(v, "=")
	if !ok || pattern == "" || actions == "" {
		return fmt.Errorf("want PATTERN=ACTION[,ACTION...], e.g. 'team-a/*=content/read,metadata/read'")
	}
	var as []auth.Action
	for _, a := range strings.Split(actions, ",") {
		as = append(as, auth.Action(strings.TrimSpace(a)))
	}
	*r = append(*r, auth.Rule{Repository: pattern, Actions: as})
	return nil
}

func runScopeMap(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	sub, args, code, ok := subcommand("scope-map", args, scopeMapUsage, stderr)
	if !ok {
		return code
	}
	var rules ruleFlags
	var desc, output *string
	fl, reg, ok := parseAdmin("scope-map "+sub, scopeMapUsage, args, stderr, func(fl *flag.FlagSet) {
		fl.Var(&rules, "rule", "create: PATTERN=ACTION[,ACTION...] (repeat for more rules)")
		desc = fl.String("description", "", "create: what the scope map is for")
		output = outputFlag(fl)
	})
	if !ok {
		return exitCode(fl, ok)
	}
	c := newClient(*reg, stdout, stderr)
	name := fl.Arg(0)
	if sub != "list" && name == "" {
		return shortUsage(stderr, "scope-map "+sub, scopeMapUsage, "want a scope map NAME")
	}
	if sub == "list" && !noArguments(fl, "scope-map list", stderr) {
		return 2
	}
	var sm auth.ScopeMap
	switch sub {
	case "list":
		var v struct {
			ScopeMaps []auth.ScopeMap `json:"scopeMaps"`
		}
		if err := c.do(ctx, http.MethodGet, authPath("scope-maps"), &v); err != nil {
			return fail(stderr, err)
		}
		if *output == "json" {
			return printJSON(stdout, v)
		}
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tRULES\tDESCRIPTION")
		for _, m := range v.ScopeMaps {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", m.Name, rulesText(m.Rules), m.Description)
		}
		tw.Flush()
		return 0
	case "show":
		if err := c.do(ctx, http.MethodGet, authPath("scope-maps", name), &sm); err != nil {
			return fail(stderr, err)
		}
		return printJSON(stdout, sm)
	case "create":
		if len(rules) == 0 {
			return fail(stderr, fmt.Errorf("give at least one --rule PATTERN=ACTION[,ACTION...]"))
		}
		body, _ := json.Marshal(auth.ScopeMapSpec{Description: *desc, Rules: rules})
		if err := c.send(ctx, http.MethodPut, authPath("scope-maps", name), body, &sm); err != nil {
			return fail(stderr, err)
		}
		if *output == "json" {
			return printJSON(stdout, sm)
		}
		fmt.Fprintf(stdout, "scope map %s: %s\n", sm.Name, rulesText(sm.Rules))
		return 0
	case "delete":
		if err := c.do(ctx, http.MethodDelete, authPath("scope-maps", name), nil); err != nil {
			return fail(stderr, err)
		}
		if *output == "json" {
			return printJSON(stdout, map[string]string{"deleted": name})
		}
		fmt.Fprintf(stdout, "deleted scope map %s\n", name)
		return 0
	}
	return unknownSub(stderr, "scope-map", sub, scopeMapUsage)
}

func rulesText(rules []auth.Rule) string {
	var parts []string
	for _, r := range rules {
		var as []string
		for _, a := range r.Actions {
			as = append(as, string(a))
		}
		parts = append(parts, r.Repository+"="+strings.Join(as, ","))
	}
	return strings.Join(parts, " ")
}

// parseExpiry reads a duration from now (720h) or a date (2027-01-31, or
// RFC 3339).
func parseExpiry(s string) (*time.Time, error) {
	if s == "" {
		return nil, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		t := time.Now().Add(d).UTC().Truncate(time.Second)
		return &t, nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return &t, nil
		}
	}
	return nil, fmt.Errorf("--expiry %q: want a duration from now (720h) or a date (2027-01-31 or RFC 3339)", s)
}

func runToken(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	sub, args, code, ok := subcommand("token", args, tokenUsage, stderr)
	if !ok {
		return code
	}
	var scopeMap, expiry, which, output *string
	var disabled, noExpiry *bool
	fl, reg, ok := parseAdmin("token "+sub, tokenUsage, args, stderr, func(fl *flag.FlagSet) {
		scopeMap = fl.String("scope-map", "", "create: the scope map the token is bound to")
		expiry = fl.String("expiry", "", "create, password: when it stops working (720h from now, or a date)")
		which = fl.String("which", "password1", "password: password1 or password2")
		disabled = fl.Bool("disabled", false, "create: create it disabled")
		noExpiry = fl.Bool("no-expiry", false, "update: remove the expiry")
		output = outputFlag(fl)
	})
	if !ok {
		return exitCode(fl, ok)
	}
	c := newClient(*reg, stdout, stderr)
	name := fl.Arg(0)
	if sub != "list" && name == "" {
		return shortUsage(stderr, "token "+sub, tokenUsage, "want a token NAME")
	}
	if sub == "list" && !noArguments(fl, "token list", stderr) {
		return 2
	}
	exp, err := parseExpiry(*expiry)
	if err != nil {
		return fail(stderr, err)
	}
	var t auth.TokenInfo
	switch sub {
	case "list":
		var v struct {
			Tokens []auth.TokenInfo `json:"tokens"`
		}
		if err := c.do(ctx, http.MethodGet, authPath("tokens"), &v); err != nil {
			return fail(stderr, err)
		}
		if *output == "json" {
			return printJSON(stdout, v)
		}
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tSCOPE MAP\tSTATUS\tEXPIRY\tPASSWORDS")
		for _, t := range v.Tokens {
			var pws []string
			for _, p := range t.Passwords {
				pws = append(pws, p.Name)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.Name, t.ScopeMap, t.Status, timeOrDash(t.Expiry), dash(strings.Join(pws, ",")))
		}
		tw.Flush()
		return 0
	case "show":
		if err := c.do(ctx, http.MethodGet, authPath("tokens", name), &t); err != nil {
			return fail(stderr, err)
		}
		return printJSON(stdout, t)
	case "create":
		if *scopeMap == "" {
			return fail(stderr, fmt.Errorf("give --scope-map (stowage scope-map list shows them)"))
		}
		spec := auth.TokenSpec{Name: name, ScopeMap: *scopeMap, Expiry: exp}
		if *disabled {
			spec.Status = auth.Disabled
		}
		body, _ := json.Marshal(spec)
		if err := c.send(ctx, http.MethodPost, authPath("tokens"), body, &t); err != nil {
			return fail(stderr, err)
		}
		if *output == "json" {
			return printJSON(stdout, t) // passwords[].value: shown once, not stored
		}
		fmt.Fprintf(stdout, "created token %s (scope map %s, %s, expiry %s)\n", t.Name, t.ScopeMap, t.Status, timeOrDash(t.Expiry))
		for _, p := range t.Passwords {
			fmt.Fprintf(stdout, "%s: %s\n", p.Name, p.Value)
		}
		fmt.Fprintln(stdout, "(passwords are shown once; they are not stored)")
		return 0
	case "disable", "enable":
		st := auth.Enabled
		if sub == "disable" {
			st = auth.Disabled
		}
		body, _ := json.Marshal(auth.TokenChange{Status: &st})
		if err := c.send(ctx, http.MethodPatch, authPath("tokens", name), body, &t); err != nil {
			return fail(stderr, err)
		}
		if *output == "json" {
			return printJSON(stdout, t)
		}
		fmt.Fprintf(stdout, "token %s is %s\n", t.Name, t.Status)
		return 0
	case "delete":
		if err := c.do(ctx, http.MethodDelete, authPath("tokens", name), nil); err != nil {
			return fail(stderr, err)
		}
		if *output == "json" {
			return printJSON(stdout, map[string]string{"deleted": name})
		}
		fmt.Fprintf(stdout, "deleted token %s\n", name)
		return 0
	case "update":
		ch := auth.TokenChange{Expiry: exp, NoExpiry: *noExpiry}
		if flagSet(fl, "scope-map") {
			ch.ScopeMap = scopeMap
		}
		if ch.ScopeMap == nil && ch.Expiry == nil && !ch.NoExpiry {
			return fail(stderr, fmt.Errorf("nothing to change: give --scope-map, --expiry or --no-expiry"))
		}
		body, _ := json.Marshal(ch)
		if err := c.send(ctx, http.MethodPatch, authPath("tokens", name), body, &t); err != nil {
			return fail(stderr, err)
		}
		if *output == "json" {
			return printJSON(stdout, t)
		}
		fmt.Fprintf(stdout, "token %s: scope map %s, %s, expiry %s\n", t.Name, t.ScopeMap, t.Status, timeOrDash(t.Expiry))
		return 0
	case "delete-password":
		if !flagSet(fl, "which") {
			return fail(stderr, fmt.Errorf("say which password to delete: --which password1 or --which password2"))
		}
		if err := c.do(ctx, http.MethodDelete, authPath("tokens", name, "passwords", *which), nil); err != nil {
			return fail(stderr, err)
		}
		if *output == "json" {
			return printJSON(stdout, map[string]string{"token": name, "deleted": *which})
		}
		fmt.Fprintf(stdout, "deleted %s of token %s\n", *which, name)
		return 0
	case "password":
		body, _ := json.Marshal(map[string]any{"name": *which, "expiry": exp})
		var p auth.PasswordInfo
		if err := c.send(ctx, http.MethodPost, authPath("tokens", name, "passwords"), body, &p); err != nil {
			return fail(stderr, err)
		}
		if *output == "json" {
			return printJSON(stdout, p) // value: shown once, not stored
		}
		fmt.Fprintf(stdout, "%s: %s\n(shown once; it is not stored)\n", p.Name, p.Value)
		return 0
	}
	return unknownSub(stderr, "token", sub, tokenUsage)
}

func timeOrDash(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}

const anonymousUsage = `Usage: stowage anonymous-pull [on|off]

Shows or switches anonymous pull: with it on, anyone may pull every repository
and list its tags without logging in; the catalog, pushes and deletes still
need credentials.
`

func runAnonymousPull(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var output *string
	fl, reg, ok := parseAdmin("anonymous-pull", anonymousUsage, args, stderr, func(fl *flag.FlagSet) { output = outputFlag(fl) })
	if !ok {
		return exitCode(fl, ok)
	}
	if badOutput(stderr, "anonymous-pull", *output) {
		return 2
	}
	c := newClient(*reg, stdout, stderr)
	var v struct {
		Enabled bool `json:"enabled"`
	}
	switch fl.Arg(0) {
	case "":
		if err := c.do(ctx, http.MethodGet, authPath("anonymous-pull"), &v); err != nil {
			return fail(stderr, err)
		}
	case "on", "off":
		body, _ := json.Marshal(map[string]bool{"enabled": fl.Arg(0) == "on"})
		if err := c.send(ctx, http.MethodPut, authPath("anonymous-pull"), body, &v); err != nil {
			return fail(stderr, err)
		}
	default:
		return shortUsage(stderr, "anonymous-pull", anonymousUsage, fmt.Sprintf("%q: want on or off (or nothing, to show)", fl.Arg(0)))
	}
	if *output == "json" {
		return printJSON(stdout, v)
	}
	state := "off"
	if v.Enabled {
		state = "on"
	}
	fmt.Fprintf(stdout, "anonymous pull: %s\n", state)
	return 0
}

func runWhoami(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var output *string
	fl, reg, ok := parseAdmin("whoami", "Usage: stowage whoami\n\nPrints who the admin commands act as (STOWAGE_USERNAME).\n", args, stderr, func(fl *flag.FlagSet) { output = outputFlag(fl) })
	if !ok {
		return exitCode(fl, ok)
	}
	if badOutput(stderr, "whoami", *output) {
		return 2
	}
	var v map[string]any
	if err := newClient(*reg, stdout, stderr).do(ctx, http.MethodGet, authPath("whoami"), &v); err != nil {
		return fail(stderr, err)
	}
	if *output == "json" {
		return printJSON(stdout, v)
	}
	fmt.Fprintf(stdout, "%v %v (admin: %v, by %v)\n", v["kind"], v["name"], v["admin"], v["method"])
	return 0
}

func runQuota(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var output *string
	fl, reg, ok := parseAdmin("quota", quotaUsage, args, stderr, func(fl *flag.FlagSet) { output = outputFlag(fl) })
	if !ok {
		return exitCode(fl, ok)
	}
	if badOutput(stderr, "quota", *output) {
		return 2
	}
	c := newClient(*reg, stdout, stderr)
	var q stowage.QuotaReport
	switch sub := fl.Arg(0); sub {
	case "", "show":
		if tooManyArgs(fl, "quota show", fl.Args()[min(1, fl.NArg()):], stderr) {
			return 2
		}
		if err := c.do(ctx, http.MethodGet, "/api/v1/quotas", &q); err != nil {
			return fail(stderr, err)
		}
		if repo := fl.Arg(1); repo != "" {
			// show REPO: the registry's line and that repository's.
			q.Repositories = slices.DeleteFunc(q.Repositories, func(r stowage.Quota) bool { return r.Repository != repo })
			if len(q.Repositories) == 0 {
				// No quota: the repository must exist (NAME_UNKNOWN, as usage says).
				var u json.RawMessage
				if err := c.do(ctx, http.MethodGet, "/api/v1/usage/"+repo, &u); err != nil {
					return fail(stderr, err)
				}
			}
		}
	case "set":
		if tooManyArgs(fl, "quota set", fl.Args()[1:], stderr) {
			return 2
		}
		if fl.NArg() != 3 {
			return shortUsage(stderr, "quota set", quotaUsage, "want a REPOSITORY and a SIZE")
		}
		n, err := config.ParseByteSize(fl.Arg(2))
		if err != nil {
			return fail(stderr, err)
		}
		if n <= 0 {
			return fail(stderr, fmt.Errorf("a quota must be more than 0 (stowage quota remove %s removes it)", fl.Arg(1)))
		}
		body, _ := json.Marshal(map[string]int64{"limitBytes": n})
		if err := c.send(ctx, http.MethodPut, "/api/v1/quotas/"+fl.Arg(1), body, &q); err != nil {
			return fail(stderr, err)
		}
	case "remove":
		if tooManyArgs(fl, "quota remove", fl.Args()[1:], stderr) {
			return 2
		}
		if fl.NArg() != 2 {
			return shortUsage(stderr, "quota remove", quotaUsage, "want a REPOSITORY")
		}
		if err := c.do(ctx, http.MethodDelete, "/api/v1/quotas/"+fl.Arg(1), &q); err != nil {
			return fail(stderr, err)
		}
	default:
		return unknownSub(stderr, "quota", sub, quotaUsage)
	}
	if *output == "json" {
		return printJSON(stdout, q)
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCOPE\tUSED\tLIMIT\tUSE")
	row := func(scope string, q stowage.Quota) {
		used, limit, pct := bytesStr(q.UsedBytes), "unlimited", "-"
		if q.LimitBytes > 0 && !q.UsageHidden {
			limit, pct = bytesStr(q.LimitBytes), fmt.Sprintf("%.1f%%", 100*float64(q.UsedBytes)/float64(q.LimitBytes))
		} else if q.LimitBytes > 0 {
			limit = bytesStr(q.LimitBytes)
		}
		if q.UsageHidden {
			used = "(hidden)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", scope, used, limit, pct)
	}
	row("(registry)", q.Registry)
	for _, r := range q.Repositories {
		row(r.Repository, r)
	}
	tw.Flush()
	return 0
}
