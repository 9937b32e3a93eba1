-- Pull-through cache rules (package pullthrough): a local repository or
-- prefix (source, "docker-hub/*") mapped to an upstream registry path.
-- secret: the upstream password sealed with the encryption keyring (JSON
-- {"data_key","box"}; its data key is in data_keys, object
-- "cache-rule:<name>"), NULL without one. tag_ttl: nanoseconds; created:
-- Unix nanoseconds.
CREATE TABLE cache_rules (
	name TEXT PRIMARY KEY,
	source TEXT NOT NULL UNIQUE,
	upstream TEXT NOT NULL,
	username TEXT NOT NULL DEFAULT '',
	secret BLOB,
	plain_http INTEGER NOT NULL DEFAULT 0,
	tag_ttl INTEGER NOT NULL,
	created INTEGER NOT NULL
);
