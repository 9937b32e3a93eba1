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
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/feed"
	"github.com/stowage/stowage/metrics"
	"github.com/stowage/stowage/mgmt"
	"github.com/stowage/stowage/webhook"
)

// webhooks returns the webhook service `stowage serve` runs: secrets
// sealed with the encryption keyring (none: webhooks without secrets),
// source.region the host name, request.host the address served.
func (m *Main) webhooks(db stowage.DB, events *feed.Feed, addr string) (*webhook.Service, error) {
	opts := webhook.Options{Host: addr, Log: m.log}
	if m.keys != nil {
		opts.Keys = m.keys.Keys
	}
	if h, err := os.Hostname(); err == nil {
		opts.Region = h
	}
	return webhook.New(db, events, opts)
}

const webhookUsage = `Usage: stowage webhook <create|list|show|update|delete|ping|events> [flags] [NAME]

Webhooks tell other systems (CI, chat, a deploy bot) about changes: for each
push, delete, untag, ... that matches a webhook's actions and scope, the
registry POSTs a JSON event (Azure Container Registry's shape) to its service
URI, at least once, in order, retrying with backoff until the receiver
answers 2xx, across restarts. See docs/webhooks.md.

  stowage webhook create ci --uri https://ci.example.com/hook --actions push,delete \
      --scope 'app/*:*' --secret-env HOOK_SECRET --header 'Authorization=Bearer abc'
  stowage webhook list
  stowage webhook show ci                 its settings and delivery status
  stowage webhook update ci --disable     stop sending (events meanwhile are not sent)
  stowage webhook update ci --enable --actions push
  stowage webhook ping ci                 send a ping now; prints what the receiver answered
  stowage webhook events ci               the last delivery attempts (status, time, error)
  stowage webhook delete ci

Actions: push, delete (a manifest deleted by a user), untag (alias tag-delete),
repository.delete, retention and purge (manifests and tags those policies
delete), lock, restore; * for all.
Scope: REPO:TAG, REPO:* (every tag), REPO (REPO:latest), * matching any
characters ('team/*:v1.*'); empty: every repository.
The secret signs each event: X-Stowage-Signature: sha256=HMAC-SHA256(secret,
"<X-Stowage-Timestamp>.<body>"). The secret and header values are sealed with
the encryption key and never shown back (show says "set").
Needs an admin when access control is on.
`

