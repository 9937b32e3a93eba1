-- Online garbage collection with a fence.
--   state: 'pending'  reserved by an upload that is writing the object (invisible);
--          'live'     stored and visible where linked;
--          'deleting' being collected: its object is being deleted (invisible;
--                     writers of the same digest wait until the row is gone).
--   last_used:          the lease: last HEAD/GET/upload/mount of the blob.
--   unreferenced_since: when it was created or last lost a reference; the grace
--                       period counts from here.
ALTER TABLE blobs ADD COLUMN state TEXT NOT NULL DEFAULT 'live';
ALTER TABLE blobs ADD COLUMN last_used INTEGER NOT NULL DEFAULT 0;
ALTER TABLE blobs ADD COLUMN unreferenced_since INTEGER NOT NULL DEFAULT 0;
UPDATE blobs SET last_used = created, unreferenced_since = created;
CREATE INDEX blobs_state ON blobs (state);
CREATE INDEX uploads_updated ON uploads (updated);
CREATE INDEX tags_updated ON tags (repo, updated);
CREATE INDEX manifests_created ON manifests (repo, created);
