-- Usage kept as rows change: the tables and meanings of SQLite's migration
-- 0021 (read its comment), kept by trigger functions.
--
-- Concurrency (Update runs SERIALIZABLE): the triggers read and write only
-- rows of the repository being written (its usage_digests rows, its
-- repository_usage row) plus, for a blob row that changes, the rows of that
-- digest; they never look at other repositories' use of a shared layer, so
-- pushes of different repositories that share a base layer do not conflict.
-- The registry's sums of repositories are spread over 64 usage_totals rows
-- (by a hash of the repository), so such pushes rarely update the same
-- row; only the sum means anything. The live blobs' count and bytes are
-- two more columns of held_bytes, whose row a blob's change updates
-- already: one row lock per blob change, not two.
--
-- Lock order (no deadlocks; PostgreSQL detects one only after
-- deadlock_timeout, 1 s by default, which a push then waits): a
-- transaction locks a repository's rows in the order repositories (the
-- tags_version trigger updates it), repository_usage, usage_totals.
-- usage_repo takes the repositories row first, so a manifest insert
-- (which reaches repository_usage before its tag reaches tags_version)
-- and a tag delete (tags_version first) cannot wait on each other in a
-- cycle. A blob row's change locks a held_bytes row; a transaction that
-- also writes a repository's rows takes them first (the engine's blob
-- upload and manifest push both touch the repositories row before the
-- blob's), so a held_bytes row is never held while one waits for them.
CREATE TABLE usage_digests (
	repo      TEXT COLLATE "C" NOT NULL,
	digest    TEXT COLLATE "C" NOT NULL,
	manifest  INTEGER NOT NULL DEFAULT 0,
	blob_refs INTEGER NOT NULL DEFAULT 0,
	holds     INTEGER NOT NULL DEFAULT 0,
	size      BIGINT NOT NULL DEFAULT 0,
	PRIMARY KEY (repo, digest)
);