func runWebhook(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	sub, args, code, ok := subcommand("webhook", args, webhookUsage, stderr)
	if !ok {
		return code
	}
	args = append([]string{sub}, args...)
	var output, uri, actions, scope, secretEnv *string
	var headers multiFlag
	var enable, disable, clearHeaders, clearSecret, secretStdin *bool
	var n *int
	fl, reg, ok := parseAdmin("webhook "+sub, webhookUsage, args[1:], stderr, func(fl *flag.FlagSet) {
		output = outputFlag(fl)
		if sub == "create" || sub == "update" {
			uri = fl.String("uri", "", "the service URI events are POSTed to (http:// or https://)")
			actions = fl.String("actions", "", "comma-separated: push, delete, untag, repository.delete, retention, purge, lock, restore, or *")
			scope = fl.String("scope", "", "REPO:TAG, REPO:*, REPO (= REPO:latest), with * wildcards; empty: every repository")
			fl.Var(&headers, "header", "NAME=VALUE, a custom header sent with every event (repeatable; replaces all on update; sealed at rest)")
			secretEnv = fl.String("secret-env", "", "read the signing secret from this environment variable")
			secretStdin = fl.Bool("secret-stdin", false, "read the signing secret from the first line of standard input")
			enable = fl.Bool("enable", false, "send events (the default at create)")
			disable = fl.Bool("disable", false, "send nothing: events while disabled are not sent later")
			clearHeaders = fl.Bool("clear-headers", false, "update: remove every custom header")
			clearSecret = fl.Bool("clear-secret", false, "update: remove the secret (events are then not signed)")
		}
		if sub == "events" {
			n = fl.Int("n", 20, "show the N newest delivery attempts (0: all kept)")
		}
	})
	if !ok {
		return exitCode(fl, ok)
	}
	if badOutput(stderr, "webhook", *output) {
		return 2
	}
	if sub == "list" {
		if !noArguments(fl, "webhook list", stderr) {
			return 2
		}
	} else if fl.NArg() != 1 {
		fmt.Fprintf(stderr, "stowage webhook %s: want one webhook name (stowage webhook --help)\n", sub)
		return 2
	}
	name := fl.Arg(0)
	path := "/api/v1/webhooks/" + url.PathEscape(name)
	c := newClient(*reg, stdout, stderr)
	switch sub {
	case "list":
		var out struct {
			Webhooks []webhook.Webhook `json:"webhooks"`
		}
		if err := c.do(ctx, http.MethodGet, "/api/v1/webhooks", &out); err != nil {
			return fail(stderr, err)
		}
		if *output == "json" {
			if out.Webhooks == nil {
				out.Webhooks = []webhook.Webhook{}
			}
			return printJSON(stdout, out)
		}
		if len(out.Webhooks) == 0 {
			fmt.Fprintln(stdout, "no webhooks (stowage webhook create adds one)")
			return 0
		}
		fmt.Fprintf(stdout, "%-20s  %-8s  %-28s  %-16s  %s\n", "NAME", "STATUS", "ACTIONS", "SCOPE", "SERVICE URI")
		for _, h := range out.Webhooks {
			fmt.Fprintf(stdout, "%-20s  %-8s  %-28s  %-16s  %s\n", h.Name, enabledWord(h.Enabled), actionList(h.Actions), scopeWord(h.Scope), h.URI)
		}
		return 0
	case "create", "update":
		body := map[string]any{}
		if *uri != "" {
			body["serviceUri"] = *uri
		}
		if *actions != "" {
			body["actions"] = strings.Split(*actions, ",")
		}
		fl.Visit(func(f *flag.Flag) {
			if f.Name == "scope" {
				body["scope"] = *scope
			}
		})
		if *enable && *disable {
			fmt.Fprintln(stderr, "stowage webhook: --enable or --disable, not both")
			return 2
		}
		if *enable || *disable {
			body["enabled"] = *enable
		}
		if len(headers) > 0 || *clearHeaders {
			h := map[string]string{}
			for _, kv := range headers {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					fmt.Fprintf(stderr, "stowage webhook: --header %q: want NAME=VALUE\n", kv)
					return 2
				}
				h[strings.TrimSpace(k)] = v
			}
			body["customHeaders"] = h
		}
		switch {
		case *secretEnv != "" && *secretStdin:
			fmt.Fprintln(stderr, "stowage webhook: --secret-env or --secret-stdin, not both")
			return 2
		case *secretEnv != "":
			v := os.Getenv(*secretEnv)
			if v == "" {
				fmt.Fprintf(stderr, "stowage webhook: --secret-env %s: the variable is empty or not set\n", *secretEnv)
				return 2
			}
			body["secret"] = v
		case *secretStdin:
			line, err := readLine(os.Stdin)
			if err != nil || line == "" {
				fmt.Fprintln(stderr, "stowage webhook: --secret-stdin: no secret on standard input")
				return 2
			}
			body["secret"] = line
		case *clearSecret:
			body["secret"] = ""
		}
		if sub == "create" && body["serviceUri"] == nil {
			fmt.Fprintln(stderr, "stowage webhook create: --uri is required (the URL events are POSTed to)")
			return 2
		}
		if sub == "create" && body["actions"] == nil {
			fmt.Fprintln(stderr, "stowage webhook create: --actions is required (e.g. push,delete, or *)")
			return 2
		}
		b, _ := json.Marshal(body)
		method := http.MethodPut
		if sub == "update" {
			method = http.MethodPatch
		}
		var out struct {
			Webhook webhook.Webhook `json:"webhook"`
		}
		if err := c.send(ctx, method, path, b, &out); err != nil {
			return fail(stderr, err)
		}
		if *output == "json" {
			return printJSON(stdout, out)
		}
		verb := "created"
		if sub == "update" {
			verb = "updated"
		}
		fmt.Fprintf(stdout, "webhook %s %s: %s %s to %s, scope %s\n", name, verb, enabledWord(out.Webhook.Enabled), actionList(out.Webhook.Actions), out.Webhook.URI, scopeWord(out.Webhook.Scope))
		if sub == "create" {
			fmt.Fprintln(stdout, "it is sent the changes made from now on; try it with: stowage webhook ping", name)
		}
		return 0
	case "show":
		var out mgmt.WebhookShow
		if err := c.do(ctx, http.MethodGet, path, &out); err != nil {
			return fail(stderr, err)
		}
		if *output == "json" {
			return printJSON(stdout, out)
		}
		h, st := out.Webhook, out.Status
		secret := "not set (events are not signed)"
		if h.HasSecret {
			secret = "set"
		}
		fmt.Fprintf(stdout, "name:        %s\nstatus:      %s\nservice uri: %s\nactions:     %s\nscope:       %s\nsecret:      %s\n",
			h.Name, enabledWord(h.Enabled), h.URI, actionList(h.Actions), scopeWord(h.Scope), secret)
		if len(h.Headers) == 0 {
			fmt.Fprintln(stdout, "headers:     none")
		} else {
			names := make([]string, 0, len(h.Headers))
			for k := range h.Headers {
				names = append(names, k)
			}
			sort.Strings(names)
			for i, k := range names {
				label := "headers:    "
				if i > 0 {
					label = "            "
				}
				fmt.Fprintf(stdout, "%s %s: set\n", label, k)
			}
		}
		fmt.Fprintf(stdout, "created:     %s\nupdated:     %s\n", h.Created.UTC().Format(time.RFC3339), h.Updated.UTC().Format(time.RFC3339))
		fmt.Fprintf(stdout, "cursor:      event %d of %d (%d to look at)\n", st.Cursor, st.Newest, st.Pending)
		fmt.Fprintf(stdout, "this node:   delivering %t, %d delivered, %d failed attempts", st.Running, st.Delivered, st.FailedAttempt)
		if st.Failures > 0 {
			fmt.Fprintf(stdout, ", %d failures in a row", st.Failures)
		}
		fmt.Fprintln(stdout)
		if st.LastDelivered != nil {
			fmt.Fprintf(stdout, "last delivered: %s\n", st.LastDelivered.UTC().Format(time.RFC3339))
		}
		if st.LastError != "" {
			fmt.Fprintf(stdout, "last error:  %s (%s)\n", st.LastError, st.LastErrorAt.UTC().Format(time.RFC3339))
		}
		return 0
	case "delete":
		if err := c.do(ctx, http.MethodDelete, path, nil); err != nil {
			return fail(stderr, err)
		}
		if *output == "json" {
			return printJSON(stdout, map[string]any{"deleted": name})
		}
		fmt.Fprintf(stdout, "webhook %s deleted\n", name)
		return 0
	case "ping":
		var d mgmt.DeliveryJSON
		if err := c.send(ctx, http.MethodPost, path+"/ping", nil, &d); err != nil {
			return fail(stderr, err)
		}
		if *output == "json" {
			printJSON(stdout, d)
		} else if d.Delivered {
			fmt.Fprintf(stdout, "ping delivered: the receiver answered %d %s in %.1f ms\n", d.Status, http.StatusText(d.Status), d.DurationMS)
		} else {
			fmt.Fprintf(stdout, "ping not delivered: %s (after %.1f ms)\n", d.Error, d.DurationMS)
		}
		if !d.Delivered {
			return 1
		}
		return 0
	default: // events
		var out struct {
			Deliveries []mgmt.DeliveryJSON `json:"deliveries"`
		}
		if err := c.do(ctx, http.MethodGet, path+"/events?n="+strconv.Itoa(*n), &out); err != nil {
			return fail(stderr, err)
		}
		if *output == "json" {
			if out.Deliveries == nil {
				out.Deliveries = []mgmt.DeliveryJSON{}
			}
			return printJSON(stdout, out)
		}
		if len(out.Deliveries) == 0 {
			fmt.Fprintln(stdout, "no delivery attempts yet")
			return 0
		}
		fmt.Fprintf(stdout, "%-20s  %6s  %-10s  %-7s  %6s  %9s  %s\n", "TIME", "SEQ", "ACTION", "ATTEMPT", "STATUS", "DURATION", "TARGET / ERROR")
		for _, d := range out.Deliveries {
			t, _ := time.Parse(time.RFC3339Nano, d.Time)
			target := d.Repository
			if d.Tag != "" {
				target += ":" + d.Tag
			}
			if d.Digest != "" {
				target += "@" + short(stowage.Digest(d.Digest))
			}
			if d.Error != "" {
				target += "  " + d.Error
			}
			status := "-"
			if d.Status != 0 {
				status = strconv.Itoa(d.Status)
			}
			fmt.Fprintf(stdout, "%-20s  %6d  %-10s  %7d  %6s  %7.1fms  %s\n", t.UTC().Format(time.RFC3339), d.Seq, d.Action, d.Attempt, status, d.DurationMS, target)
		}
		return 0
	}
}

