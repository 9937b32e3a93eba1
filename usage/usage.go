// Package usage answers "what uses space" from the metadata alone: the
// registry's physical (each digest once) and logical bytes and its dedup
// ratio, and per repository and manifest the bytes referenced, the bytes only
// it uses (what deleting it frees) and the bytes it shares. The queries are
// the databases' (stowage.UsageTx); this package shapes the answer.
package usage

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"time"

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
	// Continued marks a page after the first: it carries the repository's
	// kept sums but not its unique and shared bytes (left out of the JSON),
	// which read every digest only that repository uses (all of its
	// manifests' own digests, for most), so that walking a big
	// repository's pages costs what the pages hold. The first page has them.
	Continued bool `json:"continued,omitempty"`
}

// MarshalJSON leaves uniqueBytes and sharedBytes out of a continued page.
func (d RepositoryDetail) MarshalJSON() ([]byte, error) {
	type plain RepositoryDetail
	b, err := json.Marshal(plain(d))
	if err != nil || !d.Continued {
		return b, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	delete(m, "uniqueBytes")
	delete(m, "sharedBytes")
	return json.Marshal(m)
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

// MaxPage bounds the rows of one page (n).
const MaxPage = 1000

// Usage answers "what uses space" for the whole registry: its totals and
// every repository's row.
func (r *Reporter) Usage(ctx context.Context) (Usage, error) {
	u, _, err := r.UsagePage(ctx, "", 0)
	return u, err
}

// Totals is the registry's usage without repository rows (PerRepository
// empty): sums kept by the database, read at the same cost at any size.
func (r *Reporter) Totals(ctx context.Context) (Usage, error) {
	u, _, err := r.usage(ctx, "", -1)
	return u, err
}

// UsagePage is the registry's totals and one page of repository rows: the
// repositories named after `after`, in name order, at most limit of them
// (limit <= 0: all). next is the name to pass as after for the following
// page, "" after the last.
func (r *Reporter) UsagePage(ctx context.Context, after string, limit int) (u Usage, next string, err error) {
	return r.usage(ctx, after, max(limit, 0))
}

// usage reads the totals and, unless limit < 0, a page of rows.
func (r *Reporter) usage(ctx context.Context, after string, limit int) (u Usage, next string, err error) {
	err = r.core.Parts().DB.View(ctx, func(tx stowage.Tx) error {
		t, err := tx.Usage().Totals()
		if err != nil {
			return err
		}
		u.Blobs, u.PhysicalBytes, u.LogicalBytes = t.Blobs, t.PhysicalBytes, t.ReferencedBytes
		u.Repositories, u.Manifests, u.Tags, u.Untagged = t.Repositories, t.Manifests, t.Tags, t.UntaggedManifests
		u.PerRepository = []RepositorySpace{}
		if limit < 0 {
			return nil
		}
		fetch := 0 // all
		if limit > 0 {
			fetch = limit + 1 // one more: is there a next page?
		}
		repos, err := tx.Usage().RepositoryUsage(after, fetch)
		if err != nil {
			return err
		}
		if limit > 0 && len(repos) > limit {
			repos = repos[:limit]
			next = repos[limit-1].Name
		}
		u.PerRepository = make([]RepositorySpace, 0, len(repos))
		for _, ru := range repos {
			u.PerRepository = append(u.PerRepository, space(ru))
		}
		return nil
	})
	u.LimitBytes = r.limit()
	if u.PhysicalBytes > 0 {
		u.DedupRatio = float64(u.LogicalBytes) / float64(u.PhysicalBytes)
	}
	return u, next, err
}

// Largest lists the n repositories that reference the most bytes, largest
// first (then by name).
func (r *Reporter) Largest(ctx context.Context, n int) ([]RepositorySpace, error) {
	var out []RepositorySpace
	err := r.core.Parts().DB.View(ctx, func(tx stowage.Tx) error {
		repos, err := tx.Usage().LargestRepositories(n)
		for _, ru := range repos {
			out = append(out, space(ru))
		}
		return err
	})
	return out, err
}

func space(ru stowage.RepositoryUsage) RepositorySpace {
	return RepositorySpace{Name: ru.Name, ReferencedBytes: ru.ReferencedBytes, UniqueBytes: ru.UniqueBytes,
		SharedBytes: ru.ReferencedBytes - ru.UniqueBytes, Manifests: ru.Manifests, Tags: ru.Tags, Untagged: ru.UntaggedManifests}
}

// Repository answers "what uses space" for one repository, per manifest.
func (r *Reporter) Repository(ctx context.Context, repo string) (RepositoryDetail, error) {
	d, _, err := r.RepositoryPage(ctx, repo, "", 0)
	return d, err
}

// RepositoryPage is one repository's usage and one page of its manifests,
// newest first (created descending, then digest descending): those after the cursor
// `after` ("" = the first page), at most limit of them (limit <= 0: all).
// next is the cursor of the following page, "" after the last. A cursor
// carries the last row's creation time and digest, so it stays valid when
// that manifest has been deleted meanwhile.
func (r *Reporter) RepositoryPage(ctx context.Context, repo, after string, limit int) (d RepositoryDetail, next string, err error) {
	cur, err := ParseCursor(after)
	if err != nil {
		return d, "", err
	}
	d.Continued = after != ""
	err = r.core.Parts().DB.View(ctx, func(tx stowage.Tx) error {
		summary := tx.Usage().RepositoryUsageOf
		if d.Continued {
			summary = tx.Usage().RepositoryKept
		}
		ru, err := summary(repo)
		if errors.Is(err, stowage.ErrNotFound) {
			return stowage.Errorf(stowage.CodeNameUnknown, "repository %s does not exist", repo)
		} else if err != nil {
			return err
		}
		d.RepositorySpace = space(ru)
		if d.Continued {
			d.UniqueBytes, d.SharedBytes = 0, 0 // not computed
		}
		fetch := 0
		if limit > 0 {
			fetch = limit + 1
		}
		ms, err := tx.Usage().ManifestUsage(repo, cur, fetch)
		if err != nil {
			return err
		}
		if limit > 0 && len(ms) > limit {
			ms = ms[:limit]
			next = FormatCursor(stowage.ManifestCursor{Created: ms[limit-1].Created, Digest: ms[limit-1].Digest})
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
	return d, next, err
}

// cursor is a manifest page's cursor as it travels: base64url (no padding)
// of this JSON, as the ACR listings' time-ordered cursors.
type cursor struct {
	At  int64  `json:"t"`
	Key string `json:"k"`
}

// FormatCursor is the text of a manifest page's cursor.
func FormatCursor(c stowage.ManifestCursor) string {
	b, _ := json.Marshal(cursor{At: c.Created.UnixNano(), Key: string(c.Digest)})
	return base64.RawURLEncoding.EncodeToString(b)
}

// ParseCursor reads FormatCursor's text ("": the start).
func ParseCursor(s string) (stowage.ManifestCursor, error) {
	if s == "" {
		return stowage.ManifestCursor{}, nil
	}
	var c cursor
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil || c.Key == "" {
		return stowage.ManifestCursor{}, stowage.Errorf(stowage.CodePaginationInvalid, "invalid last=%q: use the value from the Link header", s)
	}
	return stowage.ManifestCursor{Created: time.Unix(0, c.At), Digest: stowage.Digest(c.Key)}, nil
}
