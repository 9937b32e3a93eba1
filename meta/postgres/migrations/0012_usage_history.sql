-- The registry's usage, one row per day (UTC), for the web UI's growth
-- picture (package usage/history): written by a daily job and once at start
-- when today's row is missing. Bytes are those of `stowage usage` at the
-- time of recording. recorded: Unix nanoseconds.
CREATE TABLE usage_history (
	day            TEXT COLLATE "C" PRIMARY KEY,
	physical_bytes BIGINT NOT NULL,
	logical_bytes  BIGINT NOT NULL,
	blobs          BIGINT NOT NULL,
	repositories   BIGINT NOT NULL,
	manifests      BIGINT NOT NULL,
	tags           BIGINT NOT NULL,
	recorded       BIGINT NOT NULL
);
-- The repository list of the web UI, sorted by the last change (usage/rank).
CREATE INDEX repositories_updated ON repositories (updated, name);
