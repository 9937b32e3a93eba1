package sqlite

// All SQL the Tx methods run, in one place. Open prepares every statement
// once per pool (database/sql then keeps one prepared copy per connection),
// because parsing SQL on each call was a quarter of a manifest GET's cost.
const (
	manifestColumns = `repo, digest, media_type, size, subject, created, locks`
	blobColumns     = `digest, size, created, state, last_used, unreferenced_since`
)

const (
	sqlAppendEvent = `INSERT INTO events (id, seq, time, kind, actor, addr, repo, digest, tag, media_type, size, reason, previous, origin, detail)
		SELECT n, n, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? FROM (SELECT coalesce(max(id), 0) + 1 AS n FROM events)`
	// An existing repository's updated moves at most once a second (as on
	// PostgreSQL, where an always-writing upsert is a hot row).
	// A new repository's tags_version starts at a random point, not 0: a
	// node's tag cache keyed by (name, tags_version) must not take a
	// repository deleted and created again for the old one once its version
	// climbs back to the cached value (found by the model-based test).
	sqlCreateRepository = `INSERT INTO repositories (name, created, updated, tags_version) VALUES (?, ?, ?, abs(random() % 4611686018427387904))
		ON CONFLICT (name) DO UPDATE SET updated = excluded.updated WHERE repositories.updated < excluded.updated - 1000000000`
	sqlGetRepository    = `SELECT created, updated, tags_version, locks FROM repositories WHERE name = ?`
	sqlListRepositories = `SELECT group_concat(name, ',') FROM
		(SELECT name FROM repositories WHERE name > ? AND (? OR locks & 8 = 0) ORDER BY name LIMIT ?)`
	sqlPutBlob = `INSERT INTO blobs (digest, size, created, state, last_used, unreferenced_since) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (digest) DO UPDATE SET size = excluded.size, state = excluded.state,
			last_used = excluded.last_used, unreferenced_since = excluded.unreferenced_since`
	sqlGetBlob          = `SELECT ` + blobColumns + ` FROM blobs WHERE digest = ?`
	sqlSetBlobState     = `UPDATE blobs SET state = ? WHERE digest = ?`
	sqlTouchBlob        = `UPDATE blobs SET last_used = max(last_used, ?) WHERE digest = ?`
	sqlMarkUnreferenced = `UPDATE blobs SET unreferenced_since = max(unreferenced_since, ?) WHERE digest = ?`
	sqlDeleteBlob       = `DELETE FROM blobs WHERE digest = ?`
	sqlDeleteBlobLinks  = `DELETE FROM repository_blobs WHERE digest = ?`
	sqlBlobReferenced   = `SELECT EXISTS (SELECT 1 FROM manifest_references WHERE child = ?) OR EXISTS (SELECT 1 FROM manifests WHERE digest = ?)
		OR EXISTS (SELECT 1 FROM recycle_refs WHERE digest = ?)`
	// +state keeps SQLite off the index blobs_state: through it, every page
	// read all the blobs after `after` and sorted them (a temporary B-tree)
	// to return the first few, so a collection of k blobs read the table
	// k/limit times. Through the primary key a page stops at its limit.
	sqlCollectableBlobs = `SELECT ` + blobColumns + ` FROM blobs b
		WHERE +state IN ('pending', 'live') AND unreferenced_since <= ? AND last_used <= ? AND digest > ?
		AND NOT EXISTS (SELECT 1 FROM manifest_references r WHERE r.child = b.digest)
		AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.digest = b.digest)
		AND NOT EXISTS (SELECT 1 FROM recycle_refs x WHERE x.digest = b.digest)
		ORDER BY digest LIMIT ?`
	sqlBlobsInState   = `SELECT ` + blobColumns + ` FROM blobs WHERE state = ? AND digest > ? ORDER BY digest LIMIT ?`
	sqlLinkBlob       = `INSERT INTO repository_blobs (repo, digest, created) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`
	sqlUnlinkBlob     = `DELETE FROM repository_blobs WHERE repo = ? AND digest = ?`
	sqlRepositoryBlob = `SELECT b.digest, b.size, b.created, b.state, b.last_used, b.unreferenced_since, coalesce(r.locks, 0)
		FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest LEFT JOIN repositories r ON r.name = rb.repo
		WHERE rb.repo = ? AND rb.digest = ? AND b.state = 'live'`
	sqlLinkedBlob = `SELECT ` + blobColumns + ` FROM blobs b WHERE digest = ? AND state = 'live' AND EXISTS (
		SELECT 1 FROM repository_blobs rb JOIN repositories r ON r.name = rb.repo WHERE rb.digest = b.digest AND (r.locks & ?) = 0)`
	// A new row takes the record's locks (a restore brings them back); a
	// manifest pushed again keeps the locks it has.
	sqlPutManifest = `INSERT INTO manifests (repo, digest, media_type, size, subject, created, locks)
		VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (repo, digest) DO UPDATE SET media_type = excluded.media_type,
			size = excluded.size, subject = excluded.subject`
	sqlDeleteManifestRefs = `DELETE FROM manifest_references WHERE repo = ? AND parent = ?`
	sqlPutManifestRef     = `INSERT INTO manifest_references (repo, parent, child, kind) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING`
	sqlGetManifest        = `SELECT ` + manifestColumns + ` FROM manifests WHERE repo = ? AND digest = ?`
	sqlDeleteManifest     = `DELETE FROM manifests WHERE repo = ? AND digest = ?`
	// subject <> '' lets the partial index manifests_subject serve these
	// (a bound parameter does not prove it), in digest order.
	// INDEXED BY: without statistics SQLite prefers walking the primary
	// key (repo, digest), which yields digest order but reads every
	// manifest of the repository, once per manifest a delete removes
	// (quadratic: docs/performance.md, "Cost at scale").
	sqlReferrers     = `SELECT ` + manifestColumns + ` FROM manifests INDEXED BY manifests_subject WHERE repo = ? AND subject = ? AND subject <> '' ORDER BY digest`
	sqlReferrersPage = `SELECT ` + manifestColumns + ` FROM manifests INDEXED BY manifests_subject WHERE repo = ? AND subject = ? AND subject <> ''
		AND digest > ? ORDER BY digest LIMIT ?`
	sqlPutTag = `INSERT INTO tags (repo, name, digest, updated, created) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (repo, name) DO UPDATE SET digest = excluded.digest, updated = excluded.updated`
	sqlGetTag = `SELECT digest FROM tags WHERE repo = ? AND name = ?`
	// The subquery walks the primary key (repo, name) in order, and
	// group_concat keeps the order rows arrive in: no sort is needed.
	sqlListTags = `SELECT group_concat(name, ',') FROM
		(SELECT name FROM tags WHERE repo = ? AND name > ? AND locks & 8 = 0 ORDER BY name LIMIT ?)`
	sqlTagsOf         = `SELECT name FROM tags WHERE repo = ? AND digest = ? ORDER BY name`
	sqlDeleteTag      = `DELETE FROM tags WHERE repo = ? AND name = ?`
	sqlPutUpload      = `INSERT INTO uploads (id, repo, size, hash_state, chunks, started, updated) VALUES (?, ?, ?, ?, ?, ?, ?)`
	sqlAdvanceUpload  = `UPDATE uploads SET size = ?, hash_state = ?, chunks = ?, updated = ?, data_gen = ?, verified = ? WHERE id = ? AND size = ? AND gen = ?`
	sqlReleaseWriters = `UPDATE uploads SET writer = '', writer_until = 0 WHERE writer <> '' AND substr(writer, 1, length(?)) = ?`
	sqlReleaseUpload  = `UPDATE uploads SET writer = '', writer_until = 0 WHERE id = ? AND writer = ?`
	sqlGetUpload      = `SELECT repo, size, hash_state, chunks, started, updated, gen, data_gen, verified FROM uploads WHERE id = ?`
	sqlDeleteUpload   = `DELETE FROM uploads WHERE id = ?`
	sqlStaleUploads   = `SELECT id, repo, size, hash_state, chunks, started, updated, gen, data_gen, verified FROM uploads
		WHERE updated < ? AND (writer = '' OR writer_until < ` + dbNowNanos + `) ORDER BY updated LIMIT ?`

	sqlListManifests   = `SELECT ` + manifestColumns + ` FROM manifests WHERE repo = ? ORDER BY created DESC, digest`
	sqlManifestRefs    = `SELECT child, kind FROM manifest_references WHERE repo = ? AND parent = ? ORDER BY child`
	sqlManifestParents = `SELECT parent FROM manifest_references WHERE repo = ? AND child = ? ORDER BY parent`

	sqlDeleteRepoLinks     = `DELETE FROM repository_blobs WHERE repo = ?`
	sqlDeleteRepoManifests = `DELETE FROM manifests WHERE repo = ?`
	sqlDeleteRepoRefs      = `DELETE FROM manifest_references WHERE repo = ?`
	sqlDeleteRepoTags      = `DELETE FROM tags WHERE repo = ?`
	sqlDeleteRepoUploads   = `DELETE FROM uploads WHERE repo = ?`
	sqlDeleteRepository    = `DELETE FROM repositories WHERE name = ?`

	sqlSetUntaggedSince  = `UPDATE manifests SET untagged_since = ? WHERE repo = ? AND digest = ?`
	sqlUntaggedManifests = `SELECT ` + manifestColumns + ` FROM manifests m WHERE repo = ?
		AND (CASE WHEN untagged_since > 0 THEN untagged_since ELSE created END) <= ?
		AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo = m.repo AND t.digest = m.digest)
		AND NOT EXISTS (SELECT 1 FROM manifest_references p WHERE p.repo = m.repo AND p.child = m.digest)
		ORDER BY created, digest`
	sqlTagRecords      = `SELECT name, digest, updated, locks, created FROM tags WHERE repo = ? ORDER BY name`
	sqlGetTagRecord    = `SELECT name, digest, updated, locks, created FROM tags WHERE repo = ? AND name = ?`
	sqlSetRepoLocks    = `UPDATE repositories SET locks = ? WHERE name = ?`
	sqlSetTagLocks     = `UPDATE tags SET locks = ? WHERE repo = ? AND name = ?`
	sqlSetManifestLock = `UPDATE manifests SET locks = ? WHERE repo = ? AND digest = ?`
	sqlBumpTagsVersion = `UPDATE repositories SET tags_version = tags_version + 1 WHERE name = ?`
	sqlGetSetting      = `SELECT value FROM settings WHERE key = ?`
	sqlPutSetting      = `INSERT INTO settings (key, value, updated) VALUES (?, ?, ?)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated = excluded.updated`

	sqlPutRecycled     = `INSERT INTO recycle_bin (repo, digest, record, refs, tags, deleted, expires) VALUES (?, ?, ?, ?, ?, ?, ?)`
	sqlPutRecycleRef   = `INSERT INTO recycle_refs (bin_id, digest) VALUES (?, ?) ON CONFLICT DO NOTHING`
	recycleColumns     = `id, record, refs, tags, deleted, expires`
	sqlGetRecycled     = `SELECT ` + recycleColumns + ` FROM recycle_bin WHERE id = ?`
	sqlListRecycled    = `SELECT ` + recycleColumns + ` FROM recycle_bin WHERE (? = '' OR repo = ?) ORDER BY deleted DESC, id DESC`
	sqlExpiredRecycled = `SELECT ` + recycleColumns + ` FROM recycle_bin WHERE expires < ? ORDER BY expires LIMIT ?`
	sqlDeleteRecycled  = `DELETE FROM recycle_bin WHERE id = ?`
	sqlDeleteRecRefs   = `DELETE FROM recycle_refs WHERE bin_id = ?`

	// The registry's sums and each repository's referenced bytes and counts
	// are kept by triggers (migration 0021): reading them costs the same at
	// any size.
	sqlBlobTotals  = `SELECT coalesce(sum(blobs), 0), coalesce(sum(physical_bytes), 0) FROM usage_totals`
	sqlUsageTotals = `SELECT coalesce(sum(blobs), 0), coalesce(sum(physical_bytes), 0), coalesce(sum(repositories), 0),
		coalesce(sum(referenced_bytes), 0), coalesce(sum(manifests), 0), coalesce(sum(tags), 0), coalesce(sum(untagged), 0) FROM usage_totals`
	sqlHeldBytes     = `SELECT coalesce(sum(bytes), 0) FROM held_bytes`
	sqlRepoHeldBytes = `SELECT coalesce(sum(size), 0) FROM blobs WHERE state = 'live' AND digest IN (
			SELECT digest FROM repository_blobs WHERE repo = ? UNION SELECT digest FROM manifests WHERE repo = ?)`
	// A repository's row (r, with its repository_usage u): the kept sums,
	// and the bytes only it uses: the sizes of the digests it owns alone
	// (digest_owners, migration 0023), one range of the covering partial
	// index digest_owners_sole (named: TestUsagePlansStayInTheRepository
	// pins it). The cost grows with the digests only that repository uses,
	// not with its other digests or the registry.
	repoUsageColumns = `r.name, coalesce(u.referenced_bytes, 0),
		(SELECT coalesce(sum(o.size), 0) FROM digest_owners o INDEXED BY digest_owners_sole WHERE o.sole_owner = r.name),
		coalesce(u.manifests, 0), coalesce(u.tags, 0), coalesce(u.untagged, 0)`
	// A page of repositories in name order: the primary key walked from the
	// cursor, so the cost grows with the page.
	sqlRepositoryUsage = `SELECT ` + repoUsageColumns + ` FROM repositories r LEFT JOIN repository_usage u ON u.repo = r.name
		WHERE r.name > ? ORDER BY r.name LIMIT ?`
	// Every repository from the cursor (no LIMIT): the same rows as pages
	// of sqlRepositoryUsage, with the unique bytes of all repositories in
	// one grouped pass over digest_owners_sole (in its order) instead of a
	// range per repository.
	sqlRepositoryUsageAll = `WITH uniq AS (
			SELECT sole_owner AS repo, sum(size) AS bytes FROM digest_owners INDEXED BY digest_owners_sole
			WHERE sole_owner IS NOT NULL GROUP BY sole_owner
		)
		SELECT r.name, coalesce(u.referenced_bytes, 0), coalesce(q.bytes, 0),
			coalesce(u.manifests, 0), coalesce(u.tags, 0), coalesce(u.untagged, 0)
		FROM repositories r LEFT JOIN repository_usage u ON u.repo = r.name LEFT JOIN uniq q ON q.repo = r.name
		WHERE r.name > ? ORDER BY r.name`
	sqlRepositoryUsageOf = `SELECT ` + repoUsageColumns + ` FROM repositories r LEFT JOIN repository_usage u ON u.repo = r.name
		WHERE r.name = ?`
	// The kept sums of one repository, without its unique bytes.
	sqlRepositoryKept = `SELECT r.name, coalesce(u.referenced_bytes, 0), 0, coalesce(u.manifests, 0), coalesce(u.tags, 0), coalesce(u.untagged, 0)
		FROM repositories r LEFT JOIN repository_usage u ON u.repo = r.name WHERE r.name = ?`
	// The largest: repository_usage_size walked from the top, the names
	// first (ties by name read only the sizes of the tie), then the rows.
	sqlLargestRepositories = `WITH top AS MATERIALIZED (
			SELECT repo FROM repository_usage ORDER BY referenced_bytes DESC, repo LIMIT ?
		)
		SELECT ` + repoUsageColumns + ` FROM top JOIN repositories r ON r.name = top.repo JOIN repository_usage u ON u.repo = top.repo
		ORDER BY u.referenced_bytes DESC, u.repo`
	// What each manifest of a page uses: itself plus its blobs; unique =
	// held by no other manifest anywhere (a manifest holds its own digest).
	// The page (newest first, from the cursor ?2 digest, ?3 created) is
	// chosen first, by a range of manifests_created; each digest's other
	// holders are then found by index probes, so the cost grows with the
	// page, not the repository or the registry. CROSS JOIN keeps the page
	// the outer loop of its references: without statistics SQLite 3.54
	// read every reference of the repository through a Bloom filter of the
	// page instead (150-300 ms a page for 100,000 manifests).
	sqlManifestUsage = `WITH page AS MATERIALIZED (
			SELECT digest, media_type, created FROM manifests WHERE repo = ?1
				AND created <= ?3 AND (created < ?3 OR digest < ?2)
			ORDER BY created DESC, digest DESC LIMIT ?4
		), holders AS (
			SELECT digest AS holder, digest AS d FROM page
			UNION ALL
			SELECT r.parent, r.child FROM page p CROSS JOIN manifest_references r ON r.repo = ?1 AND r.parent = p.digest AND r.kind = 'blob'
		)
		SELECT p.digest, p.media_type, p.created, coalesce(sum(b.size), 0),
			coalesce(sum(CASE WHEN NOT EXISTS (SELECT 1 FROM manifests o WHERE o.digest = h.d AND NOT (o.repo = ?1 AND o.digest = h.holder))
				AND NOT EXISTS (SELECT 1 FROM manifest_references o WHERE o.child = h.d AND o.kind = 'blob' AND NOT (o.repo = ?1 AND o.parent = h.holder))
				THEN b.size ELSE 0 END), 0),
			coalesce((SELECT group_concat(t.name, ',') FROM tags t WHERE t.repo = ?1 AND t.digest = p.digest), '')
		FROM page p
		JOIN holders h ON h.holder = p.digest
		LEFT JOIN blobs b ON b.digest = h.d
		GROUP BY p.digest ORDER BY p.created DESC, p.digest DESC`
)

