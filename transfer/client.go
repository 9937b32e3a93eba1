package transfer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/stowage/stowage"
)

// Client is what export and import send to the registry: the OCI
// Distribution API and, to list what to export, the /acr/v1 routes. It
// speaks only to Stowage (or a registry with the same routes); the
// credentials and TLS are the caller's (the admin CLI's).
type Client struct {
	// Base is the registry's URL ("http://127.0.0.1:5000").
	Base string
	// Do sends a request with the caller's credentials and returns the
	// response whatever its status.
	Do func(*http.Request) (*http.Response, error)
}

// manifestAccept is every manifest type the export can carry.
var manifestAccept = strings.Join([]string{
	stowage.MediaTypeOCIIndex, stowage.MediaTypeOCIManifest,
	stowage.MediaTypeDockerList, stowage.MediaTypeDockerManifest,
}, ", ")

func (c *Client) request(ctx context.Context, method, path string, body io.Reader, hdr map[string]string) (*http.Response, error) {
	u := path
	if !strings.HasPrefix(path, "http://") && !strings.HasPrefix(path, "https://") {
		u = strings.TrimRight(c.Base, "/") + path
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if n := hdr["Content-Length"]; n != "" {
		req.ContentLength, _ = strconv.ParseInt(n, 10, 64)
		req.Header.Del("Content-Length")
	}
	return c.Do(req)
}

// statusError turns a failed response into an error with the registry's
// code and message.
func statusError(what string, resp *http.Response) error {
	var body struct {
		Errors []struct{ Code, Message string } `json:"errors"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	e := &RegistryError{What: what, Status: resp.StatusCode}
	if json.Unmarshal(b, &body) == nil && len(body.Errors) > 0 {
		e.Code, e.Message = body.Errors[0].Code, body.Errors[0].Message
	}
	return e
}

// Manifest returns a manifest's bytes and media type, verified against dg.
func (c *Client) Manifest(ctx context.Context, repo string, dg stowage.Digest) ([]byte, string, error) {
	resp, err := c.request(ctx, http.MethodGet, "/v2/"+repo+"/manifests/"+string(dg), nil, map[string]string{"Accept": manifestAccept})
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, "", statusError("GET manifest "+repo+"@"+string(dg), resp)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, stowage.MaxManifestSize+1))
	if err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(b)
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != string(dg) {
		return nil, "", stowage.Errorf(stowage.CodeDigestInvalid, "manifest %s@%s: the registry sent bytes with digest %s", repo, dg, got)
	}
	return b, resp.Header.Get("Content-Type"), nil
}

// Blob opens a blob from offset on (errNoRange if the registry cannot
// start there).
func (c *Client) Blob(ctx context.Context, repo string, dg stowage.Digest, offset int64) (io.ReadCloser, error) {
	hdr := map[string]string{}
	if offset > 0 {
		hdr["Range"] = fmt.Sprintf("bytes=%d-", offset)
	}
	resp, err := c.request(ctx, http.MethodGet, "/v2/"+repo+"/blobs/"+string(dg), nil, hdr)
	if err != nil {
		return nil, err
	}
	switch {
	case resp.StatusCode == http.StatusOK && offset == 0, resp.StatusCode == http.StatusPartialContent && offset > 0:
		return resp.Body, nil
	case resp.StatusCode == http.StatusOK:
		resp.Body.Close()
		return nil, errNoRange
	}
	defer resp.Body.Close()
	return nil, statusError("GET blob "+repo+"@"+string(dg), resp)
}

// Referrers lists the manifests whose subject is dg (signatures, SBOMs).
func (c *Client) Referrers(ctx context.Context, repo string, dg stowage.Digest) ([]Descriptor, error) {
	var out []Descriptor
	next := "/v2/" + repo + "/referrers/" + string(dg)
	for next != "" {
		resp, err := c.request(ctx, http.MethodGet, next, nil, map[string]string{"Accept": stowage.MediaTypeOCIIndex})
		if err != nil {
			return nil, err
		}
		if resp.StatusCode == http.StatusNotFound {
			resp.Body.Close()
			return out, nil
		}
		if resp.StatusCode != http.StatusOK {
			defer resp.Body.Close()
			return nil, statusError("GET referrers of "+repo+"@"+string(dg), resp)
		}
		var idx Index
		err = json.NewDecoder(io.LimitReader(resp.Body, maxIndexSize)).Decode(&idx)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("referrers of %s@%s: %w", repo, dg, err)
		}
		out = append(out, idx.Manifests...)
		next = nextLink(resp)
	}
	return out, nil
}

// nextLink returns the path of the next page a Link header points at.
func nextLink(resp *http.Response) string {
	l := resp.Header.Get("Link")
	i, j := strings.Index(l, "<"), strings.Index(l, ">")
	if i < 0 || j < i || !strings.Contains(l[j:], `rel="next"`) {
		return ""
	}
	return l[i+1 : j]
}

// getJSON GETs path and each next page, decoding each into a fresh value
// passed to fn.
func (c *Client) pages(ctx context.Context, path string, fn func(dec *json.Decoder) error) error {
	for next := path; next != ""; {
		resp, err := c.request(ctx, http.MethodGet, next, nil, nil)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			defer resp.Body.Close()
			return statusError("GET "+next, resp)
		}
		err = fn(json.NewDecoder(resp.Body))
		resp.Body.Close()
		if err != nil {
			return err
		}
		next = nextLink(resp)
	}
	return nil
}

// Repositories lists the repositories the caller may see.
func (c *Client) Repositories(ctx context.Context) ([]string, error) {
	var out []string
	err := c.pages(ctx, "/acr/v1/_catalog?n=1000", func(dec *json.Decoder) error {
		var page struct{ Repositories []string }
		err := dec.Decode(&page)
		out = append(out, page.Repositories...)
		return err
	})
	return out, err
}

// TagInfo is a tag as the /acr/v1 API lists it.
type TagInfo struct {
	Name           string         `json:"name"`
	Digest         stowage.Digest `json:"digest"`
	LastUpdateTime string         `json:"lastUpdateTime"`
}

// Tags lists a repository's tags.
func (c *Client) Tags(ctx context.Context, repo string) ([]TagInfo, error) {
	var out []TagInfo
	err := c.pages(ctx, "/acr/v1/"+repo+"/_tags?n=1000", func(dec *json.Decoder) error {
		var page struct{ Tags []TagInfo }
		err := dec.Decode(&page)
		out = append(out, page.Tags...)
		return err
	})
	return out, err
}

// ManifestInfo is a manifest as the /acr/v1 API lists it.
type ManifestInfo struct {
	Digest      stowage.Digest `json:"digest"`
	MediaType   string         `json:"mediaType"`
	CreatedTime string         `json:"createdTime"`
	Tags        []string       `json:"tags"`
}

// Manifests lists a repository's manifests.
func (c *Client) Manifests(ctx context.Context, repo string) ([]ManifestInfo, error) {
	var out []ManifestInfo
	err := c.pages(ctx, "/acr/v1/"+repo+"/_manifests?n=1000", func(dec *json.Decoder) error {
		var page struct{ Manifests []ManifestInfo }
		err := dec.Decode(&page)
		out = append(out, page.Manifests...)
		return err
	})
	return out, err
}

// FeedPosition returns the change feed's newest seq (0 if the registry
// serves no feed or the caller may not read it).
func (c *Client) FeedPosition(ctx context.Context) int64 {
	resp, err := c.request(ctx, http.MethodGet, "/api/v1/events?n=1", nil, nil)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var page struct{ Newest int64 }
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&page) != nil {
		return 0
	}
	return page.Newest
}

// ChangedRepositories returns the repositories with a push, a restore or
// a lock change in the change feed after seq and up to upto; ok is false
// when the feed cannot say (not served, not readable by the caller, or its
// retention deleted events after seq).
func (c *Client) ChangedRepositories(ctx context.Context, seq, upto int64) (repos map[string]bool, ok bool) {
	repos = map[string]bool{}
	for after := seq; after < upto; {
		q := url.Values{"after": {strconv.FormatInt(after, 10)}, "n": {"1000"}, "kind": {"push,restore,lock"}}
		resp, err := c.request(ctx, http.MethodGet, "/api/v1/events?"+q.Encode(), nil, nil)
		if err != nil {
			return nil, false
		}
		var page struct {
			Events []struct {
				Seq        int64  `json:"seq"`
				Repository string `json:"repository"`
			} `json:"events"`
			Next int64 `json:"next"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || err != nil {
			return nil, false
		}
		for _, e := range page.Events {
			if e.Seq <= upto {
				repos[e.Repository] = true
			}
		}
		if page.Next <= after {
			break
		}
		after = page.Next
	}
	return repos, true
}

// HasBlob reports whether repo holds blob dg.
func (c *Client) HasBlob(ctx context.Context, repo string, dg stowage.Digest) (bool, error) {
	return c.head(ctx, "/v2/"+repo+"/blobs/"+string(dg), nil)
}

// HasManifest reports whether repo holds manifest dg.
func (c *Client) HasManifest(ctx context.Context, repo string, dg stowage.Digest) (bool, error) {
	return c.head(ctx, "/v2/"+repo+"/manifests/"+string(dg), map[string]string{"Accept": manifestAccept})
}

// TagDigest returns the digest tag points at in repo ("" if none).
func (c *Client) TagDigest(ctx context.Context, repo, tag string) (stowage.Digest, error) {
	resp, err := c.request(ctx, http.MethodHead, "/v2/"+repo+"/manifests/"+tag, nil, map[string]string{"Accept": manifestAccept})
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return stowage.Digest(resp.Header.Get("Docker-Content-Digest")), nil
	case http.StatusNotFound:
		return "", nil
	}
	return "", statusError("HEAD "+repo+":"+tag, resp)
}

