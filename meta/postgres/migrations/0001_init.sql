-- Stowage metadata on PostgreSQL, version 1: SQLite's migrations 0001-0008
-- folded into one schema, with the same tables, columns and meanings.
--
-- Times are Unix nanoseconds in BIGINT, exactly as SQLite stores them, so
-- rows copy across unchanged (stowage migrate-metadata) and comparisons are
-- plain integer ones. Names, digests and IDs are TEXT COLLATE "C": listings
-- and "after" cursors are in byte order whatever the database's locale, and
-- their indexes compare bytes. JSON values stay TEXT, as in SQLite: jsonb
-- would refuse "\u0000" in an annotation that SQLite keeps.
--
-- There are no foreign keys, as in SQLite: a link or tag may name a
-- repository or blob row that does not exist (yet), and Registry decides.

CREATE TABLE repositories (
	name         TEXT COLLATE "C" PRIMARY KEY,
	created      BIGINT NOT NULL,
	updated      BIGINT NOT NULL,
	-- Moves whenever a tag of the repository is created, moved or deleted
	-- (the trigger below), so readers can cache tag data and check it with
	-- one point query, whichever node wrote the tag.
	tags_version BIGINT NOT NULL DEFAULT 0,
	-- ACR's changeable attributes, as a bit set of what is disabled:
	-- 1 write, 2 delete, 4 read, 8 list. 0 = everything enabled.
	locks        INTEGER NOT NULL DEFAULT 0
);

