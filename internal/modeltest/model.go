package modeltest

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/policy"
)

// The model is what a registry with no bugs holds after the steps so far:
// repositories with their locks, blob links, manifests and tags, the
// recycle bin, the live blobs, and the upload sessions. It is small on
// purpose: every rule in it is one sentence of the documentation.

const (
	numRepos = 3
	numTags  = 3
	numBlobs = 10 // per algorithm; blob i >= numBlobs is blob i-numBlobs as sha512
	numSlots = 3  // upload sessions in flight at once
)

func repoName(i int) string { return fmt.Sprintf("mt/r%d", i) }
func tagName(i int) string  { return fmt.Sprintf("t%d", i) }

// pool holds the blob contents of a run (from its seed). Blobs 2k and 2k+1
// have the same size, so a digest confusion between equal sizes can show.
type pool struct {
	data [][]byte
	dig  []stowage.Digest // numBlobs sha256, then numBlobs sha512
}

func newPool(seed uint64) *pool {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	sizes := []int{37, 1500, 65536, 70001, 140000}
	p := &pool{}
	for i := range numBlobs {
		b := make([]byte, sizes[(i/2)%len(sizes)]+i/2)
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		p.data = append(p.data, b)
	}
	for i := range numBlobs {
		s := sha256.Sum256(p.data[i])
		p.dig = append(p.dig, stowage.Digest("sha256:"+hex.EncodeToString(s[:])))
	}
	for i := range numBlobs {
		s := sha512.Sum512(p.data[i])
		p.dig = append(p.dig, stowage.Digest("sha512:"+hex.EncodeToString(s[:])))
	}
	return p
}

func (p *pool) bytes(i int) []byte { return p.data[i%numBlobs] }

// ImageSpec describes a manifest: an image (config and layers from the
// pool) or, with Children, an index of images.
type ImageSpec struct {
	Config   int
	Layers   []int
	Foreign  []bool // per layer: a non-distributable layer media type
	BadSize  bool   // the first layer's descriptor has a wrong size
	Salt     int
	Children []ImageSpec
}

const (
	mtManifest = "application/vnd.oci.image.manifest.v1+json"
	mtIndex    = "application/vnd.oci.image.index.v1+json"
	mtLayer    = "application/vnd.oci.image.layer.v1.tar"
	mtForeign  = "application/vnd.oci.image.layer.nondistributable.v1.tar"
)

func (s ImageSpec) String() string {
	if len(s.Children) > 0 {
		var cs []string
		for _, c := range s.Children {
			cs = append(cs, c.String())
		}
		return fmt.Sprintf("index{%s salt=%d}", strings.Join(cs, ", "), s.Salt)
	}
	var ls []string
	for i, l := range s.Layers {
		f := ""
		if s.Foreign[i] {
			f = "(foreign)"
		}
		ls = append(ls, fmt.Sprint("b", l, f))
	}
	bad := ""
	if s.BadSize {
		bad = " badsize"
	}
	return fmt.Sprintf("image{config=b%d layers=[%s] salt=%d%s}", s.Config, strings.Join(ls, " "), s.Salt, bad)
}