const (
	sqlPutDataKey    = `INSERT INTO data_keys (id, object, key_id, key_version, wrapped, created) VALUES (?, ?, ?, ?, ?, ?)`
	sqlGetDataKey    = `SELECT id, object, key_id, key_version, wrapped, created FROM data_keys WHERE id = ?`
	sqlMoveDataKeys  = `UPDATE data_keys SET object = ? WHERE object = ?`
	sqlDelDataKeys   = `DELETE FROM data_keys WHERE object = ?`
	sqlDelDataKey    = `DELETE FROM data_keys WHERE id = ?`
	sqlDataKeysNotBy = `SELECT id, object, key_id, key_version, wrapped, created FROM data_keys
		WHERE NOT (key_id = ? AND key_version = ?) AND id > ? ORDER BY id LIMIT ?`
	sqlRewrapDataKey = `UPDATE data_keys SET key_id = ?, key_version = ?, wrapped = ? WHERE id = ? AND key_id = ? AND key_version = ?`
	sqlCountDataKeys = `SELECT key_id, key_version, count(*) FROM data_keys GROUP BY key_id, key_version ORDER BY key_id, key_version`
	sqlSampleDataKey = `SELECT id, object, key_id, key_version, wrapped, created FROM data_keys WHERE key_id = ? AND key_version = ? LIMIT 1`
)