func enabledWord(b bool) string {
	if b {
		return "enabled"
	}
	return "disabled"
}

func scopeWord(s string) string {
	if s == "" {
		return "*"
	}
	return s
}

func actionList(as []webhook.Action) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = string(a)
	}
	return strings.Join(s, ",")
}

// readLine reads one line (without its end) from r.
func readLine(r io.Reader) (string, error) {
	var b []byte
	one := make([]byte, 1)
	for len(b) < 4096 {
		n, err := r.Read(one)
		if n == 1 {
			if one[0] == '\n' {
				break
			}
			b = append(b, one[0])
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", err
		}
	}
	return strings.TrimRight(string(b), "\r"), nil
}

// webhookMetrics exports the delivery counters of the webhooks this node
// delivers (docs/observability.md).
func webhookMetrics(reg prometheus.Registerer, hooks *webhook.Service) {
	delivered := prometheus.NewDesc("stowage_webhook_deliveries_total",
		"Events delivered to a webhook's receiver (2xx), by this node since it started delivering them.", []string{"webhook"}, nil)
	failed := prometheus.NewDesc("stowage_webhook_failed_attempts_total",
		"Delivery attempts that failed (each retry counts), by this node.", []string{"webhook"}, nil)
	reg.MustRegister(metrics.Func(func(ch chan<- prometheus.Metric) {
		for name, c := range hooks.Stats() {
			ch <- metrics.Counter(delivered, float64(c.Delivered), name)
			ch <- metrics.Counter(failed, float64(c.FailedAttempts), name)
		}
	}))
}
