package transfer

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/policy"
)

// MarkerFile is the export's marker inside the layout.
const MarkerFile = "stowage-export.json"

// Marker records what an export (and the exports it continued) wrote, so
// that `stowage export --since MARKER` writes only what changed after it and
// an import of that smaller layout can find the rest in the registry.
type Marker struct {
	Version int `json:"version"`
	// Seq is the change feed's newest seq when the export started (0: the
	// registry served no feed to the caller); Time, when it started.
	Seq  int64  `json:"seq"`
	Time string `json:"time"`
	// Since is the Seq of the marker this export continued (0: a full one).
	Since int64 `json:"since,omitempty"`
	// Selection is what the export chose (filters, ago, untagged): a
	// --since with the same one may skip the repositories the change feed
	// shows no change in.
	Selection string `json:"selection"`
	// Tags maps "repository:tag" to the digest exported for it.
	Tags map[string]stowage.Digest `json:"tags"`
	// Manifests and Blobs map each digest exported to a repository that
	// holds it (import mounts from there a blob its layout leaves out).
	Manifests map[stowage.Digest]string `json:"manifests"`
	Blobs     map[stowage.Digest]string `json:"blobs"`
}

// ParseMarker reads a marker file.
func ParseMarker(b []byte) (*Marker, error) {
	var m Marker
	if err := json.Unmarshal(b, &m); err != nil || m.Version != 1 {
		return nil, fmt.Errorf("not a Stowage export marker (%s from an export's layout): %v", MarkerFile, err)
	}
	return &m, nil
}

func (m *Marker) clone() *Marker {
	out := &Marker{Version: 1, Tags: map[string]stowage.Digest{}, Manifests: map[stowage.Digest]string{}, Blobs: map[stowage.Digest]string{}}
	if m != nil {
		for k, v := range m.Tags {
			out.Tags[k] = v
		}
		for k, v := range m.Manifests {
			out.Manifests[k] = v
		}
		for k, v := range m.Blobs {
			out.Blobs[k] = v
		}
	}
	return out
}

// ExportOptions selects what an export writes: the tags the purge filters
// select (policy.PlanPurgeTags: both expressions match in full, tag last
// pushed longer ago than Ago), with Untagged the untagged manifests too.
type ExportOptions struct {
	Filters  []stowage.PurgeFilter
	Ago      time.Duration
	Untagged bool
	// Since, if set, is a previous export's marker: only tags that moved,
	// manifests and blobs not exported then are written.
	Since    *Marker
	Now      time.Time
	Parallel int // blobs fetched at once (a directory sink only); default 4
	// Progress, if set, is called every few hundred milliseconds and at the
	// end with what has moved.
	Progress func(Progress)
}

// Progress is a transfer's state.
type Progress struct {
	Phase      string // "listing", "manifests", "blobs"
	Done       int64  // bytes done (fetched, pushed, or found already there)
	Total      int64  // bytes to do (known once the manifests are read)
	Images     int
	ImagesDone int
}

// ExportReport says what an export wrote.
type ExportReport struct {
	Images       int     `json:"images"`       // index.json entries: tagged and untagged manifests
	Referrers    int     `json:"referrers"`    // signatures, SBOMs… exported with their subjects
	Manifests    int     `json:"manifests"`    // manifest blobs written (indexes, platforms, referrers)
	Blobs        int     `json:"blobs"`        // configs and layers, each once
	Bytes        int64   `json:"bytes"`        // bytes of configs and layers in the layout
	Fetched      int64   `json:"fetched"`      // bytes read from the registry by this run
	Unchanged    int     `json:"unchanged"`    // with --since: selected images left out (exported before)
	ReposSkipped int     `json:"reposSkipped"` // with --since: repositories the change feed shows no change in, not read
	Seq          int64   `json:"seq"`          // the marker's change feed position
	Seconds      float64 `json:"seconds"`      //
	MBPerSecond  float64 `json:"mbPerSecond"`  // Fetched / Seconds
}

type queued struct {
	d    Descriptor
	repo string
}

