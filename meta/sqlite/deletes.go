package sqlite

import (
	"encoding/json"
	"math"
	"time"

	"github.com/stowage/stowage"
)

// The reads that let a delete cost what it deletes (docs/performance.md,
// "Cost at scale"): what a set of digests frees in one query, a whole
// repository's references in one query, and the registry's untagged
// manifests a page at a time.
const (
	// The digests arrive as one JSON array; each is a primary-key probe
	// and index probes, as sqlBlobReferenced. The repository left out is
	// skipped by two range seeks (repo below, repo above) on the indexes
	// (child, repo) and (digest, repo), so a digest it uses 100,000 times
	// is not scanned past; with '' the first seek finds nothing and the
	// second is sqlBlobReferenced's.
	sqlUnreferencedBlobs = `SELECT ` + blobColumns + ` FROM blobs b WHERE digest IN (SELECT value FROM json_each(?1))
		AND NOT EXISTS (SELECT 1 FROM manifest_references r WHERE r.child = b.digest AND r.repo < ?2)
		AND NOT EXISTS (SELECT 1 FROM manifest_references r WHERE r.child = b.digest AND r.repo > ?2)
		AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.digest = b.digest AND m.repo < ?2)
		AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.digest = b.digest AND m.repo > ?2)
		AND NOT EXISTS (SELECT 1 FROM recycle_refs x WHERE x.digest = b.digest)
		ORDER BY digest`
	// A range of the index manifests_created (repo, created, digest) from
	// the position, with the conditions of sqlUntaggedManifests.
	sqlUntaggedManifestsAfter = `SELECT ` + manifestColumns + ` FROM manifests m WHERE (repo, created, digest) > (?, ?, ?)
		AND (CASE WHEN untagged_since > 0 THEN untagged_since ELSE created END) <= ?
		AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo = m.repo AND t.digest = m.digest)
		AND NOT EXISTS (SELECT 1 FROM manifest_references p WHERE p.repo = m.repo AND p.child = m.digest)
		ORDER BY repo, created, digest LIMIT ?`
	sqlRepositoryRefs = `SELECT parent, child, kind FROM manifest_references WHERE repo = ? ORDER BY parent, child`
)

// deleteQueries are prepared once per pool, as allQueries.
var deleteQueries = []string{sqlUnreferencedBlobs, sqlUntaggedManifestsAfter, sqlRepositoryRefs}

func (t *Tx) UnreferencedBlobs(ds []stowage.Digest, except string) ([]stowage.BlobRecord, error) {
	if len(ds) == 0 {
		return nil, nil
	}
	list, err := json.Marshal(ds)
	if err != nil {
		return nil, err
	}
	return t.blobs(sqlUnreferencedBlobs, string(list), except)
}

func (t *Tx) UntaggedManifestsAfter(before time.Time, after stowage.ManifestRecord, limit int) ([]stowage.ManifestRecord, error) {
	created := int64(math.MinInt64)
	if after.Repo != "" {
		created = after.Created.UnixNano()
	}
	rows, err := t.query(sqlUntaggedManifestsAfter, after.Repo, created, string(after.Digest), before.UnixNano(), limitOf(limit))
	return scanAll(rows, err, scanManifest)
}

func (t *Tx) RepositoryRefs(repo string) (map[stowage.Digest][]stowage.ManifestRef, error) {
	rows, err := t.query(sqlRepositoryRefs, repo)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[stowage.Digest][]stowage.ManifestRef{}
	for rows.Next() {
		var parent, child, kind string
		if err := rows.Scan(&parent, &child, &kind); err != nil {
			return nil, err
		}
		out[stowage.Digest(parent)] = append(out[stowage.Digest(parent)], stowage.ManifestRef{Digest: stowage.Digest(child), Kind: stowage.RefKind(kind)})
	}
	return out, rows.Err()
}
