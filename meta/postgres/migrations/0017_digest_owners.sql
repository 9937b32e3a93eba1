-- Unique bytes kept: the table and meanings of SQLite's migration 0023
-- (read its comment), kept by trigger functions. digest_owners has a row
-- per digest some repository uses; sole_owner is that repository when
-- exactly one does (NULL when two or more do); a repository's unique bytes
-- are the sum of size over its rows, an index-only scan of
-- digest_owners_sole.
--
-- Concurrency (Update runs SERIALIZABLE). A digest's row is shared by the
-- repositories that use the digest, so unlike the rows of 0015 it is
-- written by transactions of different repositories. It is written only
-- when the digest crosses between no user and one, or between one and two
-- or more: a repository that starts or stops using a layer two or more
-- others use reads the row (starting) or probes usage_digests_used for the
-- others (stopping) and writes nothing, so pushes of many repositories on
-- one shared base layer do not line up on its row. Whoever writes the row
-- decided from what it read; SSI aborts one of two transactions whose
-- reads and writes of a digest's users cross (one stopping while another
-- starts), and Update retries it. Load, which does not run SERIALIZABLE,
-- runs alone.
--
-- Lock order: no writer ever waits for a digest's row. It writes the row
-- with lock_timeout at 1 ms (digest_owners_nowait): if another
-- transaction holds the row (or is inserting it), this one fails at once
-- (SQLSTATE 55P03) and Update runs it again, as after a serialization
-- failure. Waiting would gain nothing: under SERIALIZABLE, a transaction
-- that waited for a row another one then commits fails with a
-- serialization failure anyway. And transactions of different
-- repositories write digests' rows in no common order (a push in its
-- manifest's order, a delete in its index's), so waiting would deadlock
-- (PostgreSQL notices only after deadlock_timeout, 1 s): four
-- repositories pushing and deleting manifests of six shared layers did,
-- one to four times in three seconds (TestSharedLayerWritersDoNotDeadlock).
-- The rows of 0015's header keep their order, and the repository's row
-- still comes before its digests' (digest_owners_change takes it, as
-- usage_repo does, also when a change moves no sums).
-- No write may commit between the backfill below and the replacement of
-- the trigger functions after it: it would run the old functions, never
-- reach digest_owners, and leave a repository's unique bytes wrong for good
-- (an older node writing during a rolling upgrade; found by an outside
-- review). Every write of usage_digests waits for this lock until the
-- migration commits, and then runs the new functions.
LOCK TABLE usage_digests IN SHARE ROW EXCLUSIVE MODE;

CREATE TABLE digest_owners (
	digest     TEXT COLLATE "C" PRIMARY KEY,
	sole_owner TEXT COLLATE "C",
	size       BIGINT NOT NULL DEFAULT 0
);

-- Backfill: one grouped pass over usage_digests (the index after the rows:
-- one sort).
INSERT INTO digest_owners (digest, sole_owner, size)
	SELECT digest, CASE WHEN count(*) = 1 THEN max(repo) END, max(size)
	FROM usage_digests WHERE manifest + blob_refs > 0 GROUP BY digest;
-- A repository's unique bytes: its range, index-only (the size is in it).
CREATE INDEX digest_owners_sole ON digest_owners (sole_owner) INCLUDE (size) WHERE sole_owner IS NOT NULL;

-- digest_owners_nowait makes this transaction's waits for a lock fail at
-- once (lock_timeout 1 ms, SQLSTATE 55P03, which Update retries) and
-- returns the lock_timeout to put back after the write (the lock order
-- above). Not an advisory lock per digest: those take a slot each in the
-- server's lock table until commit, which a repository delete of 100,000
-- digests would fill; a row lock takes none.
CREATE FUNCTION digest_owners_nowait() RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	was TEXT := current_setting('lock_timeout');
BEGIN
	PERFORM set_config('lock_timeout', '1ms', true);
	RETURN was;
END $$;

-- digest_owners_change: repository r started (used) or stopped using
-- digest d, whose blob's size is sz.
CREATE FUNCTION digest_owners_change(r TEXT, d TEXT, used BOOLEAN, sz BIGINT) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	sole TEXT;
	others TEXT[];
	act TEXT := '';
	wait TEXT;
