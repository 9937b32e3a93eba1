-- Encryption at rest covers image data, and the metadata database is not
-- encrypted: nothing copied out of a manifest or its config stays here.
-- Annotations, artifact type and platform are read from the stored (and
-- encrypted) manifest when an API needs them (docs/encryption.md).
-- PostgreSQL keeps dropped and updated values in dead row versions until
-- the table is rewritten: run VACUUM FULL manifests, recycle_bin after the
-- upgrade (docs/encryption.md, "What is encrypted").
ALTER TABLE manifests DROP COLUMN annotations, DROP COLUMN artifact_type, DROP COLUMN architecture, DROP COLUMN os;
-- Soft-deleted manifests keep their row as JSON: the same fields go.
UPDATE recycle_bin SET record = (record::jsonb - 'Annotations' - 'ArtifactType' - 'Architecture' - 'OS')::text;
