package sqlite

// All SQL the Tx methods run, in one place. Open prepares every statement
// once per pool (database/sql then keeps one prepared copy per connection),
// because parsing SQL on each call was a quarter of a manifest GET's cost.
const manifestColumns = `repo, digest, media_type, artifact_type, size, subject, annotations, created`

const (
	sqlCreateRepository = `INSERT INTO repositories (name, created, updated) VALUES (?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET updated = excluded.updated`
	sqlGetRepository    = `SELECT created, updated, tags_version FROM repositories WHERE name = ?`
	sqlListRepositories = `SELECT group_concat(name, ',') FROM
		(SELECT name FROM repositories WHERE name > ? ORDER BY name LIMIT ?)`
	sqlPutBlob        = `INSERT INTO blobs (digest, size, created) VALUES (?, ?, ?) ON CONFLICT (digest) DO NOTHING`
	sqlGetBlob        = `SELECT size, created FROM blobs WHERE digest = ?`
	sqlLinkBlob       = `INSERT INTO repository_blobs (repo, digest, created) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`
	sqlUnlinkBlob     = `DELETE FROM repository_blobs WHERE repo = ? AND digest = ?`
	sqlRepositoryBlob = `SELECT b.size, b.created FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest
		WHERE rb.repo = ? AND rb.digest = ?`
	sqlPutManifest = `INSERT INTO manifests (repo, digest, media_type, artifact_type, size, subject, annotations, created)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (repo, digest) DO UPDATE SET media_type = excluded.media_type, artifact_type = excluded.artifact_type,
			size = excluded.size, subject = excluded.subject, annotations = excluded.annotations`
	sqlDeleteManifestRefs = `DELETE FROM manifest_references WHERE repo = ? AND parent = ?`
	sqlPutManifestRef     = `INSERT INTO manifest_references (repo, parent, child, kind) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING`
	sqlGetManifest        = `SELECT ` + manifestColumns + ` FROM manifests WHERE repo = ? AND digest = ?`
	sqlDeleteManifest     = `DELETE FROM manifests WHERE repo = ? AND digest = ?`
	sqlReferrers          = `SELECT ` + manifestColumns + ` FROM manifests WHERE repo = ? AND subject = ? ORDER BY digest`
	sqlPutTag             = `INSERT INTO tags (repo, name, digest, updated) VALUES (?, ?, ?, ?)
		ON CONFLICT (repo, name) DO UPDATE SET digest = excluded.digest, updated = excluded.updated`
	sqlGetTag = `SELECT digest FROM tags WHERE repo = ? AND name = ?`
	// The subquery walks the primary key (repo, name) in order, and
	// group_concat keeps the order rows arrive in: no sort is needed.
	sqlListTags = `SELECT group_concat(name, ',') FROM
		(SELECT name FROM tags WHERE repo = ? AND name > ? ORDER BY name LIMIT ?)`
	sqlTagsOf        = `SELECT name FROM tags WHERE repo = ? AND digest = ? ORDER BY name`
	sqlDeleteTag     = `DELETE FROM tags WHERE repo = ? AND name = ?`
	sqlPutUpload     = `INSERT INTO uploads (id, repo, size, hash_state, chunks, started, updated) VALUES (?, ?, ?, ?, ?, ?, ?)`
	sqlAdvanceUpload = `UPDATE uploads SET size = ?, hash_state = ?, chunks = ?, updated = ? WHERE id = ? AND size = ?`
	sqlGetUpload     = `SELECT repo, size, hash_state, chunks, started, updated FROM uploads WHERE id = ?`
	sqlDeleteUpload  = `DELETE FROM uploads WHERE id = ?`
)

var allQueries = []string{sqlCreateRepository, sqlGetRepository, sqlListRepositories, sqlPutBlob, sqlGetBlob, sqlLinkBlob, sqlUnlinkBlob, sqlRepositoryBlob, sqlPutManifest, sqlDeleteManifestRefs, sqlPutManifestRef, sqlGetManifest, sqlDeleteManifest, sqlReferrers, sqlPutTag, sqlGetTag, sqlListTags, sqlTagsOf, sqlDeleteTag, sqlPutUpload, sqlAdvanceUpload, sqlGetUpload, sqlDeleteUpload}
