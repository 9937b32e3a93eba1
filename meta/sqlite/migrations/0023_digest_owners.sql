-- Unique bytes kept (issue 18, "cost at scale"): a repository's unique
-- bytes (the digests it uses that no other repository uses: what deleting
-- it frees) were found when asked, by one probe of usage_digests_used per
-- digest the repository uses: 0.7-1 s for a repository of 100,000
-- manifests. Triggers now keep, per digest, who uses it:
--
--   digest_owners  per digest some repository uses (a used row of
--                  usage_digests, migration 0021: manifest + blob_refs > 0)
--                  sole_owner  that repository when exactly one uses the
--                              digest; NULL when two or more do
--                  size        the blob's size (usage_digests.size)
--                  The row goes when no repository uses the digest.
--
-- A repository's unique bytes are then the sum of size over its rows with
-- sole_owner = it: one range of the partial index digest_owners_sole,
-- whose cost grows with the digests only it uses.
--
-- Only the state "none, one (which), two or more" is kept, not a count of
-- users: a repository that starts or stops using a digest that two or more
-- others use changes nothing here (it reads the row, or probes
-- usage_digests_used for the others, and writes only when the digest
-- crosses between one user and two, or between none and one). A count
-- would have every new user of a shared base layer write that one row,
-- which on PostgreSQL makes concurrent pushes of different repositories
-- sharing a layer wait on each other and fail to serialize.
--
-- digest_owners is derived (meta/tables.Derived): never copied; loading the
-- copied tables rebuilds it through the triggers.
CREATE TABLE digest_owners (
	digest     TEXT PRIMARY KEY,
	sole_owner TEXT,
	size       INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
-- A repository's unique bytes: its range, covering (the size is in it).
CREATE INDEX digest_owners_sole ON digest_owners (sole_owner, size) WHERE sole_owner IS NOT NULL;

-- Backfill: one grouped pass over usage_digests_used (in digest order).
INSERT INTO digest_owners (digest, sole_owner, size)
	SELECT digest, CASE WHEN count(*) = 1 THEN max(repo) END, max(size)
	FROM usage_digests INDEXED BY usage_digests_used WHERE manifest + blob_refs > 0 GROUP BY digest;

-- usage_digests's rows are inserted with all counts 0 and deleted with all
-- counts 0 (migration 0021), so a digest's use starts and stops by updates.
-- A repository starts using a digest: the first user owns it alone; the
-- second makes it shared (a third finds it shared and writes nothing).
CREATE TRIGGER digest_owners_use AFTER UPDATE OF manifest, blob_refs ON usage_digests
	WHEN OLD.manifest + OLD.blob_refs = 0 AND NEW.manifest + NEW.blob_refs > 0 BEGIN
	INSERT INTO digest_owners (digest, sole_owner, size) VALUES (NEW.digest, NEW.repo, NEW.size)
		ON CONFLICT (digest) DO UPDATE SET sole_owner = NULL WHERE sole_owner IS NOT NULL AND sole_owner <> excluded.sole_owner;
END;
-- A repository stops using a digest: if it owned it alone, the row goes;
-- if the digest was shared and one other user remains, that one owns it
-- (found by probing usage_digests_used for at most two users).
CREATE TRIGGER digest_owners_leave AFTER UPDATE OF manifest, blob_refs ON usage_digests
	WHEN OLD.manifest + OLD.blob_refs > 0 AND NEW.manifest + NEW.blob_refs = 0 BEGIN
	DELETE FROM digest_owners WHERE digest = OLD.digest AND sole_owner = OLD.repo;
	UPDATE digest_owners SET sole_owner = (
			SELECT repo FROM usage_digests INDEXED BY usage_digests_used WHERE digest = OLD.digest AND manifest + blob_refs > 0)
		WHERE digest = OLD.digest AND sole_owner IS NULL
		AND (SELECT count(*) FROM (SELECT 1 FROM usage_digests INDEXED BY usage_digests_used
			WHERE digest = OLD.digest AND manifest + blob_refs > 0 LIMIT 2)) = 1;
END;

-- A blob's size follows to its digest's row, as to usage_digests (0021's
-- usage_blobs_* triggers).
CREATE TRIGGER digest_owners_blobs_insert AFTER INSERT ON blobs BEGIN
	UPDATE digest_owners SET size = NEW.size WHERE digest = NEW.digest AND size <> NEW.size;
END;
CREATE TRIGGER digest_owners_blobs_delete AFTER DELETE ON blobs BEGIN
	UPDATE digest_owners SET size = 0 WHERE digest = OLD.digest AND size <> 0;
END;
CREATE TRIGGER digest_owners_blobs_resize AFTER UPDATE OF size ON blobs WHEN OLD.size <> NEW.size BEGIN
	UPDATE digest_owners SET size = NEW.size WHERE digest = NEW.digest AND size <> NEW.size;
END;
