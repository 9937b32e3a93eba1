package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// client is a deliberately thin wrapper over net/http: the benchmark must
// measure the registry, not a client library, and it must work against any
// OCI distribution implementation, so it speaks the wire protocol directly.
type client struct {
	base *url.URL
	hc   *http.Client
}

func newClient(base string, timeout time.Duration) (*client, error) {
	u, err := url.Parse(strings.TrimRight(base, "/"))
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("bad --url %q: want http://host:port", base)
	}
	tr := &http.Transport{
		Proxy:       nil, // never route localhost benchmarks through a proxy
		DialContext: (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		// Keep-alive for up to 32 concurrent workers plus setup pools; without
		// enough idle slots per host every request would pay a TCP handshake
		// and we would benchmark connection setup instead of the registry.
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 128,
		IdleConnTimeout:     90 * time.Second,
		// No transparent gzip: bytes on the wire must be the blob bytes.
		DisableCompression: true,
		WriteBufferSize:    256 << 10,
		ReadBufferSize:     256 << 10,
	}
	// The default redirect policy is kept: a registry that redirects blob
	// GETs to a storage backend is followed, as docker would.
	return &client{base: u, hc: &http.Client{Transport: tr, Timeout: timeout}}, nil
}

// statusError is what every non-2xx answer becomes, so a scenario aborts
// with the exact status and body the registry sent.
type statusError struct {
	method, url string
	status      int
	body        string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("%s %s: HTTP %d: %s", e.method, e.url, e.status, e.body)
}

// resolve turns a path or a Location header (absolute or relative, as the
// spec allows either) into a full URL.
func (c *client) resolve(ref string) (*url.URL, error) {
	r, err := url.Parse(ref)
	if err != nil {
		return nil, fmt.Errorf("bad URL %q: %w", ref, err)
	}
	return c.base.ResolveReference(r), nil
}

// do sends one request and checks the status against want (any 2xx when
// want is empty). On success the caller owns resp.Body.
func (c *client) do(ctx context.Context, method, ref string, hdr http.Header, body []byte, want ...int) (*http.Response, error) {
	u, err := c.resolve(ref)
	if err != nil {
		return nil, err
	}
	var rd io.Reader = http.NoBody
	if body != nil {
		rd = bytes.NewReader(body) // sets Content-Length
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, u, err)
	}
	if !statusOK(resp.StatusCode, want) {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		resp.Body.Close()
		return nil, &statusError{method, u.String(), resp.StatusCode, strings.TrimSpace(string(b))}
	}
	return resp, nil
}

func statusOK(code int, want []int) bool {
	if len(want) == 0 {
		return code >= 200 && code < 300
	}
	for _, w := range want {
		if code == w {
			return true
		}
	}
	return false
}

// doDrain is do for requests whose body we don't need: it reads the body
// to the end so the connection goes back to the keep-alive pool, and
// returns the headers and the number of body bytes.
func (c *client) doDrain(ctx context.Context, method, ref string, hdr http.Header, body []byte, want ...int) (http.Header, int64, error) {
	resp, err := c.do(ctx, method, ref, hdr, body, want...)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	n, err := drain(resp.Body)
	if err != nil {
		return nil, n, fmt.Errorf("%s %s: reading body: %w", method, ref, err)
	}
	return resp.Header, n, nil
}

