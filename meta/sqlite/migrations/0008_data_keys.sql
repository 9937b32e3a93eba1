-- Wrapped data keys of encrypted storage objects (storage/crypt). An object's
-- header names its data key by id; rotation rewraps these rows in place.
CREATE TABLE data_keys (
	id          TEXT PRIMARY KEY,
	object      TEXT NOT NULL,
	key_id      TEXT NOT NULL,
	key_version INTEGER NOT NULL,
	wrapped     BLOB NOT NULL,
	created     INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX data_keys_object ON data_keys (object);
CREATE INDEX data_keys_version ON data_keys (key_id, key_version);