CREATE TABLE repository_usage (
	repo             TEXT COLLATE "C" PRIMARY KEY,
	referenced_bytes BIGINT NOT NULL DEFAULT 0,
	manifests        BIGINT NOT NULL DEFAULT 0,
	tags             BIGINT NOT NULL DEFAULT 0,
	untagged         BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE usage_totals (
	shard            SMALLINT PRIMARY KEY,
	repositories     BIGINT NOT NULL DEFAULT 0,
	referenced_bytes BIGINT NOT NULL DEFAULT 0,
	manifests        BIGINT NOT NULL DEFAULT 0,
	tags             BIGINT NOT NULL DEFAULT 0,
	untagged         BIGINT NOT NULL DEFAULT 0
);

-- Backfill: one grouped pass over each table, before the triggers exist
-- (the indexes come after the rows: one sort each).
INSERT INTO usage_digests (repo, digest, manifest, blob_refs, holds, size)
	SELECT x.repo, x.d, sum(x.m), sum(x.b), sum(x.h), COALESCE(max(bl.size), 0) FROM (
		SELECT repo, digest AS d, 1 AS m, 0 AS b, 0 AS h FROM manifests
		UNION ALL SELECT repo, child, 0, CASE WHEN kind = 'blob' THEN 1 ELSE 0 END, 1 FROM manifest_references
		UNION ALL SELECT repo, digest, 0, 0, 1 FROM tags
	) x LEFT JOIN blobs bl ON bl.digest = x.d GROUP BY x.repo, x.d;
CREATE INDEX usage_digests_used ON usage_digests (digest, repo) WHERE manifest + blob_refs > 0;
CREATE INDEX usage_digests_digest ON usage_digests (digest);
INSERT INTO repository_usage (repo, referenced_bytes, manifests, tags, untagged)
	SELECT repo, sum(r), sum(m), sum(t), sum(u) FROM (
		SELECT repo, CASE WHEN manifest + blob_refs > 0 THEN size ELSE 0 END AS r, manifest AS m, 0 AS t,
			CASE WHEN manifest > 0 AND holds = 0 THEN 1 ELSE 0 END AS u FROM usage_digests
		UNION ALL SELECT repo, 0, 0, count(*), 0 FROM tags GROUP BY repo
		UNION ALL SELECT name, 0, 0, 0, 0 FROM repositories
	) x GROUP BY repo;
CREATE INDEX repository_usage_size ON repository_usage (referenced_bytes, repo);
-- A page of a repository's manifests (usage, newest first) and the
-- retention pass walk (repo, created, digest): with the digest in the
-- index a page is a backward range scan that stops at its limit (on
-- SQLite the index holds the digest already: manifests is WITHOUT ROWID).
DROP INDEX manifests_created;
CREATE INDEX manifests_created ON manifests (repo, created, digest);
INSERT INTO usage_totals (shard) SELECT g FROM generate_series(0, 63) AS g;
UPDATE usage_totals SET
	repositories = (SELECT count(*) FROM repositories),
	referenced_bytes = (SELECT COALESCE(sum(referenced_bytes), 0) FROM repository_usage),
	manifests = (SELECT COALESCE(sum(manifests), 0) FROM repository_usage),
	tags = (SELECT COALESCE(sum(tags), 0) FROM repository_usage),
	untagged = (SELECT COALESCE(sum(untagged), 0) FROM repository_usage)
	WHERE shard = 0;

-- The live blobs' count and bytes, on held_bytes's rows (by the digest),
-- now 64 of them like usage_totals: a blob's change (its pending row, then
-- live) takes one row lock, and concurrent pushes rarely share it. Only the
-- sums mean anything, so the new rows start at zero.
ALTER TABLE held_bytes ADD COLUMN blobs BIGINT NOT NULL DEFAULT 0, ADD COLUMN live_bytes BIGINT NOT NULL DEFAULT 0;
INSERT INTO held_bytes (shard, bytes) SELECT g, 0 FROM generate_series(16, 63) AS g;
UPDATE held_bytes h SET blobs = s.n, live_bytes = s.b
	FROM (SELECT hashtext(digest) & 63 AS shard, count(*) AS n, sum(size) AS b FROM blobs
		WHERE state = 'live' GROUP BY 1) s
	WHERE h.shard = s.shard;
CREATE OR REPLACE FUNCTION held_bytes_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	d BIGINT := 0;
	n BIGINT := 0;
	b BIGINT := 0;
	k TEXT;
BEGIN
	IF TG_OP IN ('UPDATE', 'DELETE') THEN
		IF OLD.state IN ('pending', 'live') THEN d := d - OLD.size; END IF;
		IF OLD.state = 'live' THEN n := n - 1; b := b - OLD.size; END IF;
	END IF;
	IF TG_OP IN ('UPDATE', 'INSERT') THEN
		IF NEW.state IN ('pending', 'live') THEN d := d + NEW.size; END IF;
		IF NEW.state = 'live' THEN n := n + 1; b := b + NEW.size; END IF;
	END IF;
	IF d <> 0 OR n <> 0 OR b <> 0 THEN
		IF TG_OP = 'DELETE' THEN k := OLD.digest; ELSE k := NEW.digest; END IF;
		UPDATE held_bytes SET bytes = bytes + d, blobs = blobs + n, live_bytes = live_bytes + b
			WHERE shard = hashtext(k) & 63;
	END IF;
	RETURN NULL;
END $$;

