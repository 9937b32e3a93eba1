package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/stowage/stowage"
)

// Payload is the JSON body of a delivery: ACR's shape (id, timestamp,
// action, target, request), plus source.region (where the change was first
// made), and, where they say something, reason and actor.
type Payload struct {
	ID        string    `json:"id"`
	Timestamp time.Time `json:"timestamp"`
	Action    string    `json:"action"`
	Target    Target    `json:"target"`
	Request   Request   `json:"request"`
	Source    Source    `json:"source"`
	// Reason says why a manifest or tag went: user, retention, purge,
	// replication (delete, untag and repository.delete only).
	Reason string `json:"reason,omitempty"`
	Actor  *Actor `json:"actor,omitempty"`
}

// Target is what changed.
type Target struct {
	MediaType  string `json:"mediaType,omitempty"`
	Size       int64  `json:"size,omitempty"`
	Digest     string `json:"digest,omitempty"`
	Length     int64  `json:"length,omitempty"`
	Repository string `json:"repository,omitempty"`
	Tag        string `json:"tag,omitempty"`
}

// Request is the request that made the change (empty for the registry's
// own jobs: retention, scheduled purges).
type Request struct {
	ID        string `json:"id,omitempty"`
	Host      string `json:"host,omitempty"`
	Method    string `json:"method,omitempty"`
	UserAgent string `json:"useragent,omitempty"`
}

// Source is where the change was made.
type Source struct {
	Region string `json:"region"`
}

// Actor is who made the change.
type Actor struct {
	Name string `json:"name,omitempty"`
}

// The headers of a delivery.
const (
	HeaderSignature = "X-Stowage-Signature" // sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>
	HeaderTimestamp = "X-Stowage-Timestamp" // Unix seconds when this attempt was signed
	HeaderEventID   = "X-Stowage-Event-Id"  // the payload's id
	HeaderSeq       = "X-Stowage-Event-Seq" // the change feed's seq (absent for a ping)
	HeaderWebhook   = "X-Stowage-Webhook"   // the webhook's name
	HeaderAttempt   = "X-Stowage-Attempt"   // 1 for the first try of this event on this node
)

// Sign returns the signature header's value for body sent at ts: the
// HMAC-SHA256, keyed with secret, of the decimal Unix seconds, a ".", and
// the body's exact bytes. A receiver recomputes it, compares in constant
// time, and refuses a timestamp too far from its clock (a replay).
func Sign(secret string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(strconv.FormatInt(ts, 10)))
	m.Write([]byte("."))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// subscription is the action an event counts as for matching a webhook's
// actions ("" when no webhook is told about it).
func subscription(e stowage.Event) Action {
	switch e.Kind {
	case stowage.EventPush:
		return ActionPush
	case stowage.EventDelete, stowage.EventUntag:
		switch e.Reason {
		case stowage.ReasonRetention:
			return ActionRetain
		case stowage.ReasonPurge:
			return ActionPurge
		case stowage.ReasonExpiry:
			return "" // the delete was sent when it was made; the recycle bin's final removal is not
		}
		if e.Kind == stowage.EventUntag {
			return ActionUntag
		}
		return ActionDelete
	case stowage.EventRepositoryDelete:
		return ActionRepoDel
	case stowage.EventLock:
		return ActionLock
	case stowage.EventRestore:
		return ActionRestore
	}
	return ""
}

// eventKinds are the kinds any webhook can be told about: the consumers
// read only these.
var eventKinds = []stowage.EventKind{stowage.EventPush, stowage.EventDelete, stowage.EventUntag,
	stowage.EventRepositoryDelete, stowage.EventLock, stowage.EventRestore}

