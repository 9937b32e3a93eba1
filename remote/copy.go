package remote

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/stowage/stowage"
)

// Sink is where Copy puts what it reads: for `stowage import --from`, the
// engine's push path (so locks, quotas and immutability apply).
type Sink interface {
	// HasBlob reports whether repo holds blob d already; it may make it so
	// without copying (a mount from another repository).
	HasBlob(ctx context.Context, repo string, d stowage.Digest) (bool, error)
	// PutBlob stores blob d in repo from r, verifying digest and size.
	PutBlob(ctx context.Context, repo string, d stowage.Digest, r io.Reader, size int64) error
	// PutManifest stores m in repo (by digest) and moves tags to it.
	PutManifest(ctx context.Context, repo string, m Manifest, tags []string) error
}

// CopyOptions say what Copy copies besides the image itself.
type CopyOptions struct {
	// Referrers also copies the manifests whose subject is the image or
	// one of its platforms (signatures, SBOMs, attestations), and theirs.
	Referrers bool
	// Platform "" or "all" copies an index with every platform; "os/arch"
	// or "os/arch/variant" copies only that platform's image (not the
	// index: the target tag then names the image, a different digest).
	Platform string
	// Parallel blob copies; 0 means 4.
	Parallel int
	// Progress, if set, is called as the copy goes (from several goroutines
	// one at a time).
	Progress func(Progress)
	Logger   *slog.Logger
}

// Progress is how far a copy is.
type Progress struct {
	Phase          string `json:"phase"` // "manifests" (reading the image's tree), "blobs", "push"
	Manifests      int    `json:"manifests"`
	ManifestsTotal int    `json:"manifestsTotal"`
	Bytes          int64  `json:"bytes"`
	BytesTotal     int64  `json:"bytesTotal"`
}

// CopyReport says what a copy did.
type CopyReport struct {
	Source       string         `json:"source"`
	Target       string         `json:"target"`
	Digest       stowage.Digest `json:"digest"`
	MediaType    string         `json:"mediaType"`
	Manifests    int            `json:"manifests"` // the image's and its referrers'
	Referrers    int            `json:"referrers"`
	Blobs        int            `json:"blobs"`        // copied
	BlobsPresent int            `json:"blobsPresent"` // already in the repository (or mounted there)
	BytesCopied  int64          `json:"bytesCopied"`
	BytesPresent int64          `json:"bytesPresent"`
}

// copier holds one copy's state.
type copier struct {
	src   *Client
	repo  string // source repository
	opts  CopyOptions
	seen  map[stowage.Digest]bool
	order []Manifest // children before parents, subjects before referrers
	blobs []stowage.Descriptor
	bseen map[stowage.Digest]bool
	refs  int

	mu   sync.Mutex
	prog Progress
}

