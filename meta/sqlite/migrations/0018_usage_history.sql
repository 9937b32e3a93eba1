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
-- The repository list of the web UI, sorted by the last change (usage/rank).
CREATE INDEX repositories_updated ON repositories (updated, name);
