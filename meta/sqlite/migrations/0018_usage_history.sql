-- The registry's usage, one row per day (UTC), for the web UI's growth
-- picture (package usage/history): written by a daily job and once at start
-- when today's row is missing. Bytes are those of `stowage usage` at the
-- time of recording. recorded: Unix nanoseconds.
CREATE TABLE usage_history (
	day            TEXT PRIMARY KEY,
	physical_bytes INTEGER NOT NULL,
	logical_bytes  INTEGER NOT NULL,
	blobs          INTEGER NOT NULL,
	repositories   INTEGER NOT NULL,
	manifests      INTEGER NOT NULL,
	tags           INTEGER NOT NULL,
	recorded       INTEGER NOT NULL
) WITHOUT ROWID;
-- Each repository's size at the last recording (same job), by which the
-- web UI lists repositories by size a page at a time (usage/rank): derived,
-- replaced whole at every recording, never copied (meta/tables.Derived).
CREATE TABLE usage_repositories (
	name             TEXT PRIMARY KEY,
	referenced_bytes INTEGER NOT NULL,
	unique_bytes     INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX usage_repositories_size ON usage_repositories (referenced_bytes, name);
-- The repository list of the web UI, sorted by the last change (usage/rank).
CREATE INDEX repositories_updated ON repositories (updated, name);
