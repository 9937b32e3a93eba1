package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/pullthrough"
)

// pullThrough wires the pull-through cache: rules in the metadata
// database, passwords sealed with the encryption keyring (if any).
func (m *Main) pullThrough(reg *stowage.Registry, db stowage.DB) (*pullthrough.Service, error) {
	store, ok := db.(pullthrough.Store)
	if !ok {
		return nil, fmt.Errorf("the metadata database (%T) keeps no pull-through cache rules", db)
	}
	opts := pullthrough.Options{Logger: m.log}
	// A rule whose upstream is this server is refused (it would loop).
	opts.Self = func() []string { return []string{m.Addr, m.Config.Addr} }
	if m.keys != nil {
		opts.Keys = m.keys.Keys
	}
	return pullthrough.New(reg, store, opts), nil
}

const cacheRuleUsage = `Usage: stowage cache-rule create|list|show|delete [NAME] [flags]

Pull-through cache rules (as ACR's artifact cache): a rule maps local
repositories to an upstream registry. A pull of a manifest or blob under
the rule's source that the registry does not hold is fetched from the
upstream, streamed to the client while it is stored, and kept: later pulls
are served from here, also while the upstream is down or rate limiting.
Tags are checked upstream again after --tag-ttl; digests are kept for good.
Cached images are ordinary images: usage, retention, purge, GC, locks and
quotas apply. See docs/pull-through.md.

  create NAME --source REPO|PREFIX/* --upstream REGISTRY/PATH[/*] [--username U --password-stdin] [--tag-ttl 1h]
  list
  show NAME
  delete NAME      (what the rule cached stays)

Examples:
  stowage cache-rule create hub --source 'docker-hub/*' --upstream 'registry-1.docker.io/library/*'
  docker pull 127.0.0.1:5000/docker-hub/alpine:3.20
  echo "$GHCR_TOKEN" | stowage cache-rule create ghcr --source 'ghcr/*' --upstream 'ghcr.io/my-org/*' --username me --password-stdin
`

func runCacheRule(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runCacheRuleStdin(ctx, args, os.Stdin, stdout, stderr)
}

