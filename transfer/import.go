package transfer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stowage/stowage"
)

// ImportOptions says where a layout's images go.
type ImportOptions struct {
	// Repository, if set, receives every image; else each index.json
	// entry's name says (ref.name "repo:tag", Stowage's repository
	// annotation), and an entry with a tag only needs Repository.
	Repository string
	Parallel   int // blobs pushed at once; default 4
	Progress   func(Progress)
}

// ImportReport says what an import pushed.
type ImportReport struct {
	Images        int       `json:"images"`            // tagged and untagged images pushed (or there already)
	Referrers     int       `json:"referrers"`         // signatures, SBOMs… (index.json entries with a subject)
	Tags          []string  `json:"tags"`              // repo:tag in place (pushed, or there already)
	TagsPushed    []string  `json:"tagsPushed"`        // repo:tag this run pushed (moved or created)
	Refused       []Refusal `json:"refused,omitempty"` // images the registry refused (a lock, immutability, a quota)
	Manifests     int       `json:"manifests"`         // manifests pushed (children and referrers included)
	Blobs         int       `json:"blobs"`             // configs and layers
	BlobsUploaded int       `json:"blobsUploaded"`     // sent to the registry
	BlobsMounted  int       `json:"blobsMounted"`      // already in the registry: linked (mounted), no bytes sent
	Bytes         int64     `json:"bytes"`             // bytes of all blobs
	Uploaded      int64     `json:"uploaded"`          // bytes sent
	Seconds       float64   `json:"seconds"`
	MBPerSecond   float64   `json:"mbPerSecond"`
}

// image is one index.json entry and where it goes.
type image struct {
	d         Descriptor
	repo, tag string
}

// mnode is a manifest read from the layout (or, when an incremental layout
// left it out, from the registry).
type mnode struct {
	d    Descriptor
	body []byte
	node *Node
}

type importer struct {
	c      *Client
	src    Source
	o      ImportOptions
	marker *Marker // the layout's marker, if Stowage wrote it
	rep    ImportReport
	done   atomic.Int64
	total  int64
	phase  atomic.Value
	nodes  map[string]*mnode // repo@digest
	mu     sync.Mutex        // the report, pushed
	pushed map[string]*push  // repo@digest: manifests pushed or being pushed
	blobs  map[stowage.Digest]*blobJob
	order  []*blobJob
}

// blobJob is one blob and the repositories that need it, in order.
type blobJob struct {
	d     Descriptor
	repos []string
}

// ReadImages returns the images a layout's index.json names and the
// repository and tag each goes to (repo overrides the names).
func ReadImages(src Source, repo string) ([]image, error) {
	b, err := src.ReadFile("index.json")
	if err != nil {
		return nil, fmt.Errorf("reading the layout's index.json: %w", err)
	}
	idx, err := ParseIndex(b)
	if err != nil {
		return nil, err
	}
	var out []image
	seen := map[string]stowage.Digest{}
	for i, d := range idx.Manifests {
		r, tag, err := RefName(d)
		if err != nil {
			return nil, fmt.Errorf("index.json manifests[%d]: %w", i, err)
		}
		if repo != "" {
			r = repo
		}
		if r == "" {
			return nil, stowage.Errorf(stowage.CodeNameInvalid, "index.json manifests[%d] (%s) names no repository: pass --repository NAME", i, d.Digest)
		}
		if tag != "" {
			key := r + ":" + tag
			if prev, ok := seen[key]; ok && prev != d.Digest {
				return nil, stowage.Errorf(stowage.CodeInvalidParameter, "index.json names two images %s (%s and %s): with --repository, tags of several repositories meet; import without it, or export one repository", key, prev, d.Digest)
			}
			seen[key] = d.Digest
		}
		out = append(out, image{d, r, tag})
	}
	return out, nil
}

