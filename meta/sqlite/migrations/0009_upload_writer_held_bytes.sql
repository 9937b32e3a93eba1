-- The writer of an upload session (a lease: who, until when), so requests of
-- one session reaching two nodes never append at once; see ClaimUpload.
ALTER TABLE uploads ADD COLUMN writer TEXT NOT NULL DEFAULT '';
ALTER TABLE uploads ADD COLUMN writer_until INTEGER NOT NULL DEFAULT 0;

-- The bytes of pending and live blobs, kept by triggers, so the storage
-- limit check reads one row instead of summing the blobs table. Derived:
-- never copied (meta/tables.Derived).
CREATE TABLE held_bytes (
	shard INTEGER PRIMARY KEY,
	bytes INTEGER NOT NULL
);
INSERT INTO held_bytes (shard, bytes)
	SELECT 0, coalesce(sum(size), 0) FROM blobs WHERE state IN ('pending', 'live');
CREATE TRIGGER held_bytes_insert AFTER INSERT ON blobs
	WHEN NEW.state IN ('pending', 'live') AND NEW.size <> 0 BEGIN
	UPDATE held_bytes SET bytes = bytes + NEW.size WHERE shard = 0;
END;
CREATE TRIGGER held_bytes_delete AFTER DELETE ON blobs
	WHEN OLD.state IN ('pending', 'live') AND OLD.size <> 0 BEGIN
	UPDATE held_bytes SET bytes = bytes - OLD.size WHERE shard = 0;
END;
CREATE TRIGGER held_bytes_update AFTER UPDATE OF size, state ON blobs
	WHEN (OLD.state IN ('pending', 'live')) <> (NEW.state IN ('pending', 'live')) OR OLD.size <> NEW.size BEGIN
	UPDATE held_bytes SET bytes = bytes
		- CASE WHEN OLD.state IN ('pending', 'live') THEN OLD.size ELSE 0 END
		+ CASE WHEN NEW.state IN ('pending', 'live') THEN NEW.size ELSE 0 END
		WHERE shard = 0;
END;
