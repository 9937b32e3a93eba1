package postgres

// All SQL the Tx methods run, in one place. pgx prepares each statement once
// per connection and caches it (QueryExecModeCacheStatement), so these are
// parsed and planned once, like SQLite's prepared statements.
//
// Names, digests and IDs are COLLATE "C" columns (migrations/0001_init.sql),
// so ORDER BY and the "after" cursors compare bytes, as the Tx contract says.
// A NULL LIMIT is no limit (limitOf).
const (
	sqlAppendEvent  = `INSERT INTO events (time, kind, actor, addr, repo, digest, tag, media_type, size, reason, previous, origin, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`
	manifestColumns = `repo, digest, media_type, size, subject, created, locks`
	blobColumns     = `digest, size, created, state, last_used, unreferenced_since`
	uploadColumns   = `id, repo, size, hash_state, chunks, started, updated, gen, data_gen, verified`
	tagColumns      = `name, digest, updated, locks, created`
	recycleColumns  = `id, record, refs, tags, deleted, expires`
	dataKeyColumns  = `id, object, key_id, key_version, wrapped, created`
)

// Schema migrations (postgres.go).
const (
	sqlCreateMigrations = `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied BIGINT NOT NULL)`
	sqlSchemaVersion    = `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`
	sqlMigrationsExist  = `SELECT to_regclass('schema_migrations') IS NOT NULL`
	sqlRecordMigration  = `INSERT INTO schema_migrations (version, applied) VALUES ($1, $2)`
	sqlAdvisoryLock     = `SELECT pg_advisory_lock($1)`
	sqlAdvisoryUnlock   = `SELECT pg_advisory_unlock($1)`
)

// Repositories.
const (
	// An existing repository's updated moves at most once a second: every
	// push creates its repository, and an upsert that always writes would
	// make the row a hot spot (row locks, serialization failures) when one
	// repository takes pushes through several nodes. DO NOTHING takes no row
	// lock, and the UPDATE writes only when the snapshot's value is stale.
	// tags_version starts at a random point (see meta/sqlite: the tag cache
	// must not mistake a re-created repository for the deleted one).
	sqlCreateRepository = `WITH ins AS (INSERT INTO repositories (name, created, updated, tags_version)
			VALUES ($1, $2, $2, floor(random() * 4611686018427387904)::bigint)
			ON CONFLICT (name) DO NOTHING RETURNING 1)
		UPDATE repositories SET updated = $2 WHERE name = $1 AND updated < $2 - 1000000000`
	sqlGetRepository    = `SELECT created, updated, tags_version, locks FROM repositories WHERE name = $1`
	sqlListRepositories = `SELECT name FROM repositories WHERE name > $1 AND ($2 OR locks & 8 = 0) ORDER BY name LIMIT $3`
	sqlSetRepoLocks     = `UPDATE repositories SET locks = $1 WHERE name = $2`
	sqlBumpTagsVersion  = `UPDATE repositories SET tags_version = tags_version + 1 WHERE name = $1`

	sqlDeleteRepoLinks     = `DELETE FROM repository_blobs WHERE repo = $1`
	sqlDeleteRepoManifests = `DELETE FROM manifests WHERE repo = $1`
	sqlDeleteRepoRefs      = `DELETE FROM manifest_references WHERE repo = $1`
	sqlDeleteRepoTags      = `DELETE FROM tags WHERE repo = $1`
	sqlDeleteRepoUploads   = `DELETE FROM uploads WHERE repo = $1`
	sqlDeleteRepository    = `DELETE FROM repositories WHERE name = $1`
)

