// Package limits enforces request rate limits with token buckets, per
// registry and per identity, separately for reads (GET, HEAD), writes
// (PUT, PATCH, POST), deletes (DELETE) and token requests, as Azure
// Container Registry does. Over a limit, requests are answered 429
// TOOMANYREQUESTS with a Retry-After header.
//
// A bucket holds a minute's worth of requests and refills continuously:
// a limit of 5,000 per minute allows a burst of 5,000 and then one request
// every 12 ms. All anonymous callers share one identity ("").
package limits

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/internal/httperr"
)

// Class is a kind of request, limited separately.
type Class int

const (
	Read   Class = iota // GET, HEAD
	Write               // PUT, PATCH, POST
	Delete              // DELETE
	Token               // requests to the token endpoint
	numClasses
)

func (c Class) String() string {
	switch c {
	case Read:
		return "read"
	case Write:
		return "write"
	case Delete:
		return "delete"
	case Token:
		return "token request"
	}
	return "unknown"
}

// Rate is a limit in requests per minute for the whole registry and for
// each identity; 0 means no limit.
type Rate struct {
	Registry int `json:"registry" yaml:"registry"`
	Identity int `json:"identity" yaml:"identity"`
}

// Config is the limits of a registry.
type Config struct {
	Read, Write, Delete, Token Rate
	// TokenPath: requests to this path count as token requests (default
	// "/oauth2/token").
	TokenPath string
	// MaxIdentities bounds the per-identity buckets kept (default
	// 100,000). Buckets of identities idle long enough to have refilled are
	// dropped anyway; past the bound the least recently used go too.
	MaxIdentities int
	// Store, when set, keeps the buckets, shared by every limiter using
	// it: with several nodes on one database, pass the database, so that a
	// limit holds for the registry as a whole and not per node (see
	// shared.go for the local fast path). Nil: the buckets of this process.
	Store Store
	// Now is the clock (tests); default time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Tier names a preset.
const (
	TierBasic    = "basic"
	TierStandard = "standard"
	TierPremium  = "premium"
)

// ForTier returns the defaults of a tier (requests per minute):
//
//	                  reads           writes         deletes        token requests
//	basic, standard   10,000 / 5,000  2,000 / 1,000  1,000 / 500    2,000 / 500
//	premium           20,000 / 10,000 4,000 / 2,000  4,000 / 2,000  4,000 / 1,000
//
// (per registry / per identity). Reads, writes and deletes are ACR's
// published figures. ACR publishes none for token requests; Stowage's
// allow a client one token per repository it touches with plenty of room
// (a CI runner pulling a few hundred images a minute), while bounding what
// one identity can make the server sign and bcrypt-check.
func ForTier(tier string) (Config, error) {
	switch strings.ToLower(tier) {
	case TierBasic, TierStandard, "":
		return Config{Read: Rate{10_000, 5_000}, Write: Rate{2_000, 1_000}, Delete: Rate{1_000, 500}, Token: Rate{2_000, 500}}, nil
	case TierPremium:
		return Config{Read: Rate{20_000, 10_000}, Write: Rate{4_000, 2_000}, Delete: Rate{4_000, 2_000}, Token: Rate{4_000, 1_000}}, nil
	}
	return Config{}, stowage.Errorf(stowage.CodeInvalidParameter, "tier %q: want basic, standard or premium", tier)
}

// Validate checks that no limit is negative.
func (c Config) Validate() error {
	for cl, r := range c.rates() {
		if r.Registry < 0 || r.Identity < 0 {
			return stowage.Errorf(stowage.CodeInvalidParameter, "%s limits must be 0 (no limit) or a positive number of requests per minute", Class(cl))
		}
	}
	return nil
}

func (c Config) rates() [numClasses]Rate {
	return [numClasses]Rate{c.Read, c.Write, c.Delete, c.Token}
}

// Limiter holds the buckets. It is safe for concurrent use.
type Limiter struct {
	rates     [numClasses]Rate
	tokenPath string
	max       int
	now       func() time.Time
	log       *slog.Logger

	shared *shared // with a Store; else the buckets below

	mu       sync.Mutex
	registry [numClasses]*bucket
	ids      map[idKey]*bucket
	swept    time.Time
	allowed  [numClasses]uint64
	refused  [numClasses]uint64
}

type idKey struct {
	class    Class
	identity string
}

// bucket is a token bucket holding up to perMinute tokens, refilled at
// perMinute a minute.
type bucket struct {
	tokens    float64
	perMinute int
	at        time.Time // last refill
	used      time.Time // last request
}

func newBucket(perMinute int, now time.Time) *bucket {
	return &bucket{tokens: float64(perMinute), perMinute: perMinute, at: now, used: now}
}

func (b *bucket) refill(now time.Time) {
	if el := now.Sub(b.at); el > 0 {
		b.tokens += el.Minutes() * float64(b.perMinute)
		if b.tokens > float64(b.perMinute) {
			b.tokens = float64(b.perMinute)
		}
		b.at = now
	}
}

// wait is how long until the bucket holds one token.
func (b *bucket) wait() time.Duration {
	if b.tokens >= 1 {
		return 0
	}
	return time.Duration((1 - b.tokens) / float64(b.perMinute) * float64(time.Minute))
}

func (b *bucket) full() bool { return b.tokens >= float64(b.perMinute) }

// New returns a Limiter for cfg.
func New(cfg Config) *Limiter {
	l := &Limiter{rates: cfg.rates(), tokenPath: cfg.TokenPath, max: cfg.MaxIdentities, now: cfg.Now, log: cfg.Logger,
		ids: map[idKey]*bucket{}}
	if l.tokenPath == "" {
		l.tokenPath = "/oauth2/token"
	}
	if l.max <= 0 {
		l.max = 100_000
	}
	if l.now == nil {
		l.now = time.Now
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Store != nil {
		var errMu sync.Mutex
		var lastErr time.Time
		l.shared = newShared(cfg.Store, l.now, l.max, func(err error) {
			errMu.Lock()
			defer errMu.Unlock()
			if now := time.Now(); now.Sub(lastErr) > time.Minute {
				lastErr = now
				l.log.Warn("request limits: the shared limit store failed; requests are let through while it does", "err", err)
			}
		})
	}
	now := l.now()
	for c, r := range l.rates {
		if r.Registry > 0 {
			l.registry[c] = newBucket(r.Registry, now)
		}
	}
	return l
}

// Config returns the limits in force (requests per minute).
func (l *Limiter) Config() Config {
	return Config{Read: l.rates[Read], Write: l.rates[Write], Delete: l.rates[Delete], Token: l.rates[Token],
		TokenPath: l.tokenPath, MaxIdentities: l.max}
}

// Decision is the outcome of Allow.
type Decision struct {
	OK         bool
	Class      Class
	Identity   string
	RetryAfter time.Duration // when refused: until the limit allows one request
	// Scope is which limit refused: "registry" or "identity".
	Scope string
	Limit int // that limit, requests per minute
}

// RetryAfterSeconds is RetryAfter in whole seconds, rounded up, at least 1.
func (d Decision) RetryAfterSeconds() int {
	s := int((d.RetryAfter + time.Second - 1) / time.Second)
	return max(s, 1)
}

// Err is the error for a refused request: TOOMANYREQUESTS, with a message
// that says which limit and when to retry.
func (d Decision) Err() *stowage.Error {
	who := "the registry"
	if d.Scope == "identity" {
		who = "identity " + d.Identity
		if d.Identity == "" {
			who = "anonymous callers"
		}
	}
	secs := d.RetryAfterSeconds()
	return &stowage.Error{Code: stowage.CodeTooManyRequests,
		Message: fmt.Sprintf("%s limit of %s requests per minute for %s exceeded; retry in %d s", d.Class, thousands(d.Limit), who, secs),
		Detail:  map[string]any{"class": d.Class.String(), "scope": d.Scope, "limitPerMinute": d.Limit, "retryAfterSeconds": secs}}
}

// Allow takes one request of class for identity ("" for anonymous
// callers) from the registry's and the identity's buckets, or refuses it
// and takes nothing.
func (l *Limiter) Allow(class Class, identity string) Decision {
	return l.allow(context.Background(), class, identity)
}

func (l *Limiter) allow(ctx context.Context, class Class, identity string) Decision {
	if class < 0 || class >= numClasses {
		class = Write
	}
	d := Decision{OK: true, Class: class, Identity: identity}
	rate := l.rates[class]
	if l.shared != nil {
		return l.allowShared(ctx, d, rate)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if now.Sub(l.swept) > time.Minute || len(l.ids) > l.max {
		l.sweep(now)
	}
	reg := l.registry[class]
	var id *bucket
	if rate.Identity > 0 {
		k := idKey{class, identity}
		id = l.ids[k]
		if id == nil {
			id = newBucket(rate.Identity, now)
			l.ids[k] = id
		}
		id.refill(now)
		id.used = now
	}
	if reg != nil {
		reg.refill(now)
	}
	if id != nil {
		if w := id.wait(); w > 0 {
			d.OK, d.RetryAfter, d.Scope, d.Limit = false, w, "identity", rate.Identity
		}
	}
	if reg != nil {
		if w := reg.wait(); w > 0 && w > d.RetryAfter {
			d.OK, d.RetryAfter, d.Scope, d.Limit = false, w, "registry", rate.Registry
		}
	}
	if !d.OK {
		l.refused[class]++
		return d
	}
	if id != nil {
		id.tokens--
	}
	if reg != nil {
		reg.tokens--
	}
	l.allowed[class]++
	return d
}

// classKeys name the classes in the keys of shared buckets.
var classKeys = [numClasses]string{"read", "write", "delete", "token"}

// allowShared is Allow on shared buckets: the identity's first, then the
// registry's; a token taken from the first when the second refuses stays
// with this node for its next request.
func (l *Limiter) allowShared(ctx context.Context, d Decision, rate Rate) Decision {
	now := l.now()
	l.shared.sweep(ctx, now)
	idKey := "req:" + classKeys[d.Class] + ":id:" + KeyPart(d.Identity)
	if rate.Identity > 0 {
		if ok, wait := l.shared.take(ctx, idKey, rate.Identity, now); !ok {
			d.OK, d.RetryAfter, d.Scope, d.Limit = false, wait, "identity", rate.Identity
		}
	}
	if d.OK && rate.Registry > 0 {
		if ok, wait := l.shared.take(ctx, "req:"+classKeys[d.Class]+":registry", rate.Registry, now); !ok {
			d.OK, d.RetryAfter, d.Scope, d.Limit = false, wait, "registry", rate.Registry
			if rate.Identity > 0 {
				l.shared.putBack(idKey)
			}
		}
	}
	l.mu.Lock()
	if d.OK {
		l.allowed[d.Class]++
	} else {
		l.refused[d.Class]++
	}
	l.mu.Unlock()
	return d
}

// sweep drops identity buckets that have refilled (a full bucket is the
// same as none) and, past the bound, the least recently used.
func (l *Limiter) sweep(now time.Time) {
	l.swept = now
	for k, b := range l.ids {
		b.refill(now)
		if b.full() {
			delete(l.ids, k)
		}
	}
	if len(l.ids) <= l.max {
		return
	}
	// Drop the least recently used until 90% of the bound remain.
	type entry struct {
		k    idKey
		used time.Time
	}
	es := make([]entry, 0, len(l.ids))
	for k, b := range l.ids {
		es = append(es, entry{k, b.used})
	}
	slices.SortFunc(es, func(a, b entry) int { return a.used.Compare(b.used) })
	for _, e := range es[:len(es)-l.max*9/10] {
		delete(l.ids, e.k)
	}
}

// Identities is how many per-identity buckets are kept.
func (l *Limiter) Identities() int {
	if l.shared != nil {
		return l.shared.size()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ids)
}

// Stats counts the requests allowed and refused, per class.
type Stats struct {
	Allowed, Refused map[string]uint64
}

// Stats returns the counts since the limiter started.
func (l *Limiter) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := Stats{Allowed: map[string]uint64{}, Refused: map[string]uint64{}}
	for c := Class(0); c < numClasses; c++ {
		s.Allowed[c.String()] = l.allowed[c]
		s.Refused[c.String()] = l.refused[c]
	}
	return s
}

// ClassOf returns the class of a request: token requests by path, the
// others by method (anything unusual counts as a write).
func (l *Limiter) ClassOf(r *http.Request) Class {
	if r.URL.Path == l.tokenPath {
		return Token
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return Read
	case http.MethodDelete:
		return Delete
	}
	return Write
}

// Middleware limits the requests to next. identity names the caller of a
// request ("" for anonymous callers, who share one bucket); with auth,
// pass a function reading the identity the auth middleware put into the
// context, and put this middleware inside that one.
func (l *Limiter) Middleware(identity func(*http.Request) string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := ""
		if identity != nil {
			name = identity(r)
		}
		d := l.allow(r.Context(), l.ClassOf(r), name)
		if !d.OK {
			l.log.Debug("request limit exceeded", "class", d.Class.String(), "scope", d.Scope, "identity", name,
				"limit", d.Limit, "retry_after", d.RetryAfter, "request", r.Method+" "+r.URL.Path)
			w.Header().Set("Retry-After", strconv.Itoa(d.RetryAfterSeconds()))
			httperr.Write(w, r, l.log, d.Err())
			return
		}
		next.ServeHTTP(w, r)
	})
}

// thousands formats n with commas: 5000 → "5,000".
func thousands(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
