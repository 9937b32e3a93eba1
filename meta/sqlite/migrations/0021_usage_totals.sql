-- Usage kept as rows change (issue 18, "cost at scale"): `stowage usage`
-- used to recompute every repository's row from manifests, references, tags
-- and blobs on every request (seconds at 100,000 manifests). Triggers now
-- keep, exactly and in the writing transaction, whoever writes (push,
-- delete, untag, GC, retention, replication, import, restore):
--
--   usage_digests     per (repository, digest): how its rows use the digest
--                     manifest   its manifest with that digest (0 or 1)
--                     blob_refs  references to it as a blob (config, layer)
--                     holds      tags pointing at it + references to it of
--                                any kind (a manifest with holds = 0 is
--                                untagged: no tag, no parent in the repository)
--                     size       the blob's size (0 without a blobs row)
--                     A digest is used (counts in referenced bytes) while
--                     manifest + blob_refs > 0. Rows whose counts are all
--                     0 are deleted.
--   repository_usage  per repository: referenced bytes (each used digest
--                     once), manifests, tags, untagged manifests. A missing
--                     row is all zero.
--   usage_totals      the registry's sums: live blobs and their bytes
--                     (physical), repositories, and the sums of
--                     repository_usage (logical bytes...). One row here;
--                     PostgreSQL spreads it over 64 rows (only the sum means
--                     anything).
--
-- Bytes unique to a repository stay computed when asked, by index probes
-- into usage_digests_used (the cost grows with that repository's digests).
-- All three tables are derived: never copied (meta/tables.Derived); loading
-- the copied tables rebuilds them through the triggers.
CREATE TABLE usage_digests (
	repo      TEXT NOT NULL,
	digest    TEXT NOT NULL,
	manifest  INTEGER NOT NULL DEFAULT 0,
	blob_refs INTEGER NOT NULL DEFAULT 0,
	holds     INTEGER NOT NULL DEFAULT 0,
	size      INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (repo, digest)
) WITHOUT ROWID;
-- Other users of a digest (unique bytes), and the rows a blob's size moves.
CREATE INDEX usage_digests_used ON usage_digests (digest, repo) WHERE manifest + blob_refs > 0;
CREATE INDEX usage_digests_digest ON usage_digests (digest);

CREATE TABLE repository_usage (
	repo             TEXT PRIMARY KEY,
	referenced_bytes INTEGER NOT NULL DEFAULT 0,
	manifests        INTEGER NOT NULL DEFAULT 0,
	tags             INTEGER NOT NULL DEFAULT 0,
	untagged         INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
-- The largest repositories (the web UI's overview).
CREATE INDEX repository_usage_size ON repository_usage (referenced_bytes, repo);

CREATE TABLE usage_totals (
	shard            INTEGER PRIMARY KEY,
	blobs            INTEGER NOT NULL DEFAULT 0,
	physical_bytes   INTEGER NOT NULL DEFAULT 0,
	repositories     INTEGER NOT NULL DEFAULT 0,
	referenced_bytes INTEGER NOT NULL DEFAULT 0,
	manifests        INTEGER NOT NULL DEFAULT 0,
	tags             INTEGER NOT NULL DEFAULT 0,
	untagged         INTEGER NOT NULL DEFAULT 0
);

-- Backfill: one grouped pass over each table, before the triggers exist.
INSERT INTO usage_digests (repo, digest, manifest, blob_refs, holds, size)
	SELECT x.repo, x.d, sum(x.m), sum(x.b), sum(x.h), coalesce((SELECT size FROM blobs WHERE digest = x.d), 0) FROM (
		SELECT repo, digest AS d, 1 AS m, 0 AS b, 0 AS h FROM manifests
		UNION ALL SELECT repo, child, 0, kind = 'blob', 1 FROM manifest_references
		UNION ALL SELECT repo, digest, 0, 0, 1 FROM tags
	) x GROUP BY x.repo, x.d;
INSERT INTO repository_usage (repo, referenced_bytes, manifests, tags, untagged)
	SELECT repo, sum(r), sum(m), sum(t), sum(u) FROM (
		SELECT repo, CASE WHEN manifest + blob_refs > 0 THEN size ELSE 0 END AS r, manifest AS m, 0 AS t,
			manifest > 0 AND holds = 0 AS u FROM usage_digests
		UNION ALL SELECT repo, 0, 0, count(*), 0 FROM tags GROUP BY repo
		UNION ALL SELECT name, 0, 0, 0, 0 FROM repositories
	) GROUP BY repo;
INSERT INTO usage_totals (shard, blobs, physical_bytes, repositories, referenced_bytes, manifests, tags, untagged)
	SELECT 0, (SELECT count(*) FROM blobs WHERE state = 'live'), (SELECT coalesce(sum(size), 0) FROM blobs WHERE state = 'live'),
		(SELECT count(*) FROM repositories),
		coalesce(sum(referenced_bytes), 0), coalesce(sum(manifests), 0), coalesce(sum(tags), 0), coalesce(sum(untagged), 0)
	FROM repository_usage;

-- Manifests, references and tags move the counts of usage_digests: a row
-- is made (all 0) if missing, counted, and deleted once all 0.
CREATE TRIGGER usage_manifests_insert AFTER INSERT ON manifests BEGIN
	INSERT INTO usage_digests (repo, digest, size)
		VALUES (NEW.repo, NEW.digest, coalesce((SELECT size FROM blobs WHERE digest = NEW.digest), 0)) ON CONFLICT DO NOTHING;
	UPDATE usage_digests SET manifest = manifest + 1 WHERE repo = NEW.repo AND digest = NEW.digest;
END;
CREATE TRIGGER usage_manifests_delete AFTER DELETE ON manifests BEGIN
	UPDATE usage_digests SET manifest = manifest - 1 WHERE repo = OLD.repo AND digest = OLD.digest;
	DELETE FROM usage_digests WHERE repo = OLD.repo AND digest = OLD.digest AND manifest = 0 AND blob_refs = 0 AND holds = 0;
END;
CREATE TRIGGER usage_manifests_update AFTER UPDATE OF repo, digest ON manifests
	WHEN OLD.repo <> NEW.repo OR OLD.digest <> NEW.digest BEGIN
	UPDATE usage_digests SET manifest = manifest - 1 WHERE repo = OLD.repo AND digest = OLD.digest;
	DELETE FROM usage_digests WHERE repo = OLD.repo AND digest = OLD.digest AND manifest = 0 AND blob_refs = 0 AND holds = 0;
	INSERT INTO usage_digests (repo, digest, size)
		VALUES (NEW.repo, NEW.digest, coalesce((SELECT size FROM blobs WHERE digest = NEW.digest), 0)) ON CONFLICT DO NOTHING;
	UPDATE usage_digests SET manifest = manifest + 1 WHERE repo = NEW.repo AND digest = NEW.digest;
END;

CREATE TRIGGER usage_refs_insert AFTER INSERT ON manifest_references BEGIN
	INSERT INTO usage_digests (repo, digest, size)
		VALUES (NEW.repo, NEW.child, coalesce((SELECT size FROM blobs WHERE digest = NEW.child), 0)) ON CONFLICT DO NOTHING;
	UPDATE usage_digests SET blob_refs = blob_refs + (NEW.kind = 'blob'), holds = holds + 1
		WHERE repo = NEW.repo AND digest = NEW.child;
END;
CREATE TRIGGER usage_refs_delete AFTER DELETE ON manifest_references BEGIN
	UPDATE usage_digests SET blob_refs = blob_refs - (OLD.kind = 'blob'), holds = holds - 1
		WHERE repo = OLD.repo AND digest = OLD.child;
	DELETE FROM usage_digests WHERE repo = OLD.repo AND digest = OLD.child AND manifest = 0 AND blob_refs = 0 AND holds = 0;
END;
CREATE TRIGGER usage_refs_update AFTER UPDATE OF repo, child, kind ON manifest_references
	WHEN OLD.repo <> NEW.repo OR OLD.child <> NEW.child OR OLD.kind <> NEW.kind BEGIN
	UPDATE usage_digests SET blob_refs = blob_refs - (OLD.kind = 'blob'), holds = holds - 1
		WHERE repo = OLD.repo AND digest = OLD.child;
	DELETE FROM usage_digests WHERE repo = OLD.repo AND digest = OLD.child AND manifest = 0 AND blob_refs = 0 AND holds = 0;
	INSERT INTO usage_digests (repo, digest, size)
		VALUES (NEW.repo, NEW.child, coalesce((SELECT size FROM blobs WHERE digest = NEW.child), 0)) ON CONFLICT DO NOTHING;
	UPDATE usage_digests SET blob_refs = blob_refs + (NEW.kind = 'blob'), holds = holds + 1
		WHERE repo = NEW.repo AND digest = NEW.child;
END;

CREATE TRIGGER usage_tags_insert AFTER INSERT ON tags BEGIN
	INSERT INTO usage_digests (repo, digest, size)
		VALUES (NEW.repo, NEW.digest, coalesce((SELECT size FROM blobs WHERE digest = NEW.digest), 0)) ON CONFLICT DO NOTHING;
	UPDATE usage_digests SET holds = holds + 1 WHERE repo = NEW.repo AND digest = NEW.digest;
	INSERT INTO repository_usage (repo) VALUES (NEW.repo) ON CONFLICT DO NOTHING;
	UPDATE repository_usage SET tags = tags + 1 WHERE repo = NEW.repo;
END;
CREATE TRIGGER usage_tags_delete AFTER DELETE ON tags BEGIN
	UPDATE usage_digests SET holds = holds - 1 WHERE repo = OLD.repo AND digest = OLD.digest;
	DELETE FROM usage_digests WHERE repo = OLD.repo AND digest = OLD.digest AND manifest = 0 AND blob_refs = 0 AND holds = 0;
	INSERT INTO repository_usage (repo) VALUES (OLD.repo) ON CONFLICT DO NOTHING;
	UPDATE repository_usage SET tags = tags - 1 WHERE repo = OLD.repo;
END;
CREATE TRIGGER usage_tags_update AFTER UPDATE OF repo, digest ON tags
	WHEN OLD.repo <> NEW.repo OR OLD.digest <> NEW.digest BEGIN
	UPDATE usage_digests SET holds = holds - 1 WHERE repo = OLD.repo AND digest = OLD.digest;
	DELETE FROM usage_digests WHERE repo = OLD.repo AND digest = OLD.digest AND manifest = 0 AND blob_refs = 0 AND holds = 0;
	INSERT INTO usage_digests (repo, digest, size)
		VALUES (NEW.repo, NEW.digest, coalesce((SELECT size FROM blobs WHERE digest = NEW.digest), 0)) ON CONFLICT DO NOTHING;
	UPDATE usage_digests SET holds = holds + 1 WHERE repo = NEW.repo AND digest = NEW.digest;
	INSERT INTO repository_usage (repo) VALUES (OLD.repo) ON CONFLICT DO NOTHING;
	UPDATE repository_usage SET tags = tags - 1 WHERE repo = OLD.repo;
	INSERT INTO repository_usage (repo) VALUES (NEW.repo) ON CONFLICT DO NOTHING;
	UPDATE repository_usage SET tags = tags + 1 WHERE repo = NEW.repo;
END;

-- A blob's size reaches the rows of its digest (a blob row may come after
-- a reference to it, or go while one remains).
CREATE TRIGGER usage_blobs_insert AFTER INSERT ON blobs BEGIN
	UPDATE usage_digests SET size = NEW.size WHERE digest = NEW.digest AND size <> NEW.size;
	UPDATE usage_totals SET blobs = blobs + (NEW.state = 'live'), physical_bytes = physical_bytes + (NEW.state = 'live') * NEW.size
		WHERE shard = 0;
END;
CREATE TRIGGER usage_blobs_delete AFTER DELETE ON blobs BEGIN
	UPDATE usage_digests SET size = 0 WHERE digest = OLD.digest AND size <> 0;
	UPDATE usage_totals SET blobs = blobs - (OLD.state = 'live'), physical_bytes = physical_bytes - (OLD.state = 'live') * OLD.size
		WHERE shard = 0;
END;
CREATE TRIGGER usage_blobs_resize AFTER UPDATE OF size ON blobs WHEN OLD.size <> NEW.size BEGIN
	UPDATE usage_digests SET size = NEW.size WHERE digest = NEW.digest AND size <> NEW.size;
END;
CREATE TRIGGER usage_blobs_live AFTER UPDATE OF size, state ON blobs
	WHEN OLD.size <> NEW.size OR (OLD.state = 'live') <> (NEW.state = 'live') BEGIN
	UPDATE usage_totals SET blobs = blobs - (OLD.state = 'live') + (NEW.state = 'live'),
		physical_bytes = physical_bytes - (OLD.state = 'live') * OLD.size + (NEW.state = 'live') * NEW.size
		WHERE shard = 0;
END;

-- A change of usage_digests moves its repository's row (usage_digests is
-- written by the triggers above only: a row is inserted all 0, deleted all 0).
CREATE TRIGGER usage_digests_update AFTER UPDATE ON usage_digests
	WHEN (OLD.manifest + OLD.blob_refs > 0) <> (NEW.manifest + NEW.blob_refs > 0) OR OLD.size <> NEW.size
		OR OLD.manifest <> NEW.manifest OR (OLD.holds = 0) <> (NEW.holds = 0) BEGIN
	INSERT INTO repository_usage (repo) VALUES (NEW.repo) ON CONFLICT DO NOTHING;
	UPDATE repository_usage SET
		referenced_bytes = referenced_bytes + (NEW.manifest + NEW.blob_refs > 0) * NEW.size - (OLD.manifest + OLD.blob_refs > 0) * OLD.size,
		manifests = manifests + NEW.manifest - OLD.manifest,
		untagged = untagged + (NEW.manifest > 0 AND NEW.holds = 0) - (OLD.manifest > 0 AND OLD.holds = 0)
		WHERE repo = NEW.repo;
END;

-- repository_usage and repositories move the totals.
CREATE TRIGGER repository_usage_insert AFTER INSERT ON repository_usage BEGIN
	UPDATE usage_totals SET referenced_bytes = referenced_bytes + NEW.referenced_bytes, manifests = manifests + NEW.manifests,
		tags = tags + NEW.tags, untagged = untagged + NEW.untagged WHERE shard = 0;
END;
CREATE TRIGGER repository_usage_update AFTER UPDATE ON repository_usage BEGIN
	UPDATE usage_totals SET referenced_bytes = referenced_bytes + NEW.referenced_bytes - OLD.referenced_bytes,
		manifests = manifests + NEW.manifests - OLD.manifests, tags = tags + NEW.tags - OLD.tags,
		untagged = untagged + NEW.untagged - OLD.untagged WHERE shard = 0;
END;
CREATE TRIGGER repository_usage_delete AFTER DELETE ON repository_usage BEGIN
	UPDATE usage_totals SET referenced_bytes = referenced_bytes - OLD.referenced_bytes, manifests = manifests - OLD.manifests,
		tags = tags - OLD.tags, untagged = untagged - OLD.untagged WHERE shard = 0;
END;
-- A repository's row outlives its repositories row while rows of the
-- repository remain (a delete may remove the repositories row first: the
-- engine's bulk repository delete does); the last of them takes it away.
CREATE TRIGGER repository_usage_gone AFTER UPDATE ON repository_usage
	WHEN NEW.referenced_bytes = 0 AND NEW.manifests = 0 AND NEW.tags = 0 AND NEW.untagged = 0
		AND NOT EXISTS (SELECT 1 FROM repositories WHERE name = NEW.repo) BEGIN
	DELETE FROM repository_usage WHERE repo = NEW.repo;
END;
CREATE TRIGGER repositories_count_insert AFTER INSERT ON repositories BEGIN
	UPDATE usage_totals SET repositories = repositories + 1 WHERE shard = 0;
	INSERT INTO repository_usage (repo) VALUES (NEW.name) ON CONFLICT DO NOTHING;
END;
CREATE TRIGGER repositories_count_delete AFTER DELETE ON repositories BEGIN
	UPDATE usage_totals SET repositories = repositories - 1 WHERE shard = 0;
	DELETE FROM repository_usage WHERE repo = OLD.name AND referenced_bytes = 0 AND manifests = 0 AND tags = 0 AND untagged = 0;
END;