// Blobs and links.
const (
	sqlPutBlob = `INSERT INTO blobs (digest, size, created, state, last_used, unreferenced_since) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (digest) DO UPDATE SET size = excluded.size, state = excluded.state,
			last_used = excluded.last_used, unreferenced_since = excluded.unreferenced_since`
	sqlGetBlob          = `SELECT ` + blobColumns + ` FROM blobs WHERE digest = $1`
	sqlSetBlobState     = `UPDATE blobs SET state = $1 WHERE digest = $2`
	sqlTouchBlob        = `UPDATE blobs SET last_used = GREATEST(last_used, $1) WHERE digest = $2`
	sqlMarkUnreferenced = `UPDATE blobs SET unreferenced_since = GREATEST(unreferenced_since, $1) WHERE digest = ANY($2)`
	sqlDeleteBlob       = `DELETE FROM blobs WHERE digest = $1`
	sqlDeleteBlobLinks  = `DELETE FROM repository_blobs WHERE digest = $1`
	sqlBlobReferenced   = `SELECT EXISTS (SELECT 1 FROM manifest_references WHERE child = $1)
		OR EXISTS (SELECT 1 FROM manifests WHERE digest = $1)
		OR EXISTS (SELECT 1 FROM recycle_refs WHERE digest = $1)`
	// OFFSET 0 keeps each NOT EXISTS a probe of an index per blob, in the
	// walk of the primary key that stops at the limit. Without it the
	// planner made them hash anti-joins over whole tables (sorted after),
	// so every page cost the whole registry: collecting k blobs read it
	// k/256 times (docs/performance.md, "GC's cost").
	sqlCollectableBlobs = `SELECT ` + blobColumns + ` FROM blobs b
		WHERE state IN ('pending', 'live') AND unreferenced_since <= $1 AND last_used <= $2 AND digest > $3
		AND NOT EXISTS (SELECT 1 FROM manifest_references r WHERE r.child = b.digest OFFSET 0)
		AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.digest = b.digest OFFSET 0)
		AND NOT EXISTS (SELECT 1 FROM recycle_refs x WHERE x.digest = b.digest OFFSET 0)
		ORDER BY digest LIMIT $4`
	sqlBlobsInState   = `SELECT ` + blobColumns + ` FROM blobs WHERE state = $1 AND digest > $2 ORDER BY digest LIMIT $3`
	sqlLinkBlob       = `INSERT INTO repository_blobs (repo, digest, created) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`
	sqlUnlinkBlob     = `DELETE FROM repository_blobs WHERE repo = $1 AND digest = $2`
	sqlRepositoryBlob = `SELECT b.digest, b.size, b.created, b.state, b.last_used, b.unreferenced_since, COALESCE(r.locks, 0)
		FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest LEFT JOIN repositories r ON r.name = rb.repo
		WHERE rb.repo = $1 AND rb.digest = $2 AND b.state = 'live'`
	sqlLinkedBlob = `SELECT ` + blobColumns + ` FROM blobs b WHERE digest = $1 AND state = 'live' AND EXISTS (
		SELECT 1 FROM repository_blobs rb JOIN repositories r ON r.name = rb.repo WHERE rb.digest = b.digest AND (r.locks & $2) = 0)`
)

// Manifests.
const (
	// A new row takes the record's locks (a restore brings them back); a
	// manifest pushed again keeps the locks it has.
	sqlPutManifest = `INSERT INTO manifests (repo, digest, media_type, size, subject, created, locks)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (repo, digest) DO UPDATE SET media_type = excluded.media_type,
			size = excluded.size, subject = excluded.subject`
	sqlDeleteManifestRefs = `DELETE FROM manifest_references WHERE repo = $1 AND parent = $2`
	// All references of a manifest in one statement: $3 and $4 are parallel
	// arrays of children and kinds.
	sqlPutManifestRefs = `INSERT INTO manifest_references (repo, parent, child, kind)
		SELECT $1::text, $2::text, child, kind FROM unnest($3::text[], $4::text[]) AS r (child, kind)
		ON CONFLICT DO NOTHING`
	sqlGetManifest    = `SELECT ` + manifestColumns + ` FROM manifests WHERE repo = $1 AND digest = $2`
	sqlDeleteManifest = `DELETE FROM manifests WHERE repo = $1 AND digest = $2`
	// subject <> '' lets the partial index manifests_subject serve these.
	sqlReferrers     = `SELECT ` + manifestColumns + ` FROM manifests WHERE repo = $1 AND subject = $2 AND subject <> '' ORDER BY digest`
	sqlReferrersPage = `SELECT ` + manifestColumns + ` FROM manifests WHERE repo = $1 AND subject = $2 AND subject <> ''
		AND digest > $3 ORDER BY digest LIMIT $4`
	sqlListManifests     = `SELECT ` + manifestColumns + ` FROM manifests WHERE repo = $1 ORDER BY created DESC, digest`
	sqlManifestRefs      = `SELECT child, kind FROM manifest_references WHERE repo = $1 AND parent = $2 ORDER BY child`
	sqlManifestParents   = `SELECT parent FROM manifest_references WHERE repo = $1 AND child = $2 ORDER BY parent`
	sqlSetManifestLock   = `UPDATE manifests SET locks = $1 WHERE repo = $2 AND digest = $3`
	sqlSetUntaggedSince  = `UPDATE manifests SET untagged_since = $1 WHERE repo = $2 AND digest = $3`
	sqlUntaggedManifests = `SELECT ` + manifestColumns + ` FROM manifests m WHERE repo = $1
		AND (CASE WHEN untagged_since > 0 THEN untagged_since ELSE created END) <= $2
		AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo = m.repo AND t.digest = m.digest)
		AND NOT EXISTS (SELECT 1 FROM manifest_references p WHERE p.repo = m.repo AND p.child = m.digest)
		ORDER BY created, digest`
)

