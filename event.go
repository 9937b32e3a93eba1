package stowage

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"time"
	"unicode/utf8"
)

// EventTx appends to the change feed: the durable, ordered record of every
// committed change, which replication, webhooks, the audit trail and the UI's
// activity view read (package feed). Every write path appends its event in
// the transaction that makes the change, so an event exists if and only if
// its change committed.
type EventTx interface {
	// Append records e. Seq is assigned by the database (e.Seq is ignored);
	// an empty e.Time is the transaction's now.
	Append(e Event) error
}

// EventKind says what changed.
type EventKind string

// The kinds of change the feed records, one event per committed change
// (docs/event-kinds.md lists each kind's fields). Push covers tags too: a
// manifest PUT by tag that creates or moves the tag is one push event naming
// the tag (and the digest it pointed at before, when it moved). A delete
// records one event per manifest it removes (referrers and index children
// included), each naming the tags it took with it; a repository delete is
// one repository.delete event, not one per manifest (a repository of a
// million manifests must not flood the feed's retained window).
const (
	EventPush             EventKind = "push"              // manifest PUT: Digest, MediaType, Size; Tag if by tag; Previous if the tag moved
	EventUntag            EventKind = "untag"             // a tag removed (Digest: what it pointed at; Reason as for delete)
	EventDelete           EventKind = "delete"            // a manifest deleted; Reason says why; Detail lists the tags it took with it
	EventRepositoryDelete EventKind = "repository.delete" // a repository and everything in it
	EventRestore          EventKind = "restore"           // a soft-deleted manifest restored (Tag: the tags it got back)
	EventLock             EventKind = "lock"              // changeable attributes of a repository, tag or manifest (Detail: target, before, after)
	EventQuota            EventKind = "quota"             // a repository quota set or cleared (Detail)
	EventPolicy           EventKind = "policy"            // retention, purge, immutability or soft-delete settings (Detail: name, value)
	EventUser             EventKind = "user"              // access control: a user created, changed or deleted (Detail: action, name)
	EventToken            EventKind = "token"             // a token created, changed or deleted (Detail)
	EventScopeMap         EventKind = "scope-map"         // a scope map created, changed or deleted (Detail)
	EventPull             EventKind = "pull"              // a manifest GET, only with Options.RecordPulls (config events.pulls)
	EventLoginFailed      EventKind = "login.failed"      // a failed authentication (Actor: the name tried)
)

// Why a manifest was deleted (Event.Reason of EventDelete).
const (
	ReasonUser        = "user"        // an API or CLI delete
	ReasonRetention   = "retention"   // the untagged-manifest retention policy
	ReasonPurge       = "purge"       // a purge (run by hand or scheduled)
	ReasonExpiry      = "expiry"      // a soft-deleted manifest whose retention ran out
	ReasonRepository  = "repository"  // reserved: a repository delete records one repository.delete event, not a delete per manifest
	ReasonReplication = "replication" // applied from another region
)

// Event is one committed change.
type Event struct {
	Seq       int64 // position in the feed; consecutive readers see it in this order
	Time      time.Time
	Kind      EventKind
	Actor     string // identity that made the change ("" = anonymous or the registry itself)
	Addr      string // the actor's remote address, when the change came over the network
	Repo      string
	Digest    Digest
	Tag       string
	MediaType string
	Size      int64
	Reason    string // EventDelete: ReasonUser, ReasonRetention, ...
	Previous  Digest // EventPush by tag: what the tag pointed at before ("" = new tag)
	Origin    string // the region where the change was first made ("" = here)
	// Detail is a JSON object with what the kind needs beyond the columns
	// (e.g. a lock change's target and values, the request's ID and user
	// agent). Empty when there is nothing more.
	Detail string
}

// Actor is who makes the changes of a request. The HTTP layers put it in the
// request's context (WithActor); the engine copies it into every event it
// appends for that request.
type Actor struct {
	Name      string // identity ("" = anonymous)
	Addr      string // remote address
	RequestID string
	Method    string
	Host      string
	UserAgent string
}

// RequestActor is the actor making request r: name (the identity, "" for
// anonymous) at addr (the client's address), with the request's ID (header
// X-Request-Id), method, host and user agent.
func RequestActor(r *http.Request, name, addr string) Actor {
	return Actor{Name: name, Addr: addr, RequestID: r.Header.Get("X-Request-Id"),
		Method: r.Method, Host: r.Host, UserAgent: r.UserAgent()}
}

// WithRequestActor returns r with an anonymous actor at the connection's peer
// address in its context, unless it carries one (access control puts the
// caller's there, auth.Middleware), so every engine call of the request
// records who made it.
func WithRequestActor(r *http.Request) *http.Request {
	if ActorFrom(r.Context()) != (Actor{}) {
		return r
	}
	addr, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		addr = r.RemoteAddr
	}
	return r.WithContext(WithActor(r.Context(), RequestActor(r, "", addr)))
}

type actorKey struct{}

// WithActor returns ctx carrying a.
func WithActor(ctx context.Context, a Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
}

// ActorFrom returns the actor ctx carries (the zero Actor if none: the
// registry itself, e.g. a background job).
func ActorFrom(ctx context.Context) Actor {
	a, _ := ctx.Value(actorKey{}).(Actor)
	return a
}

type reasonKey struct{}

// WithReason returns ctx whose deletes record reason (ReasonRetention, ...)
// instead of ReasonUser.
func WithReason(ctx context.Context, reason string) context.Context {
	return context.WithValue(ctx, reasonKey{}, reason)
}

// ReasonFrom returns the delete reason ctx carries (ReasonUser if none).
func ReasonFrom(ctx context.Context) string {
	if r, _ := ctx.Value(reasonKey{}).(string); r != "" {
		return r
	}
	return ReasonUser
}

// NewEvent returns an event of kind for repo, with the actor ctx carries
// (name and address; its request ID and user agent in Detail).
func NewEvent(ctx context.Context, kind EventKind, repo string) Event {
	a := ActorFrom(ctx)
	// The name is cut like the other facts a client sends: a failed login
	// records the name tried, whatever its length (real names are at most
	// 64 characters, auth.validateName).
	return Event{Kind: kind, Actor: truncate(a.Name, maxDetailString), Addr: truncate(a.Addr, maxDetailString), Repo: repo,
		Origin: OriginFrom(ctx), Detail: EventDetail(ctx, nil)}
}

// maxDetailString bounds the request facts an event copies from a client
// (actor name, address, request ID, user agent).
const maxDetailString = 256

// EventDetail returns the JSON object of fields plus the request ID and
// user agent of the actor ctx carries ("requestId", "userAgent", when
// known), or "" when that is nothing. Fields must never hold a secret.
func EventDetail(ctx context.Context, fields map[string]any) string {
	a := ActorFrom(ctx)
	if len(fields) == 0 && a.RequestID == "" && a.UserAgent == "" {
		return ""
	}
	m := make(map[string]any, len(fields)+2)
	for k, v := range fields {
		m[k] = v
	}
	if a.RequestID != "" {
		m["requestId"] = truncate(a.RequestID, maxDetailString)
	}
	if a.UserAgent != "" {
		m["userAgent"] = truncate(a.UserAgent, maxDetailString)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return "" // fields are the engine's own values: cannot happen
	}
	return string(b)
}

// truncate cuts s to at most n bytes, at a character boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
