// Package webhook tells other systems about changes in the registry: a
// webhook is an HTTP endpoint that receives a JSON POST for each push,
// delete, untag, ... that matches its actions and scope, in the shape of
// Azure Container Registry's webhooks (docs/webhooks.md).
//
// Deliveries are read from the change feed (package feed), one durable
// feed.Consumer per webhook (named "webhook:<name>"), so they are at least
// once, in the feed's order, and survive restarts: the consumer's cursor is
// in the database, and retention does not delete by age an event it has not
// handled. A receiver that is down gets every event when it is back: a
// failed delivery is retried with exponential backoff, never skipped, and
// the events after it wait (so events of one repository arrive in order).
//
// A webhook's secret (for the X-Stowage-Signature header) and the values of
// its custom headers (they hold Authorization tokens) are sealed at rest
// with the registry's encryption key, as the token signing key is (seal.go),
// and are never shown back.
package webhook

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/stowage/stowage"
)

// Action is what a webhook subscribes to.
type Action string

// The actions. ACR's push and delete, plus untag and those Stowage adds.
const (
	ActionPush     Action = "push"              // a manifest pushed (by tag or digest)
	ActionDelete   Action = "delete"            // a manifest deleted by a user (or replicated from another region)
	ActionUntag    Action = "untag"             // a tag removed by a user (alias: tag-delete)
	ActionRepoDel  Action = "repository.delete" // a repository deleted
	ActionRetain   Action = "retention"         // a manifest or tag deleted by the retention policy
	ActionPurge    Action = "purge"             // a manifest or tag deleted by a purge (by hand or scheduled)
	ActionLock     Action = "lock"              // locks (changeable attributes) of a repository, tag or manifest set
	ActionRestore  Action = "restore"           // a soft-deleted manifest restored from the recycle bin
	ActionPing     Action = "ping"              // only sent by `stowage webhook ping`
	actionTagAlias        = "tag-delete"
)

// Actions lists every action a webhook can subscribe to.
var Actions = []Action{ActionPush, ActionDelete, ActionUntag, ActionRepoDel, ActionRetain, ActionPurge, ActionLock, ActionRestore}

// ParseActions reads a list of actions ("push,delete"); "*" is every one.
func ParseActions(list []string) ([]Action, error) {
	var out []Action
	for _, s := range list {
		for _, a := range strings.Split(s, ",") {
			a = strings.ToLower(strings.TrimSpace(a))
			switch {
			case a == "":
				continue
			case a == "*" || a == "all":
				return slices.Clone(Actions), nil
			case a == actionTagAlias:
				a = string(ActionUntag)
			case !slices.Contains(Actions, Action(a)):
				return nil, stowage.Errorf(stowage.CodeInvalidParameter, "unknown webhook action %q: want one or more of %s (or *)", a, joinActions(Actions))
			}
			if !slices.Contains(out, Action(a)) {
				out = append(out, Action(a))
			}
		}
	}
	if len(out) == 0 {
		return nil, stowage.Errorf(stowage.CodeInvalidParameter, "a webhook needs at least one action: %s (or *)", joinActions(Actions))
	}
	return out, nil
}

func joinActions(as []Action) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = string(a)
	}
	return strings.Join(s, ", ")
}

// Webhook is one webhook as the API shows and takes it. Secret and Headers
// values are only ever set on the way in (create, update); on the way out
// HasSecret says whether a secret is set, and Headers maps each custom
// header's name to "set".
type Webhook struct {
	Name      string            `json:"name"`
	URI       string            `json:"serviceUri"`
	Actions   []Action          `json:"actions"`
	Scope     string            `json:"scope"`
	Headers   map[string]string `json:"customHeaders,omitempty"`
	Secret    string            `json:"secret,omitempty"`
	HasSecret bool              `json:"secretSet"`
	Enabled   bool              `json:"enabled"`
	Created   time.Time         `json:"created"`
	Updated   time.Time         `json:"updated"`
}