// Tags. Every write to tags moves repositories.tags_version through the
// tags_version trigger.
const (
	sqlPutTag = `INSERT INTO tags (repo, name, digest, updated, created) VALUES ($1, $2, $3, $4, $4)
		ON CONFLICT (repo, name) DO UPDATE SET digest = excluded.digest, updated = excluded.updated`
	sqlGetTag       = `SELECT digest FROM tags WHERE repo = $1 AND name = $2`
	sqlListTags     = `SELECT name FROM tags WHERE repo = $1 AND name > $2 AND locks & 8 = 0 ORDER BY name LIMIT $3`
	sqlTagsOf       = `SELECT name FROM tags WHERE repo = $1 AND digest = $2 ORDER BY name`
	sqlDeleteTag    = `DELETE FROM tags WHERE repo = $1 AND name = $2`
	sqlTagRecords   = `SELECT ` + tagColumns + ` FROM tags WHERE repo = $1 ORDER BY name`
	sqlGetTagRecord = `SELECT ` + tagColumns + ` FROM tags WHERE repo = $1 AND name = $2`
	sqlSetTagLocks  = `UPDATE tags SET locks = $1 WHERE repo = $2 AND name = $3`
)

// Uploads. PutUpload does not overwrite: an existing ID is reported without
// failing the statement (a failed statement would abort the transaction).
const (
	sqlPutUpload = `INSERT INTO uploads (id, repo, size, hash_state, chunks, started, updated) VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (id) DO NOTHING`
	sqlAdvanceUpload = `UPDATE uploads SET size = $1, hash_state = $2, chunks = $3, updated = $4, data_gen = $5, verified = $6
		WHERE id = $7 AND size = $8 AND gen = $9`
	sqlReleaseWriters = `UPDATE uploads SET writer = '', writer_until = 0 WHERE writer <> '' AND left(writer, length($1)) = $1`
	sqlReleaseUpload  = `UPDATE uploads SET writer = '', writer_until = 0 WHERE id = $1 AND writer = $2`
	sqlGetUpload      = `SELECT ` + uploadColumns + ` FROM uploads WHERE id = $1`
	sqlDeleteUpload   = `DELETE FROM uploads WHERE id = $1`
	sqlStaleUploads   = `SELECT ` + uploadColumns + ` FROM uploads
		WHERE updated < $1 AND (writer = '' OR writer_until < ` + dbNowNanos + `) ORDER BY updated LIMIT $2`
)

// Settings.
const (
	sqlGetSetting = `SELECT value FROM settings WHERE key = $1`
	sqlPutSetting = `INSERT INTO settings (key, value, updated) VALUES ($1, $2, $3)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated = excluded.updated`
)