// exporter is one export's state while it walks.
type exporter struct {
	c       *Client
	sink    Sink
	o       ExportOptions
	marker  *Marker
	index   []Descriptor
	mu      sync.Mutex            // what follows, while images are walked in parallel
	walked  map[string]Descriptor // repo@digest
	written map[stowage.Digest]bool
	blobs   []queued
	rep     ExportReport
	done    atomic.Int64
	total   int64
	phase   atomic.Value
}

// Export writes what o selects from the registry behind c into sink, and
// returns its report and the marker it wrote (also as MarkerFile in the
// layout).
func Export(ctx context.Context, c *Client, sink Sink, o ExportOptions) (ExportReport, *Marker, error) {
	start := time.Now()
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.Parallel <= 0 {
		o.Parallel = 4
	}
	e := &exporter{c: c, sink: sink, o: o, marker: o.Since.clone(), walked: map[string]Descriptor{}, written: map[stowage.Digest]bool{}}
	e.phase.Store("listing")
	e.marker.Seq = c.FeedPosition(ctx)
	e.marker.Time = o.Now.UTC().Format(time.RFC3339)
	e.marker.Selection = o.selection()
	if o.Since != nil {
		e.marker.Since = o.Since.Seq
	}
	e.rep.Seq = e.marker.Seq
	stop := e.report()
	err := e.run(ctx)
	stop()
	e.rep.Seconds = time.Since(start).Seconds()
	if e.rep.Seconds > 0 {
		e.rep.MBPerSecond = float64(e.rep.Fetched) / 1e6 / e.rep.Seconds
	}
	if err != nil {
		return e.rep, nil, err
	}
	return e.rep, e.marker, nil
}

// report calls o.Progress every 200 ms until stopped, and once at the end.
func (e *exporter) report() (stop func()) {
	if e.o.Progress == nil {
		return func() {}
	}
	send := func() {
		e.mu.Lock()
		images := e.rep.Images
		e.mu.Unlock()
		e.o.Progress(Progress{Phase: e.phase.Load().(string), Done: e.done.Load(), Total: atomic.LoadInt64(&e.total), Images: images})
	}
	return every(200*time.Millisecond, send)
}

func (e *exporter) run(ctx context.Context) error {
	roots, err := e.select_(ctx)
	if err != nil {
		return err
	}
	// 1. The manifests, several images at once; each image's entries (it,
	// then the referrers found under it) keep the selection's order.
	e.phase.Store("manifests")
	entries := make([][]Descriptor, len(roots))
	if err := parallel(ctx, e.o.Parallel, len(roots), func(ctx context.Context, i int) (err error) {
		entries[i], err = e.root(ctx, roots[i])
		return err
	}); err != nil {
		return err
	}
	for _, es := range entries {
		e.index = append(e.index, es...)
	}
	// 2. The configs and layers.
	e.phase.Store("blobs")
	if err := e.fetchBlobs(ctx); err != nil {
		return err
	}
	// 3. The layout's own files last: a layout with an index.json is complete.
	if err := e.sink.File("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	if e.index == nil {
		e.index = []Descriptor{}
	}
	idx, _ := json.MarshalIndent(Index{SchemaVersion: 2, MediaType: stowage.MediaTypeOCIIndex, Manifests: e.index}, "", "  ")
	if err := e.sink.File("index.json", idx); err != nil {
		return err
	}
	mk, _ := json.Marshal(e.marker)
	return e.sink.File(MarkerFile, mk)
}

// parallel runs fn(0..n-1) on up to workers goroutines and returns the
// first error (the others' contexts are then cancelled).
func parallel(ctx context.Context, workers, n int, fn func(context.Context, int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	work := make(chan int)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range max(1, workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if err := fn(ctx, i); err != nil {
					once.Do(func() { first = err; cancel() })
				}
			}
		}()
	}
