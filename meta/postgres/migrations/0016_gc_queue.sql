-- Garbage collection's queue: the table and meaning of SQLite's migration
-- 0022 (read its comment), kept by one trigger function per table.
--
-- Concurrency (Update runs SERIALIZABLE): a writer only inserts the
-- digests it changes (ON CONFLICT DO NOTHING: an entry already there costs
-- nothing and waits for nobody), so pushes of different digests never meet
-- here. A collection's dequeue re-checks each entry's references in the
-- same statement: a transaction that removes a reference to a digest the
-- collection drops at the same moment conflicts with it, and one of them is
-- retried; were both ever to commit, the cost is a blob kept until the next
-- full pass (which enqueues every unreferenced blob again), never one
-- collected under a reference.
--
-- Lock order (migration 0015's header): a queue row is written after the
-- rows of the repository and the blob that caused it, and no trigger
-- reads or writes anything after it.
CREATE TABLE gc_queue (digest TEXT COLLATE "C" PRIMARY KEY);

-- The entry is read before it is added (not only ON CONFLICT DO NOTHING,
-- which reads nothing serializable isolation tracks): a collection that
-- drops an entry it saw referenced, from a snapshot taken before this
-- transaction removed the last reference, then writes what this one read,
-- and PostgreSQL fails one of the two (a write skew) instead of losing the
-- entry (TestDequeueRacesAReferenceDelete).
CREATE FUNCTION gc_queue_add() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	k TEXT;
BEGIN
	IF TG_TABLE_NAME = 'blobs' THEN
		IF TG_OP = 'DELETE' THEN
			DELETE FROM gc_queue WHERE digest = OLD.digest;
			RETURN NULL;
		END IF;
		k := NEW.digest; -- INSERT, or UPDATE back from 'deleting' (the trigger's WHEN)
	ELSIF TG_TABLE_NAME = 'manifest_references' THEN
		IF TG_OP = 'UPDATE' AND OLD.child = NEW.child THEN
			RETURN NULL;
		END IF;
		k := OLD.child;
	ELSE -- manifests, recycle_refs: the digest column
		IF TG_OP = 'UPDATE' AND OLD.digest = NEW.digest THEN
			RETURN NULL;
		END IF;
		k := OLD.digest;
	END IF;
	PERFORM 1 FROM gc_queue WHERE digest = k;
	IF NOT FOUND THEN
		INSERT INTO gc_queue (digest) VALUES (k) ON CONFLICT DO NOTHING;
	END IF;
	RETURN NULL;
END $$;
CREATE TRIGGER gc_queue_blobs AFTER INSERT OR DELETE ON blobs
	FOR EACH ROW EXECUTE FUNCTION gc_queue_add();
CREATE TRIGGER gc_queue_blobs_revived AFTER UPDATE OF state ON blobs
	FOR EACH ROW WHEN (NEW.state IN ('pending', 'live') AND OLD.state NOT IN ('pending', 'live'))
	EXECUTE FUNCTION gc_queue_add();
CREATE TRIGGER gc_queue_manifests AFTER UPDATE OF digest OR DELETE ON manifests
	FOR EACH ROW EXECUTE FUNCTION gc_queue_add();
CREATE TRIGGER gc_queue_refs AFTER UPDATE OF child OR DELETE ON manifest_references
	FOR EACH ROW EXECUTE FUNCTION gc_queue_add();
CREATE TRIGGER gc_queue_recycle AFTER UPDATE OF digest OR DELETE ON recycle_refs
	FOR EACH ROW EXECUTE FUNCTION gc_queue_add();

-- The blobs nothing references today.
INSERT INTO gc_queue (digest)
	SELECT digest FROM blobs b WHERE state IN ('pending', 'live')
		AND NOT EXISTS (SELECT 1 FROM manifest_references r WHERE r.child = b.digest)
		AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.digest = b.digest)
		AND NOT EXISTS (SELECT 1 FROM recycle_refs x WHERE x.digest = b.digest);
