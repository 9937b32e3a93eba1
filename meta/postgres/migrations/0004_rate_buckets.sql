-- Token buckets of the request and failed-login limits (limits.Store),
-- shared by the nodes, so a limit holds for the registry as a whole.
-- UNLOGGED: no WAL, so a take commits without waiting for a disk flush; a
-- crash empties the table, which only makes every bucket full again.
-- Transient: never copied (meta/tables.Derived). tokens at time at (Unix
-- nanoseconds); took: what the last take took (returned by it); full_at:
-- when the bucket will surely be full, so a sweep may forget it.
CREATE UNLOGGED TABLE rate_buckets (
	key TEXT PRIMARY KEY,
	tokens DOUBLE PRECISION NOT NULL,
	took INTEGER NOT NULL,
	at BIGINT NOT NULL,
	full_at BIGINT NOT NULL
);
CREATE INDEX rate_buckets_full_at ON rate_buckets (full_at);