feed:
	for i := range n {
		select {
		case work <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// selection names what o chooses, for the marker.
func (o ExportOptions) selection() string {
	var b strings.Builder
	for _, f := range o.Filters {
		fmt.Fprintf(&b, "filter=%s:%s ", f.Repo, f.Tag)
	}
	fmt.Fprintf(&b, "ago=%s untagged=%t", o.Ago, o.Untagged)
	return b.String()
}

// rootRef is an image the selection chose: a tag, or an untagged manifest.
type rootRef struct {
	repo, tag string
	digest    stowage.Digest
}

// select_ lists the tags (and untagged manifests) the options choose, with
// the purge's rules.
func (e *exporter) select_(ctx context.Context) ([]rootRef, error) {
	repos, err := e.c.Repositories(ctx)
	if err != nil {
		return nil, err
	}
	po := policy.PurgeOptions{Filters: e.o.Filters, Ago: e.o.Ago, Untagged: e.o.Untagged}
	// With --since, the same selection and no --ago (under which a tag is
	// chosen by time passing, not by a change), a repository the change
	// feed shows no push, restore or lock change in since the marker holds
	// nothing new: it is not read at all.
	var changed map[string]bool
	if s := e.o.Since; s != nil && s.Seq > 0 && e.o.Ago == 0 && s.Selection == e.marker.Selection && e.marker.Seq >= s.Seq {
		if c, ok := e.c.ChangedRepositories(ctx, s.Seq, e.marker.Seq); ok {
			changed = c
		}
	}
	var roots []rootRef
	for _, repo := range repos {
		if !po.Matches(repo) {
			continue
		}
		if changed != nil && !changed[repo] {
			e.rep.ReposSkipped++
			continue
		}
		tags, err := e.c.Tags(ctx, repo)
		if err != nil {
			return nil, err
		}
		recs := make([]stowage.TagRecord, len(tags))
		for i, t := range tags {
			recs[i] = stowage.TagRecord{Name: t.Name, Digest: t.Digest, Updated: parseTime(t.LastUpdateTime)}
		}
		plan := policy.PlanPurgeTags(po, repo, recs, e.o.Now)
		sort.Slice(plan.Tags, func(i, j int) bool { return plan.Tags[i].Name < plan.Tags[j].Name })
		for _, t := range plan.Tags {
			roots = append(roots, rootRef{repo, t.Name, t.Digest})
		}
		if !e.o.Untagged {
			continue
		}
		ms, err := e.c.Manifests(ctx, repo)
		if err != nil {
			return nil, err
		}
		var untagged []stowage.ManifestRecord
		for _, m := range ms {
			if len(m.Tags) == 0 {
				untagged = append(untagged, stowage.ManifestRecord{Repo: repo, Digest: m.Digest, MediaType: m.MediaType, Created: parseTime(m.CreatedTime)})
			}
		}
		for _, m := range policy.PlanPurgeUntagged(po, policy.Plan{}, untagged, e.o.Now).Manifests {
			roots = append(roots, rootRef{repo: repo, digest: m.Digest})
		}
	}
	return roots, nil
}

// root exports one selected image: its manifest tree and its referrers;
// it returns its index.json entries: the image (unless --since says it was
// exported before), then the referrers found under it, so an import pushes
// a subject before what refers to it.
func (e *exporter) root(ctx context.Context, r rootRef) ([]Descriptor, error) {
	key := r.repo + ":" + r.tag
	unchanged := false
	if e.o.Since != nil {
		if r.tag != "" {
			unchanged = e.o.Since.Tags[key] == r.digest
		} else {
			_, unchanged = e.o.Since.Manifests[r.digest]
		}
	}
	var refs []Descriptor
	d, first, err := e.walk(ctx, r.repo, r.digest, &refs)
	if err != nil {
		return nil, err
	}
	if r.tag == "" && !first {
		return refs, nil // an untagged manifest exported as a child or referrer of another
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if r.tag != "" {
		e.marker.Tags[key] = r.digest
	}
	if unchanged {
		e.rep.Unchanged++
		return refs, nil
	}
	d.Annotations = map[string]string{AnnotationRepository: r.repo}
	if r.tag != "" {
		d.Annotations[AnnotationRefName] = key
	}
	e.rep.Images++
	return append([]Descriptor{d}, refs...), nil
}

// walk exports manifest dg of repo with what it references and its
// referrers (added to refs), once per repository; it returns the
// manifest's descriptor and whether this call was the one that walked it.
func (e *exporter) walk(ctx context.Context, repo string, dg stowage.Digest, refs *[]Descriptor) (Descriptor, bool, error) {
	key := repo + "@" + string(dg)
	e.mu.Lock()
	if d, ok := e.walked[key]; ok {
		e.mu.Unlock()
		return d, false, nil
	}
	e.mu.Unlock()
	body, mt, err := e.c.Manifest(ctx, repo, dg)
	if err != nil {
		return Descriptor{}, false, err
	}
	node, err := ParseNode(mt, body)
	if err != nil {
		return Descriptor{}, false, fmt.Errorf("%s@%s: %w", repo, dg, err)
	}
	d := Descriptor{MediaType: node.MediaType, Digest: dg, Size: int64(len(body))}
	e.mu.Lock()
	if _, ok := e.walked[key]; ok { // another image's walk got there first
		e.mu.Unlock()
		return d, false, nil
	}
	e.walked[key] = d
	e.mu.Unlock()
	for _, ch := range node.Children {
		if _, _, err := e.walk(ctx, repo, ch.Digest, refs); err != nil {
			return Descriptor{}, false, err
		}
	}
	e.mu.Lock()
	for _, b := range node.Blobs {
		if e.written[b.Digest] {
			continue
		}
		e.written[b.Digest] = true
		if _, old := e.marker.Blobs[b.Digest]; old && e.o.Since != nil {
			continue
		}
		e.marker.Blobs[b.Digest] = repo
		e.blobs = append(e.blobs, queued{b, repo})
		atomic.AddInt64(&e.total, b.Size)
		e.rep.Bytes += b.Size
		e.rep.Blobs++
	}
	// The manifest itself, once.
	write := false
	if !e.written[dg] {
		e.written[dg] = true
		if _, old := e.o.Since.manifest(dg); !old {
			e.marker.Manifests[dg] = repo
			e.rep.Manifests++
			write = true
		}
	}
	e.mu.Unlock()
	if write {
		if _, err := e.sink.Blob(d, func(int64) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }, nil); err != nil {
			return Descriptor{}, false, err
		}
	}
	found, err := e.c.Referrers(ctx, repo, dg)
	if err != nil {
		return Descriptor{}, false, err
	}
	for _, rf := range found {
		rd, first, err := e.walk(ctx, repo, rf.Digest, refs)
		if err != nil {
			return Descriptor{}, false, err
		}
		if _, old := e.o.Since.manifest(rf.Digest); old || !first {
			continue
		}
		// A referrer gets its own index.json entry (after its subject),
		// so an import pushes it.
		rd.ArtifactType = rf.ArtifactType
		rd.Annotations = map[string]string{AnnotationRepository: repo}
		*refs = append(*refs, rd)
		e.mu.Lock()
		e.rep.Referrers++
		e.mu.Unlock()
	}
	return d, true, nil
}

func (m *Marker) manifest(dg stowage.Digest) (string, bool) {
	if m == nil {
		return "", false
	}
	r, ok := m.Manifests[dg]
	return r, ok
}

// fetchBlobs streams the queued configs and layers into the sink, several
// at once when it can take them.
func (e *exporter) fetchBlobs(ctx context.Context) error {
	n := 1
	if e.sink.Parallel() {
		n = e.o.Parallel
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	work := make(chan queued)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	var fetched atomic.Int64
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for q := range work {
				got, err := e.sink.Blob(q.d, func(off int64) (io.ReadCloser, error) {
					return e.c.Blob(ctx, q.repo, q.d.Digest, off)
				}, func(k int64) { e.done.Add(k) })
				fetched.Add(got)
				if err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("%s@%s: %w", q.repo, q.d.Digest, err)
						cancel()
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, q := range e.blobs {
		select {
		case work <- q:
			continue
		case <-ctx.Done():
		}
		break
	}
	close(work)
	wg.Wait()
	e.rep.Fetched = fetched.Load()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	return first
}

// every calls send every d until stop is called, and once more then.
func every(d time.Duration, send func()) (stop func()) {
	quit, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-quit:
				send()
				return
			case <-t.C:
				send()
			}
		}
	}()
	return func() { close(quit); <-finished }
}