func (c *Client) head(ctx context.Context, path string, hdr map[string]string) (bool, error) {
	resp, err := c.request(ctx, http.MethodHead, path, nil, hdr)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	}
	return false, statusError("HEAD "+path, resp)
}

// Mount links blob dg into repo from repository from, or with from ""
// from any repository holding it (the registry's automatic content
// discovery); it also succeeds when repo has the blob already. When it
// cannot, the registry opens an upload instead: its location is returned
// for Upload.
func (c *Client) Mount(ctx context.Context, repo string, dg stowage.Digest, from string) (bool, string, error) {
	q := url.Values{"mount": {string(dg)}}
	if from != "" {
		q.Set("from", from)
	}
	resp, err := c.request(ctx, http.MethodPost, "/v2/"+repo+"/blobs/uploads/?"+q.Encode(), nil, nil)
	if err != nil {
		return false, "", err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusCreated:
		return true, "", nil
	case http.StatusAccepted:
		return false, resp.Header.Get("Location"), nil
	}
	return false, "", statusError("mount "+string(dg)+" into "+repo, resp)
}

// Cancel drops an upload that will not be used.
func (c *Client) Cancel(ctx context.Context, location string) {
	if location == "" {
		return
	}
	if r, err := c.request(ctx, http.MethodDelete, c.abs(location), nil, nil); err == nil {
		r.Body.Close()
	}
}

