package stowage

import (
	"slices"
)

// deleteSource is what a delete reads of its repository's manifests,
// references and tags, and how it removes a tag or a manifest (with its
// references). Both sources answer every read as the database would at
// that moment of the delete.
type deleteSource interface {
	manifest(d Digest) (ManifestRecord, error) // ErrNotFound if absent
	refs(d Digest) ([]ManifestRef, error)      // ordered by child
	tagsOf(d Digest) ([]string, error)         // ordered by name
	tagRecord(tag string) (TagRecord, error)
	parents(d Digest) ([]Digest, error)           // the manifests that reference d, in order
	referrers(d Digest) ([]ManifestRecord, error) // the manifests whose subject is d, by digest
	deleteTag(tag string) error
	deleteManifest(d Digest) error // and its references
}

// txSource reads and removes with the database's point queries: for
// deletes of a few manifests (an image, a policy's pick).
type txSource struct {
	tx   Tx
	repo string
}

func (s txSource) manifest(d Digest) (ManifestRecord, error) {
	return s.tx.Manifests().GetManifest(s.repo, d)
}
func (s txSource) refs(d Digest) ([]ManifestRef, error) {
	return s.tx.Manifests().ManifestRefs(s.repo, d)
}
func (s txSource) tagsOf(d Digest) ([]string, error) { return s.tx.Tags().TagsOf(s.repo, d) }
func (s txSource) tagRecord(tag string) (TagRecord, error) {
	return s.tx.Tags().GetTagRecord(s.repo, tag)
}
func (s txSource) parents(d Digest) ([]Digest, error) {
	return s.tx.Manifests().ManifestParents(s.repo, d)
}
func (s txSource) referrers(d Digest) ([]ManifestRecord, error) {
	return s.tx.Manifests().Referrers(s.repo, d)
}
func (s txSource) deleteTag(tag string) error    { return s.tx.Tags().DeleteTag(s.repo, tag) }
func (s txSource) deleteManifest(d Digest) error { return s.tx.Manifests().DeleteManifest(s.repo, d) }

// repoSnapshot is a whole repository read in three queries (its manifests,
// their references, its tags) when all of it goes. Its removals stay in
// memory: the caller ends the repository's rows with one
// RepositoryTx.DeleteRepository. Deleting a repository of n manifests then
// costs three reads and one bulk delete, plus work in memory that grows
// with n; with point queries per manifest it cost a dozen round trips per
// manifest, and on PostgreSQL each tag removed bumped the repository's
// tags_version row once more in the same transaction, every update walking
// the versions the earlier ones left (47 s / 54 s for 10,000 manifests:
// docs/performance.md, "Cost at scale").
type repoSnapshot struct {
	list         []ManifestRecord // ListManifests' order: what a repository delete walks
	manifests    map[Digest]ManifestRecord
	deleted      map[Digest]bool // manifests removed (their references with them)
	refsOf       map[Digest][]ManifestRef
	parentsOf    map[Digest][]Digest // child -> the manifests referencing it, in order
	referrersOf  map[Digest][]Digest // subject -> the manifests naming it, by digest
	tags         map[string]TagRecord
	tagsByDigest map[Digest][]string // by name
}

func readRepoSnapshot(tx Tx, repo string) (*repoSnapshot, error) {
	ms, err := tx.Manifests().ListManifests(repo)
	if err != nil {
		return nil, err
	}
	refs, err := tx.Manifests().RepositoryRefs(repo)
	if err != nil {
		return nil, err
	}
	tags, err := tx.Tags().TagRecords(repo)
	if err != nil {
		return nil, err
	}
	s := &repoSnapshot{list: ms, manifests: make(map[Digest]ManifestRecord, len(ms)), deleted: map[Digest]bool{},
		refsOf: refs, parentsOf: map[Digest][]Digest{}, referrersOf: map[Digest][]Digest{},
		tags: make(map[string]TagRecord, len(tags)), tagsByDigest: make(map[Digest][]string, len(tags))}
	for _, m := range ms {
		s.manifests[m.Digest] = m
		if m.Subject != "" {
			s.referrersOf[m.Subject] = append(s.referrersOf[m.Subject], m.Digest)
		}
	}
	for _, rs := range s.referrersOf {
		slices.Sort(rs)
	}
	for parent, rs := range refs {
		for _, r := range rs {
			s.parentsOf[r.Digest] = append(s.parentsOf[r.Digest], parent)
		}
	}
	for _, ps := range s.parentsOf {
		slices.Sort(ps)
	}
	for _, t := range tags { // by name
		s.tags[t.Name] = t
		s.tagsByDigest[t.Digest] = append(s.tagsByDigest[t.Digest], t.Name)
	}
	return s, nil
}

func (s *repoSnapshot) manifest(d Digest) (ManifestRecord, error) {
	m, ok := s.manifests[d]
	if !ok || s.deleted[d] {
		return ManifestRecord{}, ErrNotFound
	}
	return m, nil
}

func (s *repoSnapshot) refs(d Digest) ([]ManifestRef, error) {
	if s.deleted[d] {
		return nil, nil
	}
	return slices.Clone(s.refsOf[d]), nil
}

func (s *repoSnapshot) tagsOf(d Digest) ([]string, error) {
	return slices.Clone(s.tagsByDigest[d]), nil
}

func (s *repoSnapshot) tagRecord(tag string) (TagRecord, error) {
	t, ok := s.tags[tag]
	if !ok {
		return TagRecord{}, ErrNotFound
	}
	return t, nil
}

func (s *repoSnapshot) parents(d Digest) ([]Digest, error) {
	var out []Digest
	for _, p := range s.parentsOf[d] {
		if !s.deleted[p] {
			out = append(out, p)
		}
	}
	return out, nil
}

func (s *repoSnapshot) referrers(d Digest) ([]ManifestRecord, error) {
	var out []ManifestRecord
	for _, rd := range s.referrersOf[d] {
		if m, err := s.manifest(rd); err == nil {
			out = append(out, m)
		}
	}
	return out, nil
}

func (s *repoSnapshot) deleteTag(tag string) error {
	t, ok := s.tags[tag]
	if !ok {
		return ErrNotFound
	}
	delete(s.tags, tag)
	s.tagsByDigest[t.Digest] = slices.DeleteFunc(s.tagsByDigest[t.Digest], func(n string) bool { return n == tag })
	return nil
}

func (s *repoSnapshot) deleteManifest(d Digest) error {
	if _, err := s.manifest(d); err != nil {
		return err
	}
	s.deleted[d] = true
	return nil
}
