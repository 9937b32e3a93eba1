-- The change feed (package feed): one row per committed change, appended in
-- the transaction that makes the change. SQLite commits one writer at a time,
-- so the rowid id, given at insert as one more than the highest (which the
-- feed's trimming never deletes, so no number is ever reused), is commit
-- order, and seq is the same number: a reader that has seen seq N can never
-- later find a new row below N. Reads go by id (the table's own B-tree), so
-- seq needs no index of its own (on PostgreSQL, where seq is given after
-- commit, it has one). Every index is written by every change: there is one,
-- for the repository filter. Times are Unix nanoseconds.
CREATE TABLE events (
	id         INTEGER PRIMARY KEY,
	seq        INTEGER NOT NULL,
	time       INTEGER NOT NULL,
	kind       TEXT NOT NULL,
	actor      TEXT NOT NULL DEFAULT '',
	addr       TEXT NOT NULL DEFAULT '',
	repo       TEXT NOT NULL DEFAULT '',
	digest     TEXT NOT NULL DEFAULT '',
	tag        TEXT NOT NULL DEFAULT '',
	media_type TEXT NOT NULL DEFAULT '',
	size       INTEGER NOT NULL DEFAULT 0,
	reason     TEXT NOT NULL DEFAULT '',
	previous   TEXT NOT NULL DEFAULT '',
	origin     TEXT NOT NULL DEFAULT '',
	detail     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX events_repo ON events (repo);
