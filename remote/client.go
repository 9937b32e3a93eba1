// Package remote is a client of other registries (the OCI Distribution API):
// what `stowage import --from` and pull-through caching read from. It speaks
// Basic authentication and the Docker token flow (a 401 with
// `WWW-Authenticate: Bearer realm=…,service=…,scope=…` sends it to the realm
// for a token, anonymous when it has no credentials; tokens are kept per
// scope until they expire), asks for manifests of every media type Stowage
// stores (OCI and Docker, images and indexes), streams blobs, reads
// referrers (the API, or the referrers tag schema where a registry has no
// API), retries 429 and 5xx answers with backoff (honouring Retry-After),
// and verifies the digest of everything it returns: a manifest before it is
// returned, a blob at the end of its stream.
package remote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options configure a Client. The zero value is an anonymous HTTPS client.
type Options struct {
	// Username and Password, when set, are sent as Basic credentials to a
	// registry that asks for Basic, and to the token realm of one that asks
	// for Bearer. Without them, tokens are requested anonymously.
	Username, Password string
	// PlainHTTP speaks http:// instead of https:// (a registry without TLS,
	// e.g. on 127.0.0.1 in tests).
	PlainHTTP bool
	// HTTP is the client to use (its Transport: proxies, CAs); nil: a client
	// with the timeouts below.
	HTTP *http.Client
	// Retries is how often a request answered 429 or 5xx (or failing to
	// connect) is retried; 0 means 4, negative means none.
	Retries int
	// MaxBackoff caps the wait between retries and a Retry-After the
	// registry asks for; 0 means 30 s.
	MaxBackoff time.Duration
	// ResponseTimeout bounds the wait for a response's headers (not the
	// time to stream a blob); 0 means 60 s.
	ResponseTimeout time.Duration
	// UserAgent; "" means "stowage".
	UserAgent string
	// Logger for retries; nil: none. Credentials are never logged.
	Logger *slog.Logger
	// CacheManifests keeps up to this many manifests fetched by digest in
	// memory (content-addressed, so never stale): a pull-through cache asks
	// the upstream for each once, not once per client.
	CacheManifests int
}

// Client reads from one registry. It is safe for concurrent use.
type Client struct {
	host  string // "registry-1.docker.io", "127.0.0.1:5000"
	base  string // "https://host"
	opts  Options
	http  *http.Client
	sleep func(ctx context.Context, d time.Duration) error // tests shorten it

	mu     sync.Mutex
	mcache map[string]Manifest // "repo@digest" → manifest (Options.CacheManifests)
	mfetch map[string]*fetch   // "repo@digest" → a GET in flight (Options.CacheManifests)
	morder []string            // its keys, oldest first
	basic  bool                // the registry asked for Basic: send it up front
	bearer *Challenge          // the registry asked for tokens: where to get them
	tokens map[string]token    // by scope
}

type token struct {
	value   string
	expires time.Time
}

// New returns a client of the registry at host ("ghcr.io", "127.0.0.1:5000").
func New(host string, opts Options) *Client {
	if opts.Retries == 0 {
		opts.Retries = 4
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	if opts.ResponseTimeout <= 0 {
		opts.ResponseTimeout = 60 * time.Second
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "stowage"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	hc := opts.HTTP
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.ResponseHeaderTimeout = opts.ResponseTimeout
		tr.TLSHandshakeTimeout = 15 * time.Second
		hc = &http.Client{Transport: tr}
	}
	scheme := "https"
	if opts.PlainHTTP {
		scheme = "http"
	}
	return &Client{host: host, base: scheme + "://" + host, opts: opts, http: hc, sleep: sleepCtx, tokens: map[string]token{}}
}

// Host returns the registry's host name (and port).
func (c *Client) Host() string { return c.host }

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Error is a registry's refusal: its HTTP status and, when it sent an OCI
// error body, the first code and message.
type Error struct {
	Status  int
	Code    string
	Message string
	URL     string
	Header  http.Header // the response's (a HEAD's error has no body)
}

func (e *Error) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("%s answered %d %s: %s", e.URL, e.Status, e.Code, e.Message)
	}
	return fmt.Sprintf("%s answered %d %s", e.URL, e.Status, http.StatusText(e.Status))
}

// IsNotFound reports whether err is a registry's 404.
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == http.StatusNotFound
}

// Temporary reports whether err is a failure to reach the registry or an
// answer that says to come back later (429, 5xx): what a cache serves stale
// content through.
func Temporary(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Status == http.StatusTooManyRequests || e.Status >= 500
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, errUnreachable)
}

var errUnreachable = errors.New("registry unreachable")

