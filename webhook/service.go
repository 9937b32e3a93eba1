package webhook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/feed"
)

// Options configures a Service.
type Options struct {
	Keys   Keyring // seals secrets and header values; nil: webhooks cannot have them
	Region string  // source.region of changes made here (default: the host name)
	Host   string  // request.host of changes made by a request
	Log    *slog.Logger
	Now    func() time.Time
	Client *http.Client // default: one that does not follow redirects
	// Timeout bounds one delivery attempt (default 10s).
	Timeout time.Duration
	// MinBackoff and MaxBackoff bound the pause after a failed attempt; it
	// doubles with each failure of the same event (default 1s and 5m).
	MinBackoff, MaxBackoff time.Duration
	// Keep is how many delivery attempts the log keeps per webhook
	// (default 100).
	Keep int
	// Poll bounds one long poll of the feed (default 30s); Sync is how
	// often Run looks for webhooks created or deleted on other nodes
	// (default 5s; changes made through this Service are seen at once).
	Poll, Sync time.Duration
}

// Service manages webhooks and, in Run, delivers their events.
type Service struct {
	db      stowage.DB
	store   Store
	feed    *feed.Feed
	cursors feed.CursorStore
	opts    Options

	mu      sync.Mutex
	running map[string]*runner
	opened  map[string]secrets // by data key id
	kick    chan struct{}
}

