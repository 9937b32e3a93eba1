-- A per-repository counter that changes whenever its tags change (a tag is
-- created, moved or deleted). Readers cache tag lists and tag resolutions
-- and check the counter (one point query) instead of re-reading them; the
-- triggers keep it right whoever writes, including other nodes.
ALTER TABLE repositories ADD COLUMN tags_version INTEGER NOT NULL DEFAULT 0;

CREATE TRIGGER tags_version_insert AFTER INSERT ON tags BEGIN
	UPDATE repositories SET tags_version = tags_version + 1 WHERE name = NEW.repo;
END;
CREATE TRIGGER tags_version_update AFTER UPDATE ON tags BEGIN
	UPDATE repositories SET tags_version = tags_version + 1 WHERE name = NEW.repo;
END;
CREATE TRIGGER tags_version_delete AFTER DELETE ON tags BEGIN
	UPDATE repositories SET tags_version = tags_version + 1 WHERE name = OLD.repo;
END;