-- One row per stored digest, for the whole registry. Online GC with a fence:
--   state: 'pending'  reserved by an upload that is writing the object (invisible);
--          'live'     stored and visible where linked;
--          'deleting' being collected: its object is being deleted (invisible;
--                     writers of the same digest wait until the row is gone).
--   last_used:          the lease: last HEAD/GET/upload/mount of the blob.
--   unreferenced_since: when it was created or last lost a reference; the grace
--                       period counts from here.
CREATE TABLE blobs (
	digest             TEXT COLLATE "C" PRIMARY KEY,
	size               BIGINT NOT NULL,
	created            BIGINT NOT NULL,
	state              TEXT NOT NULL DEFAULT 'live',
	last_used          BIGINT NOT NULL DEFAULT 0,
	unreferenced_since BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX blobs_state ON blobs (state, digest);

-- A blob is pullable from a repository only if it was pushed or mounted there.
CREATE TABLE repository_blobs (
	repo    TEXT COLLATE "C" NOT NULL,
	digest  TEXT COLLATE "C" NOT NULL,
	created BIGINT NOT NULL,
	PRIMARY KEY (repo, digest)
);
CREATE INDEX repository_blobs_digest ON repository_blobs (digest);

CREATE TABLE manifests (
	repo           TEXT COLLATE "C" NOT NULL,
	digest         TEXT COLLATE "C" NOT NULL,
	media_type     TEXT NOT NULL,
	artifact_type  TEXT NOT NULL DEFAULT '',
	size           BIGINT NOT NULL,
	subject        TEXT COLLATE "C" NOT NULL DEFAULT '',
	annotations    TEXT NOT NULL DEFAULT '', -- JSON object, '' if none
	created        BIGINT NOT NULL,
	-- When the manifest lost its last tag (0: never tagged, retention counts
	-- from created).
	untagged_since BIGINT NOT NULL DEFAULT 0,
	locks          INTEGER NOT NULL DEFAULT 0,
	-- The platform an image manifest's config declares (for listings).
	architecture   TEXT NOT NULL DEFAULT '',
	os             TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (repo, digest)
);
CREATE INDEX manifests_subject ON manifests (repo, subject) WHERE subject <> '';
CREATE INDEX manifests_digest ON manifests (digest);
CREATE INDEX manifests_created ON manifests (repo, created);

-- Config, layers and index children held by each manifest.
CREATE TABLE manifest_references (
	repo   TEXT COLLATE "C" NOT NULL,
	parent TEXT COLLATE "C" NOT NULL,
	child  TEXT COLLATE "C" NOT NULL,
	kind   TEXT NOT NULL, -- 'blob' or 'manifest'
	PRIMARY KEY (repo, parent, child)
);
CREATE INDEX manifest_references_child ON manifest_references (child, repo);

CREATE TABLE tags (
	repo    TEXT COLLATE "C" NOT NULL,
	name    TEXT COLLATE "C" NOT NULL,
	digest  TEXT COLLATE "C" NOT NULL,
	updated BIGINT NOT NULL,
	created BIGINT NOT NULL, -- when the tag was first created
	locks   INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (repo, name)
);
CREATE INDEX tags_digest ON tags (repo, digest);
CREATE INDEX tags_updated ON tags (repo, updated);

-- Every change of a tag row (create, move, lock, delete) moves its
-- repository's tags_version in the same transaction, whoever writes.
CREATE FUNCTION tags_version_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'DELETE' THEN
		UPDATE repositories SET tags_version = tags_version + 1 WHERE name = OLD.repo;
	ELSE
		UPDATE repositories SET tags_version = tags_version + 1 WHERE name = NEW.repo;
	END IF;
	RETURN NULL;
END
$$;
CREATE TRIGGER tags_version AFTER INSERT OR UPDATE OR DELETE ON tags
	FOR EACH ROW EXECUTE FUNCTION tags_version_bump();

CREATE TABLE uploads (
	id         TEXT COLLATE "C" PRIMARY KEY,
	repo       TEXT COLLATE "C" NOT NULL,
	size       BIGINT NOT NULL,
	hash_state BYTEA,
	chunks     INTEGER NOT NULL DEFAULT 0,
	started    BIGINT NOT NULL,
	updated    BIGINT NOT NULL
);
CREATE INDEX uploads_updated ON uploads (updated);
CREATE INDEX uploads_repo ON uploads (repo);

-- Registry-wide settings (policies, last job results), as JSON values.
CREATE TABLE settings (
	key     TEXT COLLATE "C" PRIMARY KEY,
	value   TEXT NOT NULL,
	updated BIGINT NOT NULL
);

-- Soft delete: deleted manifests wait here, restorable, until they expire.
-- recycle_refs keeps what they reference away from the collector meanwhile.
CREATE TABLE recycle_bin (
	id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- never reused
	repo    TEXT COLLATE "C" NOT NULL,
	digest  TEXT COLLATE "C" NOT NULL,
	record  TEXT NOT NULL, -- the manifest row, JSON
	refs    TEXT NOT NULL, -- its references, JSON
	tags    TEXT NOT NULL, -- the tags it had, JSON
	deleted BIGINT NOT NULL,
	expires BIGINT NOT NULL
);
CREATE INDEX recycle_bin_expires ON recycle_bin (expires);
CREATE INDEX recycle_bin_repo ON recycle_bin (repo, digest);
CREATE INDEX recycle_bin_deleted ON recycle_bin (deleted, id);
CREATE TABLE recycle_refs (
	bin_id BIGINT NOT NULL,
	digest TEXT COLLATE "C" NOT NULL,
	PRIMARY KEY (bin_id, digest)
);
CREATE INDEX recycle_refs_digest ON recycle_refs (digest);

-- Wrapped data keys of encrypted storage objects (storage/crypt). An object's
-- header names its data key by id; rotation rewraps these rows in place.
CREATE TABLE data_keys (
	id          TEXT COLLATE "C" PRIMARY KEY,
	object      TEXT COLLATE "C" NOT NULL,
	key_id      TEXT COLLATE "C" NOT NULL,
	key_version BIGINT NOT NULL, -- a uint32
	wrapped     BYTEA NOT NULL,
	created     BIGINT NOT NULL
);
CREATE INDEX data_keys_object ON data_keys (object);
CREATE INDEX data_keys_version ON data_keys (key_id, key_version);
