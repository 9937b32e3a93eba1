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
-- Each repository's size at the last recording (same job), by which the
-- web UI lists repositories by size a page at a time (usage/rank): derived,
-- replaced whole at every recording, never copied (meta/tables.Derived).
CREATE TABLE usage_repositories (
	name             TEXT COLLATE "C" PRIMARY KEY,
	referenced_bytes BIGINT NOT NULL,
	unique_bytes     BIGINT NOT NULL
);
CREATE INDEX usage_repositories_size ON usage_repositories (referenced_bytes, name);
-- The repository list of the web UI, sorted by the last change (usage/rank).
CREATE INDEX repositories_updated ON repositories (updated, name);
