package remote

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
	"github.com/stowage/stowage"
)

// Accept lists the manifest media types Stowage stores, for the Accept header.
var Accept = []string{stowage.MediaTypeOCIIndex, stowage.MediaTypeOCIManifest, stowage.MediaTypeDockerList, stowage.MediaTypeDockerManifest}

// Manifest is a manifest as the registry served it, its digest verified.
type Manifest struct {
	Digest    stowage.Digest
	MediaType string
	Body      []byte
}

// Descriptor returns the manifest's descriptor.
func (m Manifest) Descriptor() stowage.Descriptor {
	return stowage.Descriptor{MediaType: m.MediaType, Digest: m.Digest, Size: int64(len(m.Body))}
}

// DigestMismatchError: what the registry sent is not what was asked for.
type DigestMismatchError struct {
	What      string
	Want, Got stowage.Digest
}

func (e *DigestMismatchError) Error() string {
	return fmt.Sprintf("%s from the remote registry has digest %s, not %s: refused (the registry or something on the way altered it)", e.What, e.Got, e.Want)
}

// GetManifest fetches the manifest repo:ref. The digest is verified: against
// ref when it is a digest, else against the registry's Docker-Content-Digest
// (when sent); the returned Digest is always that of the body.
func (c *Client) GetManifest(ctx context.Context, repo string, ref stowage.Reference) (Manifest, error) {
	if m, ok := c.cached(repo, ref); ok {
		return m, nil
	}
	if ref.IsDigest() && c.opts.CacheManifests > 0 {
		// One GET per digest at a time: the others wait for it.
		key := repo + "@" + string(ref.Digest)
		c.mu.Lock()
		if f := c.mfetch[key]; f != nil {
			c.mu.Unlock()
			select {
			case <-f.done:
				if !errors.Is(f.err, context.Canceled) && !errors.Is(f.err, context.DeadlineExceeded) {
					return f.m, f.err
				}
			case <-ctx.Done():
				return Manifest{}, ctx.Err()
			}
			return c.GetManifest(ctx, repo, ref) // its caller's context ended it: ask again
		}
		if m, ok := c.mcache[key]; ok {
			c.mu.Unlock()
			return m, nil
		}
		f := &fetch{done: make(chan struct{})}
		if c.mfetch == nil {
			c.mfetch = map[string]*fetch{}
		}
		c.mfetch[key] = f
		c.mu.Unlock()
		defer func() {
			c.mu.Lock()
			delete(c.mfetch, key)
			c.mu.Unlock()
			close(f.done)
		}()
		f.m, f.err = c.fetchManifest(ctx, repo, ref)
		return f.m, f.err
	}
	return c.fetchManifest(ctx, repo, ref)
}

// fetchManifest GETs a manifest and keeps it (Options.CacheManifests).
func (c *Client) fetchManifest(ctx context.Context, repo string, ref stowage.Reference) (Manifest, error) {
	m, err := c.getManifest(ctx, repo, ref)
	if err == nil && c.opts.CacheManifests > 0 {
		c.mu.Lock()
		key := repo + "@" + string(m.Digest)
		if _, ok := c.mcache[key]; !ok {
			if c.mcache == nil {
				c.mcache = map[string]Manifest{}
			}
			c.mcache[key] = m
			c.morder = append(c.morder, key)
			if len(c.morder) > c.opts.CacheManifests {
				delete(c.mcache, c.morder[0])
				c.morder = c.morder[1:]
			}
		}
		c.mu.Unlock()
	}
	return m, err
}

