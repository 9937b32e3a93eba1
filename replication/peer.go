package replication

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/stowage/stowage"
)

// Header marks a request from another region: it turns read-through off
// for it (two regions missing the same thing must not ask each other
// forever).
const Header = "Stowage-Replication"

// Peer is another region, as configured.
type Peer struct {
	Name     string
	URL      string // https://west.example:5000
	Username string // an admin user of the peer
	Password string
	CACert   string // PEM file of a CA to trust for the peer ("" = the system's)
	// Timeouts bound every request to the peer (zero fields: defaults).
	Timeouts Timeouts
}

// Timeouts bound the requests to a peer, so a peer that accepts
// connections but never answers (or stops in the middle of a body) does
// not stall its replicator, a back-fill or a client's read-through pull.
// None bounds a whole transfer: a large blob streams as long as bytes keep
// coming.
type Timeouts struct {
	Connect  time.Duration // TCP connect and TLS handshake (DefaultConnectTimeout)
	Response time.Duration // from the request sent to the response's headers (DefaultResponseTimeout)
	Idle     time.Duration // with no byte read or written, in a body or while waiting (DefaultIdleTimeout)
	// DownFor: after a request to the peer timed out, read-through skips
	// it for this long (DefaultDownFor), so the requests during a
	// partition do not each wait a timeout (a refused connection fails at
	// once and marks nothing).
	DownFor time.Duration
}

// Defaults of Timeouts.
const (
	DefaultConnectTimeout  = 5 * time.Second
	DefaultResponseTimeout = 30 * time.Second
	DefaultIdleTimeout     = 30 * time.Second
	DefaultDownFor         = 10 * time.Second
)

func (t Timeouts) withDefaults() Timeouts {
	if t.Connect <= 0 {
		t.Connect = DefaultConnectTimeout
	}
	if t.Response <= 0 {
		t.Response = DefaultResponseTimeout
	}
	if t.Idle <= 0 {
		t.Idle = DefaultIdleTimeout
	}
	if t.DownFor <= 0 {
		t.DownFor = DefaultDownFor
	}
	return t
}

// Client talks to a peer: its OCI API (/v2/) and its replication endpoint,
// with the peer's credentials (Basic; a Bearer challenge is answered with
// the token flow).
type Client struct {
	Peer
	base *url.URL
	hc   *http.Client
	to   Timeouts
	now  func() time.Time

	downUntil atomic.Int64 // unix nanoseconds: read-through skips the peer until then
}

// idleConn fails a read or write that makes no progress for idle: every
// write (a request, a body) and every read pushes both deadlines on, so a
// transfer lasts as long as bytes move, and a wait for a response that
// never comes ends.
type idleConn struct {
	net.Conn
	idle time.Duration
}

func (c *idleConn) Read(b []byte) (int, error) {
	_ = c.Conn.SetReadDeadline(time.Now().Add(c.idle))
	return c.Conn.Read(b)
}

func (c *idleConn) Write(b []byte) (int, error) {
	_ = c.Conn.SetDeadline(time.Now().Add(c.idle)) // the response's wait starts now
	return c.Conn.Write(b)
}

// Down reports whether a request failed to reach the peer less than
// Timeouts.DownFor ago (read-through skips it meanwhile), and until when.
func (c *Client) Down() (bool, time.Time) {
	u := c.downUntil.Load()
	if u == 0 {
		return false, time.Time{}
	}
	t := time.Unix(0, u)
	return c.now().Before(t), t
}

// note records the outcome of a request: a request that timed out (no
// HTTP answer within the connect or response timeout) marks the peer down
// for DownFor; an answer clears that. A refused or reset connection does
// not: it fails at once, so asking again costs nothing, and a region that
// was down and restarts is asked again at once (marking it down for
// refusals made the first pulls after its restart "manifest unknown").
// The caller's own cancellation does neither.
func (c *Client) note(ctx context.Context, err error) {
	switch {
	case err == nil:
		c.downUntil.Store(0)
	case ctx.Err() == nil && timedOut(err):
		c.downUntil.Store(c.now().Add(c.to.DownFor).UnixNano())
	}
}

