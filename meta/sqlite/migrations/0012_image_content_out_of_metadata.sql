-- Encryption at rest covers image data, and the metadata database is not
-- encrypted: nothing copied out of a manifest or its config stays here.
-- Annotations, artifact type and platform are read from the stored (and
-- encrypted) manifest when an API needs them (docs/encryption.md). Open
-- runs VACUUM after this migration, so the old values do not linger in free
-- pages of the file or in the WAL.
ALTER TABLE manifests DROP COLUMN annotations;
ALTER TABLE manifests DROP COLUMN artifact_type;
ALTER TABLE manifests DROP COLUMN architecture;
ALTER TABLE manifests DROP COLUMN os;
-- Soft-deleted manifests keep their row as JSON: the same fields go.
UPDATE recycle_bin SET record = json_remove(record, '$.Annotations', '$.ArtifactType', '$.Architecture', '$.OS')
	WHERE json_valid(record);