// New returns the webhook service of db, delivering from f.
func New(db stowage.DB, f *feed.Feed, opts Options) (*Service, error) {
	store, ok := Of(db)
	if !ok {
		return nil, errors.New("the metadata database keeps no webhooks")
	}
	cursors, ok := feed.CursorsOf(db)
	if !ok {
		return nil, errors.New("the metadata database keeps no feed cursors")
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Client == nil {
		opts.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 5 * time.Minute
	}
	if opts.Keep <= 0 {
		opts.Keep = 100
	}
	if opts.Poll <= 0 {
		opts.Poll = 30 * time.Second
	}
	if opts.Sync <= 0 {
		opts.Sync = 5 * time.Second
	}
	return &Service{db: db, store: store, feed: f, cursors: cursors, opts: opts,
		running: map[string]*runner{}, opened: map[string]secrets{}, kick: make(chan struct{}, 1)}, nil
}

// CursorName is the name of a webhook's feed cursor (and consumer).
func CursorName(name string) string { return "webhook:" + name }

func notFound(name string) error {
	return stowage.Errorf(stowage.CodeNameUnknown, "no webhook named %q (stowage webhook list shows them)", name)
}

func (s *Service) get(ctx context.Context, name string) (Record, error) {
	r, err := s.store.Webhook(ctx, name)
	if errors.Is(err, stowage.ErrNotFound) {
		return Record{}, notFound(name)
	}
	return r, err
}

// view is r as the API shows it: no secret, header values "set".
func view(r Record) Webhook {
	w := Webhook{Name: r.Name, URI: r.URI, Actions: r.Actions, Scope: r.Scope, HasSecret: r.HasSecret,
		Enabled: r.Enabled, Created: r.Created, Updated: r.Updated}
	if len(r.HeaderNames) > 0 {
		w.Headers = map[string]string{}
		for _, h := range r.HeaderNames {
			w.Headers[h] = "set"
		}
	}
	return w
}

// Spec is what create and update take. On update, nil fields stay as
// they are; Headers replaces every custom header (an empty map clears
// them); Secret "" clears the secret.
type Spec struct {
	URI     *string           `json:"serviceUri,omitempty"`
	Actions []string          `json:"actions,omitempty"`
	Scope   *string           `json:"scope,omitempty"`
	Headers map[string]string `json:"customHeaders"`
	Secret  *string           `json:"secret,omitempty"`
	Enabled *bool             `json:"enabled,omitempty"`
}

// apply fills r from sp, and returns the secrets to seal (changed: they
// must be sealed again).
func (s *Service) apply(ctx context.Context, r *Record, sp Spec, old secrets) (sec secrets, changed bool, err error) {
	sec = old
	if sp.URI != nil {
		if err := validURI(*sp.URI); err != nil {
			return sec, false, err
		}
		r.URI = *sp.URI
	}
	if sp.Actions != nil {
		if r.Actions, err = ParseActions(sp.Actions); err != nil {
			return sec, false, err
		}
	}
	if sp.Scope != nil {
		if _, err := ParseScope(*sp.Scope); err != nil {
			return sec, false, err
		}
		r.Scope = strings.TrimSpace(*sp.Scope)
	}
	if sp.Enabled != nil {
		r.Enabled = *sp.Enabled
	}
	if sp.Headers != nil {
		if err := validHeaders(sp.Headers); err != nil {
			return sec, false, err
		}
		sec.Headers = map[string]string{}
		r.HeaderNames = nil
		for k, v := range sp.Headers {
			k = http.CanonicalHeaderKey(k)
			sec.Headers[k] = v
			r.HeaderNames = append(r.HeaderNames, k)
		}
		sort.Strings(r.HeaderNames)
		changed = true
	}
	if sp.Secret != nil {
		sec.Secret, changed = *sp.Secret, true
	}
	if changed {
		r.HasSecret = sec.Secret != ""
	}
	return sec, changed, nil
}

// Create adds a webhook. It is told about changes made from now on: its
// cursor starts after the newest event.
func (s *Service) Create(ctx context.Context, name string, sp Spec) (Webhook, error) {
	if err := validName(name); err != nil {
		return Webhook{}, err
	}
	if sp.URI == nil || *sp.URI == "" {
		return Webhook{}, stowage.Errorf(stowage.CodeInvalidParameter, "a webhook needs a service URI (the http:// or https:// URL events are POSTed to)")
	}
	if sp.Actions == nil {
		return Webhook{}, stowage.Errorf(stowage.CodeInvalidParameter, "a webhook needs at least one action: %s (or *)", joinActions(Actions))
	}
	now := s.opts.Now()
	r := Record{Name: name, ID: randomHex(8), Enabled: true, Created: now, Updated: now}
	sec, changed, err := s.apply(ctx, &r, sp, secrets{})
	if err != nil {
		return Webhook{}, err
	}
	var dk *stowage.DataKey
	if changed && (sec.Secret != "" || len(sec.Headers) > 0) {
		if dk, err = seal(ctx, s.opts.Keys, &r, sec, now); err != nil {
			return Webhook{}, err
		}
	}
	if _, err := s.store.Webhook(ctx, name); err == nil {
		return Webhook{}, stowage.Errorf(stowage.CodeInvalidParameter, "a webhook named %q exists (stowage webhook update changes it)", name)
	} else if !errors.Is(err, stowage.ErrNotFound) {
		return Webhook{}, err
	}
	// The cursor first, after the newest event (a cursor left by a
	// webhook of this name deleted before is replaced).
	p, err := s.feed.Read(ctx, feed.Query{Limit: 1})
	if err != nil {
		return Webhook{}, err
	}
	if err := s.cursors.SaveCursor(ctx, CursorName(name), p.Newest, now); err != nil {
		return Webhook{}, err
	}
	if err := s.store.CreateWebhook(ctx, r, dk); errors.Is(err, ErrExists) {
		return Webhook{}, stowage.Errorf(stowage.CodeInvalidParameter, "a webhook named %q exists (stowage webhook update changes it)", name)
	} else if err != nil {
		return Webhook{}, err
	}
	s.poke()
	return view(r), nil
}

// Update changes a webhook.
func (s *Service) Update(ctx context.Context, name string, sp Spec) (Webhook, error) {
	r, err := s.get(ctx, name)
	if err != nil {
		return Webhook{}, err
	}
	var old secrets
	if (sp.Headers != nil) != (sp.Secret != nil) { // one changes, the other stays: open it
		if old, err = s.secretsOf(ctx, r); err != nil {
			return Webhook{}, err
		}
	}
	sec, changed, err := s.apply(ctx, &r, sp, old)
	if err != nil {
		return Webhook{}, err
	}
	now := s.opts.Now()
	r.Updated = now
	var dk *stowage.DataKey
	if changed {
		r.Sealed, r.DataKey = nil, ""
		if sec.Secret != "" || len(sec.Headers) > 0 {
			if dk, err = seal(ctx, s.opts.Keys, &r, sec, now); err != nil {
				return Webhook{}, err
			}
		}
	}
	if err := s.store.UpdateWebhook(ctx, r, dk); errors.Is(err, stowage.ErrNotFound) {
		return Webhook{}, notFound(name)
	} else if err != nil {
		return Webhook{}, err
	}
	s.poke()
	return view(r), nil
}

// Delete removes a webhook, its delivery log, its sealed secrets and its
// cursor.
func (s *Service) Delete(ctx context.Context, name string) error {
	if err := s.store.DeleteWebhook(ctx, name); errors.Is(err, stowage.ErrNotFound) {
		return notFound(name)
	} else if err != nil {
		return err
	}
	s.stop(name)
	if err := s.cursors.DeleteCursor(ctx, CursorName(name)); err != nil {
		return err
	}
	s.poke()
	return nil
}

// List returns every webhook.
func (s *Service) List(ctx context.Context) ([]Webhook, error) {
	rs, err := s.store.Webhooks(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Webhook, 0, len(rs))
	for _, r := range rs {
		out = append(out, view(r))
	}
	return out, nil
}

// Status is how a webhook's deliveries stand.
type Status struct {
	// Cursor is the last event of the change feed the webhook's consumer
	// has handled (delivered, or skipped as not matching); Newest is the
	// newest event; Pending = Newest - Cursor events (of every kind) are
	// still to be looked at.
	Cursor  int64 `json:"cursor"`
	Newest  int64 `json:"newest"`
	Pending int64 `json:"pending"`
	// The rest is this node's (the node that answered): whether it
	// delivers this webhook's events now (with several nodes, one at a
	// time does: the one holding the job lock "webhooks"), and its counters
	// since it started delivering them.
	Running       bool       `json:"running"`
	Delivered     int64      `json:"delivered"`
	FailedAttempt int64      `json:"failedAttempts"`
	Failures      int        `json:"consecutiveFailures"`
	LastDelivered *time.Time `json:"lastDelivered,omitempty"`
	LastError     string     `json:"lastError,omitempty"`
	LastErrorAt   *time.Time `json:"lastErrorAt,omitempty"`
}

// Show returns a webhook and its status.
func (s *Service) Show(ctx context.Context, name string) (Webhook, Status, error) {
	r, err := s.get(ctx, name)
	if err != nil {
		return Webhook{}, Status{}, err
	}
	var st Status
	c, ok, err := s.cursors.Cursor(ctx, CursorName(name))
	if err != nil {
		return Webhook{}, Status{}, err
	}
	p, err := s.feed.Read(ctx, feed.Query{Limit: 1})
	if err != nil {
		return Webhook{}, Status{}, err
	}
	st.Newest = p.Newest
	if ok {
		st.Cursor, st.Pending = c.Seq, max(p.Newest-c.Seq, 0)
	}
	s.mu.Lock()
	run := s.running[name]
	s.mu.Unlock()
	if run != nil && run.id == r.ID {
		run.mu.Lock()
		st.Delivered, st.FailedAttempt = run.delivered, run.failed
		if !run.lastOK.IsZero() {
			t := run.lastOK
			st.LastDelivered = &t
		}
		if run.lastErr != "" {
			t := run.lastErrAt
			st.LastError, st.LastErrorAt = run.lastErr, &t
		}
		run.mu.Unlock()
		cs := run.consumer.Status()
		st.Running, st.Failures = cs.Running, cs.Failures
	}
	return view(r), st, nil
}

// Deliveries returns the newest delivery attempts of a webhook, newest
// first (at most n; n <= 0: all kept).
func (s *Service) Deliveries(ctx context.Context, name string, n int) ([]Delivery, error) {
	if _, err := s.get(ctx, name); err != nil {
		return nil, err
	}
	return s.store.Deliveries(ctx, name, n)
}

// Ping sends a ping event to the webhook now (also when it is disabled)
// and returns the attempt, also recorded in its log. A receiver that does
// not answer 2xx is not an error: the Delivery says what it answered.
func (s *Service) Ping(ctx context.Context, name string) (Delivery, error) {
	r, err := s.get(ctx, name)
	if err != nil {
		return Delivery{}, err
	}
	sec, err := s.secretsOf(ctx, r)
	if err != nil {
		return Delivery{}, err
	}
	p := pingPayload(s.opts.Now(), s.region(), s.opts.Host)
	d := s.send(ctx, r, sec, p, 0, 1)
	return d, nil
}

func (s *Service) region() string {
	if s.opts.Region != "" {
		return s.opts.Region
	}
	if s.opts.Host != "" {
		return s.opts.Host
	}
	return "local"
}

// secretsOf opens r's secrets (once per data key).
func (s *Service) secretsOf(ctx context.Context, r Record) (secrets, error) {
	if len(r.Sealed) == 0 {
		return secrets{}, nil
	}
	s.mu.Lock()
	sec, ok := s.opened[r.DataKey]
	s.mu.Unlock()
	if ok {
		return sec, nil
	}
	sec, err := open(ctx, s.db, s.opts.Keys, r)
	if err != nil {
		return secrets{}, err
	}
	s.mu.Lock()
	if len(s.opened) > 1000 {
		clear(s.opened)
	}
	s.opened[r.DataKey] = sec
	s.mu.Unlock()
	return sec, nil
}

func (s *Service) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

var errGone = fmt.Errorf("the webhook was deleted or replaced")