// timedOut reports whether err is a timeout (of the connection, its idle
// deadline or the response wait), not a fast failure.
func timedOut(err error) bool {
	var ne net.Error
	return (errors.As(err, &ne) && ne.Timeout()) || errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded)
}

// NewClient returns a client of p.
func NewClient(p Peer) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(p.URL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("peer %s: url %q: want http(s)://host:port", p.Name, p.URL)
	}
	to := p.Timeouts.withDefaults()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	dialer := &net.Dialer{Timeout: to.Connect, KeepAlive: 30 * time.Second}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &idleConn{Conn: conn, idle: to.Idle}, nil
	}
	tr.TLSHandshakeTimeout = to.Connect
	tr.ResponseHeaderTimeout = to.Response
	tr.IdleConnTimeout = to.Idle
	if p.CACert != "" {
		pem, err := os.ReadFile(p.CACert)
		if err != nil {
			return nil, fmt.Errorf("peer %s: ca_cert: %w", p.Name, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("peer %s: ca_cert %s holds no PEM certificate", p.Name, p.CACert)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	tr.MaxIdleConnsPerHost = 16
	return &Client{Peer: p, base: u, hc: &http.Client{Transport: tr}, to: to, now: time.Now}, nil
}

// do sends a request (body: bytes, so it can be resent after a challenge;
// or a stream, sent once) and returns the response; a 401 with a Bearer
// challenge is answered with a token and the request sent again.
func (c *Client) do(ctx context.Context, method, path string, hdr http.Header, body []byte, stream io.Reader, size int64) (*http.Response, error) {
	send := func(auth string) (*http.Response, error) {
		var rd io.Reader
		switch {
		case body != nil:
			rd = bytes.NewReader(body)
		case stream != nil:
			rd = stream
		}
		req, err := http.NewRequestWithContext(ctx, method, c.base.String()+path, rd)
		if err != nil {
			return nil, err
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		req.Header.Set(Header, "1")
		req.Header.Set("User-Agent", "stowage-replication")
		if body != nil {
			req.ContentLength = int64(len(body))
		} else if stream != nil {
			req.ContentLength = size
		}
		req.Header.Set("Authorization", auth)
		resp, err := c.hc.Do(req)
		c.note(ctx, err)
		if err != nil {
			return nil, fmt.Errorf("peer %s: %w", c.Name, err)
		}
		return resp, nil
	}
	basic := "Basic " + basicToken(c.Username, c.Password)
	if c.Username == "" {
		basic = ""
	}
	resp, err := send(basic)
	if err != nil || resp.StatusCode != http.StatusUnauthorized || (stream != nil && body == nil) {
		return resp, err
	}
	ch := resp.Header.Get("WWW-Authenticate")
	if !strings.HasPrefix(strings.ToLower(ch), "bearer ") {
		return resp, nil
	}
	resp.Body.Close()
	tok, err := c.token(ctx, ch)
	if err != nil {
		return nil, err
	}
	return send("Bearer " + tok)
}

// token runs the token flow for a Bearer challenge.
func (c *Client) token(ctx context.Context, challenge string) (string, error) {
	params := map[string]string{}
	for _, part := range strings.Split(challenge[len("bearer "):], ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		params[strings.ToLower(k)] = strings.Trim(v, `"`)
	}
	realm, err := url.Parse(params["realm"])
	if err != nil || realm.Scheme == "" {
		return "", fmt.Errorf("peer %s: bearer challenge without a realm", c.Name)
	}
	q := realm.Query()
	if params["service"] != "" {
		q.Set("service", params["service"])
	}
	if params["scope"] != "" {
		q.Set("scope", params["scope"])
	}
	realm.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, realm.String(), nil)
	if err != nil {
		return "", err
	}
	req.SetBasicAuth(c.Username, c.Password)
	resp, err := c.hc.Do(req)
	c.note(ctx, err)
	if err != nil {
		return "", fmt.Errorf("peer %s: token endpoint: %w", c.Name, err)
	}
	defer resp.Body.Close()
	var t struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&t) != nil {
		return "", fmt.Errorf("peer %s: token endpoint answered %s", c.Name, resp.Status)
	}
	if t.Token == "" {
		t.Token = t.AccessToken
	}
	return t.Token, nil
}

func basicToken(user, pass string) string {
	return strings.TrimPrefix(basicAuth(user, pass), "Basic ")
}

func basicAuth(user, pass string) string {
	r, _ := http.NewRequest(http.MethodGet, "/", nil)
	r.SetBasicAuth(user, pass)
	return r.Header.Get("Authorization")
}

// PeerError is a peer's refusal, with its status and OCI error body.
type PeerError struct {
	Peer   string
	Status int
	Body   string
}

func (e *PeerError) Error() string {
	return fmt.Sprintf("peer %s answered %d: %s", e.Peer, e.Status, e.Reason())
}

// Reason is the peer's reason: its OCI errors as "CODE: message" (joined
// by "; "), else its body, else the HTTP status text; never empty.
func (e *PeerError) Reason() string {
	var oci struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal([]byte(e.Body), &oci) == nil && len(oci.Errors) > 0 {
		var parts []string
		for _, x := range oci.Errors {
			parts = append(parts, strings.TrimSpace(x.Code+": "+x.Message))
		}
		return strings.Join(parts, "; ")
	}
	if b := strings.TrimSpace(e.Body); b != "" {
		return b
	}
	if t := http.StatusText(e.Status); t != "" {
		return t + " (no reason given)"
	}
	return "no reason given"
}

// ReadLocked reports whether err is a peer's refusal to read a
// read-locked repository, tag or manifest.
func ReadLocked(err error) bool {
	var pe *PeerError
	return errors.As(err, &pe) && pe.Status == http.StatusForbidden && strings.Contains(pe.Body, "read-locked")
}

// IsNotFound reports whether err is a peer's 404.
func IsNotFound(err error) bool {
	var pe *PeerError
	return errors.As(err, &pe) && pe.Status == http.StatusNotFound
}

func (c *Client) fail(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	return &PeerError{Peer: c.Name, Status: resp.StatusCode, Body: string(b)}
}

// headFail is fail for a HEAD (which has no body): the same request as a
// GET gives the peer's reason.
func (c *Client) headFail(ctx context.Context, path string, hdr http.Header, status int) error {
	resp, err := c.do(ctx, http.MethodGet, path, hdr, nil, nil, 0)
	if err != nil {
		return &PeerError{Peer: c.Name, Status: status, Body: "(its reason could not be read: " + err.Error() + ")"}
	}
	if resp.StatusCode == status {
		return c.fail(resp)
	}
	resp.Body.Close()
	return &PeerError{Peer: c.Name, Status: status, Body: fmt.Sprintf("(to HEAD %s; a GET then answered %d)", path, resp.StatusCode)}
}

// HasBlob reports whether the peer's repo holds blob d.
func (c *Client) HasBlob(ctx context.Context, repo string, d stowage.Digest) (bool, error) {
	resp, err := c.do(ctx, http.MethodHead, "/v2/"+repo+"/blobs/"+string(d), nil, nil, nil, 0)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	}
	return false, c.headFail(ctx, "/v2/"+repo+"/blobs/"+string(d), nil, resp.StatusCode)
}