// Copy copies src's image srcRepo:ref into dst's dstRepo, tagged with tags:
// every platform of an index (or the one opts.Platform names), their
// referrers if asked, each blob once, skipping blobs the repository holds.
// Nothing limits how many manifests an image has. Blobs are pushed first,
// then manifests, children before their index and subjects before their
// referrers, so every push finds what it references.
func Copy(ctx context.Context, src *Client, srcRepo string, ref stowage.Reference, dst Sink, dstRepo string, tags []string, opts CopyOptions) (CopyReport, error) {
	if opts.Parallel <= 0 {
		opts.Parallel = 4
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	c := &copier{src: src, repo: srcRepo, opts: opts, seen: map[stowage.Digest]bool{}, bseen: map[stowage.Digest]bool{}}
	rep := CopyReport{Source: src.Host() + "/" + srcRepo + refSep(ref) + ref.String(), Target: dstRepo}
	c.report(func(p *Progress) { p.Phase = "manifests" })

	// 1. Read the tree: every manifest (small), so the bytes to copy are
	// known before the first blob moves.
	root, err := src.GetManifest(ctx, srcRepo, ref)
	if err != nil {
		return rep, err
	}
	if root, err = c.platform(ctx, root); err != nil {
		return rep, err
	}
	if err := c.walk(ctx, root, 0); err != nil {
		return rep, err
	}
	if opts.Referrers {
		// Referrers of every manifest of the tree (an index's signature, a
		// platform's SBOM), then the referrers' own, breadth first.
		for i := 0; i < len(c.order); i++ {
			if err := c.referrers(ctx, c.order[i]); err != nil {
				return rep, err
			}
		}
	}
	rep.Digest, rep.MediaType, rep.Manifests, rep.Referrers = root.Digest, root.MediaType, len(c.order), c.refs

	// 2. Blobs, a few at a time.
	c.report(func(p *Progress) {
		p.Phase, p.ManifestsTotal = "blobs", len(c.order)
		for _, b := range c.blobs {
			p.BytesTotal += b.Size
		}
	})
	if err := c.copyBlobs(ctx, dst, dstRepo, &rep); err != nil {
		return rep, err
	}

	// 3. Manifests, in order; the root gets the tags.
	c.report(func(p *Progress) { p.Phase = "push" })
	for _, m := range c.order {
		var t []string
		if m.Digest == root.Digest {
			t = tags
		}
		if err := dst.PutManifest(ctx, dstRepo, m, t); err != nil {
			return rep, fmt.Errorf("push manifest %s: %w", m.Digest, err)
		}
		c.report(func(p *Progress) { p.Manifests++ })
	}
	return rep, nil
}

func refSep(r stowage.Reference) string {
	if r.IsDigest() {
		return "@"
	}
	return ":"
}

func (c *copier) report(f func(*Progress)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(&c.prog)
	if c.opts.Progress != nil {
		c.opts.Progress(c.prog)
	}
}

// platform returns the image of an index that opts.Platform names (m
// itself for "all", or when m is not an index).
func (c *copier) platform(ctx context.Context, m Manifest) (Manifest, error) {
	want := c.opts.Platform
	if want == "" || want == "all" || !stowage.IsIndex(m.MediaType) {
		return m, nil
	}
	pm, err := stowage.ParseManifest(m.MediaType, m.Body)
	if err != nil {
		return m, err
	}
	var have []string
	for _, d := range pm.Manifests {
		if d.Platform == nil {
			continue
		}
		p := d.Platform.OS + "/" + d.Platform.Architecture
		if d.Platform.Variant != "" && strings.Count(want, "/") == 2 {
			p += "/" + d.Platform.Variant
		}
		if p == want {
			return c.src.GetManifest(ctx, c.repo, stowage.Reference{Digest: d.Digest})
		}
		have = append(have, p)
	}
	return m, stowage.Errorf(stowage.CodeManifestUnknown, "the index %s has no image for platform %s (it has: %s); use --platform all to copy the whole index", m.Digest, want, strings.Join(have, ", "))
}

// walk adds m, its children (fetched) and its blobs to the plan, children
// first.
func (c *copier) walk(ctx context.Context, m Manifest, depth int) error {
	if c.seen[m.Digest] {
		return nil
	}
	if depth > 16 {
		return stowage.Errorf(stowage.CodeManifestInvalid, "manifest %s is nested more than 16 indexes deep", m.Digest)
	}
	c.seen[m.Digest] = true
	pm, err := stowage.ParseManifest(m.MediaType, m.Body)
	if err != nil {
		return fmt.Errorf("manifest %s on %s: %w", m.Digest, c.src.Host(), err)
	}
	for _, d := range pm.Manifests {
		child, err := c.src.GetManifest(ctx, c.repo, stowage.Reference{Digest: d.Digest})
		if err != nil {
			return fmt.Errorf("child %s of index %s: %w", d.Digest, m.Digest, err)
		}
		if err := c.walk(ctx, child, depth+1); err != nil {
			return err
		}
	}
	if pm.Config != nil {
		c.blob(*pm.Config)
	}
	for _, l := range pm.Layers {
		c.blob(l)
	}
	c.order = append(c.order, m)
	c.report(func(p *Progress) { p.ManifestsTotal = len(c.order) })
	return nil
}

func (c *copier) blob(d stowage.Descriptor) {
	// A foreign layer that says where it lives is fetched from there by
	// clients; registries usually do not hold it, and Stowage accepts a
	// manifest without it.
	foreign := strings.Contains(d.MediaType, "nondistributable") || strings.Contains(d.MediaType, "foreign")
	if foreign && len(d.URLs) > 0 {
		return
	}
	if !c.bseen[d.Digest] {
		c.bseen[d.Digest] = true
		c.blobs = append(c.blobs, d)
	}
}

// referrers adds the referrers of m (and their trees) to the plan.
func (c *copier) referrers(ctx context.Context, m Manifest) error {
	ds, err := c.src.Referrers(ctx, c.repo, m.Digest)
	if err != nil {
		return fmt.Errorf("referrers of %s: %w", m.Digest, err)
	}
	for _, d := range ds {
		if c.seen[d.Digest] {
			continue
		}
		r, err := c.src.GetManifest(ctx, c.repo, stowage.Reference{Digest: d.Digest})
		if err != nil {
			return fmt.Errorf("referrer %s of %s: %w", d.Digest, m.Digest, err)
		}
		c.refs++
		if err := c.walk(ctx, r, 0); err != nil {
			return err
		}
	}
	return nil
}

// copyBlobs copies the plan's blobs that dst does not hold, opts.Parallel
// at a time; the first error stops the rest.
func (c *copier) copyBlobs(ctx context.Context, dst Sink, repo string, rep *CopyReport) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		firstErr error
		errOnce  sync.Once
		copied   atomic.Int64
		present  atomic.Int64
		nCopied  atomic.Int64
		nPresent atomic.Int64
	)
	fail := func(err error) { errOnce.Do(func() { firstErr = err; cancel() }) }
	work := make(chan stowage.Descriptor)
	for range c.opts.Parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range work {
				n, had, err := c.copyBlob(ctx, dst, repo, d)
				if err != nil {
					fail(err)
					continue
				}
				if had {
					present.Add(n)
					nPresent.Add(1)
				} else {
					copied.Add(n)
					nCopied.Add(1)
				}
			}
		}()
	}
	for _, d := range c.blobs {
		select {
		case work <- d:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
	rep.Blobs, rep.BlobsPresent = int(nCopied.Load()), int(nPresent.Load())
	rep.BytesCopied, rep.BytesPresent = copied.Load(), present.Load()
	if firstErr == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return firstErr
}

// copyBlob copies one blob unless dst has it; it reports its size and
// whether it was there.
func (c *copier) copyBlob(ctx context.Context, dst Sink, repo string, d stowage.Descriptor) (int64, bool, error) {
	had, err := dst.HasBlob(ctx, repo, d.Digest)
	if err != nil {
		return 0, false, err
	}
	if had {
		c.report(func(p *Progress) { p.Bytes += d.Size })
		return d.Size, true, nil
	}
	rc, _, err := c.src.OpenBlob(ctx, c.repo, d.Digest)
	if err != nil {
		return 0, false, fmt.Errorf("blob %s: %w", d.Digest, err)
	}
	defer rc.Close()
	cr := &countingReader{r: rc, add: func(n int64) { c.report(func(p *Progress) { p.Bytes += n }) }}
	if err := dst.PutBlob(ctx, repo, d.Digest, cr, d.Size); err != nil {
		return 0, false, fmt.Errorf("blob %s: %w", d.Digest, err)
	}
	return d.Size, false, nil
}

type countingReader struct {
	r   io.Reader
	add func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.add(int64(n))
	}
	return n, err
}