var allQueries = []string{sqlAppendEvent, sqlDelDataKey, sqlPutDataKey, sqlGetDataKey, sqlMoveDataKeys, sqlDelDataKeys, sqlDataKeysNotBy, sqlRewrapDataKey, sqlCountDataKeys, sqlSampleDataKey, sqlPutRecycled, sqlPutRecycleRef, sqlGetRecycled, sqlListRecycled, sqlExpiredRecycled, sqlDeleteRecycled, sqlDeleteRecRefs, sqlGetTagRecord, sqlSetRepoLocks, sqlSetTagLocks, sqlSetManifestLock, sqlBumpTagsVersion, sqlSetUntaggedSince, sqlUntaggedManifests, sqlTagRecords, sqlGetSetting, sqlPutSetting, sqlSetBlobState, sqlTouchBlob, sqlMarkUnreferenced, sqlDeleteBlob, sqlDeleteBlobLinks, sqlBlobReferenced, sqlCollectableBlobs, sqlBlobsInState, sqlStaleUploads, sqlListManifests, sqlManifestRefs, sqlManifestParents, sqlDeleteRepoLinks, sqlDeleteRepoManifests, sqlDeleteRepoRefs, sqlDeleteRepoTags, sqlDeleteRepoUploads, sqlDeleteRepository, sqlBlobTotals, sqlUsageTotals, sqlHeldBytes, sqlRepoHeldBytes, sqlRepositoryUsage, sqlRepositoryUsageAll, sqlRepositoryUsageOf, sqlRepositoryKept, sqlLargestRepositories, sqlManifestUsage, sqlCreateRepository, sqlGetRepository, sqlListRepositories, sqlPutBlob, sqlGetBlob, sqlLinkBlob, sqlUnlinkBlob, sqlRepositoryBlob, sqlPutManifest, sqlDeleteManifestRefs, sqlPutManifestRef, sqlGetManifest, sqlDeleteManifest, sqlReferrers, sqlReferrersPage, sqlPutTag, sqlGetTag, sqlListTags, sqlTagsOf, sqlDeleteTag, sqlPutUpload, sqlAdvanceUpload, sqlClaimUpload, sqlReleaseUpload, sqlReleaseWriters, sqlGetUpload, sqlDeleteUpload, sqlLinkedBlob, sqlQueuedBlobs, sqlEnqueue, sqlDequeue, sqlCountQueued}

