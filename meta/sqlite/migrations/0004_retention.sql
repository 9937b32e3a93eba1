-- Retention of untagged manifests counts from the moment a manifest became
-- untagged (0: never tagged, counts from created).
ALTER TABLE manifests ADD COLUMN untagged_since INTEGER NOT NULL DEFAULT 0;

-- Registry-wide settings (policies, last job results), as JSON values.
CREATE TABLE settings (
	key     TEXT PRIMARY KEY,
	value   TEXT NOT NULL,
	updated INTEGER NOT NULL
) WITHOUT ROWID;