// body is the manifest's bytes, deterministic.
func (s ImageSpec) body(p *pool) []byte {
	if len(s.Children) > 0 {
		var ds []string
		for _, c := range s.Children {
			b := c.body(p)
			// A child's descriptor states its media type (an index may
			// list an index).
			mt := mtManifest
			if len(c.Children) > 0 {
				mt = mtIndex
			}
			ds = append(ds, fmt.Sprintf(`{"mediaType":%q,"digest":%q,"size":%d,"platform":{"architecture":"amd64","os":"linux"}}`,
				mt, digestOf(b), len(b)))
		}
		return fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":%q,"manifests":[%s],"annotations":{"salt":"%d"}}`,
			mtIndex, strings.Join(ds, ","), s.Salt)
	}
	var ls []string
	for i, l := range s.Layers {
		mt, size, urls := mtLayer, len(p.bytes(l)), ""
		if s.Foreign[i] {
			// An external layer: clients fetch it from its urls, so the
			// repository need not hold it.
			mt, urls = mtForeign, fmt.Sprintf(`,"urls":["https://example.com/%s"]`, p.dig[l].Encoded())
		}
		if s.BadSize && i == 0 {
			size++
		}
		ls = append(ls, fmt.Sprintf(`{"mediaType":%q,"digest":%q,"size":%d%s}`, mt, p.dig[l], size, urls))
	}
	return fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[%s],"annotations":{"salt":"%d"}}`,
		mtManifest, p.dig[s.Config], len(p.bytes(s.Config)), strings.Join(ls, ","), s.Salt)
}

func digestOf(b []byte) stowage.Digest {
	s := sha256.Sum256(b)
	return stowage.Digest("sha256:" + hex.EncodeToString(s[:]))
}

// mManifest is a manifest in a repository.
type mManifest struct {
	spec      ImageSpec
	body      []byte
	refs      []stowage.ManifestRef // as the engine records them
	keep      []stowage.Digest      // blobs it holds: refs plus foreign layers the repository had
	locks     stowage.Locks
	created   time.Time
	untagged  time.Time // when it lost its last tag (zero: counts from created)
	mediaType string
}

type mTag struct {
	d       stowage.Digest
	locks   stowage.Locks
	updated time.Time
}

type mRepo struct {
	locks     stowage.Locks
	links     map[stowage.Digest]bool
	manifests map[stowage.Digest]*mManifest
	tags      map[string]*mTag
}

type mRecycled struct {
	repo    string
	d       stowage.Digest
	m       *mManifest
	tags    []string
	deleted time.Time
	expires time.Time
	seq     int
}

type mUpload struct {
	id      string
	repo    int
	blob    int
	sent    int64
	updated time.Time
}

// model is the expected state.
type model struct {
	pool      *pool
	repos     map[string]*mRepo
	live      map[stowage.Digest]int64 // live blob rows: digest -> size
	recycle   []*mRecycled
	softDays  int // 0: soft delete off
	retention policy.Retention
	uploads   [numSlots]*mUpload
	seq       int
	// everSeen are all manifest digests pushed in the run, per repository,
	// to check that deleted ones are not served.
	everSeen map[string]map[stowage.Digest]bool
	// deletedRepos are the repositories deleted (as a whole) in the run.
	deletedRepos map[string]bool
	// deleting are digests a crashed collection left in state 'deleting'.
	deleting map[stowage.Digest]bool
	quotas   map[string]int64
}

func newModel(p *pool) *model {
	return &model{pool: p, repos: map[string]*mRepo{}, live: map[stowage.Digest]int64{},
		everSeen: map[string]map[stowage.Digest]bool{}, deleting: map[stowage.Digest]bool{}, quotas: map[string]int64{},
		deletedRepos: map[string]bool{}}
}

func (m *model) clone() *model {
	c := *m
	c.repos = map[string]*mRepo{}
	for n, r := range m.repos {
		nr := &mRepo{locks: r.locks, links: maps.Clone(r.links), manifests: map[stowage.Digest]*mManifest{}, tags: map[string]*mTag{}}
		for d, mm := range r.manifests {
			x := *mm
			nr.manifests[d] = &x
		}
		for t, tg := range r.tags {
			x := *tg
			nr.tags[t] = &x
		}
		c.repos[n] = nr
	}
	c.live = maps.Clone(m.live)
	c.recycle = nil
	for _, e := range m.recycle {
		x := *e
		mm := *e.m
		x.m = &mm
		c.recycle = append(c.recycle, &x)
	}
	for i, u := range m.uploads {
		if u != nil {
			x := *u
			c.uploads[i] = &x
		}
	}
	c.everSeen = map[string]map[stowage.Digest]bool{}
	for r, s := range m.everSeen {
		c.everSeen[r] = maps.Clone(s)
	}
	c.deleting = maps.Clone(m.deleting)
	c.deletedRepos = maps.Clone(m.deletedRepos)
	c.quotas = maps.Clone(m.quotas)
	return &c
}

func (m *model) repo(name string) *mRepo { return m.repos[name] }

// ensureRepo creates the repository if needed (pushes do).
func (m *model) ensureRepo(name string) *mRepo {
	r := m.repos[name]
	if r == nil {
		r = &mRepo{links: map[stowage.Digest]bool{}, manifests: map[stowage.Digest]*mManifest{}, tags: map[string]*mTag{}}
		m.repos[name] = r
	}
	return r
}

func (m *model) writable(name string) bool {
	r := m.repos[name]
	return r == nil || r.locks&stowage.LockWrite == 0
}

// referenced is every digest that a manifest (anywhere) is or holds, plus
// what recycle bin entries hold: what garbage collection must keep.
func (m *model) referenced() map[stowage.Digest]bool {
	ref := map[stowage.Digest]bool{}
	add := func(d stowage.Digest, mm *mManifest, children bool) {
		ref[d] = true
		for _, r := range mm.refs {
			if children || r.Kind == stowage.RefBlob {
				ref[r.Digest] = true
			}
		}
		for _, k := range mm.keep {
			ref[k] = true
		}
	}
	for _, r := range m.repos {
		for d, mm := range r.manifests {
			add(d, mm, true)
		}
	}
	// A recycled index holds its own bytes, not its children: they are
	// held by their own entries (and restored first).
	for _, e := range m.recycle {
		add(e.d, e.m, false)
	}
	return ref
}

// dropBlob forgets a collected blob: its row and its links.
func (m *model) dropBlob(d stowage.Digest) {
	delete(m.live, d)
	for _, r := range m.repos {
		delete(r.links, d)
	}
}

// untagged records that d lost its last tag, if it did.
func (r *mRepo) markIfUntagged(d stowage.Digest, now time.Time) {
	for _, t := range r.tags {
		if t.d == d {
			return
		}
	}
	if mm := r.manifests[d]; mm != nil {
		mm.untagged = now
	}
}

func (r *mRepo) tagsOf(d stowage.Digest) []string {
	var ts []string
	for n, t := range r.tags {
		if t.d == d {
			ts = append(ts, n)
		}
	}
	slices.Sort(ts)
	return ts
}

func (r *mRepo) parents(d stowage.Digest) []stowage.Digest {
	var ps []stowage.Digest
	for pd, mm := range r.manifests {
		for _, ref := range mm.refs {
			if ref.Kind == stowage.RefManifest && ref.Digest == d {
				ps = append(ps, pd)
			}
		}
	}
	return ps
}

// deletion mirrors one delete transaction (registry_delete.go): the model
// of the rules "a locked manifest stays; asked for directly that is
// DENIED", "tags go with their manifest", "index children nothing else
// uses go too", "soft delete keeps them in the recycle bin".
type deletion struct {
	m          *model
	repo       string
	r          *mRepo
	now        time.Time
	skipLocked bool
	seen       map[stowage.Digest]bool
	denied     bool
}

func (m *model) newDeletion(repo string, now time.Time, skipLocked bool) *deletion {
	return &deletion{m: m, repo: repo, r: m.repos[repo], now: now, skipLocked: skipLocked, seen: map[stowage.Digest]bool{}}
}

func (del *deletion) locked(d stowage.Digest) bool {
	mm := del.r.manifests[d]
	if mm.locks&stowage.LockDelete != 0 {
		return true
	}
	for _, t := range del.r.tagsOf(d) {
		if del.r.tags[t].locks&stowage.LockDelete != 0 {
			return true
		}
	}
	return false
}

// manifest deletes d (which exists); false if it was refused (denied).
func (del *deletion) manifest(d stowage.Digest, requested bool) {
	if del.seen[d] || del.denied {
		return
	}
	del.seen[d] = true
	r := del.r
	mm := r.manifests[d]
	if mm == nil {
		return
	}
	if del.locked(d) {
		if requested && !del.skipLocked {
			del.denied = true
		}
		return
	}
	tags := r.tagsOf(d)
	for _, t := range tags {
		delete(r.tags, t)
	}
	if del.m.softDays > 0 {
		del.m.seq++
		x := *mm
		del.m.recycle = append(del.m.recycle, &mRecycled{repo: del.repo, d: d, m: &x, tags: tags, deleted: del.now,
			expires: del.now.Add(time.Duration(del.m.softDays) * 24 * time.Hour), seq: del.m.seq})
	}
	delete(r.manifests, d)
	for _, ref := range mm.refs {
		if ref.Kind != stowage.RefManifest || del.seen[ref.Digest] || r.manifests[ref.Digest] == nil {
			continue
		}
		if len(r.tagsOf(ref.Digest)) == 0 && len(r.parents(ref.Digest)) == 0 {
			del.manifest(ref.Digest, false)
		}
	}
}

// untag removes a tag; false if delete-locked (and not skipping).
func (del *deletion) untag(tag string) {
	t := del.r.tags[tag]
	if t.locks&stowage.LockDelete != 0 {
		if !del.skipLocked {
			del.denied = true
		}
		return
	}
	delete(del.r.tags, tag)
	del.r.markIfUntagged(t.d, del.now)
}

// untaggedManifests lists manifests of the repository with no tag and no
// parent, untagged (or created) at or before `before`, oldest first.
func (r *mRepo) untaggedManifests(before time.Time) []stowage.Digest {
	var out []stowage.Digest
	for d, mm := range r.manifests {
		since := mm.untagged
		if since.IsZero() {
			since = mm.created
		}
		if since.After(before) || len(r.tagsOf(d)) > 0 || len(r.parents(d)) > 0 {
			continue
		}
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b stowage.Digest) int {
		if c := r.manifests[a].created.Compare(r.manifests[b].created); c != 0 {
			return c
		}
		return strings.Compare(string(a), string(b))
	})
	return out
}

// sortedRepos lists the model's repository names.
func (m *model) sortedRepos() []string {
	return slices.Sorted(maps.Keys(m.repos))
}

// held is what a repository holds for its quota (registry_quota.go): the
// live blobs linked into it and its manifests, each digest once.
func (m *model) held(repo string) int64 {
	r := m.repos[repo]
	if r == nil {
		return 0
	}
	set := maps.Clone(r.links)
	for d := range r.manifests {
		set[d] = true
	}
	var n int64
	for d := range set {
		n += m.live[d]
	}
	return n
}

// overQuota reports whether adding size bytes (of digest d, "" if not
// known yet) to repo passes its quota. What the repository holds costs
// nothing.
func (m *model) overQuota(repo string, d stowage.Digest, size int64) bool {
	limit, ok := m.quotas[repo]
	if !ok || size <= 0 {
		return false
	}
	if r := m.repos[repo]; d != "" && r != nil && (r.links[d] && m.live[d] > 0 || r.manifests[d] != nil) {
		return false
	}
	return m.held(repo)+size > limit
}