// UploadBlob streams size bytes of blob d into the peer's repo (one POST,
// one PUT); the peer verifies digest and size.
func (c *Client) UploadBlob(ctx context.Context, repo string, d stowage.Digest, size int64, r io.Reader) error {
	resp, err := c.do(ctx, http.MethodPost, "/v2/"+repo+"/blobs/uploads/", nil, []byte{}, nil, 0)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusAccepted {
		return c.fail(resp)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Path == "" {
		return fmt.Errorf("peer %s: upload without a Location", c.Name)
	}
	q := loc.Query()
	q.Set("digest", string(d))
	path := loc.Path + "?" + q.Encode()
	hdr := http.Header{"Content-Type": {"application/octet-stream"}}
	resp, err = c.do(ctx, http.MethodPut, path, hdr, nil, r, size)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusCreated {
		return c.fail(resp)
	}
	resp.Body.Close()
	return nil
}

// acceptManifests is every manifest media type Stowage stores.
var acceptManifests = strings.Join([]string{stowage.MediaTypeOCIManifest, stowage.MediaTypeOCIIndex,
	stowage.MediaTypeDockerManifest, stowage.MediaTypeDockerList}, ", ")

// GetManifest fetches a manifest from the peer and checks its digest (the
// one asked for, else the one the peer states).
func (c *Client) GetManifest(ctx context.Context, repo string, ref stowage.Reference) (body []byte, mediaType string, d stowage.Digest, err error) {
	resp, err := c.do(ctx, http.MethodGet, "/v2/"+repo+"/manifests/"+ref.String(), http.Header{"Accept": {acceptManifests}}, nil, nil, 0)
	if err != nil {
		return nil, "", "", err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, "", "", c.fail(resp)
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(io.LimitReader(resp.Body, stowage.MaxManifestSize+1))
	if err != nil {
		return nil, "", "", err
	}
	want := ref.Digest
	if want == "" {
		want = stowage.Digest(resp.Header.Get("Docker-Content-Digest"))
	}
	if want.Validate() != nil {
		return nil, "", "", fmt.Errorf("peer %s: manifest %s without a valid digest", c.Name, ref)
	}
	if got := want.Algorithm().FromBytes(body); got != want {
		return nil, "", "", fmt.Errorf("peer %s: manifest %s has digest %s, not %s", c.Name, ref, got, want)
	}
	return body, resp.Header.Get("Content-Type"), want, nil
}

// HeadManifest returns the digest the peer's repo holds for ref ("" if none).
func (c *Client) HeadManifest(ctx context.Context, repo string, ref stowage.Reference) (stowage.Digest, error) {
	resp, err := c.do(ctx, http.MethodHead, "/v2/"+repo+"/manifests/"+ref.String(), http.Header{"Accept": {acceptManifests}}, nil, nil, 0)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return stowage.Digest(resp.Header.Get("Docker-Content-Digest")), nil
	case http.StatusNotFound:
		return "", nil
	}
	return "", c.headFail(ctx, "/v2/"+repo+"/manifests/"+ref.String(), http.Header{"Accept": {acceptManifests}}, resp.StatusCode)
}

// OpenBlob opens blob d of the peer's repo.
func (c *Client) OpenBlob(ctx context.Context, repo string, d stowage.Digest) (io.ReadCloser, int64, error) {
	resp, err := c.do(ctx, http.MethodGet, "/v2/"+repo+"/blobs/"+string(d), nil, nil, nil, 0)
	if err != nil {
		return nil, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, 0, c.fail(resp)
	}
	size, err := strconv.ParseInt(resp.Header.Get("Content-Length"), 10, 64)
	if err != nil {
		resp.Body.Close()
		return nil, 0, fmt.Errorf("peer %s: blob %s without a length", c.Name, d)
	}
	return resp.Body, size, nil
}

// Apply sends a change to the peer's replication endpoint.
func (c *Client) Apply(ctx context.Context, ch Change) (Result, error) {
	b, err := json.Marshal(ch)
	if err != nil {
		return Result{}, err
	}
	resp, err := c.do(ctx, http.MethodPost, "/api/v1/replication/apply", http.Header{"Content-Type": {"application/json"}}, b, nil, 0)
	if err != nil {
		return Result{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return Result{}, c.fail(resp)
	}
	defer resp.Body.Close()
	var r Result
	err = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&r)
	return r, err
}