BEGIN
	-- The lock order of 0015's header: the repository's row first.
	PERFORM 1 FROM repositories WHERE name = r FOR NO KEY UPDATE;
	SELECT sole_owner INTO sole FROM digest_owners WHERE digest = d;
	IF used THEN
		IF NOT FOUND THEN
			act := 'first'; -- the first user owns it alone
		ELSIF sole IS NOT NULL AND sole <> r THEN
			act := 'share'; -- the second: shared (a third finds it shared, and writes nothing)
		END IF;
	ELSIF FOUND THEN
		IF sole = r THEN
			act := 'delete';
		ELSIF sole IS NULL THEN
			-- Shared until now: if one other user remains, it owns it.
			others := ARRAY(SELECT repo FROM usage_digests WHERE digest = d AND manifest + blob_refs > 0 LIMIT 2);
			IF cardinality(others) = 1 THEN
				act := 'own';
				r := others[1];
			ELSIF cardinality(others) = 0 THEN
				act := 'delete';
			END IF;
		END IF;
	END IF;
	IF act = '' THEN
		RETURN;
	END IF;
	wait := digest_owners_nowait();
	IF act = 'delete' THEN
		DELETE FROM digest_owners WHERE digest = d;
	ELSIF act = 'share' THEN
		UPDATE digest_owners SET sole_owner = NULL WHERE digest = d;
	ELSIF act = 'own' THEN
		UPDATE digest_owners SET sole_owner = r WHERE digest = d;
	ELSE
		-- (A row this transaction cannot see: another one committed it since
		-- this one began, which SERIALIZABLE refuses anyway.)
		INSERT INTO digest_owners (digest, sole_owner, size) VALUES (d, r, sz)
			ON CONFLICT (digest) DO UPDATE SET sole_owner = NULL;
	END IF;
	PERFORM set_config('lock_timeout', wait, true);
END $$;

-- usage_digests_change (0015) as it was, then who uses the digest when the
-- row's use starts or stops.
CREATE OR REPLACE FUNCTION usage_digests_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	dr BIGINT := 0;
	dm BIGINT := 0;
	du BIGINT := 0;
	r TEXT;
	was BOOLEAN := false;
	now_used BOOLEAN := false;
BEGIN
	IF TG_OP IN ('UPDATE', 'DELETE') THEN
		r := OLD.repo;
		was := OLD.manifest + OLD.blob_refs > 0;
		IF was THEN dr := dr - OLD.size; END IF;
		dm := dm - OLD.manifest;
		IF OLD.manifest > 0 AND OLD.holds = 0 THEN du := du - 1; END IF;
	END IF;
	IF TG_OP IN ('UPDATE', 'INSERT') THEN
		r := NEW.repo;
		now_used := NEW.manifest + NEW.blob_refs > 0;
		IF now_used THEN dr := dr + NEW.size; END IF;
		dm := dm + NEW.manifest;
		IF NEW.manifest > 0 AND NEW.holds = 0 THEN du := du + 1; END IF;
	END IF;
	PERFORM usage_repo(r, dr, dm, 0, du);
	IF now_used AND NOT was THEN
		PERFORM digest_owners_change(NEW.repo, NEW.digest, true, NEW.size);
	ELSIF was AND NOT now_used THEN
		PERFORM digest_owners_change(OLD.repo, OLD.digest, false, 0);
	END IF;
	RETURN NULL;
END $$;

-- usage_blobs_change (0015) as it was, then the digest's row, without
-- waiting as above, when its size is to change (a blob row that comes
-- after its references, or goes while they remain).
CREATE OR REPLACE FUNCTION usage_blobs_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	d TEXT;
	sz BIGINT := 0;
	wait TEXT;
BEGIN
	IF TG_OP = 'DELETE' THEN
		d := OLD.digest;
	ELSIF TG_OP = 'INSERT' OR OLD.size <> NEW.size THEN
		d := NEW.digest;
		sz := NEW.size;
	ELSE
		RETURN NULL;
	END IF;
	UPDATE usage_digests SET size = sz WHERE digest = d AND size <> sz;
	IF EXISTS (SELECT 1 FROM digest_owners WHERE digest = d AND size <> sz) THEN
		wait := digest_owners_nowait();
		UPDATE digest_owners SET size = sz WHERE digest = d;
		PERFORM set_config('lock_timeout', wait, true);
	END IF;
	RETURN NULL;
END $$;
