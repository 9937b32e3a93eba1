-- Webhooks (package webhook): the endpoints told about changes, and the log
-- of their delivery attempts (the newest N per webhook). A webhook's secret
-- and custom header values are never here in the clear: sealed holds them,
-- sealed with data key data_key (in data_keys, object 'webhook:<name>'),
-- which the encryption keyring wraps. actions and header_names are
-- comma-separated. Times are Unix nanoseconds.
CREATE TABLE webhooks (
	name         TEXT PRIMARY KEY,
	id           TEXT NOT NULL,
	uri          TEXT NOT NULL,
	actions      TEXT NOT NULL,
	scope        TEXT NOT NULL DEFAULT '',
	header_names TEXT NOT NULL DEFAULT '',
	has_secret   BIGINT NOT NULL DEFAULT 0,
	sealed       BYTEA,
	data_key     TEXT NOT NULL DEFAULT '',
	enabled      BIGINT NOT NULL,
	created      BIGINT NOT NULL,
	updated      BIGINT NOT NULL
);
CREATE TABLE webhook_deliveries (
	webhook  TEXT NOT NULL,
	id       BIGINT NOT NULL,
	time     BIGINT NOT NULL,
	event_id TEXT NOT NULL DEFAULT '',
	seq      BIGINT NOT NULL DEFAULT 0,
	action   TEXT NOT NULL DEFAULT '',
	repo     TEXT NOT NULL DEFAULT '',
	tag      TEXT NOT NULL DEFAULT '',
	digest   TEXT NOT NULL DEFAULT '',
	attempt  BIGINT NOT NULL DEFAULT 0,
	status   BIGINT NOT NULL DEFAULT 0,
	duration BIGINT NOT NULL DEFAULT 0,
	error    TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (webhook, id)
);
