package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/limits"
)

// TokenPath is where the token endpoint is served (the realm's path).
const TokenPath = "/oauth2/token"

// Options configure an Authority. The zero value works: tokens for the
// request's own host, 5-minute access tokens, 30-day refresh tokens.
type Options struct {
	// Realm is the token endpoint's URL in challenges. Empty: derived from
	// each request, <scheme>://<host>/oauth2/token (https when the
	// connection is TLS, or a trusted proxy says X-Forwarded-Proto: https).
	Realm string
	// Service names this registry in challenges and tokens (their
	// audience). Empty: the request's host.
	Service string
	// Issuer is the tokens' "iss" (default "stowage").
	Issuer string
	// TokenTTL is the lifetime of access tokens (default 5 minutes).
	TokenTTL time.Duration
	// RefreshTTL is the lifetime of refresh tokens (default 30 days).
	RefreshTTL time.Duration
	// CredentialCacheTTL is how long a successful basic login is
	// remembered, so repeated requests do not run bcrypt again (default
	// 1 minute; negative: never). A changed password, a disabled user or
	// token, or a deleted one end it at once.
	CredentialCacheTTL time.Duration
	// RefreshInterval is how old the cached users, tokens and scope maps
	// may get before they are read again from the database (default 5 s).
	// Changes made through this Authority take effect at once; this bounds
	// how long another node sharing the database takes to see them.
	RefreshInterval time.Duration
	// TrustedProxies lists the addresses of reverse proxies whose
	// X-Forwarded-For and X-Forwarded-Proto headers are believed. Without
	// it, the client address is the connection's.
	TrustedProxies []netip.Prefix
	// BcryptCost for new password hashes (default bcrypt.DefaultCost).
	BcryptCost int
	// Failed-login limits per client address and name, per name, and per
	// client address (zero: the defaults; Burst < 0: off). See
	// DefaultLoginLimitPair.
	LoginLimitPair, LoginLimitName, LoginLimitIP LoginLimit
	// LoginStore keeps the failed-login counts. With several nodes on one
	// database, pass the database (a limits.Store), so the limits hold
	// across the nodes; nil: in this process's memory.
	LoginStore limits.Store
	// Keys seals the token signing key in the database (pass the
	// encryption keyring, storage/crypt.Keys): whoever reads the database
	// then cannot sign tokens. nil (encryption: none): the key is kept in
	// the clear.
	Keys   Keyring
	Logger *slog.Logger
	// Changes sees every change of a user, token or scope map in its
	// transaction, with its event (geo-replication's clocks,
	// replication.Clocks); nil: nothing.
	Changes stowage.ChangeHook
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Authority authenticates and authorizes requests, issues tokens and
// manages users, scope maps and tokens. It is safe for concurrent use.
type Authority struct {
	opts      Options
	log       *slog.Logger
	now       func() time.Time
	store     *store
	key       signingKey
	logins    *loginLimiter
	cache     *credCache
	dummyHash []byte
}

// New returns an Authority keeping its state in db. On first start it
// generates the token signing key and stores it in the settings, sealed
// with opts.Keys when given (signkey.go).
func New(ctx context.Context, db stowage.DB, opts Options) (*Authority, error) {
	if opts.Issuer == "" {
		opts.Issuer = "stowage"
	}
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = 5 * time.Minute
	}
	if opts.RefreshTTL <= 0 {
		opts.RefreshTTL = 30 * 24 * time.Hour
	}
	if opts.CredentialCacheTTL == 0 {
		opts.CredentialCacheTTL = time.Minute
	}
	if opts.RefreshInterval <= 0 {
		opts.RefreshInterval = 5 * time.Second
	}
	if opts.BcryptCost == 0 {
		opts.BcryptCost = bcrypt.DefaultCost
	}
	if opts.LoginLimitPair == (LoginLimit{}) {
		opts.LoginLimitPair = DefaultLoginLimitPair
	}
	if opts.LoginLimitIP == (LoginLimit{}) {
		opts.LoginLimitIP = DefaultLoginLimitIP
	}
	if opts.LoginLimitName == (LoginLimit{}) {
		opts.LoginLimitName = DefaultLoginLimitName
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	a := &Authority{opts: opts, log: opts.Logger, now: opts.Now}
	a.store = &store{db: db, now: opts.Now, refresh: opts.RefreshInterval, hook: opts.Changes}
	var errMu sync.Mutex
	var lastErr time.Time
	a.logins = newLoginLimiter(opts.LoginStore, opts.Now, opts.LoginLimitPair, opts.LoginLimitName, opts.LoginLimitIP, func(err error) {
		errMu.Lock()
		defer errMu.Unlock()
		if now := time.Now(); now.Sub(lastErr) > time.Minute {
			lastErr = now
			a.log.Warn("failed-login limits: the limit store failed; logins are checked without them while it does", "err", err)
		}
	})
	a.cache = &credCache{ttl: opts.CredentialCacheTTL, max: 10_000, m: map[[32]byte]credEntry{}}
	var err error
	if a.dummyHash, err = bcrypt.GenerateFromPassword([]byte("not a password "+randomID(8)), opts.BcryptCost); err != nil {
		return nil, err
	}
	if a.key, err = loadKey(ctx, db, opts.Keys, opts.Now(), a.log); err != nil {
		return nil, err
	}
	if _, err := a.store.get(ctx); err != nil {
		return nil, err
	}
	return a, nil
}

// ---- authentication ----

// Authenticate returns the identity of a request: anonymous without an
// Authorization header, else the user or token of its Basic credentials or
// Bearer token. Bad credentials give an UNAUTHORIZED error, too many
// failed logins a TOOMANYREQUESTS one; both are logged.
func (a *Authority) Authenticate(r *http.Request) (Identity, error) {
	st, err := a.store.get(r.Context())
	if err != nil {
		return Identity{}, err
	}
	return a.authenticate(r, st)
}

func (a *Authority) authenticate(r *http.Request, st *state) (Identity, error) {
	creds, err := ParseAuthorization(r.Header.Get("Authorization"))
	if err != nil {
		a.authFailed(r, "", "header", err.Error())
		return Identity{}, err
	}
	switch creds.Scheme {
	case "basic":
		return a.login(r, st, creds.Username, creds.Password)
	case "bearer":
		id, _, err := a.verify(st, creds.Token, useAccess, a.service(r))
		if err != nil {
			a.authFailed(r, "", "bearer", err.Error())
			return Identity{}, &stowage.Error{Code: stowage.CodeUnauthorized,
				Message: "the bearer token is invalid or expired; get a new one from the token endpoint (log in again)", Err: err}
		}
		return id, nil
	}
	return st.identity(KindAnonymous, ""), nil
}

// recordLoginFailure appends a login.failed event (its own transaction) for
// a wrong password, or credentials of a disabled or expired user or token:
// Actor is the name tried, Addr the client. Only failures the failed-login
// limits count are recorded, so the limits bound their rate; refusals by
// the limits themselves and malformed or invalid bearer credentials are
// only logged. It records the failure even if the client has gone.
func (a *Authority) recordLoginFailure(r *http.Request, name, ip, reason string) {
	ctx := stowage.WithActor(context.WithoutCancel(r.Context()), stowage.RequestActor(r, name, ip))
	e := stowage.NewEvent(ctx, stowage.EventLoginFailed, "")
	e.Time = a.now()
	e.Detail = stowage.EventDetail(ctx, map[string]any{"method": "basic", "reason": reason})
	if err := a.store.db.Update(ctx, func(tx stowage.Tx) error { return tx.Events().Append(e) }); err != nil {
		a.log.ErrorContext(ctx, "the change feed could not record a failed login", "name", name, "err", err)
	}
}

// retryDetail is the Detail of a TOOMANYREQUESTS error: the writer turns
// it into a Retry-After header.
type retryDetail struct {
	RetryAfterSeconds int `json:"retryAfterSeconds"`
}

func retrySeconds(d time.Duration) int {
	s := int((d + time.Second - 1) / time.Second)
	return max(s, 1)
}

// login checks basic credentials: a user's password, or one of a token's.
func (a *Authority) login(r *http.Request, st *state, name, password string) (Identity, error) {
	now := a.now()
	ip := a.ClientIP(r)
	key := sha256.Sum256([]byte(name + "\x00" + password))
	if e, ok := a.cache.get(key, now); ok && st.credentialValid(e.kind, e.name, e.stamp, now) == "" {
		id := st.identity(e.kind, e.name)
		id.Method, id.stamp = "basic", e.stamp
		return id, nil
	}
	known := a.logins.known.has(key, now)
	if wait, which := a.logins.wait(r.Context(), ip, name, known); wait > 0 {
		secs := retrySeconds(wait)
		about := "for " + name + " from " + ip
		switch which {
		case "name":
			about = "for " + name
		case "addr":
			about = "from " + ip
		}
		a.authFailed(r, name, "basic", "refused: too many failed logins "+about)
		return Identity{}, &stowage.Error{Code: stowage.CodeTooManyRequests,
			Message: "too many failed logins " + about + "; retry in " + strconv.Itoa(secs) + " s",
			Detail:  retryDetail{secs}}
	}
	kind, stamp, reason := st.checkPassword(name, password, now, a.dummyHash)
	if reason != "" {
		a.logins.fail(r.Context(), ip, name)
		a.authFailed(r, name, "basic", reason)
		a.recordLoginFailure(r, name, ip, reason)
		msg := "invalid name or password"
		switch reason {
		case "user disabled":
			msg = "user " + name + " is disabled; ask an admin to enable it"
		case "token disabled":
			msg = "token " + name + " is disabled; ask an admin to enable it"
		case "token expired":
			msg = "token " + name + " has expired; ask an admin for a new expiry or a new token"
		case "password expired":
			msg = "this password of token " + name + " has expired; use its other password or ask an admin to generate a new one"
		}
		return Identity{}, authError(msg)
	}
	a.cache.put(key, credEntry{kind: kind, name: name, stamp: stamp}, now)
	a.logins.known.add(key, now)
	id := st.identity(kind, name)
	id.Method, id.stamp = "basic", stamp
	return id, nil
}

// compareHash is bcrypt's check (a variable so tests can count the runs).
var compareHash = bcrypt.CompareHashAndPassword

// checkPassword finds name among users and tokens and checks the password
// (in constant time; an unknown name costs the same bcrypt run). It
// returns the stamp of the matching credential, or why it failed.
func (s *state) checkPassword(name, password string, now time.Time, dummy []byte) (Kind, string, string) {
	if len(password) > 72 {
		_ = compareHash(dummy, []byte("x"))
		return 0, "", "password longer than 72 bytes"
	}
	if u, ok := s.Users[name]; ok {
		if compareHash([]byte(u.PasswordHash), []byte(password)) != nil {
			return 0, "", "wrong password"
		}
		if u.Disabled {
			return 0, "", "user disabled"
		}
		return KindUser, u.Stamp, ""
	}
	if t, ok := s.Tokens[name]; ok {
		var match *tokenPassword
		for _, p := range t.Passwords {
			if p != nil && compareHash([]byte(p.Hash), []byte(password)) == nil {
				match = p
			}
		}
		switch {
		case match == nil:
			return 0, "", "wrong password"
		case t.Status != Enabled:
			return 0, "", "token disabled"
		case t.expired(now):
			return 0, "", "token expired"
		case match.expired(now):
			return 0, "", "password expired"
		}
		return KindToken, match.Stamp, ""
	}
	_ = compareHash(dummy, []byte(password))
	return 0, "", "unknown name"
}

// credentialValid reports why a credential (a user's or token password's
// stamp) is no longer good, or "" if it is.
func (s *state) credentialValid(kind Kind, name, stamp string, now time.Time) string {
	switch kind {
	case KindAnonymous:
		return ""
	case KindUser:
		u, ok := s.Users[name]
		switch {
		case !ok:
			return "user deleted"
		case u.Disabled:
			return "user disabled"
		case u.Stamp != stamp:
			return "password changed"
		}
		return ""
	case KindToken:
		t, ok := s.Tokens[name]
		switch {
		case !ok:
			return "token deleted"
		case t.Status != Enabled:
			return "token disabled"
		case t.expired(now):
			return "token expired"
		}
		for _, p := range t.Passwords {
			if p != nil && p.Stamp == stamp {
				if p.expired(now) {
					return "password expired"
				}
				return ""
			}
		}
		return "password regenerated or deleted"
	}
	return "unknown kind"
}

// verify checks a token this authority issued: signature, issuer,
// audience, times, use, and that the credential it was issued for is
// still good. It returns the identity with its current rights, limited to
// the token's access claims.
func (a *Authority) verify(st *state, tok, use, service string) (Identity, Claims, error) {
	c, err := a.key.parse(tok)
	if err != nil {
		return Identity{}, Claims{}, err
	}
	now := a.now().Unix()
	const leeway = 60 // seconds of clock skew between nodes
	switch {
	case c.Issuer != a.opts.Issuer:
		return Identity{}, c, errors.New("issued by " + trunc(c.Issuer))
	case c.Audience != service:
		return Identity{}, c, errors.New("issued for service " + trunc(c.Audience) + ", not " + trunc(service))
	case c.Use != use:
		return Identity{}, c, errors.New("a " + trunc(c.Use) + " token used as a " + use + " token")
	case now >= c.Expiry:
		return Identity{}, c, errors.New("expired")
	case c.NotBefore > now+leeway:
		return Identity{}, c, errors.New("not valid yet")
	}
	var kind Kind
	switch c.Kind {
	case "user":
		kind = KindUser
	case "token":
		kind = KindToken
	case "anonymous":
		if c.Subject != "" {
			return Identity{}, c, errors.New("anonymous token with a subject")
		}
	default:
		return Identity{}, c, errors.New("unknown kind")
	}
	if reason := st.credentialValid(kind, c.Subject, c.Credential, a.now()); reason != "" {
		return Identity{}, c, errors.New(reason)
	}
	id := st.identity(kind, c.Subject)
	id.Method, id.stamp = "bearer", c.Credential
	if use == useAccess {
		id.bearer, id.access = true, c.Access
	}
	return id, c, nil
}

// service is the service name for a request's challenges and tokens.
func (a *Authority) service(r *http.Request) string {
	if a.opts.Service != "" {
		return a.opts.Service
	}
	return strings.ToLower(r.Host)
}

// realm is the token endpoint's URL for a request's challenges.
func (a *Authority) realm(r *http.Request) string {
	if a.opts.Realm != "" {
		return a.opts.Realm
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if a.trusted(r) {
		if p := strings.ToLower(strings.TrimSpace(strings.Split(r.Header.Get("X-Forwarded-Proto"), ",")[0])); p == "https" || p == "http" {
			scheme = p
		}
	}
	return scheme + "://" + r.Host + TokenPath
}

// ---- the credential cache ----

type credCache struct {
	ttl time.Duration
	max int
	mu  sync.Mutex
	m   map[[32]byte]credEntry
}

type credEntry struct {
	kind    Kind
	name    string
	stamp   string
	expires time.Time
}

func (c *credCache) get(k [32]byte, now time.Time) (credEntry, bool) {
	if c.ttl <= 0 {
		return credEntry{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if ok && !now.Before(e.expires) {
		delete(c.m, k)
		return credEntry{}, false
	}
	return e, ok
}

func (c *credCache) put(k [32]byte, e credEntry, now time.Time) {
	if c.ttl <= 0 {
		return
	}
	e.expires = now.Add(c.ttl)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		for k, old := range c.m {
			if !now.Before(old.expires) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= c.max {
			clear(c.m)
		}
	}
	c.m[k] = e
}
