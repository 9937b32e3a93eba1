package stowage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
)

func manifestUnknown(repo string, ref Reference) error {
	return Errorf(CodeManifestUnknown, "manifest %s is not in repository %s", ref, repo)
}

func nameUnknown(repo string) error {
	return Errorf(CodeNameUnknown, "repository %s does not exist", repo)
}

// PutManifestResult is what a manifest push produced.
type PutManifestResult struct {
	Digest  Digest
	Subject Digest // "" when the manifest has none
}

// PutManifest validates and stores a manifest in repo, and tags it when ref
// is a tag, plus any extra tags. Every blob and child manifest it references
// must already be in repo. The check, the manifest row, its references and
// the tags are one transaction.
func (r *Registry) PutManifest(ctx context.Context, repo string, ref Reference, contentType string, body []byte, tags []string) (PutManifestResult, error) {
	alg := digest.Canonical
	if ref.IsDigest() {
		alg = ref.Digest.Algorithm()
		if err := checkAlgorithm(ref.Digest); err != nil {
			return PutManifestResult{}, err
		}
	}
	d := alg.FromBytes(body)
	if ref.IsDigest() && d != ref.Digest {
		return PutManifestResult{}, Errorf(CodeDigestInvalid, "manifest body has digest %s, not the %s in the URL", d, ref.Digest)
	}
	m, err := ParseManifest(contentType, body)
	if err != nil {
		return PutManifestResult{}, err
	}
	if !ref.IsDigest() {
		tags = append([]string{ref.Tag}, tags...)
	}

	// 0. Refuse early what the transaction would refuse, so a manifest with
	// missing references leaves no bytes behind in storage.
	if err := r.db.View(ctx, func(tx Tx) error { _, err := checkRefs(tx, repo, m); return err }); err != nil {
		return PutManifestResult{}, err
	}

	// 1. Store the bytes (content-addressed, so rewriting is harmless and the
	// DB never points at missing content).
	// A new manifest's data-key row is recorded by reserve; one this node
	// has seen (a tag push of a stored manifest) needs none, and if it
	// turns out not stored, Put makes its own.
	pctx, row := ctx, (*DataKey)(nil)
	if _, seen := r.manifests.get(d); !seen {
		pctx, row = r.prepareDataKey(ctx, BlobKey(d))
	}
	stored, err := r.reserveKeyed(ctx, repo, d, int64(len(body)), row)
	if err != nil {
		return PutManifestResult{}, err
	}
	if !stored {
		if err := r.store.Put(pctx, BlobKey(d), bytes.NewReader(body), int64(len(body))); err != nil {
			return PutManifestResult{}, fmt.Errorf("store manifest: %w", err)
		}
	}
	r.manifests.put(d, body)

	// 2. Check references, record the manifest and its tags, atomically.
	now := r.now()
	// Names, digests and sizes only: annotations, artifact type and platform
	// stay in the (encrypted) stored manifest (registry_describe.go).
	rec := ManifestRecord{Repo: repo, Digest: d, MediaType: m.MediaType, Size: int64(len(body)), Created: now}
	if m.Subject != nil {
		rec.Subject = m.Subject.Digest
	}
	err = r.db.Update(ctx, func(tx Tx) error {
		waive := replicatedChange(ctx) // registry_locks.go
		if !waive {
			if err := writable(tx, repo); err != nil {
				return err
			}
		}
		refs, err := checkRefs(tx, repo, m)
		if err != nil {
			return err
		}
		// The exact quota check: concurrent pushes each passed reserve alone.
		// A manifest repo already holds costs nothing.
		if err := r.checkRepoQuota(ctx, tx, repo, d, int64(len(body))); err != nil {
			return err
		}
		if err := tx.Repositories().CreateRepository(repo, now); err != nil {
			return err
		}
		if _, err := markLive(tx, d, int64(len(body)), now); err != nil {
			return err
		}
		if err := tx.Manifests().PutManifest(rec, refs); err != nil {
			return err
		}
		var moved map[string]Digest // tag: what it pointed at before
		for _, t := range tags {
			old, err := retaggable(tx, repo, t, d, waive)
			if err != nil {
				return err
			}
			if err := tx.Tags().PutTag(repo, t, d, now); err != nil {
				return err
			}
			if old != "" && old != d {
				if moved == nil {
					moved = map[string]Digest{}
				}
				moved[t] = old
				// The tag moved: the manifest it left may now be untagged.
				if err := markIfUntagged(tx, repo, old, now); err != nil {
					return err
				}
			}
		}
		return appendChange(ctx, r.changes, tx, pushEvent(ctx, rec, tags, moved))
	})
	if err != nil {
		return PutManifestResult{}, err
	}
	return PutManifestResult{Digest: d, Subject: rec.Subject}, nil
}