// tagsOf returns the tags an event concerns: detail.tags when it lists
// them (a push with several tags, a delete, a restore), else its tag.
func tagsOf(e stowage.Event) []string {
	var d struct {
		Tags []string `json:"tags"`
	}
	if e.Detail != "" {
		_ = json.Unmarshal([]byte(e.Detail), &d)
	}
	if e.Tag != "" && !slices.Contains(d.Tags, e.Tag) {
		d.Tags = append(d.Tags, e.Tag)
	}
	return d.Tags
}

// Matches reports whether the webhook (actions, scope) is told about e.
func Matches(actions []Action, scope Scope, e stowage.Event) bool {
	a := subscription(e)
	if a == "" || !slices.Contains(actions, a) || !scope.MatchRepo(e.Repo) {
		return false
	}
	if scope.AllTags() || e.Kind == stowage.EventRepositoryDelete {
		return true
	}
	for _, t := range tagsOf(e) {
		if scope.MatchTag(t) {
			return true
		}
	}
	return false
}

// EventID is the payload id of e: the same for every delivery of the event
// (a receiver drops duplicates by it), a UUID-shaped hash of its seq, time,
// kind, repository and digest.
func EventID(e stowage.Event) string {
	h := sha256.Sum256(fmt.Appendf(nil, "%d|%d|%s|%s|%s|%s", e.Seq, e.Time.UnixNano(), e.Kind, e.Repo, e.Digest, e.Tag))
	h[6] = h[6]&0x0f | 0x50 // version 5 (name-based, SHA)
	h[8] = h[8]&0x3f | 0x80
	x := hex.EncodeToString(h[:16])
	return x[:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

// methodOf is the HTTP method of the request that made e.
func methodOf(e stowage.Event) string {
	if e.Reason == stowage.ReasonRetention || e.Reason == stowage.ReasonPurge {
		return http.MethodPost // a retention or purge run asked for by hand
	}
	switch e.Kind {
	case stowage.EventPush:
		return http.MethodPut
	case stowage.EventDelete, stowage.EventUntag, stowage.EventRepositoryDelete:
		return http.MethodDelete
	case stowage.EventLock:
		return http.MethodPatch
	case stowage.EventRestore:
		return http.MethodPost
	}
	return ""
}

// NewPayload returns the payload of e. region is this registry's region
// (or host name), used when the change was made here; host is the
// registry's host name, for request.host.
func NewPayload(e stowage.Event, region, host string) Payload {
	p := Payload{ID: EventID(e), Timestamp: e.Time.UTC(), Action: string(e.Kind),
		Target: Target{MediaType: e.MediaType, Size: e.Size, Digest: string(e.Digest), Length: e.Size, Repository: e.Repo, Tag: e.Tag},
		Source: Source{Region: e.Origin}}
	if p.Source.Region == "" {
		p.Source.Region = region
	}
	switch e.Kind {
	case stowage.EventDelete, stowage.EventUntag, stowage.EventRepositoryDelete:
		p.Reason = e.Reason
	}
	var d struct {
		RequestID string `json:"requestId"`
		UserAgent string `json:"userAgent"`
	}
	if e.Detail != "" {
		_ = json.Unmarshal([]byte(e.Detail), &d)
	}
	if e.Addr != "" || e.Actor != "" || d.RequestID != "" || d.UserAgent != "" { // made by a request
		p.Request = Request{ID: d.RequestID, Host: host, Method: methodOf(e), UserAgent: d.UserAgent}
	}
	if e.Actor != "" {
		p.Actor = &Actor{Name: e.Actor}
	}
	return p
}

// pingPayload is what `stowage webhook ping` sends.
func pingPayload(now time.Time, region, host string) Payload {
	return Payload{ID: randomUUID(), Timestamp: now.UTC(), Action: string(ActionPing),
		Request: Request{Host: host}, Source: Source{Region: region}}
}

func randomUUID() string {
	x := randomHex(16)
	b := []byte(x)
	b[12] = '4'
	return string(b[:8]) + "-" + string(b[8:12]) + "-" + string(b[12:16]) + "-" + string(b[16:20]) + "-" + string(b[20:32])
}