// dbNowNanos is the database's clock in Unix nanoseconds (millisecond
// resolution), for upload writer leases.
const dbNowNanos = `(CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER) * 1000000)`

// Upload writer leases end by the database's clock (dbNowNanos), not by
// the nodes' clocks, which may disagree. Taking over a lease that ran
// out while held bumps gen (the fence, see Registry.lockUpload).
const sqlClaimUpload = `UPDATE uploads SET gen = CASE WHEN writer <> '' AND writer <> ?1 THEN gen + 1 ELSE gen END,
		writer = ?1, writer_until = ` + dbNowNanos + ` + ?2 WHERE id = ?3 AND (writer = '' OR writer = ?1 OR writer_until < ` + dbNowNanos + `)`

// The change feed's reads (feed.go). Events are numbered at insert
// (sqlAppendEvent), so seq is commit order, and equal to the rowid id, which
// the reads use (the table's own B-tree: seq has no index).
const (
	eventColumns = `seq, time, kind, actor, addr, repo, digest, tag, media_type, size, reason, previous, origin, detail`
	// The scan window: the first rows after the cursor, of one repository
	// when the query names one (index events_repo). ?1 after, ?2 rows, ?3
	// repository.
	sqlFeedWindow     = `SELECT * FROM events WHERE id > ?1 AND ?3 = '' ORDER BY id LIMIT ?2`
	sqlFeedWindowRepo = `SELECT * FROM events WHERE repo = ?3 AND id > ?1 ORDER BY id LIMIT ?2`
	// The filters on the window: ?4 actor, ?5 kinds (a JSON array), ?6
	// since, ?7 until (0: none), ?8 limit.
	sqlFeedFilter = `SELECT ` + eventColumns + ` FROM w
		WHERE (?4 = '' OR actor = ?4) AND (?5 = '[]' OR kind IN (SELECT value FROM json_each(?5)))
		AND (?6 = 0 OR time >= ?6) AND (?7 = 0 OR time < ?7) ORDER BY id LIMIT ?8`
	sqlFeedWindowEnd = `SELECT count(*), coalesce(max(id), 0) FROM w`
	sqlFeedBounds    = `SELECT coalesce(min(id), 0), coalesce(max(id), 0) FROM events`
	// The first event young enough to keep: trimming stops below it.
	sqlFeedFirstYoung = `SELECT id FROM events WHERE time >= ? ORDER BY id LIMIT 1`
	sqlFeedTrim       = `DELETE FROM events WHERE id <= ?`
)