func runCacheRuleStdin(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	sub, rest, code, ok := subcommand("cache-rule", args, cacheRuleUsage, stderr)
	if !ok {
		return code
	}
	switch sub {
	case "create", "list", "show", "delete":
	default:
		return unknownSub(stderr, "cache-rule", sub, cacheRuleUsage)
	}
	var source, upstream, user, ttl, output *string
	var passStdin, plainHTTP *bool
	fl, reg, ok := parseAdmin("cache-rule "+sub, cacheRuleUsage, rest, stderr, func(fl *flag.FlagSet) {
		output = outputFlag(fl)
		if sub == "create" {
			source = fl.String("source", "", "local repository, or prefix ending in /* (docker-hub/*)")
			upstream = fl.String("upstream", "", "upstream REGISTRY/PATH, ending in /* when --source does (registry-1.docker.io/library/*)")
			user = fl.String("username", "", "user name for the upstream")
			passStdin = fl.Bool("password-stdin", false, "read the upstream's password (or token) from stdin; it is kept sealed with the encryption key")
			ttl = fl.String("tag-ttl", pullthrough.DefaultTagTTL.String(), "how long a cached tag is served before the upstream is asked again")
			plainHTTP = fl.Bool("plain-http", false, "talk to the upstream over http:// (a registry without TLS)")
		}
	})
	if !ok {
		return exitCode(fl, ok)
	}
	wantArgs := 1
	if sub == "list" {
		wantArgs = 0
	}
	if fl.NArg() != wantArgs {
		if wantArgs == 0 {
			noArguments(fl, "cache-rule list", stderr)
		} else {
			fmt.Fprintf(stderr, "stowage cache-rule %s: want the rule's NAME\n", sub)
		}
		return 2
	}
	c := newClient(*reg, stdout, stderr)
	switch sub {
	case "list":
		var out struct {
			Rules []pullthrough.Rule `json:"rules"`
		}
		if err := c.do(ctx, http.MethodGet, "/api/v1/cache-rules", &out); err != nil {
			return fail(stderr, err)
		}
		if *output == "json" {
			if out.Rules == nil {
				out.Rules = []pullthrough.Rule{}
			}
			return printJSON(stdout, out)
		}
		if len(out.Rules) == 0 {
			fmt.Fprintln(stdout, "no cache rules")
			return 0
		}
		fmt.Fprintf(stdout, "%-16s %-24s %-44s %-10s %s\n", "NAME", "SOURCE", "UPSTREAM", "TAG TTL", "CREDENTIALS")
		for _, r := range out.Rules {
			fmt.Fprintf(stdout, "%-16s %-24s %-44s %-10s %s\n", r.Name, r.Source, r.Upstream, time.Duration(r.TagTTL), creds(r))
		}
		return 0
	case "show":
		var r pullthrough.Rule
		if err := c.do(ctx, http.MethodGet, "/api/v1/cache-rules/"+url.PathEscape(fl.Arg(0)), &r); err != nil {
			return fail(stderr, err)
		}
		return printRule(stdout, r, *output)
	case "delete":
		if err := c.do(ctx, http.MethodDelete, "/api/v1/cache-rules/"+url.PathEscape(fl.Arg(0)), nil); err != nil {
			return fail(stderr, err)
		}
		if *output == "json" {
			return printJSON(stdout, map[string]any{"deleted": fl.Arg(0)})
		}
		fmt.Fprintf(stdout, "cache rule %s deleted (what it cached stays: delete it like any image)\n", fl.Arg(0))
		return 0
	}
	// create
	d, err := time.ParseDuration(*ttl)
	if err != nil || d <= 0 {
		fmt.Fprintf(stderr, "stowage cache-rule create: --tag-ttl %q: want a duration such as 30m or 1h\n", *ttl)
		return 2
	}
	if *source == "" || *upstream == "" {
		fmt.Fprintln(stderr, "stowage cache-rule create: --source and --upstream are required, e.g. --source 'docker-hub/*' --upstream 'registry-1.docker.io/library/*'")
		return 2
	}
	req := struct {
		pullthrough.Rule
		Password string `json:"password,omitempty"`
	}{Rule: pullthrough.Rule{Name: fl.Arg(0), Source: *source, Upstream: *upstream, Username: *user, PlainHTTP: *plainHTTP, TagTTL: pullthrough.Duration(d)}}
	if *passStdin {
		b, err := io.ReadAll(io.LimitReader(stdin, 64<<10))
		if err != nil {
			return fail(stderr, err)
		}
		if req.Password = strings.TrimRight(string(b), "\r\n"); req.Password == "" {
			fmt.Fprintln(stderr, "stowage cache-rule create: --password-stdin: stdin is empty")
			return 2
		}
	}
	body, _ := json.Marshal(req)
	var r pullthrough.Rule
	if err := c.send(ctx, http.MethodPost, "/api/v1/cache-rules", body, &r); err != nil {
		return fail(stderr, err)
	}
	return printRule(stdout, r, *output)
}

func creds(r pullthrough.Rule) string {
	switch {
	case r.Username == "":
		return "anonymous"
	case r.HasPassword:
		return r.Username + " (password sealed)"
	}
	return r.Username
}

func printRule(stdout io.Writer, r pullthrough.Rule, output string) int {
	if output == "json" {
		return printJSON(stdout, r)
	}
	fmt.Fprintf(stdout, "cache rule %s\n  source:      %s\n  upstream:    %s\n  credentials: %s\n  tag TTL:     %s\n  created:     %s\n",
		r.Name, r.Source, r.Upstream, creds(r), time.Duration(r.TagTTL), r.Created.Format(time.RFC3339))
	return 0
}