// Record is a webhook as the database keeps it: the secret and the header
// values are in Sealed, opened with data key DataKey (seal.go).
type Record struct {
	Name string
	// ID is random, new for every webhook created: a consumer started for
	// a webhook that was deleted and created again under the same name
	// notices and stops.
	ID          string
	URI         string
	Actions     []Action
	Scope       string
	HeaderNames []string // sorted, canonical
	HasSecret   bool
	Sealed      []byte // nil: no secret and no header values
	DataKey     string // id in data_keys of the key that sealed Sealed
	Enabled     bool
	Created     time.Time
	Updated     time.Time
}

// Delivery is one attempt to deliver an event (or a ping).
type Delivery struct {
	Webhook  string
	ID       int64 // per webhook, increasing (the store gives it)
	Time     time.Time
	EventID  string // the payload's id
	Seq      int64  // the feed event's seq (0: a ping)
	Action   Action
	Repo     string
	Tag      string
	Digest   string
	Attempt  int // 1 for the first try of this event on this node
	Status   int // the receiver's HTTP status (0: no answer)
	Duration time.Duration
	Error    string // "" when delivered (2xx)
}

// Store keeps webhooks and their delivery log (meta/sqlite, meta/postgres;
// the shared suite is meta/metatest.Webhooks).
type Store interface {
	// Webhooks lists every webhook by name.
	Webhooks(ctx context.Context) ([]Record, error)
	// Webhook returns the named webhook; stowage.ErrNotFound if none.
	Webhook(ctx context.Context, name string) (Record, error)
	// CreateWebhook adds r, and key (when not nil: the data key that sealed
	// r.Sealed) in the same transaction. ErrExists if the name is taken.
	CreateWebhook(ctx context.Context, r Record, key *stowage.DataKey) error
	// UpdateWebhook replaces the webhook r.Name (stowage.ErrNotFound if
	// none). With key, it is stored and every other data key of the
	// webhook deleted, in the same transaction; without, r.DataKey must be
	// the webhook's current one (or "" with no Sealed: its keys go).
	UpdateWebhook(ctx context.Context, r Record, key *stowage.DataKey) error
	// DeleteWebhook removes the webhook, its delivery log and its data
	// keys (stowage.ErrNotFound if none).
	DeleteWebhook(ctx context.Context, name string) error
	// AddDelivery appends d to the webhook's log (giving its ID) and keeps
	// only the newest keep entries.
	AddDelivery(ctx context.Context, d Delivery, keep int) error
	// Deliveries returns the webhook's newest deliveries, newest first, at
	// most limit (<= 0: all kept).
	Deliveries(ctx context.Context, name string, limit int) ([]Delivery, error)
}

// ErrExists is CreateWebhook's error for a name that is taken.
var ErrExists = fmt.Errorf("webhook exists")

// DataKeyObject is the object name of a webhook's sealing key in data_keys.
func DataKeyObject(name string) string { return "webhook:" + name }

// Provider is a metadata database that keeps webhooks (both of ours do).
type Provider interface {
	Webhooks() Store
}

// Of returns db's webhook store, if it has one.
func Of(db stowage.DB) (Store, bool) {
	p, ok := db.(Provider)
	if !ok {
		return nil, false
	}
	return p.Webhooks(), true
}

// validName: a webhook's name, as ACR's: 5 to 50 letters and digits; we
// also allow - and _ after the first (and names from 1 character).
func validName(name string) error {
	if name == "" || len(name) > 50 {
		return stowage.Errorf(stowage.CodeInvalidParameter, "webhook name %q: want 1 to 50 letters, digits, - or _, starting with a letter or digit", name)
	}
	for i, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || i > 0 && (c == '-' || c == '_')
		if !ok {
			return stowage.Errorf(stowage.CodeInvalidParameter, "webhook name %q: want 1 to 50 letters, digits, - or _, starting with a letter or digit", name)
		}
	}
	return nil
}