// drain discards r with a large buffer; io.Discard's ReadFrom would use
// 8 KiB reads, which costs client CPU the server needs on a small box.
func drain(r io.Reader) (int64, error) {
	buf := make([]byte, 256<<10)
	var n int64
	for {
		k, err := r.Read(buf)
		n += int64(k)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// startUpload opens an upload session and returns its Location.
func (c *client) startUpload(ctx context.Context, repo string) (string, error) {
	h, _, err := c.doDrain(ctx, http.MethodPost, "/v2/"+repo+"/blobs/uploads/", nil, nil, http.StatusAccepted)
	if err != nil {
		return "", err
	}
	return location(h, "POST upload")
}

func location(h http.Header, what string) (string, error) {
	loc := h.Get("Location")
	if loc == "" {
		return "", fmt.Errorf("%s: response has no Location header", what)
	}
	return loc, nil
}

// withDigest appends ?digest= to an upload Location, keeping any state
// parameters the registry put there (distribution uses _state).
func (c *client) withDigest(loc, digest string) (string, error) {
	u, err := c.resolve(loc)
	if err != nil {
		return "", err
	}
	q := u.Query()
	q.Set("digest", digest)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// pushMono is the two-request monolithic upload: POST, then PUT with the
// whole blob as body.
func (c *client) pushMono(ctx context.Context, repo string, b blob) error {
	loc, err := c.startUpload(ctx, repo)
	if err != nil {
		return err
	}
	put, err := c.withDigest(loc, b.digest)
	if err != nil {
		return err
	}
	hdr := http.Header{"Content-Type": {"application/octet-stream"}}
	_, _, err = c.doDrain(ctx, http.MethodPut, put, hdr, b.data, http.StatusCreated)
	return err
}

// pushChunked uploads with PATCH chunks (inclusive Content-Range, as the
// spec requires) and closes the session with an empty PUT ?digest=.
func (c *client) pushChunked(ctx context.Context, repo string, b blob, chunk int) error {
	loc, err := c.startUpload(ctx, repo)
	if err != nil {
		return err
	}
	for off := 0; off < len(b.data); off += chunk {
		end := min(off+chunk, len(b.data))
		hdr := http.Header{
			"Content-Type":  {"application/octet-stream"},
			"Content-Range": {fmt.Sprintf("%d-%d", off, end-1)},
		}
		h, _, err := c.doDrain(ctx, http.MethodPatch, loc, hdr, b.data[off:end], http.StatusAccepted)
		if err != nil {
			return err
		}
		if loc, err = location(h, "PATCH chunk"); err != nil {
			return err
		}
	}
	put, err := c.withDigest(loc, b.digest)
	if err != nil {
		return err
	}
	_, _, err = c.doDrain(ctx, http.MethodPut, put, nil, nil, http.StatusCreated)
	return err
}

// ensureBlob does what docker/containerd do per layer: HEAD first, upload
// only when missing.
func (c *client) ensureBlob(ctx context.Context, repo string, b blob) error {
	ok, err := c.headBlob(ctx, repo, b.digest)
	if err != nil || ok {
		return err
	}
	return c.pushMono(ctx, repo, b)
}

// headBlob reports whether the blob exists in repo.
func (c *client) headBlob(ctx context.Context, repo, digest string) (bool, error) {
	resp, err := c.do(ctx, http.MethodHead, "/v2/"+repo+"/blobs/"+digest, nil, nil, http.StatusOK, http.StatusNotFound)
	if err != nil {
		return false, err
	}
	drain(resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK, nil
}

// putManifest stores an OCI image manifest under ref (tag or digest).
func (c *client) putManifest(ctx context.Context, repo, ref string, m []byte) error {
	hdr := http.Header{"Content-Type": {mediaOCIManifest}}
	_, _, err := c.doDrain(ctx, http.MethodPut, "/v2/"+repo+"/manifests/"+ref, hdr, m, http.StatusCreated)
	return err
}

// manifestAccept lists every manifest type a modern client accepts, so a
// registry never has to convert or refuse.
var manifestAccept = strings.Join([]string{
	mediaOCIManifest,
	"application/vnd.oci.image.index.v1+json",
	"application/vnd.docker.distribution.manifest.v2+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
}, ", ")

// nextLink extracts the target of a `Link: <url>; rel="next"` header, the
// pagination mechanism of both /v2/_catalog and tags/list.
func nextLink(h http.Header) string {
	for _, v := range h.Values("Link") {
		for _, part := range strings.Split(v, ",") {
			part = strings.TrimSpace(part)
			if !strings.Contains(part, `rel="next"`) && !strings.Contains(part, "rel=next") {
				continue
			}
			if i, j := strings.Index(part, "<"), strings.Index(part, ">"); i >= 0 && j > i {
				return part[i+1 : j]
			}
		}
	}
	return ""
}