// Recycle bin.
const (
	sqlPutRecycled = `INSERT INTO recycle_bin (repo, digest, record, refs, tags, deleted, expires)
		VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`
	sqlPutRecycleRefs = `INSERT INTO recycle_refs (bin_id, digest) SELECT $1::bigint, d FROM unnest($2::text[]) AS r (d)
		ON CONFLICT DO NOTHING`
	sqlGetRecycled     = `SELECT ` + recycleColumns + ` FROM recycle_bin WHERE id = $1`
	sqlListRecycled    = `SELECT ` + recycleColumns + ` FROM recycle_bin WHERE ($1::text = '' OR repo = $1) ORDER BY deleted DESC, id DESC`
	sqlExpiredRecycled = `SELECT ` + recycleColumns + ` FROM recycle_bin WHERE expires < $1 ORDER BY expires LIMIT $2`
	sqlDeleteRecycled  = `DELETE FROM recycle_bin WHERE id = $1`
	sqlDeleteRecRefs   = `DELETE FROM recycle_refs WHERE bin_id = $1`
)

// Usage.
const (
	// The registry's sums and each repository's referenced bytes and counts
	// are kept by triggers (migration 0015): reading them costs the same at
	// any size.
	// The live blobs' count and bytes are on held_bytes's rows (0015).
	sqlBlobTotals  = `SELECT COALESCE(sum(blobs), 0)::bigint, COALESCE(sum(live_bytes), 0)::bigint FROM held_bytes`
	sqlUsageTotals = `SELECT b.n, b.bytes, COALESCE(sum(repositories), 0)::bigint,
		COALESCE(sum(referenced_bytes), 0)::bigint, COALESCE(sum(manifests), 0)::bigint, COALESCE(sum(tags), 0)::bigint,
		COALESCE(sum(untagged), 0)::bigint FROM usage_totals,
		(SELECT COALESCE(sum(blobs), 0)::bigint AS n, COALESCE(sum(live_bytes), 0)::bigint AS bytes FROM held_bytes) b GROUP BY b.n, b.bytes`
	sqlHeldBytes     = `SELECT COALESCE(sum(bytes), 0)::bigint FROM held_bytes`
	sqlRepoHeldBytes = `SELECT COALESCE(sum(size), 0)::bigint FROM blobs WHERE state = 'live' AND digest IN (
			SELECT digest FROM repository_blobs WHERE repo = $1 UNION SELECT digest FROM manifests WHERE repo = $1)`
	// A repository's row (r, with its repository_usage u): the kept sums,
	// and the bytes only it uses: the sizes of the digests it owns alone
	// (digest_owners, migration 0017), an index-only scan of one range of
	// digest_owners_sole. The cost grows with the digests only that
	// repository uses, not with its other digests or the registry.
	repoUsageColumns = `r.name, COALESCE(u.referenced_bytes, 0)::bigint,
		(SELECT COALESCE(sum(o.size), 0) FROM digest_owners o WHERE o.sole_owner = r.name)::bigint,
		COALESCE(u.manifests, 0)::bigint, COALESCE(u.tags, 0)::bigint, COALESCE(u.untagged, 0)::bigint`
	// A page of repositories in name order: the primary key walked from the
	// cursor, so the cost grows with the page.
	// (The page comes first, then one lookup of repository_usage per row:
	// a plain join let the planner merge-join repository_usage from its
	// first row, not from the cursor.)
	sqlRepositoryUsage = `SELECT ` + repoUsageColumns + ` FROM (SELECT name FROM repositories WHERE name > $1 ORDER BY name LIMIT $2) r
		LEFT JOIN LATERAL (SELECT * FROM repository_usage WHERE repo = r.name) u ON true ORDER BY r.name`
	// Every repository from the cursor (no LIMIT): the same rows as pages
	// of sqlRepositoryUsage, with the unique bytes of all repositories
	// from the cursor in one grouped pass over digest_owners_sole instead
	// of a range per repository.
	sqlRepositoryUsageAll = `WITH uniq AS (
			SELECT sole_owner AS repo, sum(size) AS bytes FROM digest_owners
			WHERE sole_owner IS NOT NULL AND sole_owner > $1 GROUP BY sole_owner
		)
		SELECT r.name, COALESCE(u.referenced_bytes, 0)::bigint, COALESCE(q.bytes, 0)::bigint,
			COALESCE(u.manifests, 0)::bigint, COALESCE(u.tags, 0)::bigint, COALESCE(u.untagged, 0)::bigint
		FROM repositories r LEFT JOIN repository_usage u ON u.repo = r.name LEFT JOIN uniq q ON q.repo = r.name
		WHERE r.name > $1 ORDER BY r.name`
	sqlRepositoryUsageOf = `SELECT ` + repoUsageColumns + ` FROM repositories r LEFT JOIN repository_usage u ON u.repo = r.name
		WHERE r.name = $1`
	// The kept sums of one repository, without its unique bytes.
	sqlRepositoryKept = `SELECT r.name, COALESCE(u.referenced_bytes, 0)::bigint, 0::bigint, COALESCE(u.manifests, 0)::bigint,
		COALESCE(u.tags, 0)::bigint, COALESCE(u.untagged, 0)::bigint
		FROM repositories r LEFT JOIN repository_usage u ON u.repo = r.name WHERE r.name = $1`
	// The largest: repository_usage_size walked from the top, the names
	// first (ties by name read only the sizes of the tie), then the rows.
	sqlLargestRepositories = `WITH top AS MATERIALIZED (
			SELECT repo FROM repository_usage ORDER BY referenced_bytes DESC, repo LIMIT $1
		)
		SELECT ` + repoUsageColumns + ` FROM top
			JOIN LATERAL (SELECT name FROM repositories WHERE name = top.repo) r ON true
			JOIN LATERAL (SELECT * FROM repository_usage WHERE repo = top.repo) u ON true
		ORDER BY u.referenced_bytes DESC, u.repo`
	// What each manifest of a page uses: itself plus its blobs; unique =
	// held by no other manifest anywhere (a manifest holds its own digest).
	// The page (newest first, from the cursor $2 digest, $3 created) is
	// chosen first, by a range of manifests_created; each digest's other
	// holders are then found by index probes, so the cost grows with the
	// page, not the repository or the registry.
	sqlManifestUsage = `WITH page AS MATERIALIZED (
			SELECT digest, media_type, created FROM manifests WHERE repo = $1
				AND created <= $3 AND (created < $3 OR digest < $2)
			ORDER BY created DESC, digest DESC LIMIT $4
		), holders AS (
			SELECT digest AS holder, digest AS d FROM page
			UNION ALL
			SELECT r.parent, r.child FROM page p JOIN manifest_references r ON r.repo = $1 AND r.parent = p.digest AND r.kind = 'blob'
		)
		SELECT p.digest, p.media_type, p.created, COALESCE(sum(b.size), 0)::bigint,
			COALESCE(sum(CASE WHEN NOT EXISTS (SELECT 1 FROM manifests o WHERE o.digest = h.d AND NOT (o.repo = $1 AND o.digest = h.holder))
				AND NOT EXISTS (SELECT 1 FROM manifest_references o WHERE o.child = h.d AND o.kind = 'blob' AND NOT (o.repo = $1 AND o.parent = h.holder))
				THEN b.size ELSE 0 END), 0)::bigint,
			COALESCE((SELECT array_agg(t.name ORDER BY t.name) FROM tags t WHERE t.repo = $1 AND t.digest = p.digest), '{}')
		FROM page p
		JOIN holders h ON h.holder = p.digest
		LEFT JOIN blobs b ON b.digest = h.d
		GROUP BY p.digest, p.media_type, p.created ORDER BY p.created DESC, p.digest DESC`
)

