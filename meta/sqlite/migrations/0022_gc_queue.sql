-- Garbage collection's queue (issue 18, "cost at scale"): a collection read
-- every blob row of the registry and probed each for references, so a run
-- with nothing to collect cost the registry's size (8 s warm at 1,000,000
-- manifests). The triggers below keep, in the writing transaction, whoever
-- writes, the digests that may have become garbage since a collection last
-- looked at them:
--
--   a new blob row                      (pushed, nothing references it yet;
--                                        or one back from 'deleting')
--   a manifest row deleted or moved     (its own digest)
--   a reference deleted or moved        (its child)
--   a recycle bin reference deleted     (its digest: the entry expired or
--                                        was restored)
--
-- and a deleted blob row leaves the queue. So every blob that nothing
-- references is in it: a collection walks the queue, collects what is old
-- enough, keeps what is still in its grace period or lease, and drops the
-- rest (referenced again, or no blob row). Its cost follows what changed
-- since the last run. The full pass (with the daily storage sweep) puts
-- every unreferenced blob in again from the blob rows, a repair should
-- anything ever miss the queue. Derived: never copied (meta/tables.Derived);
-- loading the copied blob rows fills it through the insert trigger.
CREATE TABLE gc_queue (digest TEXT PRIMARY KEY) WITHOUT ROWID;

CREATE TRIGGER gc_queue_blob_insert AFTER INSERT ON blobs BEGIN
	INSERT INTO gc_queue (digest) VALUES (NEW.digest) ON CONFLICT DO NOTHING;
END;
-- (The engine never takes a blob out of 'deleting' but by deleting its
-- row; should anything else, the blob is a candidate again.)
CREATE TRIGGER gc_queue_blob_revived AFTER UPDATE OF state ON blobs
	WHEN NEW.state IN ('pending', 'live') AND OLD.state NOT IN ('pending', 'live') BEGIN
	INSERT INTO gc_queue (digest) VALUES (NEW.digest) ON CONFLICT DO NOTHING;
END;
CREATE TRIGGER gc_queue_blob_delete AFTER DELETE ON blobs BEGIN
	DELETE FROM gc_queue WHERE digest = OLD.digest;
END;
CREATE TRIGGER gc_queue_manifest_delete AFTER DELETE ON manifests BEGIN
	INSERT INTO gc_queue (digest) VALUES (OLD.digest) ON CONFLICT DO NOTHING;
END;
CREATE TRIGGER gc_queue_manifest_update AFTER UPDATE OF digest ON manifests WHEN OLD.digest <> NEW.digest BEGIN
	INSERT INTO gc_queue (digest) VALUES (OLD.digest) ON CONFLICT DO NOTHING;
END;
CREATE TRIGGER gc_queue_ref_delete AFTER DELETE ON manifest_references BEGIN
	INSERT INTO gc_queue (digest) VALUES (OLD.child) ON CONFLICT DO NOTHING;
END;
CREATE TRIGGER gc_queue_ref_update AFTER UPDATE OF child ON manifest_references WHEN OLD.child <> NEW.child BEGIN
	INSERT INTO gc_queue (digest) VALUES (OLD.child) ON CONFLICT DO NOTHING;
END;
CREATE TRIGGER gc_queue_recycle_delete AFTER DELETE ON recycle_refs BEGIN
	INSERT INTO gc_queue (digest) VALUES (OLD.digest) ON CONFLICT DO NOTHING;
END;
CREATE TRIGGER gc_queue_recycle_update AFTER UPDATE OF digest ON recycle_refs WHEN OLD.digest <> NEW.digest BEGIN
	INSERT INTO gc_queue (digest) VALUES (OLD.digest) ON CONFLICT DO NOTHING;
END;

-- The blobs nothing references today (one pass over the blob rows, what a
-- collection read before this migration).
INSERT INTO gc_queue (digest)
	SELECT digest FROM blobs b WHERE state IN ('pending', 'live')
		AND NOT EXISTS (SELECT 1 FROM manifest_references r WHERE r.child = b.digest)
		AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.digest = b.digest)
		AND NOT EXISTS (SELECT 1 FROM recycle_refs x WHERE x.digest = b.digest);