-- usage_count moves the counts of (r, d) by the deltas: the row is made if
-- missing (with the blob's size) and deleted once all 0.
CREATE FUNCTION usage_count(r TEXT, d TEXT, dm INTEGER, db INTEGER, dh INTEGER) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	IF dm < 0 OR db < 0 OR dh < 0 THEN
		UPDATE usage_digests SET manifest = manifest + dm, blob_refs = blob_refs + db, holds = holds + dh
			WHERE repo = r AND digest = d;
		DELETE FROM usage_digests WHERE repo = r AND digest = d AND manifest = 0 AND blob_refs = 0 AND holds = 0;
	ELSE
		INSERT INTO usage_digests AS u (repo, digest, manifest, blob_refs, holds, size)
			VALUES (r, d, dm, db, dh, COALESCE((SELECT size FROM blobs WHERE digest = d), 0))
			ON CONFLICT (repo, digest) DO UPDATE SET manifest = u.manifest + dm, blob_refs = u.blob_refs + db, holds = u.holds + dh;
	END IF;
END $$;

-- usage_repo adds deltas to a repository's row and to the totals.
CREATE FUNCTION usage_repo(r TEXT, dr BIGINT, dm BIGINT, dt BIGINT, du BIGINT) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	IF dr = 0 AND dm = 0 AND dt = 0 AND du = 0 THEN
		RETURN;
	END IF;
	-- The lock order of the header: the repositories row first.
	PERFORM 1 FROM repositories WHERE name = r FOR NO KEY UPDATE;
	INSERT INTO repository_usage AS u (repo, referenced_bytes, manifests, tags, untagged) VALUES (r, dr, dm, dt, du)
		ON CONFLICT (repo) DO UPDATE SET referenced_bytes = u.referenced_bytes + dr, manifests = u.manifests + dm,
			tags = u.tags + dt, untagged = u.untagged + du;
	-- The row outlives the repositories row while rows of the repository
	-- remain (the engine's bulk repository delete removes the repositories
	-- row first); the last of them takes it away.
	DELETE FROM repository_usage WHERE repo = r AND referenced_bytes = 0 AND manifests = 0 AND tags = 0 AND untagged = 0
		AND NOT EXISTS (SELECT 1 FROM repositories WHERE name = r);
	UPDATE usage_totals SET referenced_bytes = referenced_bytes + dr, manifests = manifests + dm, tags = tags + dt,
		untagged = untagged + du WHERE shard = hashtext(r) & 63;
END $$;

CREATE FUNCTION usage_manifests_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'UPDATE' THEN
		IF OLD.repo = NEW.repo AND OLD.digest = NEW.digest THEN
			RETURN NULL;
		END IF;
	END IF;
	IF TG_OP IN ('UPDATE', 'DELETE') THEN
		PERFORM usage_count(OLD.repo, OLD.digest, -1, 0, 0);
	END IF;
	IF TG_OP IN ('UPDATE', 'INSERT') THEN
		PERFORM usage_count(NEW.repo, NEW.digest, 1, 0, 0);
	END IF;
	RETURN NULL;
END $$;
CREATE TRIGGER usage_manifests AFTER INSERT OR UPDATE OF repo, digest OR DELETE ON manifests
	FOR EACH ROW EXECUTE FUNCTION usage_manifests_change();

CREATE FUNCTION usage_refs_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'UPDATE' THEN
		IF OLD.repo = NEW.repo AND OLD.child = NEW.child AND OLD.kind = NEW.kind THEN
			RETURN NULL;
		END IF;
	END IF;
	IF TG_OP IN ('UPDATE', 'DELETE') THEN
		PERFORM usage_count(OLD.repo, OLD.child, 0, CASE WHEN OLD.kind = 'blob' THEN -1 ELSE 0 END, -1);
	END IF;
	IF TG_OP IN ('UPDATE', 'INSERT') THEN
		PERFORM usage_count(NEW.repo, NEW.child, 0, CASE WHEN NEW.kind = 'blob' THEN 1 ELSE 0 END, 1);
	END IF;
	RETURN NULL;
END $$;
CREATE TRIGGER usage_refs AFTER INSERT OR UPDATE OF repo, child, kind OR DELETE ON manifest_references
	FOR EACH ROW EXECUTE FUNCTION usage_refs_change();

CREATE FUNCTION usage_tags_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'UPDATE' THEN
		IF OLD.repo = NEW.repo AND OLD.digest = NEW.digest THEN
			RETURN NULL;
		END IF;
	END IF;
	IF TG_OP IN ('UPDATE', 'DELETE') THEN
		PERFORM usage_count(OLD.repo, OLD.digest, 0, 0, -1);
		PERFORM usage_repo(OLD.repo, 0, 0, -1, 0);
	END IF;
	IF TG_OP IN ('UPDATE', 'INSERT') THEN
		PERFORM usage_count(NEW.repo, NEW.digest, 0, 0, 1);
		PERFORM usage_repo(NEW.repo, 0, 0, 1, 0);
	END IF;
	RETURN NULL;
END $$;
CREATE TRIGGER usage_tags AFTER INSERT OR UPDATE OF repo, digest OR DELETE ON tags
	FOR EACH ROW EXECUTE FUNCTION usage_tags_change();

-- A blob's size reaches the rows of its digest (a blob row may come after
-- a reference to it, or go while one remains). The live blobs' count and
-- bytes are held_bytes's (above).
CREATE FUNCTION usage_blobs_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'DELETE' THEN
		UPDATE usage_digests SET size = 0 WHERE digest = OLD.digest AND size <> 0;
	ELSIF TG_OP = 'INSERT' OR OLD.size <> NEW.size THEN
		UPDATE usage_digests SET size = NEW.size WHERE digest = NEW.digest AND size <> NEW.size;
	END IF;
	RETURN NULL;
