package mgmt

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/feed"
)

// Events is what GET /api/v1/events needs of the change feed (*feed.Feed).
type Events interface {
	// Read returns one page after q.After (feed.ErrBehind when retention
	// deleted events the cursor had not reached).
	Read(ctx context.Context, q feed.Query) (feed.Page, error)
	// Wait is Read that waits up to d for a matching event.
	Wait(ctx context.Context, q feed.Query, d time.Duration) (feed.Page, error)
}

// WithEvents enables GET /api/v1/events.
func (h *Handler) WithEvents(e Events) *Handler {
	h.events = e
	return h
}

// maxWait bounds a long poll (wait=...).
const maxWait = time.Minute

// EventJSON is an event as the API and `stowage events --output json` show it.
type EventJSON struct {
	Seq        int64           `json:"seq"`
	Time       string          `json:"time"`
	Kind       string          `json:"kind"`
	Actor      string          `json:"actor,omitempty"`
	Addr       string          `json:"addr,omitempty"`
	Repository string          `json:"repository,omitempty"`
	Digest     string          `json:"digest,omitempty"`
	Tag        string          `json:"tag,omitempty"`
	MediaType  string          `json:"mediaType,omitempty"`
	Size       int64           `json:"size,omitempty"`
	Reason     string          `json:"reason,omitempty"`
	Previous   string          `json:"previous,omitempty"`
	Origin     string          `json:"origin,omitempty"`
	Detail     json.RawMessage `json:"detail,omitempty"`
}

// EventsPage is the body of GET /api/v1/events.
type EventsPage struct {
	Events []EventJSON `json:"events"`
	Next   int64       `json:"next"`   // pass as after= to read on
	Oldest int64       `json:"oldest"` // lowest seq retained (0: none)
	Newest int64       `json:"newest"` // highest seq so far
}

// ToEventJSON converts an event for the API.
func ToEventJSON(e stowage.Event) EventJSON {
	out := EventJSON{Seq: e.Seq, Time: e.Time.UTC().Format(time.RFC3339Nano), Kind: string(e.Kind), Actor: e.Actor, Addr: e.Addr,
		Repository: e.Repo, Digest: string(e.Digest), Tag: e.Tag, MediaType: e.MediaType, Size: e.Size, Reason: e.Reason,
		Previous: string(e.Previous), Origin: e.Origin}
	if e.Detail != "" {
		if json.Valid([]byte(e.Detail)) {
			out.Detail = json.RawMessage(e.Detail)
		} else {
			out.Detail, _ = json.Marshal(map[string]string{"text": e.Detail})
		}
	}
	return out
}

// serveEvents answers GET /api/v1/events?after=N&n=…&repository=…&actor=…
// &kind=a,b&since=RFC3339&until=RFC3339&wait=30s. A reader whose cursor
// fell behind the retained events gets 410 Gone (EVENTS_TRIMMED).
func (h *Handler) serveEvents(ctx context.Context, w http.ResponseWriter, r *http.Request) error {
	if h.events == nil {
		return stowage.Errorf(stowage.CodeNameUnknown, "this registry serves no change feed (GET /api/v1/events)")
	}
	q, wait, err := ParseEventsQuery(r.URL.Query())
	if err != nil {
		return err
	}
	var p feed.Page
	if wait > 0 {
		p, err = h.events.Wait(ctx, q, wait)
	} else {
		p, err = h.events.Read(ctx, q)
	}
	if err != nil {
		return err
	}
	out := EventsPage{Events: make([]EventJSON, 0, len(p.Events)), Next: p.Next, Oldest: p.Oldest, Newest: p.Newest}
	for _, e := range p.Events {
		out.Events = append(out.Events, ToEventJSON(e))
	}
	return writeJSON(w, out)
}

// ParseEventsQuery reads the parameters of GET /api/v1/events.
func ParseEventsQuery(v map[string][]string) (feed.Query, time.Duration, error) {
	get := func(k string) string {
		if s := v[k]; len(s) > 0 {
			return s[0]
		}
		return ""
	}
	bad := func(format string, args ...any) (feed.Query, time.Duration, error) {
		return feed.Query{}, 0, stowage.Errorf(stowage.CodeInvalidParameter, format+" (see docs/events.md)", args...)
	}
	var q feed.Query
	if s := get("after"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return bad("after=%q: want the next value of the previous page, a number >= 0", s)
		}
		q.After, q.Resume = n, true // a cursor, even 0: trimmed events after it are an error
	}
	if s := get("n"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > feed.MaxLimit {
			return bad("n=%q: want a number of events from 1 to %d", s, feed.MaxLimit)
		}
		q.Limit = n
	}
	if s := get("repository"); s != "" {
		if err := stowage.ValidateName(s); err != nil {
			return feed.Query{}, 0, err
		}
		q.Repo = s
	}
	q.Actor = get("actor")
	if s := get("kind"); s != "" {
		kinds, err := feed.ParseKinds(s)
		if err != nil {
			return bad("kind: %v", err)
		}
		q.Kinds = kinds
	}
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"since", &q.Since}, {"until", &q.Until}} {
		if s := get(p.name); s != "" {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return bad("%s=%q: want an RFC 3339 time such as 2026-01-02T15:04:05Z", p.name, s)
			}
			*p.dst = t
		}
	}
	var wait time.Duration
	if s := get("wait"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 || d > maxWait {
			return bad("wait=%q: want a duration from 0s to %s, e.g. 30s", s, maxWait)
		}
		wait = d
	}
	return q, wait, nil
}