// Data keys. PutDataKey refuses an existing ID without failing the
// statement, as PutUpload.
const (
	sqlPutDataKey = `INSERT INTO data_keys (` + dataKeyColumns + `) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (id) DO NOTHING`
	sqlGetDataKey    = `SELECT ` + dataKeyColumns + ` FROM data_keys WHERE id = $1`
	sqlMoveDataKeys  = `UPDATE data_keys SET object = $1 WHERE object = $2`
	sqlDelDataKeys   = `DELETE FROM data_keys WHERE object = $1`
	sqlDelDataKey    = `DELETE FROM data_keys WHERE id = $1`
	sqlDataKeysNotBy = `SELECT ` + dataKeyColumns + ` FROM data_keys
		WHERE NOT (key_id = $1 AND key_version = $2) AND id > $3 ORDER BY id LIMIT $4`
	sqlRewrapDataKey = `UPDATE data_keys SET key_id = $1, key_version = $2, wrapped = $3
		WHERE id = $4 AND key_id = $5 AND key_version = $6`
	sqlCountDataKeys = `SELECT key_id, key_version, count(*) FROM data_keys GROUP BY key_id, key_version ORDER BY key_id, key_version`
	sqlSampleDataKey = `SELECT ` + dataKeyColumns + ` FROM data_keys WHERE key_id = $1 AND key_version = $2 LIMIT 1`
)

