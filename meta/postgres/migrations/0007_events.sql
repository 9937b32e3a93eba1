-- The change feed (package feed): one row per committed change, appended in
-- the transaction that makes the change. Sequences commit out of order under
-- concurrency (a transaction that took id 7 may commit after one that took
-- id 8), so id is only the insert order: seq, the position readers page by,
-- is given to committed rows afterwards by the feed's sequencer, one
-- sequencer at a time (it locks feed_state), in increasing order. A reader
-- that has seen seq N can therefore never later find a row below N. Times are
-- Unix nanoseconds. Only seq and (repo, seq) are indexed (and the rows still
-- to number): every index is written by every change.
CREATE TABLE events (
	id         BIGSERIAL PRIMARY KEY,
	seq        BIGINT UNIQUE,
	time       BIGINT NOT NULL,
	kind       TEXT NOT NULL,
	actor      TEXT NOT NULL DEFAULT '',
	addr       TEXT NOT NULL DEFAULT '',
	repo       TEXT NOT NULL DEFAULT '',
	digest     TEXT NOT NULL DEFAULT '',
	tag        TEXT NOT NULL DEFAULT '',
	media_type TEXT NOT NULL DEFAULT '',
	size       BIGINT NOT NULL DEFAULT 0,
	reason     TEXT NOT NULL DEFAULT '',
	previous   TEXT NOT NULL DEFAULT '',
	origin     TEXT NOT NULL DEFAULT '',
	detail     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX events_unsequenced ON events (id) WHERE seq IS NULL;
CREATE INDEX events_repo ON events (repo, seq);
