package postgres

import (
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stowage/stowage"
)

// The reads that let a delete cost what it deletes (docs/performance.md,
// "Cost at scale"): what a set of digests frees in one query, a whole
// repository's references in one query, and the registry's untagged
// manifests a page at a time.
const (
	// The repository left out is skipped by two range seeks (repo below,
	// repo above), so a digest it uses 100,000 times is not scanned past.
	sqlUnreferencedBlobs = `SELECT ` + blobColumns + ` FROM blobs b WHERE digest = ANY($1)
		AND NOT EXISTS (SELECT 1 FROM manifest_references r WHERE r.child = b.digest AND r.repo < $2)
		AND NOT EXISTS (SELECT 1 FROM manifest_references r WHERE r.child = b.digest AND r.repo > $2)
		AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.digest = b.digest AND m.repo < $2)
		AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.digest = b.digest AND m.repo > $2)
		AND NOT EXISTS (SELECT 1 FROM recycle_refs x WHERE x.digest = b.digest)
		ORDER BY digest`
	// A range of the index manifests_created (repo, created) from the
	// position, with the conditions of sqlUntaggedManifests.
	sqlUntaggedManifestsAfter = `SELECT ` + manifestColumns + ` FROM manifests m WHERE (repo, created, digest) > ($1, $2, $3)
		AND (CASE WHEN untagged_since > 0 THEN untagged_since ELSE created END) <= $4
		AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo = m.repo AND t.digest = m.digest)
		AND NOT EXISTS (SELECT 1 FROM manifest_references p WHERE p.repo = m.repo AND p.child = m.digest)
		ORDER BY repo, created, digest LIMIT $5`
	sqlRepositoryRefs = `SELECT parent, child, kind FROM manifest_references WHERE repo = $1 ORDER BY parent, child`
)

func (t *Tx) UnreferencedBlobs(ds []stowage.Digest, except string) ([]stowage.BlobRecord, error) {
	if len(ds) == 0 {
		return nil, nil
	}
	digests := make([]string, len(ds))
	for i, d := range ds {
		digests[i] = string(d)
	}
	return t.blobs(sqlUnreferencedBlobs, digests, except)
}

func (t *Tx) UntaggedManifestsAfter(before time.Time, after stowage.ManifestRecord, limit int) ([]stowage.ManifestRecord, error) {
	created := int64(math.MinInt64)
	if after.Repo != "" {
		created = after.Created.UnixNano()
	}
	return t.manifests(sqlUntaggedManifestsAfter, after.Repo, created, string(after.Digest), before.UnixNano(), limitOf(limit))
}

func (t *Tx) RepositoryRefs(repo string) (map[stowage.Digest][]stowage.ManifestRef, error) {
	type edge struct{ parent, child, kind string }
	edges, err := all(t, sqlRepositoryRefs, []any{repo}, func(row pgx.CollectableRow) (edge, error) {
		var e edge
		err := row.Scan(&e.parent, &e.child, &e.kind)
		return e, err
	})
	if err != nil {
		return nil, err
	}
	out := map[stowage.Digest][]stowage.ManifestRef{}
	for _, e := range edges {
		out[stowage.Digest(e.parent)] = append(out[stowage.Digest(e.parent)], stowage.ManifestRef{Digest: stowage.Digest(e.child), Kind: stowage.RefKind(e.kind)})
	}
	return out, nil
}
