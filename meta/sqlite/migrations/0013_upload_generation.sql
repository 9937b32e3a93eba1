-- Fencing of upload writers (see Registry.lockUpload): a claim that takes
-- over a lease that ran out while held bumps gen, and the new writer goes on
-- in a fresh data object (uploads/<id>/data.<gen>), so a stale writer's late
-- bytes land where nobody reads them. data_gen names the object that holds
-- the recorded bytes. verified is the digest a final PUT proved the bytes
-- have, recorded before it moved them to their blob key (a retried PUT after
-- a crash may then only claim that digest).
ALTER TABLE uploads ADD COLUMN gen INTEGER NOT NULL DEFAULT 0;
ALTER TABLE uploads ADD COLUMN data_gen INTEGER NOT NULL DEFAULT 0;
ALTER TABLE uploads ADD COLUMN verified TEXT NOT NULL DEFAULT '';