END $$;
CREATE TRIGGER usage_blobs AFTER INSERT OR UPDATE OF size OR DELETE ON blobs
	FOR EACH ROW EXECUTE FUNCTION usage_blobs_change();

-- A change of usage_digests moves its repository's row (usage_digests is
-- written by the functions above only).
CREATE FUNCTION usage_digests_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	dr BIGINT := 0;
	dm BIGINT := 0;
	du BIGINT := 0;
	r TEXT;
BEGIN
	IF TG_OP IN ('UPDATE', 'DELETE') THEN
		r := OLD.repo;
		IF OLD.manifest + OLD.blob_refs > 0 THEN dr := dr - OLD.size; END IF;
		dm := dm - OLD.manifest;
		IF OLD.manifest > 0 AND OLD.holds = 0 THEN du := du - 1; END IF;
	END IF;
	IF TG_OP IN ('UPDATE', 'INSERT') THEN
		r := NEW.repo;
		IF NEW.manifest + NEW.blob_refs > 0 THEN dr := dr + NEW.size; END IF;
		dm := dm + NEW.manifest;
		IF NEW.manifest > 0 AND NEW.holds = 0 THEN du := du + 1; END IF;
	END IF;
	PERFORM usage_repo(r, dr, dm, 0, du);
	RETURN NULL;
END $$;
CREATE TRIGGER usage_digests AFTER INSERT OR UPDATE OR DELETE ON usage_digests
	FOR EACH ROW EXECUTE FUNCTION usage_digests_change();

CREATE FUNCTION usage_repositories_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'INSERT' THEN
		UPDATE usage_totals SET repositories = repositories + 1 WHERE shard = hashtext(NEW.name) & 63;
		INSERT INTO repository_usage (repo) VALUES (NEW.name) ON CONFLICT DO NOTHING;
	ELSE
		UPDATE usage_totals SET repositories = repositories - 1 WHERE shard = hashtext(OLD.name) & 63;
		DELETE FROM repository_usage WHERE repo = OLD.name AND referenced_bytes = 0 AND manifests = 0 AND tags = 0 AND untagged = 0;
	END IF;
	RETURN NULL;
END $$;
CREATE TRIGGER usage_repositories AFTER INSERT OR DELETE ON repositories
	FOR EACH ROW EXECUTE FUNCTION usage_repositories_change();
