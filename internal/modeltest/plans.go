package modeltest

import (
	"context"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/recyclebin"
)

// The longer plans of ops.go: manifest PUT, locks, restore, purge.

// usedIn reports whether a manifest of r holds d.
func (h *harness) usedIn(r *mRepo, d stowage.Digest) bool {
	for _, mm := range r.manifests {
		if slices.Contains(mm.keep, d) {
			return true
		}
	}
	return false
}

// pickManifest picks one of repo's manifests (sorted by digest).
func (h *harness) pickManifest(repo string, pick int) stowage.Digest {
	r := h.m.repo(repo)
	if r == nil || len(r.manifests) == 0 {
		return ""
	}
	ds := sortedDigests(r.manifests)
	return ds[pick%len(ds)]
}

func sortedDigests[V any](mp map[stowage.Digest]V) []stowage.Digest {
	var ds []stowage.Digest
	for d := range mp {
		ds = append(ds, d)
	}
	slices.Sort(ds)
	return ds
}

func (m *model) manifestsNewestFirst(repo string) []stowage.Digest {
	r := m.repos[repo]
	ds := sortedDigests(r.manifests)
	slices.SortStableFunc(ds, func(a, b stowage.Digest) int { return r.manifests[b].created.Compare(r.manifests[a].created) })
	return ds
}

func (h *harness) planPutManifest(ctx context.Context, op Op, n *node, now time.Time) (*expect, func(), func() error) {
	m, p := h.m, h.pool
	repo := repoName(op.Repo)
	spec := op.Image
	body := spec.body(p)
	d := digestOf(body)
	if m.deleting[d] {
		return nil, nil, nil
	}
	r := m.repo(repo)
	has := func(x stowage.Digest) bool { return r != nil && r.links[x] }
	mt := mtManifest
	var refs []stowage.ManifestRef
	var keep []stowage.Digest
	missing := false
	if len(spec.Children) > 0 {
		mt = mtIndex
		for _, c := range spec.Children {
			cd := digestOf(c.body(p))
			refs = append(refs, stowage.ManifestRef{Digest: cd, Kind: stowage.RefManifest})
			missing = missing || r == nil || r.manifests[cd] == nil
		}
	} else {
		refs = append(refs, stowage.ManifestRef{Digest: p.dig[spec.Config], Kind: stowage.RefBlob})
		keep = append(keep, p.dig[spec.Config])
		missing = !has(p.dig[spec.Config])
		for i, l := range spec.Layers {
			ld := p.dig[l]
			if spec.Foreign[i] && !has(ld) {
				// An external layer the repository does not hold: clients
				// fetch it from its urls. One it holds is a reference like
				// any other (DESIGN §8).
				continue
			}
			refs = append(refs, stowage.ManifestRef{Digest: ld, Kind: stowage.RefBlob})
			keep = append(keep, ld)
			missing = missing || !has(ld)
		}
	}
	tags := op.Tags
	if !op.ByDigest && len(tags) == 0 {
		tags = []int{0}
	}
	// A wrong size matters where the layer is a reference: an external
	// layer the repository does not hold is fetched elsewhere, its size
	// not the registry's to check.
	badSize := spec.BadSize && len(spec.Layers) > 0 && (!spec.Foreign[0] || has(p.dig[spec.Layers[0]]))
	want := okay
	switch {
	case badSize:
		want = fails(stowage.CodeManifestInvalid, stowage.CodeManifestBlobUnknown, stowage.CodeSizeInvalid)
	case missing:
		want = fails(stowage.CodeManifestBlobUnknown)
	case !m.writable(repo):
		want = fails(stowage.CodeDenied)
	case m.overQuota(repo, d, int64(len(body))):
		want = fails(stowage.CodeDenied)
	default:
		for _, t := range tags {
			if tg := r.tags[tagName(t)]; tg != nil && tg.d != d && tg.locks&stowage.LockWrite != 0 {
				want = fails(stowage.CodeDenied)
			}
		}
	}
	apply := func() {
		r := m.ensureRepo(repo)
		mm := r.manifests[d]
		if mm == nil {
			mm = &mManifest{created: now}
			r.manifests[d] = mm
		}
		mm.spec, mm.body, mm.refs, mm.mediaType = spec, body, refs, mt
		mm.keep = keep
		slices.SortFunc(mm.refs, func(a, b stowage.ManifestRef) int { return strings.Compare(string(a.Digest), string(b.Digest)) })
		mm.refs = slices.Compact(mm.refs)
		m.live[d] = int64(len(body))
		if m.everSeen[repo] == nil {
			m.everSeen[repo] = map[stowage.Digest]bool{}
		}
		m.everSeen[repo][d] = true
		for _, t := range tags {
			name := tagName(t)
			old := r.tags[name]
			if old == nil {
				r.tags[name] = &mTag{d: d, updated: now}
				continue
			}
			prev := old.d
			old.d, old.updated = d, now
			if prev != d {
				r.markIfUntagged(prev, now)
			}
		}
	}
	var ref stowage.Reference
	var extra []string
	if op.ByDigest {
		ref = stowage.Reference{Digest: d}
		for _, t := range tags {
			extra = append(extra, tagName(t))
		}
	} else {
		ref = stowage.Reference{Tag: tagName(tags[0])}
		for _, t := range tags[1:] {
			extra = append(extra, tagName(t))
		}
	}
	return &want, apply, func() error {
		_, err := n.reg.PutManifest(ctx, repo, ref, mt, body, extra)
		return err
	}
}

