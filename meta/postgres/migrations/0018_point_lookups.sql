-- A row looked up by its whole primary key is found by its whole key in
-- every plan. pgx prepares each statement once per connection and PL/pgSQL
-- each trigger statement once per session, and after five executions
-- PostgreSQL may keep a generic plan, which estimates "digest = $2" at one
-- row like any other digest. Where a table keyed by (repo, digest) also had
-- an index on digest alone, that estimate made the two indexes cost the
-- same and PostgreSQL took the digest's, filtering the repository out of
-- the digest's range: for a layer or an image many repositories share,
-- every one of them. A retention pass on a registry of 1,000,000
-- manifests, whose base layer 100,000 repositories share, updated
-- usage_digests three times per deletion through usage_digests_digest and
-- did not finish in 16 minutes (docs/performance.md); a manifest GET by
-- digest went through manifests_digest the same way.
--
-- Each secondary index now ends with the rest of its table's key, so both
-- candidate plans are a point lookup, and queries by the leading columns
-- alone are served by the prefix as before
-- (TestPointLookupsStayPointLookups).
CREATE INDEX usage_digests_digest_repo ON usage_digests (digest, repo);
DROP INDEX usage_digests_digest;
CREATE INDEX manifests_digest_repo ON manifests (digest, repo);
DROP INDEX manifests_digest;
CREATE INDEX repository_blobs_digest_repo ON repository_blobs (digest, repo);
DROP INDEX repository_blobs_digest;
CREATE INDEX manifest_references_child_key ON manifest_references (child, repo, parent);
DROP INDEX manifest_references_child;
CREATE INDEX recycle_refs_digest_bin ON recycle_refs (digest, bin_id);
DROP INDEX recycle_refs_digest;
