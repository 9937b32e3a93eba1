-- For the ACR-compatible API: when a tag was first created, and the platform
-- an image manifest's config declares.
ALTER TABLE tags ADD COLUMN created INTEGER NOT NULL DEFAULT 0;
UPDATE tags SET created = updated;
ALTER TABLE manifests ADD COLUMN architecture TEXT NOT NULL DEFAULT '';
ALTER TABLE manifests ADD COLUMN os TEXT NOT NULL DEFAULT '';
