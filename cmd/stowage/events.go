package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/config"
	"github.com/stowage/stowage/feed"
	"github.com/stowage/stowage/mgmt"
)

const eventsUsage = `Usage: stowage events [flags]

Shows the change feed, oldest first: every committed change, each with its
sequence number (SEQ): pushes (with the tag, and the digest a moved tag
pointed at before), untags, manifest deletes and why (user, retention, purge,
expiry, repository), repository deletes, restores, lock, quota and policy
changes, user, token and scope-map changes, failed logins, and pulls when
events.pulls is on. It is also the registry's audit trail: filter by
repository, actor, kind and time.

  stowage events                          the oldest retained events (100)
  stowage events --after 1200             what happened after event 1200
  stowage events --follow                 then wait for new ones, until Ctrl-C
  stowage events --repository app --kind delete,untag --since 7d
  stowage events --actor alice --since 2026-03-01T00:00:00Z --until 2026-03-02T00:00:00Z
  stowage events --output json            one JSON object per line, for scripts

A consumer keeps the SEQ of the last event it handled and passes it as
--after. If retention (events.max_age, events.max_count) deleted events it
had not read yet, the command fails with EVENTS_TRIMMED and says how to
resume. Reading the feed needs an admin when access control is on.
See docs/events.md.
`

func runEvents(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var after *int64
	var n *int
	var follow *bool
	var output, repo, actor, kinds, since, until *string
	fl, reg, ok := parseAdmin("events", eventsUsage, args, stderr, func(fl *flag.FlagSet) {
		after = fl.Int64("after", 0, "show events after this sequence number (a cursor: fails if retention deleted events after it; omit it to start at the oldest retained)")
		n = fl.Int("n", -1, "show at most N events (default 100; with --follow, no limit; 0: no limit)")
		follow = fl.Bool("follow", false, "keep waiting for new events until interrupted (Ctrl-C)")
		output = fl.String("output", "text", "text (one aligned line per event) or json (one object per line)")
		repo = fl.String("repository", "", "only events of this repository")
		actor = fl.String("actor", "", "only events made by this user or token")
		kinds = fl.String("kind", "", "only these kinds, comma-separated: "+kindNames())
		since = fl.String("since", "", "only events at or after this time: RFC 3339 (2026-03-01T12:00:00Z) or an age (90m, 24h, 7d)")
		until = fl.String("until", "", "only events before this time (same forms as --since)")
	})
	if !ok {
		return exitCode(fl, ok)
	}
	if fl.NArg() > 0 {
		fmt.Fprintf(stderr, "stowage events: unexpected argument %q (filters are flags: --repository, --actor, --kind)\n", fl.Arg(0))
		return 2
	}
	if *output != "text" && *output != "json" {
		fmt.Fprintf(stderr, "stowage events: --output %q: want text or json\n", *output)
		return 2
	}
	if *after < 0 {
		fmt.Fprintln(stderr, "stowage events: --after must be 0 or more")
		return 2
	}
	limit := *n
	if limit < 0 {
		limit = 100
		if *follow {
			limit = 0
		}
	}
	q := url.Values{}
	if *repo != "" {
		q.Set("repository", *repo)
	}
	if *actor != "" {
		q.Set("actor", *actor)
	}
	if *kinds != "" {
		if _, err := feed.ParseKinds(*kinds); err != nil {
			fmt.Fprintln(stderr, "stowage events: --kind:", err)
			return 2
		}
		q.Set("kind", *kinds)
	}
	now := time.Now()
	for _, p := range []struct{ name, val string }{{"since", *since}, {"until", *until}} {
		if p.val == "" {
			continue
		}
		t, err := parseWhen(p.val, now)
		if err != nil {
			fmt.Fprintf(stderr, "stowage events: --%s: %v\n", p.name, err)
			return 2
		}
		q.Set(p.name, t.UTC().Format(time.RFC3339Nano))
	}

	c := newClient(*reg, stdout, stderr)
	enc := json.NewEncoder(stdout)
	cursor, printed, wait, header := *after, 0, false, *output == "text"
	resume := false // without --after, the first read starts at the oldest retained event
	fl.Visit(func(f *flag.Flag) { resume = resume || f.Name == "after" })
	for {
		page := feed.MaxLimit
		if limit > 0 {
			page = min(page, limit-printed)
		}
		if resume { // a cursor, even 0: events after it that retention deleted are an error, never skipped
			q.Set("after", strconv.FormatInt(cursor, 10))
		}
		q.Set("n", strconv.Itoa(page))
		q.Del("wait")
		if wait {
			q.Set("wait", "30s")
		}
		var p mgmt.EventsPage
		if err := c.do(ctx, http.MethodGet, "/api/v1/events?"+q.Encode(), &p); err != nil {
			if ctx.Err() != nil {
				return 0 // interrupted
			}
			return fail(stderr, err)
		}
		if header { // after the first answer: an error is not preceded by a header
			fmt.Fprintf(stdout, "%6s  %-20s  %-17s  %-12s  %s\n", "SEQ", "TIME", "KIND", "ACTOR", "TARGET  DETAILS")
			header = false
		}
		for _, e := range p.Events {
			if len(e.Detail) > 0 { // the server indents it; one event, one line
				var b bytes.Buffer
				if json.Compact(&b, e.Detail) == nil {
					e.Detail = b.Bytes()
				}
			}
			if *output == "json" {
				enc.Encode(e)
			} else {
				fmt.Fprintln(stdout, eventLine(e))
			}
		}
		printed += len(p.Events)
		caughtUp := p.Next >= p.Newest || len(p.Events) == 0 && p.Next == cursor
		cursor, resume = p.Next, true
		if limit > 0 && printed >= limit {
			if !caughtUp {
				fmt.Fprintf(stderr, "stowage events: more events follow: add --after %d (or -n 0 for all)\n", cursor)
			}
			return 0
		}
		if caughtUp && !*follow {
			return 0
		}
		wait = caughtUp
		if ctx.Err() != nil {
			return 0
		}
	}
}

