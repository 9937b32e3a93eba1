package stowage

import (
	"context"
	"errors"
	"time"
)

// RepositoryInfo describes a repository for listings (the ACR API).
type RepositoryInfo struct {
	Name      string
	Created   time.Time
	Updated   time.Time
	Manifests int
	Tags      int
	Locks     Locks
}

// ManifestInfo describes a manifest for listings.
type ManifestInfo struct {
	ManifestRecord
	// Read from the stored manifest and its config (never kept in the
	// database); "" when they cannot be read now (key unavailable).
	ArtifactType string // the manifest's artifactType, else its config's media type (images)
	Architecture string // an image's platform, from its config
	OS           string
	ImageSize    int64 // the manifest plus the blobs it references
	Tags         []string
	LastModified time.Time // its creation or the last push of one of its tags
}

// RepositoryInfo returns a repository's description.
func (r *Registry) RepositoryInfo(ctx context.Context, repo string) (RepositoryInfo, error) {
	var info RepositoryInfo
	err := r.db.View(ctx, func(tx Tx) error {
		rec, err := tx.Repositories().GetRepository(repo)
		if errors.Is(err, ErrNotFound) {
			return nameUnknown(repo)
		}
		if err != nil {
			return err
		}
		ms, err := tx.Manifests().ListManifests(repo)
		if err != nil {
			return err
		}
		tags, err := tx.Tags().TagRecords(repo)
		if err != nil {
			return err
		}
		info = RepositoryInfo{Name: repo, Created: rec.Created, Updated: rec.Updated, Manifests: len(ms), Tags: len(tags), Locks: rec.Locks}
		return nil
	})
	return info, err
}

// TagInfos returns the tags of repo that are not list-locked.
func (r *Registry) TagInfos(ctx context.Context, repo string) ([]TagRecord, error) {
	var out []TagRecord
	err := r.db.View(ctx, func(tx Tx) error {
		if _, err := tx.Repositories().GetRepository(repo); errors.Is(err, ErrNotFound) {
			return nameUnknown(repo)
		}
		tags, err := tx.Tags().TagRecords(repo)
		for _, t := range tags {
			if t.Locks&LockList == 0 {
				out = append(out, t)
			}
		}
		return err
	})
	return out, err
}

// ManifestInfos returns the manifests of repo (not list-locked) with their
// sizes and tags.
func (r *Registry) ManifestInfos(ctx context.Context, repo string) ([]ManifestInfo, error) {
	out, err := r.manifestInfos(ctx, repo, false)
	r.describeInfos(ctx, out)
	return out, err
}

// describeInfos fills what the stored manifests and configs say, best
// effort (listings work without the key; these fields are then empty). It
// reads storage, so callers run it outside transactions.
func (r *Registry) describeInfos(ctx context.Context, infos []ManifestInfo) {
	ms := make([]ManifestRecord, len(infos))
	for i := range infos {
		ms[i] = infos[i].ManifestRecord
	}
	facts, errs := r.describeAll(ctx, ms, true)
	for i, f := range facts {
		if errs[i] == nil {
			infos[i].ArtifactType, infos[i].Architecture, infos[i].OS = f.ArtifactType, f.Architecture, f.OS
		}
	}
}

// manifestInfos lists the manifests of repo from the database alone;
// list-locked ones only if hidden.
func (r *Registry) manifestInfos(ctx context.Context, repo string, hidden bool) ([]ManifestInfo, error) {
	var out []ManifestInfo
	err := r.db.View(ctx, func(tx Tx) error {
		if _, err := tx.Repositories().GetRepository(repo); errors.Is(err, ErrNotFound) {
			return nameUnknown(repo)
		}
		ms, err := tx.Manifests().ListManifests(repo)
		if err != nil {
			return err
		}
		usage, err := tx.Usage().ManifestUsage(repo, ManifestCursor{}, 0)
		if err != nil {
			return err
		}
		sizes := map[Digest]int64{}
		for _, u := range usage {
			sizes[u.Digest] = u.Size
		}
		tags, err := tx.Tags().TagRecords(repo)
		if err != nil {
			return err
		}
		byDigest := map[Digest][]TagRecord{}
		for _, t := range tags {
			byDigest[t.Digest] = append(byDigest[t.Digest], t)
		}
		for _, m := range ms {
			if m.Locks&LockList != 0 && !hidden {
				continue
			}
			info := ManifestInfo{ManifestRecord: m, ImageSize: sizes[m.Digest], Tags: []string{}, LastModified: m.Created}
			for _, t := range byDigest[m.Digest] {
				info.Tags = append(info.Tags, t.Name)
				if t.Updated.After(info.LastModified) {
					info.LastModified = t.Updated
				}
			}
			out = append(out, info)
		}
		return nil
	})
	return out, err
}

// ManifestInfo returns one manifest's description, list-locked or not (the
// list lock hides an item from listings only).
func (r *Registry) ManifestInfo(ctx context.Context, repo string, d Digest) (ManifestInfo, error) {
	all, err := r.manifestInfos(ctx, repo, true)
	if err != nil {
		return ManifestInfo{}, err
	}
	for _, m := range all {
		if m.Digest == d {
			one := []ManifestInfo{m}
			r.describeInfos(ctx, one)
			return one[0], nil
		}
	}
	return ManifestInfo{}, manifestUnknown(repo, Reference{Digest: d})
}

// TagInfo returns one tag's record, list-locked or not (the list lock hides
// a tag from listings only).
func (r *Registry) TagInfo(ctx context.Context, repo, tag string) (TagRecord, error) {
	var t TagRecord
	err := r.db.View(ctx, func(tx Tx) (err error) {
		if _, err := tx.Repositories().GetRepository(repo); errors.Is(err, ErrNotFound) {
			return nameUnknown(repo)
		}
		t, err = tx.Tags().GetTagRecord(repo, tag)
		if errors.Is(err, ErrNotFound) {
			return Errorf(CodeManifestUnknown, "tag %s is not in repository %s", tag, repo)
		}
		return err
	})
	return t, err
}