// pushEvent is the change feed's record of a manifest PUT: one event, naming
// its first tag (the one in the URL, if pushed by tag) and where that tag
// pointed before it moved; further tags (?tag=) and theirs are in Detail.
func pushEvent(ctx context.Context, rec ManifestRecord, tags []string, moved map[string]Digest) Event {
	e := NewEvent(ctx, EventPush, rec.Repo)
	e.Time, e.Digest, e.MediaType, e.Size = rec.Created, rec.Digest, rec.MediaType, rec.Size
	if len(tags) > 0 {
		e.Tag, e.Previous = tags[0], moved[tags[0]]
	}
	if len(tags) > 1 {
		fields := map[string]any{"tags": tags}
		if len(moved) > 0 {
			fields["previous"] = moved
		}
		e.Detail = EventDetail(ctx, fields)
	}
	return e
}

// checkRefs resolves m's descriptors against repo and returns the
// references to record. Every descriptor whose blob or manifest repo holds
// is a reference, and must state its stored size; a missing one fails with
// MANIFEST_BLOB_UNKNOWN, except an external layer (non-distributable, with
// urls), which clients fetch from elsewhere. A child manifest's descriptor
// must also state its stored media type. The subject need not be present,
// but if repo holds it, its size must match too.
func checkRefs(tx Tx, repo string, m *Manifest) ([]ManifestRef, error) {
	var refs []ManifestRef
	for _, d := range m.descriptors() {
		var size int64
		var mediaType string // a child manifest's, as stored
		var err error
		what := "blob"
		if d.Kind == RefManifest {
			what = "manifest"
			var rec ManifestRecord
			rec, err = tx.Manifests().GetManifest(repo, d.Digest)
			size, mediaType = rec.Size, rec.MediaType
		} else {
			var b BlobRecord
			b, err = tx.Blobs().RepositoryBlob(repo, d.Digest)
			size = b.Size
		}
		if errors.Is(err, ErrNotFound) {
			if d.Kind == RefBlob && strings.HasPrefix(d.Role, "layer") && external(d.Descriptor) {
				continue
			}
			return nil, &Error{Code: CodeManifestBlobUnknown,
				Message: fmt.Sprintf("manifest references %s %s as its %s, which is not in repository %s: push it first", what, d.Digest, d.Role, repo),
				Detail:  map[string]string{"digest": string(d.Digest)}}
		}
		if err != nil {
			return nil, err
		}
		if err := checkSize(repo, d.Role, what, d.Descriptor, size); err != nil {
			return nil, err
		}
		if d.Kind == RefManifest && d.MediaType != mediaType {
			// Clients pick the child by its descriptor and parse what they
			// fetch by that type; the registry serves the stored one. A list
			// of one format may list manifests of the other: only this
			// descriptor's own type must be the child's.
			return nil, &Error{Code: CodeManifestInvalid,
				Message: fmt.Sprintf("the manifest's %s, %s, states mediaType %q, but the manifest in repository %s is %q: correct the descriptor's mediaType",
					d.Role, d.Digest, d.MediaType, repo, mediaType),
				Detail: map[string]any{"digest": string(d.Digest), "descriptor": d.Role, "mediaType": d.MediaType, "storedMediaType": mediaType}}
		}
		refs = append(refs, ManifestRef{Digest: d.Digest, Kind: d.Kind})
	}
	if m.Subject != nil {
		rec, err := tx.Manifests().GetManifest(repo, m.Subject.Digest)
		if err == nil {
			err = checkSize(repo, "subject", "manifest", *m.Subject, rec.Size)
		}
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, err
		}
	}
	return refs, nil
}

// checkSize refuses a descriptor whose size is not that of what repo holds:
// no client could pull the image.
func checkSize(repo, role, what string, d Descriptor, stored int64) error {
	if d.Size == stored {
		return nil
	}
	return &Error{Code: CodeManifestInvalid,
		Message: fmt.Sprintf("the manifest's %s, %s, states size %d, but the %s in repository %s has %d bytes: correct the descriptor's size",
			role, d.Digest, d.Size, what, repo, stored),
		Detail: map[string]any{"digest": string(d.Digest), "descriptor": role, "size": d.Size, "storedSize": stored}}
}