// eventLine is an event as one aligned line of text.
func eventLine(e mgmt.EventJSON) string {
	t := e.Time
	if parsed, err := time.Parse(time.RFC3339Nano, e.Time); err == nil {
		t = parsed.UTC().Format(time.RFC3339)
	}
	actor := e.Actor
	if actor == "" {
		actor = "-"
	}
	target := e.Repository
	if e.Tag != "" {
		target += ":" + e.Tag
	}
	if e.Digest != "" {
		target += "@" + short(stowage.Digest(e.Digest))
	}
	if target == "" {
		target = "-"
	}
	var extra []string
	add := func(k, v string) {
		if v != "" {
			extra = append(extra, k+"="+v)
		}
	}
	add("reason", e.Reason)
	if e.Previous != "" {
		add("was", short(stowage.Digest(e.Previous)))
	}
	if e.Size > 0 {
		add("size", strings.ReplaceAll(bytesStr(e.Size), " ", ""))
	}
	add("from", e.Addr)
	add("origin", e.Origin)
	if len(e.Detail) > 0 {
		add("detail", string(e.Detail))
	}
	return strings.TrimRight(fmt.Sprintf("%6d  %-20s  %-17s  %-12s  %s  %s", e.Seq, t, e.Kind, actor, target, strings.Join(extra, " ")), " ")
}

// parseWhen reads an RFC 3339 time, or an age before now: 90m, 24h, 7d, 1d12h.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	rest, days := s, 0
	if i := strings.Index(s, "d"); i > 0 {
		d, err := strconv.Atoi(s[:i])
		if err != nil || d < 0 {
			return time.Time{}, fmt.Errorf("%q: want an RFC 3339 time (2026-03-01T12:00:00Z) or an age (90m, 24h, 7d)", s)
		}
		rest, days = s[i+1:], d
	}
	var dur time.Duration
	if rest != "" {
		d, err := time.ParseDuration(rest)
		if err != nil || d < 0 {
			return time.Time{}, fmt.Errorf("%q: want an RFC 3339 time (2026-03-01T12:00:00Z) or an age (90m, 24h, 7d)", s)
		}
		dur = d
	}
	return now.Add(-(time.Duration(days)*24*time.Hour + dur)), nil
}

func kindNames() string {
	names := make([]string, len(feed.Kinds))
	for i, k := range feed.Kinds {
		names[i] = string(k)
	}
	return strings.Join(names, ", ")
}

// ---- serve's side ----

// feedTrimInterval is how often serve applies the feed's retention.
const feedTrimInterval = 10 * time.Minute

// openFeed returns the change feed of db with the configured retention.
func openFeed(db stowage.DB, c config.Events) (*feed.Feed, error) {
	s, ok := feed.Of(db)
	if !ok {
		return nil, errors.New("the metadata database has no change feed")
	}
	cursors, _ := feed.CursorsOf(db) // nil: nothing holds retention back
	return feed.New(s, feed.Options{Retention: feed.Retention{MaxAge: time.Duration(c.MaxAge), MaxCount: c.MaxCount}, Cursors: cursors}), nil
}

// trimFeed is the background job that applies the feed's retention.
func (m *Main) trimFeed(f *feed.Feed) func(context.Context) error {
	return func(ctx context.Context) error {
		n, err := f.Trim(ctx)
		if err == nil && n > 0 {
			m.log.Info("change feed retention deleted old events", "events", n, "retention", f.Retention().String())
		}
		return err
	}
}
