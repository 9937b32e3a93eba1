-- Geo-replication (package replication, docs/replication.md): the hybrid
-- logical clock of the last change of each tag, and of each manifest's
-- existence (name '@' || digest), written in the transaction of the change.
-- digest '' is a removal (a tombstone): an older change from another region,
-- or a read-through fetch, must not bring back what was removed here later.
-- wall is Unix milliseconds, logical orders changes within one, region
-- breaks ties.
CREATE TABLE replication_clocks (
	repo    TEXT NOT NULL,
	name    TEXT NOT NULL,
	digest  TEXT NOT NULL DEFAULT '',
	wall    INTEGER NOT NULL,
	logical INTEGER NOT NULL,
	region  TEXT NOT NULL,
	PRIMARY KEY (repo, name)
);
