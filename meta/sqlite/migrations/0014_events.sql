-- The change feed (package feed): one row per committed change, appended in
-- the transaction that makes the change. SQLite commits one writer at a time,
-- so the AUTOINCREMENT seq (never reused, even after the feed is trimmed to
-- nothing) is also commit order: a reader that has seen seq N can never later
-- find a new row below N. Times are Unix nanoseconds.
CREATE TABLE events (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
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
CREATE INDEX events_time ON events (time);
CREATE INDEX events_repo ON events (repo, seq);
