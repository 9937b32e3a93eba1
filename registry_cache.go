package stowage

import (
	"sort"
	"sync"
)

// repoCache keeps, per repository, its full tag list and the manifests its
// tags resolve to. An entry is valid only for the repository's TagsVersion
// it was read at; the database moves that version in the same transaction as
// any tag change (whoever makes it, on any node), so one point query tells
// whether the cached data is current. This takes a manifest GET by tag from
// two queries to one, and a full tag listing from a scan to none.
type repoCache struct {
	mu         sync.Mutex
	entries    map[string]*repoEntry
	maxRepos   int
	maxTags    int // bound on tags held in all cached lists
	cachedTags int
}

type repoEntry struct {
	version int64
	tags    []string // the full sorted list; nil if not loaded
	byTag   map[string]resolvedTag
}

// resolvedTag is a tag's manifest, with the tag's own locks.
type resolvedTag struct {
	m     ManifestRecord
	locks Locks
}

func newRepoCache() *repoCache {
	return &repoCache{entries: map[string]*repoEntry{}, maxRepos: 4096, maxTags: 2_000_000}
}

// entry returns the entry for repo at version, replacing a stale one. The
// caller holds c.mu.
func (c *repoCache) entry(repo string, version int64) *repoEntry {
	e := c.entries[repo]
	if e != nil && e.version == version {
		return e
	}
	if e != nil {
		c.cachedTags -= len(e.tags)
	} else if len(c.entries) >= c.maxRepos {
		for k, old := range c.entries { // random eviction
			c.cachedTags -= len(old.tags)
			delete(c.entries, k)
			break
		}
	}
	e = &repoEntry{version: version, byTag: map[string]resolvedTag{}}
	c.entries[repo] = e
	return e
}

func (c *repoCache) resolved(repo string, version int64, tag string) (resolvedTag, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[repo]
	if e == nil || e.version != version {
		return resolvedTag{}, false
	}
	rt, ok := e.byTag[tag]
	return rt, ok
}

func (c *repoCache) putResolved(repo string, version int64, tag string, rt resolvedTag) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entry(repo, version)
	if len(e.byTag) < 10_000 {
		e.byTag[tag] = rt
	}
}

// tags returns the cached full tag list (shared: do not modify).
func (c *repoCache) tags(repo string, version int64) ([]string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[repo]
	if e == nil || e.version != version || e.tags == nil {
		return nil, false
	}
	return e.tags, true
}

func (c *repoCache) putTags(repo string, version int64, tags []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cachedTags+len(tags) > c.maxTags {
		return
	}
	e := c.entry(repo, version)
	if e.tags == nil {
		if tags == nil {
			tags = []string{}
		}
		e.tags = tags
		c.cachedTags += len(tags)
	}
}

// page returns the names after last, at most n of them (n <= 0: all).
func page(sorted []string, last string, n int) []string {
	i := sort.SearchStrings(sorted, last)
	if i < len(sorted) && sorted[i] == last {
		i++
	}
	out := sorted[i:]
	if n > 0 && len(out) > n {
		out = out[:n]
	}
	return out
}