// ResolveManifest finds the manifest a tag or digest names in repo.
func (r *Registry) ResolveManifest(ctx context.Context, repo string, ref Reference) (ManifestRecord, error) {
	var m ManifestRecord
	err := r.db.View(ctx, func(tx Tx) error {
		rec, err := tx.Repositories().GetRepository(repo)
		if err != nil {
			return err
		}
		var tagLocks Locks
		switch cached, ok := r.repos.resolved(repo, rec.TagsVersion, ref.Tag); {
		case ref.IsDigest():
			if m, err = tx.Manifests().GetManifest(repo, ref.Digest); err != nil {
				return err
			}
		case ok:
			m, tagLocks = cached.m, cached.locks
		default:
			t, err := tx.Tags().GetTagRecord(repo, ref.Tag)
			if err != nil {
				return err
			}
			if m, err = tx.Manifests().GetManifest(repo, t.Digest); err != nil {
				return err
			}
			// Read in the same transaction as the version: a consistent pair.
			tagLocks = t.Locks
			r.repos.putResolved(repo, rec.TagsVersion, ref.Tag, resolvedTag{m, tagLocks})
		}
		return readable(repo, ref, rec.Locks, tagLocks, m.Locks)
	})
	if errors.Is(err, ErrNotFound) {
		return m, manifestUnknown(repo, ref)
	}
	return m, err
}

// GetManifest returns a manifest's record and bytes.
func (r *Registry) GetManifest(ctx context.Context, repo string, ref Reference) (ManifestRecord, []byte, error) {
	m, err := r.ResolveManifest(ctx, repo, ref)
	if err != nil {
		return m, nil, err
	}
	b, err := r.content(ctx, m.Digest, MaxManifestSize)
	if IsNotExist(err) {
		r.log.Error("manifest recorded in the database is missing from storage", "digest", m.Digest, "repo", repo)
	}
	if err == nil && r.recordPulls {
		r.recordPull(ctx, m, ref)
	}
	return m, b, err
}

// recordPull appends a pull event (Options.RecordPulls) for a GET; a HEAD
// (the request's method, from the actor in ctx) is no pull. A pull the
// feed cannot record is still served: it is logged.
func (r *Registry) recordPull(ctx context.Context, m ManifestRecord, ref Reference) {
	if ActorFrom(ctx).Method == "HEAD" {
		return
	}
	e := NewEvent(ctx, EventPull, m.Repo)
	e.Digest, e.Tag, e.MediaType, e.Size = m.Digest, ref.Tag, m.MediaType, m.Size
	if err := r.db.Update(ctx, func(tx Tx) error { return tx.Events().Append(e) }); err != nil {
		r.log.Error("the change feed could not record a pull", "repo", m.Repo, "digest", m.Digest, "err", err)
	}
}

// DeleteManifest deletes by reference, as the OCI API does: a tag reference
// removes only the tag; a digest reference removes the manifest, every tag
// pointing at it, and what goes with it (see DeleteImage).
func (r *Registry) DeleteManifest(ctx context.Context, repo string, ref Reference) error {
	var err error
	if ref.IsDigest() {
		_, err = r.DeleteImage(ctx, repo, ref, false)
	} else {
		_, err = r.Untag(ctx, repo, ref.Tag, false)
	}
	return err
}

// ---- listings ----
//
// Listings are read from the database in pages of ListPageSize, each page in
// its own short transaction, and handed to the caller page by page (the Each*
// methods), so a list of a million tags is never one query result, one
// string or one slice, and no transaction stays open while a slow client
// reads. Pages follow the order of the list (keyset: "after the last one"),
// so a walk sees every item that exists throughout it exactly once.

// ListPageSize is how many items a listing reads from the database at a time.
const ListPageSize = 1000

// maxCachedTagList bounds the tag lists a full walk keeps in the tag cache
// (longer lists are read page by page each time).
const maxCachedTagList = 100_000

// ReferrersPageTx is an optional Tx capability: Referrers one page at a
// time. Databases without it have their whole referrers list read at once.
type ReferrersPageTx interface {
	// ReferrersPage lists up to limit manifests of repo whose subject is
	// subject, of the given artifact type ("" = any), in digest order after
	// `after` ("" = from the start).
	ReferrersPage(repo string, subject Digest, after Digest, limit int) ([]ManifestRecord, error)
}

// Referrers returns descriptors of the manifests in repo whose subject is d,
// optionally only those of one artifact type.
func (r *Registry) Referrers(ctx context.Context, repo string, d Digest, artifactType string) ([]Descriptor, error) {
	descs := []Descriptor{}
	err := r.EachReferrer(ctx, repo, d, artifactType, func(page []Descriptor) error {
		descs = append(descs, page...)
		return nil
	})
	return descs, err
}