func responseError(resp *http.Response) error {
	e := &Error{Status: resp.StatusCode, URL: redactURL(resp.Request.URL), Header: resp.Header}
	var body struct {
		Errors []struct{ Code, Message string } `json:"errors"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(b, &body) == nil && len(body.Errors) > 0 {
		e.Code, e.Message = body.Errors[0].Code, body.Errors[0].Message
	}
	return e
}

func redactURL(u *url.URL) string {
	v := *u
	v.User = nil
	v.RawQuery = ""
	return v.String()
}

// get sends a GET (or HEAD) for path under /v2/, authenticated for scope,
// retrying what may be retried. A response with status >= 400 is an *Error.
func (c *Client) get(ctx context.Context, method, path, scope string, header http.Header) (*http.Response, error) {
	authTries := 0
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
		if err != nil {
			return nil, err
		}
		for k, v := range header {
			req.Header[k] = v
		}
		req.Header.Set("User-Agent", c.opts.UserAgent)
		if h, ok := ctx.Value(headerKey{}).(ctxHeader); ok {
			req.Header.Set(h.key, h.value)
		}
		c.authorize(req, scope)
		resp, err := c.http.Do(req)
		var wait time.Duration
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			err = fmt.Errorf("%w: %s %s: %v", errUnreachable, method, redactURL(req.URL), err)
		case resp.StatusCode == http.StatusUnauthorized:
			ok := false
			if authTries == 0 {
				var aerr error
				ok, aerr = c.learnAuth(ctx, resp, scope)
				if aerr != nil {
					resp.Body.Close()
					return nil, aerr
				}
			}
			authTries++
			resp.Body.Close()
			if !ok {
				msg := "the registry wants credentials: pass a username and password for it"
				if c.opts.Username != "" {
					msg = "the registry refused the credentials: check the username and password"
				}
				return nil, &Error{Status: http.StatusUnauthorized, URL: redactURL(req.URL), Code: "UNAUTHORIZED", Message: msg}
			}
			attempt-- // an authentication round is not a retry
			continue
		case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented:
			wait = retryAfter(resp.Header.Get("Retry-After"), time.Now())
			err = responseError(resp)
			resp.Body.Close()
		case resp.StatusCode >= 400:
			defer resp.Body.Close()
			return nil, responseError(resp)
		default:
			return resp, nil
		}
		if attempt >= c.opts.Retries || c.opts.Retries < 0 {
			return nil, err
		}
		if wait <= 0 {
			// Exponential backoff with jitter: 0.5, 1, 2, 4 s … (±25 %).
			wait = time.Duration(float64(500*time.Millisecond) * float64(int(1)<<attempt) * (0.75 + rand.Float64()/2))
		}
		wait = min(wait, c.opts.MaxBackoff)
		c.opts.Logger.Warn("remote registry request failed; retrying", "registry", c.host, "path", path, "err", err, "wait", wait)
		if serr := c.sleep(ctx, wait); serr != nil {
			return nil, err
		}
	}
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(h string, now time.Time) time.Duration {
	if h == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(h)); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

// authorize adds what the registry asked for before: a token for scope, or
// Basic credentials.
func (c *Client) authorize(req *http.Request, scope string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t, ok := c.tokens[scope]; ok && time.Now().Before(t.expires) {
		req.Header.Set("Authorization", "Bearer "+t.value)
		return
	}
	if c.basic && c.opts.Username != "" {
		req.SetBasicAuth(c.opts.Username, c.opts.Password)
	}
}

// learnAuth reads a 401's challenge and gets what it asks for: a token
// (fetched now), or Basic (sent from now on). It reports false when the
// registry wants credentials the client does not have.
func (c *Client) learnAuth(ctx context.Context, resp *http.Response, scope string) (bool, error) {
	cs := ParseChallenges(strings.Join(resp.Header.Values("WWW-Authenticate"), ", "))
	if b, ok := Bearer(cs); ok && b.Params["realm"] != "" {
		t, err := c.fetchToken(ctx, b, scope)
		if err != nil {
			return false, err
		}
		c.mu.Lock()
		c.bearer = &b
		c.tokens[scope] = t
		c.mu.Unlock()
		return true, nil
	}
	for _, ch := range cs {
		if strings.EqualFold(ch.Scheme, "basic") {
			c.mu.Lock()
			c.basic = true
			c.mu.Unlock()
			return c.opts.Username != "", nil
		}
	}
	return false, nil
}

// fetchToken asks the challenge's realm for a token for scope (Docker's
// token flow: GET realm?service=…&scope=…, with Basic credentials when the
// client has them, anonymous otherwise).
func (c *Client) fetchToken(ctx context.Context, ch Challenge, scope string) (token, error) {
	u, err := url.Parse(ch.Params["realm"])
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") {
		return token{}, fmt.Errorf("the registry %s sent a token realm %q that is not an http(s) URL", c.host, ch.Params["realm"])
	}
	q := u.Query()
	if s := ch.Params["service"]; s != "" {
		q.Set("service", s)
	}
	if scope != "" {
		q.Set("scope", scope)
	}
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return token{}, err
	}
	req.Header.Set("User-Agent", c.opts.UserAgent)
	if c.opts.Username != "" {
		req.SetBasicAuth(c.opts.Username, c.opts.Password)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return token{}, fmt.Errorf("%w: token from %s: %v", errUnreachable, redactURL(u), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		e := responseError(resp).(*Error)
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			e.Message = strings.TrimSpace(e.Message + " (the token service refused the credentials; check the username and password)")
		}
		return token{}, e
	}
	var body struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body); err != nil {
		return token{}, fmt.Errorf("token from %s: %v", redactURL(u), err)
	}
	t := body.Token
	if t == "" {
		t = body.AccessToken
	}
	if t == "" {
		return token{}, fmt.Errorf("the token service %s answered without a token", redactURL(u))
	}
	life := time.Duration(body.ExpiresIn) * time.Second
	if life < time.Minute {
		life = time.Minute // the spec's default is 60 s
	}
	// Renew a little early: a token that expires in flight costs a 401.
	return token{value: t, expires: time.Now().Add(life - 10*time.Second)}, nil
}

func pullScope(repo string) string { return "repository:" + repo + ":pull" }

type headerKey struct{}

type ctxHeader struct{ key, value string }

// WithHeader returns a context whose registry requests carry the header
// key: value (the pull-through cache's hop list).
func WithHeader(ctx context.Context, key, value string) context.Context {
	return context.WithValue(ctx, headerKey{}, ctxHeader{key, value})
}

// fetch is a manifest GET by digest in flight: callers asking for the same
// one meanwhile wait for it (Options.CacheManifests).
type fetch struct {
	done chan struct{}
	m    Manifest
	err  error
}
