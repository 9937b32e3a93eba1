-- The repair queue of storage mirrors (storage/mirror.RepairQueue): keys on
-- which a mirror's copies disagree, kept here so a repair survives restarts
-- and any node can do it. present: 1 every copy must hold the key, 0 none
-- may. due: when it may next be tried (Unix ns; a claim moves it forward).
-- seq changes whenever the key is queued again, so finishing an older claim
-- does not drop the newer wish.
CREATE TABLE mirror_repairs (
	mirror  TEXT COLLATE "C" NOT NULL,
	key     TEXT COLLATE "C" NOT NULL,
	present INTEGER NOT NULL,
	due     BIGINT NOT NULL,
	seq     BIGINT NOT NULL,
	PRIMARY KEY (mirror, key)
);
CREATE INDEX mirror_repairs_due ON mirror_repairs (mirror, due);
