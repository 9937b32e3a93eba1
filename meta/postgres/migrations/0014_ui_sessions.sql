-- The web UI's login sessions (ui/sessionstore): transient, never copied
-- (meta/tables.Derived). id_hash: hex SHA-256 of the session id the cookie
-- holds; sealed/nonce: the password, AES-GCM under a key only the cookie
-- holds. expires: Unix nanoseconds; expired rows are deleted at the next
-- login.
CREATE TABLE ui_sessions (
	id_hash TEXT PRIMARY KEY,
	name    TEXT NOT NULL,
	sealed  BYTEA NOT NULL,
	nonce   BYTEA NOT NULL,
	csrf    TEXT NOT NULL,
	expires BIGINT NOT NULL
);
CREATE INDEX ui_sessions_expires ON ui_sessions (expires);