// Import pushes every image of src into the registry behind c: blobs the
// repository has are skipped (HEAD), blobs another repository of this
// import has are mounted, the rest are uploaded, each verified as it is
// read; then the manifests, children first, by digest, and the tags. It is
// a push: locks, quotas and immutability apply. A rerun skips what the
// first run pushed.
func Import(ctx context.Context, c *Client, src Source, o ImportOptions) (ImportReport, error) {
	start := time.Now()
	if o.Parallel <= 0 {
		o.Parallel = 4
	}
	im := &importer{c: c, src: src, o: o, nodes: map[string]*mnode{}, pushed: map[string]*push{}, blobs: map[stowage.Digest]*blobJob{}}
	im.rep.Tags, im.rep.TagsPushed = []string{}, []string{}
	im.phase.Store("manifests")
	if b, err := src.ReadFile(MarkerFile); err == nil {
		im.marker, _ = ParseMarker(b)
	}
	stop := im.report()
	err := im.run(ctx)
	stop()
	im.rep.Seconds = time.Since(start).Seconds()
	if im.rep.Seconds > 0 {
		im.rep.MBPerSecond = float64(im.rep.Uploaded) / 1e6 / im.rep.Seconds
	}
	return im.rep, err
}

func (im *importer) report() func() {
	if im.o.Progress == nil {
		return func() {}
	}
	send := func() {
		im.mu.Lock()
		images := im.rep.Images
		im.mu.Unlock()
		im.o.Progress(Progress{Phase: im.phase.Load().(string), Done: im.done.Load(), Total: atomic.LoadInt64(&im.total), Images: images})
	}
	return every(200*time.Millisecond, send)
}