// dbNowNanos is the database's clock in Unix nanoseconds (microsecond
// resolution), for upload writer leases. clock_timestamp(), not now(): a
// transaction's start time may be long past when it claims.
const dbNowNanos = `(floor(extract(epoch FROM clock_timestamp()) * 1000000)::bigint * 1000)`

// Upload writer leases end by the database's clock (dbNowNanos), not by
// the nodes' clocks, which may disagree. Taking over a lease that ran
// out while held bumps gen (the fence, see Registry.lockUpload).
const sqlClaimUpload = `UPDATE uploads SET gen = CASE WHEN writer <> '' AND writer <> $1 THEN gen + 1 ELSE gen END,
		writer = $1, writer_until = ` + dbNowNanos + ` + $2 WHERE id = $3 AND (writer = '' OR writer = $1 OR writer_until < ` + dbNowNanos + `)`

// The change feed (feed.go). Inserts leave seq NULL; the sequencer numbers
// committed rows in id order under the feed_state row lock.
const (
	eventColumns       = `seq, time, kind, actor, addr, repo, digest, tag, media_type, size, reason, previous, origin, detail`
	sqlFeedUnsequenced = `SELECT EXISTS (SELECT 1 FROM events WHERE seq IS NULL)`
	sqlFeedLock        = `SELECT next_seq FROM feed_state WHERE id = 1 FOR UPDATE`
	// $1 the first number to give (next_seq, or above max(seq)), $2 the
	// batch size; returns how many rows were numbered.
	sqlFeedSequence = `WITH batch AS (
			SELECT id, row_number() OVER (ORDER BY id) AS n FROM events WHERE seq IS NULL ORDER BY id LIMIT $2),
		numbered AS (UPDATE events e SET seq = $1 + batch.n - 1 FROM batch WHERE e.id = batch.id RETURNING 1)
		SELECT count(*) FROM numbered`
	sqlFeedMaxSeq    = `SELECT coalesce(max(seq), 0) FROM events`
	sqlFeedSetNext   = `UPDATE feed_state SET next_seq = $1 WHERE id = 1`
	sqlFeedWindow    = `SELECT * FROM events WHERE seq > $1 AND $3 = '' ORDER BY seq LIMIT $2`
	sqlFeedWindowRep = `SELECT * FROM events WHERE seq > $1 AND repo = $3 ORDER BY seq LIMIT $2`
	// $4 actor, $5 kinds, $6 since, $7 until (0: none), $8 limit.
	sqlFeedFilter = `SELECT ` + eventColumns + ` FROM w
		WHERE ($4 = '' OR actor = $4) AND (cardinality($5::text[]) = 0 OR kind = ANY($5::text[]))
		AND ($6::bigint = 0 OR time >= $6::bigint) AND ($7::bigint = 0 OR time < $7::bigint) ORDER BY seq LIMIT $8`
	sqlFeedWindowEnd  = `SELECT count(*), coalesce(max(seq), 0) FROM w`
	sqlFeedBounds     = `SELECT coalesce(min(seq), 0), coalesce(max(seq), 0) FROM events`
	sqlFeedFirstYoung = `SELECT seq FROM events WHERE seq IS NOT NULL AND time >= $1 ORDER BY seq LIMIT 1`
	sqlFeedTrim       = `DELETE FROM events WHERE seq <= $1`
)
