// Package usage answers "what uses space" from the metadata alone: the
// registry's physical (each digest once) and logical bytes and its dedup
// ratio, and per repository and manifest the bytes referenced, the bytes only
// it uses (what deleting it frees) and the bytes it shares. The queries are
// the databases' (stowage.UsageTx); this package shapes the answer.
package usage

import (
	"context"
	"errors"

	"github.com/stowage/stowage"
)

// Core is what the reports need of the engine (a *stowage.Registry).
type Core interface {
	Parts() stowage.Parts
	StorageLimit() int64
}

// Reporter answers usage questions for one registry.
type Reporter struct{ core Core }

// New returns a Reporter over core's database.
func New(core Core) *Reporter { return &Reporter{core: core} }

func (r *Reporter) limit() int64 { return r.core.StorageLimit() }

// Usage is the registry's space, exact and deduplicated, from the database.
type Usage struct {
	// PhysicalBytes is what storage holds: every stored digest once.
	PhysicalBytes int64 `json:"physicalBytes"`
	// LogicalBytes is the sum over repositories of what each references:
	// what the registry would hold without deduplication across repositories.
	LogicalBytes int64   `json:"logicalBytes"`
	DedupRatio   float64 `json:"dedupRatio"` // logical / physical
	Blobs        int64   `json:"blobs"`
	Repositories int64   `json:"repositories"`
	Manifests    int64   `json:"manifests"`
	Tags         int64   `json:"tags"`
	Untagged     int64   `json:"untaggedManifests"`
	LimitBytes   int64   `json:"limitBytes,omitempty"` // 0: no limit

	PerRepository []RepositorySpace `json:"repositoryUsage"`
}

// RepositorySpace is one repository's share.
type RepositorySpace struct {
	Name            string `json:"name"`
	ReferencedBytes int64  `json:"referencedBytes"`
	UniqueBytes     int64  `json:"uniqueBytes"` // freed if the repository is deleted
	SharedBytes     int64  `json:"sharedBytes"` // also used by other repositories
	Manifests       int64  `json:"manifests"`
	Tags            int64  `json:"tags"`
	Untagged        int64  `json:"untaggedManifests"`
}

// RepositoryDetail is one repository's share with its manifests.
type RepositoryDetail struct {
	RepositorySpace
	PerManifest []ManifestSpace `json:"manifestUsage"`
}

// ManifestSpace is one manifest's share.
type ManifestSpace struct {
	Digest      stowage.Digest `json:"digest"`
	MediaType   string         `json:"mediaType"`
	Tags        []string       `json:"tags"`
	Size        int64          `json:"size"`        // the manifest plus the blobs it references
	UniqueBytes int64          `json:"uniqueBytes"` // referenced by no other manifest: freed if it is deleted
	Created     string         `json:"createdTime"`
}

// Usage answers "what uses space" for the whole registry.
func (r *Reporter) Usage(ctx context.Context) (Usage, error) {
	var u Usage
	err := r.core.Parts().DB.View(ctx, func(tx stowage.Tx) error {
		var err error
		if u.Blobs, u.PhysicalBytes, err = tx.Usage().BlobTotals(); err != nil {
			return err
		}
		repos, err := tx.Usage().RepositoryUsage()
		if err != nil {
			return err
		}
		u.PerRepository = make([]RepositorySpace, 0, len(repos))
		for _, ru := range repos {
			u.PerRepository = append(u.PerRepository, space(ru))
			u.LogicalBytes += ru.ReferencedBytes
			u.Manifests += ru.Manifests
			u.Tags += ru.Tags
			u.Untagged += ru.UntaggedManifests
		}
		u.Repositories = int64(len(repos))
		return nil
	})
	u.LimitBytes = r.limit()
	if u.PhysicalBytes > 0 {
		u.DedupRatio = float64(u.LogicalBytes) / float64(u.PhysicalBytes)
	}
	return u, err
}

func space(ru stowage.RepositoryUsage) RepositorySpace {
	return RepositorySpace{Name: ru.Name, ReferencedBytes: ru.ReferencedBytes, UniqueBytes: ru.UniqueBytes,
		SharedBytes: ru.ReferencedBytes - ru.UniqueBytes, Manifests: ru.Manifests, Tags: ru.Tags, Untagged: ru.UntaggedManifests}
}

// Repository answers "what uses space" for one repository, per manifest.
func (r *Reporter) Repository(ctx context.Context, repo string) (RepositoryDetail, error) {
	var d RepositoryDetail
	err := r.core.Parts().DB.View(ctx, func(tx stowage.Tx) error {
		if _, err := tx.Repositories().GetRepository(repo); errors.Is(err, stowage.ErrNotFound) {
			return stowage.Errorf(stowage.CodeNameUnknown, "repository %s does not exist", repo)
		} else if err != nil {
			return err
		}
		ru, err := tx.Usage().RepositoryUsageOf(repo)
		if err != nil {
			return err
		}
		d.RepositorySpace = space(ru)
		ms, err := tx.Usage().ManifestUsage(repo)
		if err != nil {
			return err
		}
		d.PerManifest = make([]ManifestSpace, 0, len(ms))
		for _, m := range ms {
			tags := m.Tags
			if tags == nil {
				tags = []string{}
			}
			d.PerManifest = append(d.PerManifest, ManifestSpace{Digest: m.Digest, MediaType: m.MediaType, Tags: tags,
				Size: m.Size, UniqueBytes: m.UniqueBytes, Created: m.Created.UTC().Format("2006-01-02T15:04:05.000000000Z")})
		}
		return nil
	})
	return d, err
}