// validURI checks a service URI: http or https, a host, no user:password
// (the URI is shown back: credentials go in a custom header, which is
// sealed).
func validURI(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return stowage.Errorf(stowage.CodeInvalidParameter, "service URI %q: want an http:// or https:// URL", s)
	}
	if u.User != nil {
		return stowage.Errorf(stowage.CodeInvalidParameter, "service URI %q holds credentials, which would be shown back: put them in a custom header instead (--header 'Authorization=Basic …'), whose value is sealed", u.Redacted())
	}
	return nil
}

// reservedHeaders may not be set as custom headers: Stowage sets them.
func reservedHeader(name string) bool {
	n := http.CanonicalHeaderKey(name)
	return strings.HasPrefix(n, "X-Stowage-") || n == "Content-Type" || n == "Content-Length" || n == "Host" ||
		n == "Transfer-Encoding" || n == "Connection"
}

func validHeaders(h map[string]string) error {
	for k, v := range h {
		if k == "" || strings.ContainsAny(k, " \t\r\n:") || reservedHeader(k) {
			return stowage.Errorf(stowage.CodeInvalidParameter, "custom header %q: want a header name (not Content-Type, Content-Length, Host or X-Stowage-*, which Stowage sets)", k)
		}
		if strings.ContainsAny(v, "\r\n") {
			return stowage.Errorf(stowage.CodeInvalidParameter, "custom header %q: the value may not hold a line break", k)
		}
	}
	return nil
}

// Scope is a webhook's filter on repository and tag, as ACR's: "" is every
// event; "repo:tag" only that tag; "repo:*" every tag of repo; "repo" alone
// is "repo:latest" (as in ACR). "*" matches any run of characters in either
// part ("team/*:*", "app:v1.*", "*"). An event without a tag (a push by
// digest, a delete of a manifest, a lock of a repository) matches a scope
// whose tag part is "*"; a delete matches too when a tag it took with it
// matches; a repository delete matches when its repository does.
type Scope struct{ repo, tag string }

// ParseScope reads a scope (see Scope).
func ParseScope(s string) (Scope, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "*" {
		return Scope{"*", "*"}, nil
	}
	repo, tag, ok := strings.Cut(s, ":")
	if !ok {
		tag = "latest"
	}
	if repo == "" || tag == "" || strings.ContainsAny(s, " \t@") {
		return Scope{}, stowage.Errorf(stowage.CodeInvalidParameter, "scope %q: want REPO:TAG, REPO:* or REPO (REPO:latest), with * matching any characters, or empty for every repository", s)
	}
	for _, p := range []string{repo, tag} {
		if _, err := path.Match(globOf(p), ""); err != nil {
			return Scope{}, stowage.Errorf(stowage.CodeInvalidParameter, "scope %q: %v", s, err)
		}
	}
	return Scope{repo, tag}, nil
}

// globOf turns a scope part into a path.Match pattern where * also matches
// "/" (path.Match's * does not): match on the name with "/" replaced.
func globOf(p string) string {
	return strings.NewReplacer("[", "\\[", "?", "\\?", "\\", "\\\\").Replace(p)
}

func matchPart(pattern, s string) bool {
	if pattern == "*" {
		return true
	}
	ok, _ := path.Match(strings.ReplaceAll(globOf(pattern), "/", "\x00"), strings.ReplaceAll(s, "/", "\x00"))
	return ok
}

// MatchRepo reports whether repo is in the scope.
func (s Scope) MatchRepo(repo string) bool { return matchPart(s.repo, repo) }

// MatchTag reports whether a tag of a repository in scope is.
func (s Scope) MatchTag(tag string) bool { return matchPart(s.tag, tag) }

// AllTags says the tag part is "*".
func (s Scope) AllTags() bool { return s.tag == "*" }