func (im *importer) run(ctx context.Context) error {
	images, err := ReadImages(im.src, im.o.Repository)
	if err != nil {
		return err
	}
	// 1. Read every manifest tree from the layout: the blobs to push.
	for _, img := range images {
		if err := im.plan(ctx, img.repo, img.d); err != nil {
			return err
		}
	}
	// 2. Before anything is uploaded, what can fail without the registry's
	// say: a blob neither in the layout nor in the registry (an incremental
	// layout whose base was not imported), a layout blob whose bytes do not
	// match its digest or size. A failed import then leaves nothing.
	im.phase.Store("checking")
	if err := im.check(ctx); err != nil {
		return err
	}
	im.done.Store(0)
	// 3. The blobs, several at once.
	im.phase.Store("blobs")
	if err := im.pushBlobs(ctx); err != nil {
		return err
	}
	// 4. The manifests, children before parents, several images at once;
	// a tagged image is pushed by its tag (one PUT stores and tags it). An
	// image the registry refuses (a lock, immutability, a quota) is
	// recorded and the others go on, so what is pushed does not depend on
	// timing; any other error stops the import.
	im.phase.Store("manifests")
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	work := make(chan image)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for range im.o.Parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for img := range work {
				if err := im.pushImage(ctx, img); err != nil {
					var re *RegistryError
					if errors.As(err, &re) && !Retryable(err) {
						name := img.repo + "@" + string(img.d.Digest)
						if img.tag != "" {
							name = img.repo + ":" + img.tag
						}
						im.mu.Lock()
						im.rep.Refused = append(im.rep.Refused, Refusal{Image: name, Error: err.Error()})
						im.mu.Unlock()
						mu.Lock()
						if first == nil {
							first = err
						}
						mu.Unlock()
						continue
					}
					mu.Lock()
					if first == nil {
						first = err
						cancel()
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, img := range images {
		select {
		case work <- img:
			continue
		case <-ctx.Done():
		}
		break
	}
	close(work)
	wg.Wait()
	sort.Strings(im.rep.Tags)
	sort.Strings(im.rep.TagsPushed)
	sort.Slice(im.rep.Refused, func(i, j int) bool { return im.rep.Refused[i].Image < im.rep.Refused[j].Image })
	if n := len(im.rep.Refused); n > 1 && first != nil {
		first = fmt.Errorf("%w (and %d more images refused)", first, n-1)
	}
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	return first
}

func (im *importer) pushImage(ctx context.Context, img image) error {
	n := im.nodes[img.repo+"@"+string(img.d.Digest)]
	if img.tag == "" {
		err := im.pushManifest(ctx, img.repo, img.d.Digest)
		if err == nil {
			im.mu.Lock()
			if n.node.Subject != nil {
				im.rep.Referrers++
			} else {
				im.rep.Images++
			}
			im.mu.Unlock()
		}
		return err
	}
	for _, ch := range n.node.Children {
		if err := im.pushManifest(ctx, img.repo, ch.Digest); err != nil {
			return err
		}
	}
	// A tag already there (a rerun) is not pushed again: each push is a
	// change feed event that webhooks and replication act on.
	cur, err := im.c.TagDigest(ctx, img.repo, img.tag)
	if err != nil {
		return err
	}
	pushed := cur != n.d.Digest
	if pushed {
		if err := im.c.PutManifest(ctx, img.repo, img.tag, n.d.MediaType, n.body, n.d.Digest); err != nil {
			return err
		}
	}
	im.mu.Lock()
	im.rep.Tags = append(im.rep.Tags, img.repo+":"+img.tag)
	im.rep.Images++
	if pushed {
		im.rep.Manifests++
		im.rep.TagsPushed = append(im.rep.TagsPushed, img.repo+":"+img.tag)
	}
	im.mu.Unlock()
	return nil
}

// plan reads manifest d (for repo) and its tree, and queues its blobs.
func (im *importer) plan(ctx context.Context, repo string, d Descriptor) error {
	key := repo + "@" + string(d.Digest)
	if im.nodes[key] != nil {
		return nil
	}
	body, err := im.manifest(ctx, repo, d)
	if err != nil {
		return err
	}
	node, err := ParseNode(d.MediaType, body)
	if err != nil {
		return fmt.Errorf("%s: %w", d.Digest, err)
	}
	d.MediaType = node.MediaType
	d.Size = int64(len(body))
	im.nodes[key] = &mnode{d, body, node}
	for _, ch := range node.Children {
		if err := im.plan(ctx, repo, ch); err != nil {
			return err
		}
	}
	for _, b := range node.Blobs {
		j := im.blobs[b.Digest]
		if j == nil {
			j = &blobJob{d: b}
			im.blobs[b.Digest] = j
			im.order = append(im.order, j)
			atomic.AddInt64(&im.total, b.Size)
			im.rep.Blobs++
			im.rep.Bytes += b.Size
		}
		if !slices.Contains(j.repos, repo) {
			j.repos = append(j.repos, repo)
		}
	}
	return nil
}

// manifest reads a manifest's bytes from the layout, verified; one an
// incremental layout left out comes from the registry (the earlier import
// put it there).
func (im *importer) manifest(ctx context.Context, repo string, d Descriptor) ([]byte, error) {
	rc, err := im.src.Open(d.Digest)
	if errors.Is(err, fs.ErrNotExist) {
		body, _, gerr := im.c.Manifest(ctx, repo, d.Digest)
		if gerr != nil {
			if Retryable(gerr) {
				return nil, gerr
			}
			return nil, &LayoutError{fmt.Errorf("manifest %s is neither in the layout nor in %s (%v): import the export this one continues (--since) first", d.Digest, repo, gerr), true}
		}
		return body, nil
	}
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if d.Size > stowage.MaxManifestSize {
		return nil, stowage.Errorf(stowage.CodeManifestInvalid, "manifest %s is %d bytes; the limit is 4 MiB", d.Digest, d.Size)
	}
	b, err := io.ReadAll(newVerifier(rc, d, nil))
	if err != nil {
		return nil, &LayoutError{Err: fmt.Errorf("manifest %s in the layout: %w", d.Digest, err)}
	}
	return b, nil
}

// check reads, several at once, every blob the import will need from the
// layout and verifies its digest and size, and makes sure a blob the
// layout leaves out is in the registry (in a repository it goes to, or the
// one the marker names). A blob its first repository already holds is not
// read (a rerun).
func (im *importer) check(ctx context.Context) error {
	return im.each(ctx, func(ctx context.Context, j *blobJob) error {
		has, err := im.c.HasBlob(ctx, j.repos[0], j.d.Digest)
		if err != nil {
			return err
		}
		if has {
			im.done.Add(j.d.Size)
			return nil
		}
		rc, err := im.src.Open(j.d.Digest)
		if errors.Is(err, fs.ErrNotExist) {
			others := append([]string(nil), j.repos[1:]...)
			if im.marker != nil && im.marker.Blobs[j.d.Digest] != "" {
				others = append(others, im.marker.Blobs[j.d.Digest])
			}
			for _, r := range others {
				if has, err := im.c.HasBlob(ctx, r, j.d.Digest); err != nil || has {
					return err
				}
			}
			return &LayoutError{fmt.Errorf("blob %s (for %s) is neither in the layout nor in the registry: import the export this one continues (--since) first", j.d.Digest, j.repos[0]), true}
		}
		if err != nil {
			return err
		}
		defer rc.Close()
		if _, err := io.Copy(io.Discard, newVerifier(rc, j.d, func(n int64) { im.done.Add(n) })); err != nil {
			var se *stowage.Error
			if errors.As(err, &se) {
				return &LayoutError{Err: fmt.Errorf("blob %s in the layout: %w", j.d.Digest, err)}
			}
			return err
		}
		return nil
	})
}

// each runs fn on every blob job, im.o.Parallel at once; the first error
// stops the rest.
func (im *importer) each(ctx context.Context, fn func(context.Context, *blobJob) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	work := make(chan *blobJob)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for range im.o.Parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range work {
				if err := fn(ctx, j); err != nil {
					mu.Lock()
					if first == nil {
						first = err
						cancel()
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, j := range im.order {
		select {
		case work <- j:
			continue
		case <-ctx.Done():
		}
		break
	}
	close(work)
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	return first
}

func (im *importer) pushBlobs(ctx context.Context) error {
	return im.each(ctx, im.pushBlob)
}

// pushBlob puts one blob into each repository that needs it. A mount
// links it without sending bytes: from the repository this import put it
// in, else from any repository holding it (the registry's content
// discovery, which needs read access to all of them), else, for a blob an
// incremental layout left out, from the repository the marker names; a
// mount also succeeds when the repository has the blob already. Otherwise
// it is uploaded into the session the mount opened, verified as it is read
// from the layout.
func (im *importer) pushBlob(ctx context.Context, j *blobJob) error {
	var from string // a repository of this import holding the blob
	uploaded := false
	for _, repo := range j.repos {
		ok, loc, err := im.c.Mount(ctx, repo, j.d.Digest, from)
		if err != nil {
			return err
		}
		rc, oerr := im.src.Open(j.d.Digest)
		if !ok && errors.Is(oerr, fs.ErrNotExist) && im.marker != nil && im.marker.Blobs[j.d.Digest] != "" && im.marker.Blobs[j.d.Digest] != from {
			im.c.Cancel(ctx, loc)
			if ok, loc, err = im.c.Mount(ctx, repo, j.d.Digest, im.marker.Blobs[j.d.Digest]); err != nil {
				return err
			}
		}
		if ok {
			if rc != nil {
				rc.Close()
			}
			im.mu.Lock()
			im.rep.BlobsMounted++
			im.mu.Unlock()
			from = repo
			continue
		}
		if errors.Is(oerr, fs.ErrNotExist) {
			oerr = &LayoutError{fmt.Errorf("blob %s (for %s) is neither in the layout nor in the registry: import the export this one continues (--since) first", j.d.Digest, repo), true}
		}
		if oerr != nil {
			im.c.Cancel(ctx, loc) // drop the upload the mount opened
			return oerr
		}
		err = im.c.Upload(ctx, repo, j.d.Digest, j.d.Size, newVerifier(rc, j.d, func(n int64) { im.done.Add(n) }), loc)
		rc.Close()
		if err != nil {
			return err
		}
		uploaded = true
		im.mu.Lock()
		im.rep.BlobsUploaded++
		im.rep.Uploaded += j.d.Size
		im.mu.Unlock()
		from = repo
	}
	if !uploaded {
		im.done.Add(j.d.Size)
	}
	return nil
}

// pushManifest pushes manifest dg of repo by digest, after its children,
// once: a second caller waits for the first.
func (im *importer) pushManifest(ctx context.Context, repo string, dg stowage.Digest) error {
	key := repo + "@" + string(dg)
	im.mu.Lock()
	p := im.pushed[key]
	if p != nil {
		im.mu.Unlock()
		select {
		case <-p.done:
			return p.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	p = &push{done: make(chan struct{})}
	im.pushed[key] = p
	im.mu.Unlock()
	p.err = im.pushOne(ctx, repo, dg)
	close(p.done)
	return p.err
}

type push struct {
	done chan struct{}
	err  error
}

func (im *importer) pushOne(ctx context.Context, repo string, dg stowage.Digest) error {
	n := im.nodes[repo+"@"+string(dg)]
	for _, ch := range n.node.Children {
		if err := im.pushManifest(ctx, repo, ch.Digest); err != nil {
			return err
		}
	}
	has, err := im.c.HasManifest(ctx, repo, dg)
	if err != nil || has {
		return err
	}
	if err := im.c.PutManifest(ctx, repo, string(dg), n.d.MediaType, n.body, dg); err != nil {
		return err
	}
	im.mu.Lock()
	im.rep.Manifests++
	im.mu.Unlock()
	return nil
}
