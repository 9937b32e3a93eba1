-- Stowage metadata, version 1. Times are Unix nanoseconds.
CREATE TABLE repositories (
	name    TEXT PRIMARY KEY,
	created INTEGER NOT NULL,
	updated INTEGER NOT NULL
) WITHOUT ROWID;

-- One row per stored digest, for the whole registry.
CREATE TABLE blobs (
	digest  TEXT PRIMARY KEY,
	size    INTEGER NOT NULL,
	created INTEGER NOT NULL
) WITHOUT ROWID;

-- A blob is pullable from a repository only if it was pushed or mounted there.
CREATE TABLE repository_blobs (
	repo    TEXT NOT NULL,
	digest  TEXT NOT NULL,
	created INTEGER NOT NULL,
	PRIMARY KEY (repo, digest)
) WITHOUT ROWID;
CREATE INDEX repository_blobs_digest ON repository_blobs (digest);

CREATE TABLE manifests (
	repo          TEXT NOT NULL,
	digest        TEXT NOT NULL,
	media_type    TEXT NOT NULL,
	artifact_type TEXT NOT NULL DEFAULT '',
	size          INTEGER NOT NULL,
	subject       TEXT NOT NULL DEFAULT '',
	annotations   TEXT NOT NULL DEFAULT '',
	created       INTEGER NOT NULL,
	PRIMARY KEY (repo, digest)
) WITHOUT ROWID;
CREATE INDEX manifests_subject ON manifests (repo, subject) WHERE subject <> '';
CREATE INDEX manifests_digest ON manifests (digest);

-- Config, layers and index children held by each manifest.
CREATE TABLE manifest_references (
	repo   TEXT NOT NULL,
	parent TEXT NOT NULL,
	child  TEXT NOT NULL,
	kind   TEXT NOT NULL,
	PRIMARY KEY (repo, parent, child)
) WITHOUT ROWID;
CREATE INDEX manifest_references_child ON manifest_references (child, repo);

CREATE TABLE tags (
	repo    TEXT NOT NULL,
	name    TEXT NOT NULL,
	digest  TEXT NOT NULL,
	updated INTEGER NOT NULL,
	PRIMARY KEY (repo, name)
) WITHOUT ROWID;
CREATE INDEX tags_digest ON tags (repo, digest);

CREATE TABLE uploads (
	id         TEXT PRIMARY KEY,
	repo       TEXT NOT NULL,
	size       INTEGER NOT NULL,
	hash_state BLOB,
	chunks     INTEGER NOT NULL DEFAULT 0,
	started    INTEGER NOT NULL,
	updated    INTEGER NOT NULL
) WITHOUT ROWID;