// EachReferrer calls fn with the descriptors of the manifests in repo whose
// subject is d (of artifactType, unless ""), in digest order, a page at a
// time, until they end or fn fails. fn must not keep page.
func (r *Registry) EachReferrer(ctx context.Context, repo string, d Digest, artifactType string, fn func(page []Descriptor) error) error {
	var after Digest
	descs := make([]Descriptor, 0, ListPageSize)
	for {
		var recs []ManifestRecord
		paged := false
		err := r.db.View(ctx, func(tx Tx) (err error) {
			if p, ok := tx.Manifests().(ReferrersPageTx); ok {
				paged = true
				recs, err = p.ReferrersPage(repo, d, after, ListPageSize)
				return err
			}
			recs, err = tx.Manifests().Referrers(repo, d) // all at once
			return err
		})
		if err != nil {
			return err
		}
		more := paged && len(recs) == ListPageSize
		if len(recs) > 0 {
			after = recs[len(recs)-1].Digest
		}
		for len(recs) > 0 {
			page := recs[:min(len(recs), ListPageSize)]
			recs = recs[len(page):]
			descs = descs[:0]
			// Artifact type and annotations come from the stored manifests:
			// the database keeps no image content (registry_describe.go).
			facts, errs := r.describeAll(ctx, page, false)
			for i, m := range page {
				if errs[i] != nil {
					return fmt.Errorf("referrer %s: %w", m.Digest, errs[i])
				}
				f := facts[i]
				if artifactType != "" && f.ArtifactType != artifactType {
					continue
				}
				descs = append(descs, Descriptor{MediaType: m.MediaType, Digest: m.Digest, Size: m.Size,
					ArtifactType: f.ArtifactType, Annotations: f.Annotations})
			}
			if len(descs) > 0 {
				if err := fn(descs); err != nil {
					return err
				}
			}
		}
		if !more {
			return nil
		}
	}
}

// ListTags returns up to n tags of repo after last (n <= 0: all).
func (r *Registry) ListTags(ctx context.Context, repo, last string, n int) ([]string, error) {
	if n > 0 {
		// One page of a client's choosing: one query.
		var tags []string
		err := r.db.View(ctx, func(tx Tx) error {
			rec, err := tx.Repositories().GetRepository(repo)
			if errors.Is(err, ErrNotFound) {
				return nameUnknown(repo)
			}
			if err != nil {
				return err
			}
			if all, ok := r.repos.tags(repo, rec.TagsVersion); ok {
				tags = page(all, last, n)
				return nil
			}
			tags, err = tx.Tags().ListTags(repo, last, n)
			return err
		})
		return tags, err
	}
	var tags []string
	err := r.EachTag(ctx, repo, last, func(page []string) error {
		tags = append(tags, page...)
		return nil
	})
	return tags, err
}

// EachTag calls fn with the tags of repo after last (not list-locked), in
// order, a page at a time, until they end or fn fails; NAME_UNKNOWN before
// any call if repo does not exist. fn must not modify or keep page. A full
// walk of a list short enough is kept in the tag cache.
func (r *Registry) EachTag(ctx context.Context, repo, last string, fn func(page []string) error) error {
	var (
		first   = true
		version int64 // TagsVersion when the walk began
		keep    []string
		keeping = last == "" // collecting the whole list, for the cache
	)
	for {
		var (
			tags   []string
			cached []string
			hit    bool // cached holds the rest of the list
			gone   bool
		)
		err := r.db.View(ctx, func(tx Tx) error {
			rec, err := tx.Repositories().GetRepository(repo)
			if errors.Is(err, ErrNotFound) {
				if first {
					return nameUnknown(repo)
				}
				gone = true // deleted during the walk: the list ends
				return nil
			}
			if err != nil {
				return err
			}
			if first {
				version = rec.TagsVersion
				if all, ok := r.repos.tags(repo, rec.TagsVersion); ok {
					cached, hit = page(all, last, 0), true
					return nil
				}
			} else if rec.TagsVersion != version {
				keeping, keep = false, nil // the list changed: what was read is no snapshot
			}
			tags, err = tx.Tags().ListTags(repo, last, ListPageSize)
			return err
		})
		if err != nil {
			return err
		}
		if hit {
			for len(cached) > 0 {
				n := min(len(cached), ListPageSize)
				if err := fn(cached[:n:n]); err != nil {
					return err
				}
				cached = cached[n:]
			}
			return nil
		}
		first = false
		if gone {
			return nil
		}
		if keeping {
			if len(keep)+len(tags) <= maxCachedTagList {
				keep = append(keep, tags...)
			} else {
				keeping, keep = false, nil
			}
		}
		if len(tags) > 0 {
			if err := fn(tags); err != nil {
				return err
			}
		}
		if len(tags) < ListPageSize {
			if keeping {
				if keep == nil {
					keep = []string{}
				}
				r.repos.putTags(repo, version, keep)
			}
			return nil
		}
		last = tags[len(tags)-1]
	}
}

