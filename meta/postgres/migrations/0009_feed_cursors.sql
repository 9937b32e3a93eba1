-- Durable readers of the change feed (package feed, Consumer): webhooks,
-- replication to each peer. seq is the last event the reader has handled;
-- it resumes after it, and retention does not delete by age what a reader
-- has not handled yet (events.max_count still bounds the feed). updated is
-- Unix nanoseconds of the last save.
CREATE TABLE feed_cursors (
	name    TEXT PRIMARY KEY,
	seq     BIGINT NOT NULL,
	updated BIGINT NOT NULL
);
