-- ACR's changeable attributes, stored as a bit set of what is disabled:
-- 1 write, 2 delete, 4 read, 8 list. 0 = everything enabled.
ALTER TABLE repositories ADD COLUMN locks INTEGER NOT NULL DEFAULT 0;
ALTER TABLE manifests ADD COLUMN locks INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tags ADD COLUMN locks INTEGER NOT NULL DEFAULT 0;
