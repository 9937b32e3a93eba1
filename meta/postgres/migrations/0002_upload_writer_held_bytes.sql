-- The writer of an upload session (a lease: who, until when), so requests of
-- one session reaching two nodes never append at once; see ClaimUpload.
ALTER TABLE uploads ADD COLUMN writer TEXT NOT NULL DEFAULT '';
ALTER TABLE uploads ADD COLUMN writer_until BIGINT NOT NULL DEFAULT 0;

-- The bytes of pending and live blobs, kept by a trigger, so the storage
-- limit check reads 16 rows instead of summing the blobs table. The change
-- of each blob goes to one of 16 rows (by its digest), so concurrent pushes
-- rarely update the same row; only the sum means anything. Derived: never
-- copied (meta/tables.Derived).
CREATE TABLE held_bytes (
	shard SMALLINT PRIMARY KEY,
	bytes BIGINT NOT NULL
);
INSERT INTO held_bytes (shard, bytes) SELECT g, 0 FROM generate_series(0, 15) AS g;
UPDATE held_bytes h SET bytes = s.b
	FROM (SELECT hashtext(digest) & 15 AS shard, sum(size) AS b FROM blobs
		WHERE state IN ('pending', 'live') GROUP BY 1) s
	WHERE h.shard = s.shard;

CREATE FUNCTION held_bytes_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	d BIGINT := 0;
	k TEXT;
BEGIN
	IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.state IN ('pending', 'live') THEN
		d := d - OLD.size;
	END IF;
	IF TG_OP IN ('UPDATE', 'INSERT') AND NEW.state IN ('pending', 'live') THEN
		d := d + NEW.size;
	END IF;
	IF d <> 0 THEN
		IF TG_OP = 'DELETE' THEN k := OLD.digest; ELSE k := NEW.digest; END IF;
		UPDATE held_bytes SET bytes = bytes + d WHERE shard = hashtext(k) & 15;
	END IF;
	RETURN NULL;
END $$;
CREATE TRIGGER held_bytes AFTER INSERT OR UPDATE OF size, state OR DELETE ON blobs
	FOR EACH ROW EXECUTE FUNCTION held_bytes_change();