func (h *harness) planLock(ctx context.Context, op Op, n *node) (*expect, func(), func() error) {
	m := h.m
	repo := repoName(op.Repo)
	r := m.repo(repo)
	var ref stowage.Reference
	var cur *stowage.Locks
	switch op.Target {
	case "repo":
		if r != nil {
			cur = &r.locks
		}
	case "tag":
		ref = stowage.Reference{Tag: tagName(op.Tag)}
		if r != nil && r.tags[ref.Tag] != nil {
			cur = &r.tags[ref.Tag].locks
		}
	case "manifest":
		d := h.pickManifest(repo, op.Pick)
		if d == "" {
			return nil, nil, nil
		}
		ref = stowage.Reference{Digest: d}
		cur = &r.manifests[d].locks
	}
	set, clear := op.Bits, stowage.Locks(0)
	if op.Clear {
		set, clear = 0, op.Bits
	}
	want := okay
	if cur == nil {
		want = fails(stowage.CodeNameUnknown, stowage.CodeManifestUnknown)
	}
	return &want, func() { *cur = *cur&^clear | set }, func() error {
		_, err := n.reg.SetLocks(ctx, repo, ref, set, clear)
		return err
	}
}

func (h *harness) planRestore(ctx context.Context, op Op, n *node, now time.Time) (*expect, func(), func() error) {
	m := h.m
	if len(m.recycle) == 0 {
		return nil, nil, nil
	}
	es := slices.Clone(m.recycle)
	slices.SortStableFunc(es, func(a, b *mRecycled) int {
		if c := strings.Compare(a.repo+"@"+string(a.d), b.repo+"@"+string(b.d)); c != 0 {
			return c
		}
		return a.seq - b.seq
	})
	e := es[op.Pick%len(es)]
	idx := op.Pick % len(es)
	r := m.repo(e.repo)
	want := okay
	switch {
	case r != nil && r.manifests[e.d] != nil:
		want = fails(stowage.CodeDenied)
	case !m.writable(e.repo):
		want = fails(stowage.CodeDenied)
	default:
		// Its bytes and blobs must still be stored, and what the
		// repository does not hold now counts against its quota
		// (recyclebin: checkRestore).
		ds := map[stowage.Digest]bool{e.d: true}
		for _, ref := range e.m.refs {
			if ref.Kind == stowage.RefBlob {
				ds[ref.Digest] = true
			}
		}
		var added int64
		for d := range ds {
			size, ok := m.live[d]
			if !ok {
				want = fails(stowage.CodeManifestBlobUnknown)
			}
			if r == nil || !r.links[d] && r.manifests[d] == nil {
				added += size
			}
		}
		if !want.ok {
			break
		}
		if m.overQuota(e.repo, "", added) {
			want = fails(stowage.CodeDenied)
			break
		}
		for _, ref := range e.m.refs {
			if ref.Kind == stowage.RefManifest && (r == nil || r.manifests[ref.Digest] == nil) {
				want = fails(stowage.CodeManifestBlobUnknown)
			}
		}
	}
	apply := func() {
		r := m.ensureRepo(e.repo)
		mm := *e.m
		if h.known(defectRestoreDropsLocks) {
			mm.locks = 0
		}
		mm.untagged = time.Time{}
		for _, ref := range mm.refs {
			if ref.Kind == stowage.RefBlob {
				r.links[ref.Digest] = true
			}
		}
		r.manifests[e.d] = &mm
		for _, t := range e.tags {
			if r.tags[t] == nil {
				r.tags[t] = &mTag{d: e.d, updated: now}
			}
		}
		m.recycle = slices.DeleteFunc(m.recycle, func(x *mRecycled) bool { return x == e })
	}
	return &want, apply, func() error {
		bin, err := recyclebin.New(n.reg).List(ctx, "")
		if err != nil {
			return err
		}
		slices.SortStableFunc(bin, func(a, b stowage.RecycledManifest) int {
			if c := strings.Compare(a.Manifest.Repo+"@"+string(a.Manifest.Digest), b.Manifest.Repo+"@"+string(b.Manifest.Digest)); c != 0 {
				return c
			}
			return int(a.ID - b.ID)
		})
		if len(bin) != len(es) {
			return failf("recycle", "%s: the recycle bin has %d entries, the model %d", op, len(bin), len(es))
		}
		_, err = recyclebin.New(n.reg).Restore(ctx, bin[idx].ID)
		return err
	}
}