// cached returns a manifest fetched by digest before (Options.CacheManifests).
func (c *Client) cached(repo string, ref stowage.Reference) (Manifest, bool) {
	if !ref.IsDigest() || c.opts.CacheManifests <= 0 {
		return Manifest{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.mcache[repo+"@"+string(ref.Digest)]
	return m, ok
}

func (c *Client) getManifest(ctx context.Context, repo string, ref stowage.Reference) (Manifest, error) {
	h := http.Header{"Accept": {strings.Join(Accept, ", ")}}
	resp, err := c.get(ctx, http.MethodGet, "/v2/"+repo+"/manifests/"+ref.String(), pullScope(repo), h)
	if err != nil {
		return Manifest{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, stowage.MaxManifestSize+1))
	if err != nil {
		return Manifest{}, fmt.Errorf("read manifest %s:%s from %s: %w", repo, ref, c.host, err)
	}
	if len(body) > stowage.MaxManifestSize {
		return Manifest{}, stowage.Errorf(stowage.CodeManifestInvalid, "manifest %s:%s on %s is larger than %d bytes", repo, ref, c.host, stowage.MaxManifestSize)
	}
	alg := digest.Canonical
	want := ref.Digest
	if want == "" {
		if d, err := digest.Parse(resp.Header.Get("Docker-Content-Digest")); err == nil {
			want = d
		}
	}
	if want != "" && want.Algorithm().Available() {
		alg = want.Algorithm()
	}
	got := alg.FromBytes(body)
	if want != "" && got != want {
		return Manifest{}, &DigestMismatchError{What: "manifest " + repo + ":" + ref.String(), Want: want, Got: got}
	}
	mt := mediaType(resp.Header.Get("Content-Type"), body)
	return Manifest{Digest: got, MediaType: mt, Body: body}, nil
}

// HeadManifest returns the digest of repo:ref without its body (what a
// cache asks to see whether a tag moved). A registry that sends no
// Docker-Content-Digest is asked with a GET.
func (c *Client) HeadManifest(ctx context.Context, repo string, ref stowage.Reference) (stowage.Descriptor, error) {
	h := http.Header{"Accept": {strings.Join(Accept, ", ")}}
	resp, err := c.get(ctx, http.MethodHead, "/v2/"+repo+"/manifests/"+ref.String(), pullScope(repo), h)
	if err != nil {
		return stowage.Descriptor{}, err
	}
	resp.Body.Close()
	d, err := digest.Parse(resp.Header.Get("Docker-Content-Digest"))
	if err != nil {
		m, err := c.GetManifest(ctx, repo, ref)
		return m.Descriptor(), err
	}
	size, _ := strconv.ParseInt(resp.Header.Get("Content-Length"), 10, 64)
	return stowage.Descriptor{MediaType: mediaType(resp.Header.Get("Content-Type"), nil), Digest: d, Size: size}, nil
}

// mediaType is the Content-Type without parameters, or, when the registry
// sent none that Stowage stores, the body's mediaType field.
func mediaType(ct string, body []byte) string {
	ct, _, _ = strings.Cut(ct, ";")
	ct = strings.TrimSpace(ct)
	for _, a := range Accept {
		if ct == a {
			return ct
		}
	}
	var m struct {
		MediaType string `json:"mediaType"`
		Manifests []json.RawMessage
	}
	if json.Unmarshal(body, &m) == nil {
		if m.MediaType != "" {
			return m.MediaType
		}
		if m.Manifests != nil {
			return stowage.MediaTypeOCIIndex
		}
		return stowage.MediaTypeOCIManifest
	}
	return ct
}

// OpenBlob streams blob d of repo. The reader verifies the digest (and the
// size, when the registry sent one) as it goes: its last Read returns a
// *DigestMismatchError instead of io.EOF when the bytes are not d's, so a
// consumer that stores what it reads keeps nothing wrong if it commits only
// after a clean EOF. size is -1 when the registry did not say.
func (c *Client) OpenBlob(ctx context.Context, repo string, d stowage.Digest) (io.ReadCloser, int64, error) {
	if err := d.Validate(); err != nil {
		return nil, 0, err
	}
	resp, err := c.get(ctx, http.MethodGet, "/v2/"+repo+"/blobs/"+string(d), pullScope(repo), nil)
	if err != nil {
		return nil, 0, err
	}
	return &verifier{rc: resp.Body, d: d, h: d.Algorithm().Hash(), size: resp.ContentLength, what: "blob " + short(d)}, resp.ContentLength, nil
}

func short(d stowage.Digest) string {
	if len(d) > 19 {
		return string(d[:19])
	}
	return string(d)
}

// verifier hashes and counts what it reads and fails at the end if either
// is wrong.
type verifier struct {
	rc   io.ReadCloser
	d    stowage.Digest
	h    hash.Hash
	n    int64
	size int64
	what string
}

func (v *verifier) Read(p []byte) (int, error) {
	n, err := v.rc.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if err == io.EOF {
		if v.size >= 0 && v.n != v.size {
			return n, fmt.Errorf("%s: the registry sent %d bytes of %d: %w", v.what, v.n, v.size, io.ErrUnexpectedEOF)
		}
		if got := digest.NewDigest(v.d.Algorithm(), v.h); got != v.d {
			return n, &DigestMismatchError{What: v.what, Want: v.d, Got: got}
		}
	}
	return n, err
}

func (v *verifier) Close() error { return v.rc.Close() }

// Referrers lists the manifests whose subject is d in repo: from the
// referrers API, or, when the registry has none (404), from the referrers
// tag schema (the index tagged <alg>-<hex>). A registry with neither has
// no referrers for d.
func (c *Client) Referrers(ctx context.Context, repo string, d stowage.Digest) ([]stowage.Descriptor, error) {
	var out []stowage.Descriptor
	path := "/v2/" + repo + "/referrers/" + string(d)
	for page := 0; path != "" && page < 1000; page++ {
		resp, err := c.get(ctx, http.MethodGet, path, pullScope(repo), http.Header{"Accept": {stowage.MediaTypeOCIIndex}})
		if IsNotFound(err) && page == 0 {
			return c.referrersByTag(ctx, repo, d)
		}
		if err != nil {
			return nil, err
		}
		var idx struct {
			Manifests []stowage.Descriptor `json:"manifests"`
		}
		ct, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";")
		err = json.NewDecoder(io.LimitReader(resp.Body, stowage.MaxManifestSize)).Decode(&idx)
		resp.Body.Close()
		if err != nil || (page == 0 && strings.TrimSpace(ct) != "" && strings.TrimSpace(ct) != stowage.MediaTypeOCIIndex && strings.TrimSpace(ct) != "application/json") {
			// Not the API (an HTML page, a registry that routes it elsewhere).
			return c.referrersByTag(ctx, repo, d)
		}
		out = append(out, idx.Manifests...)
		path = nextLink(resp.Header.Get("Link"))
	}
	return out, nil
}

var linkRE = regexp.MustCompile(`<([^>]+)>\s*;\s*rel="?next"?`)

// nextLink returns the path of a Link: <…>; rel="next" header ("" if none).
func nextLink(h string) string {
	m := linkRE.FindStringSubmatch(h)
	if m == nil || !strings.HasPrefix(m[1], "/v2/") {
		return ""
	}
	return m[1]
}

// referrersByTag reads the referrers tag schema's index.
func (c *Client) referrersByTag(ctx context.Context, repo string, d stowage.Digest) ([]stowage.Descriptor, error) {
	m, err := c.GetManifest(ctx, repo, stowage.Reference{Tag: d.Algorithm().String() + "-" + d.Encoded()})
	if IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var idx struct {
		Manifests []stowage.Descriptor `json:"manifests"`
	}
	if err := json.NewDecoder(bytes.NewReader(m.Body)).Decode(&idx); err != nil {
		return nil, fmt.Errorf("referrers tag of %s in %s on %s: %w", d, repo, c.host, err)
	}
	return idx.Manifests, nil
}
