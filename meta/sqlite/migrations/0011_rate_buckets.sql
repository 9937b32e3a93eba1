-- Token buckets of the request and failed-login limits (limits.Store), so
-- that several limiters on one database share them. Transient: never copied
-- (meta/tables.Derived); a lost row is a full bucket. tokens at time at (Unix
-- nanoseconds); took: what the last take took (returned by it); full_at:
-- when the bucket will surely be full, so a sweep may forget it.
CREATE TABLE rate_buckets (
	key TEXT PRIMARY KEY,
	tokens REAL NOT NULL,
	took INTEGER NOT NULL,
	at INTEGER NOT NULL,
	full_at INTEGER NOT NULL
);
CREATE INDEX rate_buckets_full_at ON rate_buckets (full_at);