func (h *harness) planPurge(ctx context.Context, op Op, n *node, now time.Time) (*expect, func(), func() error) {
	// Filter: repository op.Repo (or all with -1), tags t<op.Tag> (or all).
	repoRe, tagRe := ".*", ".*"
	if op.Repo >= 0 {
		repoRe = regexp.QuoteMeta(repoName(op.Repo))
	}
	if op.Tag >= 0 {
		tagRe = tagName(op.Tag)
	}
	f, err := stowage.ParsePurgeFilter(repoRe + ":" + tagRe)
	if err != nil {
		panic(err)
	}
	c := h.m.clone()
	cutoff := now.Add(-op.Ago)
	ambiguous := false
	for _, name := range c.sortedRepos() {
		r := c.repos[name]
		if !f.Repo.MatchString(name) || r.locks&stowage.LockDelete != 0 {
			continue
		}
		type tg struct {
			name string
			t    *mTag
		}
		var match []tg
		for _, tn := range slices.Sorted(maps.Keys(r.tags)) {
			t := r.tags[tn]
			if !t.updated.After(cutoff) && f.Tag.MatchString(tn) {
				match = append(match, tg{tn, t})
			}
		}
		slices.SortStableFunc(match, func(a, b tg) int { return b.t.updated.Compare(a.t.updated) })
		if op.Keep > 0 && len(match) > op.Keep {
			if match[op.Keep-1].t.updated.Equal(match[op.Keep].t.updated) {
				ambiguous = true // which of equally new tags stays is not defined
			}
		}
		if op.Keep > 0 {
			match = match[min(op.Keep, len(match)):]
		}
		del := c.newDeletion(name, now, true)
		removed := map[stowage.Digest]bool{}
		for _, t := range match {
			d := t.t.d
			del.untag(t.name)
			if r.tags[t.name] == nil {
				removed[d] = true
			}
		}
		if op.Untagged {
			for _, d := range r.untaggedManifests(now) {
				if !removed[d] && r.manifests[d].created.After(cutoff) {
					continue
				}
				del.manifest(d, false)
			}
		}
	}
	if ambiguous {
		return nil, nil, nil
	}
	opts := policy.PurgeOptions{Filters: []stowage.PurgeFilter{f}, Ago: op.Ago, Keep: op.Keep, Untagged: op.Untagged}
	want := okay
	return &want, func() { h.m = c }, func() error { _, err := policy.New(n.reg).Purge(ctx, opts); return err }
}
