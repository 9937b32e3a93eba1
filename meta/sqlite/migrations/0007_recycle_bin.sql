-- Soft delete: deleted manifests wait here, restorable, until they expire.
-- recycle_refs keeps what they reference away from the collector meanwhile.
CREATE TABLE recycle_bin (
	id      INTEGER PRIMARY KEY AUTOINCREMENT,
	repo    TEXT NOT NULL,
	digest  TEXT NOT NULL,
	record  TEXT NOT NULL, -- the manifest row, JSON
	refs    TEXT NOT NULL, -- its references, JSON
	tags    TEXT NOT NULL, -- the tags it had, JSON
	deleted INTEGER NOT NULL,
	expires INTEGER NOT NULL
);
CREATE INDEX recycle_bin_expires ON recycle_bin (expires);
CREATE INDEX recycle_bin_repo ON recycle_bin (repo, digest);
CREATE TABLE recycle_refs (
	bin_id INTEGER NOT NULL,
	digest TEXT NOT NULL,
	PRIMARY KEY (bin_id, digest)
) WITHOUT ROWID;
CREATE INDEX recycle_refs_digest ON recycle_refs (digest);
