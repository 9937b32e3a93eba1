-- The change feed (package feed): one row per committed change, appended in
-- the transaction that makes the change. SQLite commits one writer at a time,
-- so seq, given at insert as one more than the highest (which the feed's
-- trimming never deletes, so no number is ever reused), is commit order: a
-- reader that has seen seq N can never later find a new row below N. id is
-- the insert order (as on PostgreSQL, where seq is given after commit).
-- Times are Unix nanoseconds. Only seq and (repo, seq) are indexed: every
-- index is written by every change.
CREATE TABLE events (
	id         INTEGER PRIMARY KEY,
	seq        INTEGER UNIQUE,
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
CREATE INDEX events_repo ON events (repo, seq);