// Catalog returns up to n repository names after last (n <= 0: all). Under
// a listing filter (WithListFilter) it returns only the names the filter
// keeps: n of them if there are that many.
func (r *Registry) Catalog(ctx context.Context, last string, n int) ([]string, error) {
	if _, filtered := ctx.Value(listFilterKey{}).(func(string) bool); !filtered && n > 0 {
		var names []string
		err := r.db.View(ctx, func(tx Tx) (err error) {
			names, err = tx.Repositories().ListRepositories(last, n, false)
			return err
		})
		return names, err
	}
	var names []string
	err := r.EachRepository(ctx, last, func(page []string) error {
		if n > 0 && len(names)+len(page) >= n {
			names = append(names, page[:n-len(names)]...)
			return errStopWalk
		}
		names = append(names, page...)
		return nil
	})
	if err == errStopWalk {
		err = nil
	}
	return names, err
}

// errStopWalk ends a walk early; it never leaves the package.
var errStopWalk = errors.New("stop walk")

// EachRepository calls fn with the repository names after last (not
// list-locked, and only those the context's listing filter keeps), in
// order, a page at a time, until they end or fn fails. fn must not keep
// page.
func (r *Registry) EachRepository(ctx context.Context, last string, fn func(page []string) error) error {
	keep, _ := ctx.Value(listFilterKey{}).(func(string) bool)
	for {
		var batch []string
		if err := r.db.View(ctx, func(tx Tx) (err error) {
			batch, err = tx.Repositories().ListRepositories(last, ListPageSize, false)
			return err
		}); err != nil {
			return err
		}
		page := batch
		if keep != nil {
			page = make([]string, 0, len(batch))
			for _, name := range batch {
				if keep(name) {
					page = append(page, name)
				}
			}
		}
		if len(page) > 0 {
			if err := fn(page); err != nil {
				return err
			}
		}
		if len(batch) < ListPageSize {
			return nil
		}
		last = batch[len(batch)-1]
	}
}

type listFilterKey struct{}

// WithListFilter returns a context under which Catalog lists only the
// repositories keep accepts (access control puts the caller's rights here,
// so listings show only what the caller may see).
func WithListFilter(ctx context.Context, keep func(repo string) bool) context.Context {
	return context.WithValue(ctx, listFilterKey{}, keep)
}

// contentCache keeps immutable content by digest, bounded in bytes. Entries
// are never stale, so it is safe across nodes; eviction is random, which is
// good enough for manifests and costs no bookkeeping on reads. With a ttl,
// entries are dropped after it (with encryption, so a revoked key stops
// manifest reads within the key cache's time too).
type contentCache struct {
	mu    sync.RWMutex
	max   int64
	ttl   time.Duration
	size  int64
	items map[Digest]cached
}

type cached struct {
	b     []byte
	added time.Time
}

func newContentCache(max int64, ttl time.Duration) *contentCache {
	return &contentCache{max: max, ttl: ttl, items: map[Digest]cached{}}
}

func (c *contentCache) get(d Digest) ([]byte, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e, ok := c.items[d]
	if ok && c.ttl > 0 && time.Since(e.added) > c.ttl {
		return nil, false
	}
	return e.b, ok
}

func (c *contentCache) put(d Digest, b []byte) {
	if c.max < 0 || int64(len(b)) > c.max/16 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[d]; ok {
		if c.ttl > 0 {
			c.items[d] = cached{e.b, time.Now()}
		}
		return
	}
	for k, v := range c.items {
		if c.size+int64(len(b)) <= c.max {
			break
		}
		delete(c.items, k)
		c.size -= int64(len(v.b))
	}
	c.items[d] = cached{b, time.Now()}
	c.size += int64(len(b))
}

func (c *contentCache) drop(d Digest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[d]; ok {
		c.size -= int64(len(e.b))
		delete(c.items, d)
	}
}

func sortStrings(s []string) { sort.Strings(s) }