func (c *Client) abs(loc string) string {
	if strings.HasPrefix(loc, "http://") || strings.HasPrefix(loc, "https://") {
		return loc
	}
	return strings.TrimRight(c.Base, "/") + loc
}

// Upload pushes a blob in one PUT, streaming body (size bytes), into the
// upload at location (one Mount opened; "": a new one).
func (c *Client) Upload(ctx context.Context, repo string, dg stowage.Digest, size int64, body io.Reader, location string) error {
	if location == "" {
		resp, err := c.request(ctx, http.MethodPost, "/v2/"+repo+"/blobs/uploads/", nil, nil)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return statusError("start upload into "+repo, resp)
		}
		location = resp.Header.Get("Location")
	}
	loc := c.abs(location)
	u, err := url.Parse(loc)
	if err != nil {
		return err
	}
	q := u.Query()
	q.Set("digest", string(dg))
	u.RawQuery = q.Encode()
	br := &bodyReader{r: body}
	resp, err := c.request(ctx, http.MethodPut, u.String(), br, map[string]string{
		"Content-Type": "application/octet-stream", "Content-Length": strconv.FormatInt(size, 10)})
	if br.err != nil && br.err != io.EOF {
		// The layout's bytes failed (the verifier: digest or size), not
		// the connection; the request failed because its body did.
		if resp != nil {
			resp.Body.Close()
		}
		return &LayoutError{Err: br.err}
	}
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return statusError("upload blob "+string(dg)+" into "+repo, resp)
	}
	return nil
}

// bodyReader keeps the error its reader returned.
type bodyReader struct {
	r   io.Reader
	err error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && b.err == nil {
		b.err = err
	}
	return n, err
}

// PutManifest pushes a manifest by tag or digest and checks the digest the
// registry computed.
func (c *Client) PutManifest(ctx context.Context, repo, ref, mediaType string, body []byte, dg stowage.Digest) error {
	resp, err := c.request(ctx, http.MethodPut, "/v2/"+repo+"/manifests/"+ref, bytes.NewReader(body), map[string]string{
		"Content-Type": mediaType, "Content-Length": strconv.Itoa(len(body))})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return statusError("push manifest "+repo+":"+strings.TrimPrefix(ref, "sha256:"), resp)
	}
	if got := resp.Header.Get("Docker-Content-Digest"); got != "" && got != string(dg) {
		return fmt.Errorf("push manifest %s: the registry stored it as %s, not %s", repo, got, dg)
	}
	return nil
}

// parseTime reads the /acr/v1 API's times.
func parseTime(s string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}
