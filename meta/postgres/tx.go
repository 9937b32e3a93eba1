package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stowage/stowage"
)

// Tx implements stowage.Tx on one PostgreSQL transaction.
//
// PostgreSQL aborts a transaction at its first failed statement (every later
// one fails with "current transaction is aborted"), where SQLite goes on.
// Tx therefore never lets an expected outcome fail a statement (a duplicate
// ID is ON CONFLICT DO NOTHING plus a Go error), and remembers the first
// server error in err, so that Update can retry a serialization failure even
// when fn swallowed it, and never reports success for an aborted transaction.
type Tx struct {
	tx  pgx.Tx
	ctx context.Context
	err error // the first error the server returned; the transaction is aborted
}

var (
	_ stowage.Tx              = (*Tx)(nil)
	_ stowage.ReferrersPageTx = (*Tx)(nil)
)

// note remembers the first server error, which aborted the transaction.
func (t *Tx) note(err error) error {
	var pe *pgconn.PgError
	if err != nil && t.err == nil && errors.As(err, &pe) {
		t.err = err
	}
	return err
}

func (t *Tx) exec(q string, args ...any) (pgconn.CommandTag, error) {
	tag, err := t.tx.Exec(t.ctx, q, args...)
	return tag, t.note(err)
}

// one scans the single row of q into dest; no row is stowage.ErrNotFound.
func (t *Tx) one(q string, args []any, dest ...any) error {
	err := t.tx.QueryRow(t.ctx, q, args...).Scan(dest...)
	if errors.Is(err, pgx.ErrNoRows) {
		return stowage.ErrNotFound
	}
	return t.note(err)
}

// first reads the first row of q with scan; no row is stowage.ErrNotFound.
func first[T any](t *Tx, q string, args []any, scan func(row pgx.CollectableRow) (T, error)) (T, error) {
	rows, err := t.tx.Query(t.ctx, q, args...)
	if err != nil {
		var zero T
		return zero, t.note(err)
	}
	v, err := pgx.CollectOneRow(rows, scan)
	if errors.Is(err, pgx.ErrNoRows) {
		return v, stowage.ErrNotFound
	}
	return v, t.note(err)
}

// all reads every row of q with scan.
func all[T any](t *Tx, q string, args []any, scan func(row pgx.CollectableRow) (T, error)) ([]T, error) {
	rows, err := t.tx.Query(t.ctx, q, args...)
	if err != nil {
		return nil, t.note(err)
	}
	out, err := pgx.CollectRows(rows, scan)
	if len(out) == 0 {
		out = nil
	}
	return out, t.note(err)
}

func (t *Tx) strings(q string, args ...any) ([]string, error) {
	return all(t, q, args, pgx.RowTo[string])
}

func affected(tag pgconn.CommandTag, err error) error {
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return stowage.ErrNotFound
	}
	return nil
}

// limitOf turns the Tx convention (<= 0: no limit) into a LIMIT parameter:
// NULL is no limit.
func limitOf(n int) any {
	if n <= 0 {
		return nil
	}
	return int64(n)
}

// ts turns stored Unix nanoseconds into a UTC time.
func ts(n int64) time.Time { return time.Unix(0, n).UTC() }

// Repositories.

func (t *Tx) CreateRepository(name string, now time.Time) error {
	_, err := t.exec(sqlCreateRepository, name, now.UnixNano())
	return err
}

func (t *Tx) GetRepository(name string) (stowage.RepositoryRecord, error) {
	r := stowage.RepositoryRecord{Name: name}
	var created, updated int64
	var locks int32
	err := t.one(sqlGetRepository, []any{name}, &created, &updated, &r.TagsVersion, &locks)
	r.Created, r.Updated, r.Locks = ts(created), ts(updated), stowage.Locks(locks)
	return r, err
}

func (t *Tx) ListRepositories(after string, limit int, hidden bool) ([]string, error) {
	return t.strings(sqlListRepositories, after, hidden, limitOf(limit))
}

func (t *Tx) SetRepositoryLocks(name string, l stowage.Locks) error {
	return affected(t.exec(sqlSetRepoLocks, int32(l), name))
}

func (t *Tx) DeleteRepository(name string) error {
	if _, err := t.GetRepository(name); err != nil {
		return err
	}
	// The repository's row first: its tags' trigger then finds no row to
	// bump. Otherwise it bumps that one row once per tag, in one
	// transaction, where each update walks every version the earlier ones
	// left: quadratic in the number of tags.
	for _, q := range []string{sqlDeleteRepository, sqlDeleteRepoLinks, sqlDeleteRepoManifests, sqlDeleteRepoRefs, sqlDeleteRepoTags, sqlDeleteRepoUploads} {
		if _, err := t.exec(q, name); err != nil {
			return err
		}
	}
	return nil
}

// Blobs.

func scanBlob(row pgx.CollectableRow) (stowage.BlobRecord, error) {
	var b stowage.BlobRecord
	var d, state string
	var created, used, unref int64
	if err := row.Scan(&d, &b.Size, &created, &state, &used, &unref); err != nil {
		return b, err
	}
	b.Digest, b.State = stowage.Digest(d), stowage.BlobState(state)
	b.Created, b.LastUsed, b.UnreferencedSince = ts(created), ts(used), ts(unref)
	return b, nil
}

func (t *Tx) blobs(q string, args ...any) ([]stowage.BlobRecord, error) {
	return all(t, q, args, scanBlob)
}

func (t *Tx) PutBlob(b stowage.BlobRecord) error {
	state := b.State
	if state == "" {
		state = stowage.BlobLive
	}
	_, err := t.exec(sqlPutBlob, string(b.Digest), b.Size, b.Created.UnixNano(), string(state),
		b.LastUsed.UnixNano(), b.UnreferencedSince.UnixNano())
	return err
}

func (t *Tx) GetBlob(d stowage.Digest) (stowage.BlobRecord, error) {
	return first(t, sqlGetBlob, []any{string(d)}, scanBlob)
}

func (t *Tx) SetBlobState(d stowage.Digest, state stowage.BlobState) error {
	return affected(t.exec(sqlSetBlobState, string(state), string(d)))
}

func (t *Tx) TouchBlob(d stowage.Digest, now time.Time) error {
	_, err := t.exec(sqlTouchBlob, now.UnixNano(), string(d))
	return err
}

func (t *Tx) MarkUnreferenced(ds []stowage.Digest, now time.Time) error {
	if len(ds) == 0 {
		return nil
	}
	digests := make([]string, len(ds))
	for i, d := range ds {
		digests[i] = string(d)
	}
	_, err := t.exec(sqlMarkUnreferenced, now.UnixNano(), digests)
	return err
}

func (t *Tx) DeleteBlob(d stowage.Digest) error {
	if _, err := t.exec(sqlDeleteBlobLinks, string(d)); err != nil {
		return err
	}
	_, err := t.exec(sqlDeleteBlob, string(d))
	return err
}

func (t *Tx) LinkBlob(repo string, d stowage.Digest, now time.Time) error {
	_, err := t.exec(sqlLinkBlob, repo, string(d), now.UnixNano())
	return err
}

func (t *Tx) UnlinkBlob(repo string, d stowage.Digest) error {
	return affected(t.exec(sqlUnlinkBlob, repo, string(d)))
}

func (t *Tx) RepositoryBlob(repo string, d stowage.Digest) (stowage.BlobRecord, error) {
	return first(t, sqlRepositoryBlob, []any{repo, string(d)}, func(row pgx.CollectableRow) (stowage.BlobRecord, error) {
		var locks int32
		b, err := scanBlob(scanPlus{row, &locks})
		b.RepoLocks = stowage.Locks(locks)
		return b, err
	})
}

func (t *Tx) LinkedBlob(d stowage.Digest, without stowage.Locks) (stowage.BlobRecord, error) {
	return first(t, sqlLinkedBlob, []any{string(d), int32(without)}, scanBlob)
}

// scanPlus scans one more column after the ones its caller asks for.
type scanPlus struct {
	pgx.CollectableRow
	extra any
}

func (r scanPlus) Scan(dest ...any) error { return r.CollectableRow.Scan(append(dest, r.extra)...) }

func (t *Tx) BlobReferenced(d stowage.Digest) (bool, error) {
	var ok bool
	err := t.one(sqlBlobReferenced, []any{string(d)}, &ok)
	return ok, err
}

func (t *Tx) CollectableBlobs(unrefBefore, usedBefore time.Time, after stowage.Digest, limit int) ([]stowage.BlobRecord, error) {
	return t.blobs(sqlCollectableBlobs, unrefBefore.UnixNano(), usedBefore.UnixNano(), string(after), limitOf(limit))
}

func (t *Tx) BlobsInState(state stowage.BlobState, after stowage.Digest, limit int) ([]stowage.BlobRecord, error) {
	return t.blobs(sqlBlobsInState, string(state), string(after), limitOf(limit))
}

// Manifests.

// PutManifest records the manifest's place in the reference graph only:
// nothing copied out of its content (annotations, artifact type, platform)
// is kept here, so the database holds no image data in the clear. The
// engine reads those from the stored manifest (docs/encryption.md).
func (t *Tx) PutManifest(m stowage.ManifestRecord, refs []stowage.ManifestRef) error {
	if _, err := t.exec(sqlPutManifest,
		m.Repo, string(m.Digest), m.MediaType, m.Size, string(m.Subject), m.Created.UnixNano(), int32(m.Locks)); err != nil {
		return err
	}
	if _, err := t.exec(sqlDeleteManifestRefs, m.Repo, string(m.Digest)); err != nil {
		return err
	}
	if len(refs) == 0 {
		return nil
	}
	children, kinds := make([]string, len(refs)), make([]string, len(refs))
	for i, r := range refs {
		children[i], kinds[i] = string(r.Digest), string(r.Kind)
	}
	_, err := t.exec(sqlPutManifestRefs, m.Repo, string(m.Digest), children, kinds)
	return err
}

func scanManifest(row pgx.CollectableRow) (stowage.ManifestRecord, error) {
	var m stowage.ManifestRecord
	var digest, subject string
	var created int64
	var locks int32
	if err := row.Scan(&m.Repo, &digest, &m.MediaType, &m.Size, &subject, &created, &locks); err != nil {
		return m, err
	}
	m.Digest, m.Subject, m.Created, m.Locks = stowage.Digest(digest), stowage.Digest(subject), ts(created), stowage.Locks(locks)
	return m, nil
}

func (t *Tx) manifests(q string, args ...any) ([]stowage.ManifestRecord, error) {
	return all(t, q, args, scanManifest)
}

func (t *Tx) GetManifest(repo string, d stowage.Digest) (stowage.ManifestRecord, error) {
	return first(t, sqlGetManifest, []any{repo, string(d)}, scanManifest)
}

func (t *Tx) DeleteManifest(repo string, d stowage.Digest) error {
	if err := affected(t.exec(sqlDeleteManifest, repo, string(d))); err != nil {
		return err
	}
	_, err := t.exec(sqlDeleteManifestRefs, repo, string(d))
	return err
}

func (t *Tx) ListManifests(repo string) ([]stowage.ManifestRecord, error) {
	return t.manifests(sqlListManifests, repo)
}

func (t *Tx) Referrers(repo string, subject stowage.Digest) ([]stowage.ManifestRecord, error) {
	return t.manifests(sqlReferrers, repo, string(subject))
}

func (t *Tx) ReferrersPage(repo string, subject stowage.Digest, after stowage.Digest, limit int) ([]stowage.ManifestRecord, error) {
	return t.manifests(sqlReferrersPage, repo, string(subject), string(after), limitOf(limit))
}

func (t *Tx) ManifestRefs(repo string, d stowage.Digest) ([]stowage.ManifestRef, error) {
	return all(t, sqlManifestRefs, []any{repo, string(d)}, func(row pgx.CollectableRow) (stowage.ManifestRef, error) {
		var child, kind string
		err := row.Scan(&child, &kind)
		return stowage.ManifestRef{Digest: stowage.Digest(child), Kind: stowage.RefKind(kind)}, err
	})
}

func (t *Tx) ManifestParents(repo string, d stowage.Digest) ([]stowage.Digest, error) {
	return all(t, sqlManifestParents, []any{repo, string(d)}, func(row pgx.CollectableRow) (stowage.Digest, error) {
		var p string
		err := row.Scan(&p)
		return stowage.Digest(p), err
	})
}

func (t *Tx) SetManifestLocks(repo string, d stowage.Digest, l stowage.Locks) error {
	if err := affected(t.exec(sqlSetManifestLock, int32(l), repo, string(d))); err != nil {
		return err
	}
	_, err := t.exec(sqlBumpTagsVersion, repo)
	return err
}

func (t *Tx) SetUntaggedSince(repo string, d stowage.Digest, at time.Time) error {
	_, err := t.exec(sqlSetUntaggedSince, at.UnixNano(), repo, string(d))
	return err
}

// UntaggedManifests is planned for its repository each time (an unnamed
// statement, QueryExecModeExec): a plan cached from small repositories
// probed tags and manifest_references by repository alone for every
// manifest, 56 ms against 1.7 ms for a repository of 201 untagged
// manifests (found by an outside review), and a purge of a big repository
// runs it once; planning costs far less than that.
func (t *Tx) UntaggedManifests(repo string, before time.Time) ([]stowage.ManifestRecord, error) {
	return t.manifests(sqlUntaggedManifests, pgx.QueryExecModeExec, repo, before.UnixNano())
}

// Tags.

func (t *Tx) PutTag(repo, tag string, d stowage.Digest, now time.Time) error {
	_, err := t.exec(sqlPutTag, repo, tag, string(d), now.UnixNano())
	return err
}

func (t *Tx) GetTag(repo, tag string) (stowage.Digest, error) {
	var d string
	err := t.one(sqlGetTag, []any{repo, tag}, &d)
	return stowage.Digest(d), err
}

func (t *Tx) ListTags(repo, after string, limit int) ([]string, error) {
	return t.strings(sqlListTags, repo, after, limitOf(limit))
}

func (t *Tx) TagsOf(repo string, d stowage.Digest) ([]string, error) {
	return t.strings(sqlTagsOf, repo, string(d))
}

func (t *Tx) DeleteTag(repo, tag string) error {
	return affected(t.exec(sqlDeleteTag, repo, tag))
}

func scanTag(row pgx.CollectableRow) (stowage.TagRecord, error) {
	var r stowage.TagRecord
	var d string
	var updated, created int64
	var locks int32
	err := row.Scan(&r.Name, &d, &updated, &locks, &created)
	r.Digest, r.Updated, r.Created, r.Locks = stowage.Digest(d), ts(updated), ts(created), stowage.Locks(locks)
	return r, err
}

func (t *Tx) TagRecords(repo string) ([]stowage.TagRecord, error) {
	return all(t, sqlTagRecords, []any{repo}, scanTag)
}

func (t *Tx) GetTagRecord(repo, tag string) (stowage.TagRecord, error) {
	return first(t, sqlGetTagRecord, []any{repo, tag}, scanTag)
}

func (t *Tx) SetTagLocks(repo, tag string, l stowage.Locks) error {
	return affected(t.exec(sqlSetTagLocks, int32(l), repo, tag))
}

// Uploads.

func scanUpload(row pgx.CollectableRow) (stowage.UploadRecord, error) {
	var u stowage.UploadRecord
	var started, updated int64
	var chunks int32
	var verified string
	err := row.Scan(&u.ID, &u.Repo, &u.Size, &u.HashState, &chunks, &started, &updated, &u.Gen, &u.DataGen, &verified)
	u.Chunks, u.Started, u.Updated, u.Verified = int(chunks), ts(started), ts(updated), stowage.Digest(verified)
	return u, err
}

func (t *Tx) PutUpload(u stowage.UploadRecord) error {
	tag, err := t.exec(sqlPutUpload,
		u.ID, u.Repo, u.Size, u.HashState, int32(u.Chunks), u.Started.UnixNano(), u.Updated.UnixNano())
	if err == nil && tag.RowsAffected() == 0 {
		err = fmt.Errorf("upload %s already exists", u.ID)
	}
	return err
}

func (t *Tx) AdvanceUpload(u stowage.UploadRecord, fromSize int64) error {
	return affected(t.exec(sqlAdvanceUpload,
		u.Size, u.HashState, int32(u.Chunks), u.Updated.UnixNano(), u.DataGen, string(u.Verified), u.ID, fromSize, u.Gen))
}

func (t *Tx) ClaimUpload(id, writer string, lease time.Duration) error {
	err := affected(t.exec(sqlClaimUpload, writer, lease.Nanoseconds(), id))
	if errors.Is(err, stowage.ErrNotFound) {
		if _, gerr := t.GetUpload(id); gerr == nil {
			return stowage.ErrLocked
		}
	}
	return err
}

func (t *Tx) ReleaseUpload(id, writer string) error {
	_, err := t.exec(sqlReleaseUpload, id, writer)
	return err
}

func (t *Tx) ReleaseUploadWriters(prefix string) (int64, error) {
	tag, err := t.exec(sqlReleaseWriters, prefix)
	return tag.RowsAffected(), err
}

func (t *Tx) GetUpload(id string) (stowage.UploadRecord, error) {
	return first(t, sqlGetUpload, []any{id}, scanUpload)
}

func (t *Tx) DeleteUpload(id string) error {
	return affected(t.exec(sqlDeleteUpload, id))
}

func (t *Tx) StaleUploads(before time.Time, limit int) ([]stowage.UploadRecord, error) {
	return all(t, sqlStaleUploads, []any{before.UnixNano(), limitOf(limit)}, scanUpload)
}

// Usage.

func (t *Tx) BlobTotals() (count, bytes int64, err error) {
	err = t.one(sqlBlobTotals, nil, &count, &bytes)
	return count, bytes, err
}

func (t *Tx) HeldBytes() (n int64, err error) {
	err = t.one(sqlHeldBytes, nil, &n)
	return n, err
}

func (t *Tx) RepositoryHeldBytes(repo string) (n int64, err error) {
	err = t.one(sqlRepoHeldBytes, []any{repo}, &n)
	return n, err
}

func (t *Tx) Totals() (u stowage.UsageTotals, err error) {
	err = t.one(sqlUsageTotals, nil, &u.Blobs, &u.PhysicalBytes, &u.Repositories, &u.ReferencedBytes, &u.Manifests, &u.Tags, &u.UntaggedManifests)
	return u, err
}

func scanRepositoryUsage(row pgx.CollectableRow) (stowage.RepositoryUsage, error) {
	var u stowage.RepositoryUsage
	err := row.Scan(&u.Name, &u.ReferencedBytes, &u.UniqueBytes, &u.Manifests, &u.Tags, &u.UntaggedManifests)
	return u, err
}

func (t *Tx) RepositoryUsage(after string, limit int) ([]stowage.RepositoryUsage, error) {
	if limit <= 0 {
		return all(t, sqlRepositoryUsageAll, []any{after}, scanRepositoryUsage)
	}
	return all(t, sqlRepositoryUsage, []any{after, limitOf(limit)}, scanRepositoryUsage)
}

func (t *Tx) LargestRepositories(limit int) ([]stowage.RepositoryUsage, error) {
	return all(t, sqlLargestRepositories, []any{limitOf(limit)}, scanRepositoryUsage)
}

func (t *Tx) RepositoryUsageOf(repo string) (stowage.RepositoryUsage, error) {
	return t.repositoryRow(sqlRepositoryUsageOf, repo)
}

func (t *Tx) RepositoryKept(repo string) (stowage.RepositoryUsage, error) {
	return t.repositoryRow(sqlRepositoryKept, repo)
}

func (t *Tx) repositoryRow(query, repo string) (u stowage.RepositoryUsage, err error) {
	err = t.one(query, []any{repo}, &u.Name, &u.ReferencedBytes, &u.UniqueBytes, &u.Manifests, &u.Tags, &u.UntaggedManifests)
	return u, err
}

func (t *Tx) ManifestUsage(repo string, after stowage.ManifestCursor, limit int) ([]stowage.ManifestUsage, error) {
	d0, c0 := string(after.Digest), after.Created.UnixNano()
	if after.Digest == "" && after.Created.IsZero() {
		c0 = math.MaxInt64 // the start: above every time
	}
	return all(t, sqlManifestUsage, []any{repo, d0, c0, limitOf(limit)}, func(row pgx.CollectableRow) (stowage.ManifestUsage, error) {
		var u stowage.ManifestUsage
		var d string
		var created int64
		if err := row.Scan(&d, &u.MediaType, &created, &u.Size, &u.UniqueBytes, &u.Tags); err != nil {
			return u, err
		}
		u.Digest, u.Created = stowage.Digest(d), ts(created)
		if len(u.Tags) == 0 {
			u.Tags = nil
		}
		return u, nil
	})
}

// Settings.

func (t *Tx) GetSetting(key string) (string, error) {
	var v string
	err := t.one(sqlGetSetting, []any{key}, &v)
	return v, err
}

func (t *Tx) PutSetting(key, value string, now time.Time) error {
	_, err := t.exec(sqlPutSetting, key, value, now.UnixNano())
	return err
}

// The stores of this transaction: all of them are the transaction itself.

func (t *Tx) Repositories() stowage.RepositoryTx { return t }
func (t *Tx) Blobs() stowage.BlobTx              { return t }
func (t *Tx) Manifests() stowage.ManifestTx      { return t }
func (t *Tx) Tags() stowage.TagTx                { return t }
func (t *Tx) Uploads() stowage.UploadTx          { return t }
func (t *Tx) Settings() stowage.SettingsTx       { return t }
func (t *Tx) Recycle() stowage.RecycleTx         { return t }
func (t *Tx) Usage() stowage.UsageTx             { return t }
func (t *Tx) DataKeys() stowage.DataKeyTx        { return t }
func (t *Tx) Events() stowage.EventTx            { return t }

// Append records e in the change feed (table events).
func (t *Tx) Append(e stowage.Event) error {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	_, err := t.exec(sqlAppendEvent, e.Time.UnixNano(), string(e.Kind), e.Actor, e.Addr, e.Repo, string(e.Digest), e.Tag,
		e.MediaType, e.Size, e.Reason, string(e.Previous), e.Origin, e.Detail)
	return err
}

// Recycle bin.

// recycledRecord is a recycle bin entry's record: the manifest row as it
// was, with the locks its tags had (absent in entries written before).
type recycledRecord struct {
	stowage.ManifestRecord
	TagLocks map[string]stowage.Locks `json:",omitempty"`
}

func (t *Tx) PutRecycled(e stowage.RecycledManifest) (int64, error) {
	rec, err := json.Marshal(recycledRecord{e.Manifest, e.TagLocks})
	if err != nil {
		return 0, err
	}
	refs, _ := json.Marshal(e.Refs)
	tags, _ := json.Marshal(e.Tags)
	var id int64
	if err := t.one(sqlPutRecycled, []any{e.Manifest.Repo, string(e.Manifest.Digest), string(rec), string(refs), string(tags),
		e.Deleted.UnixNano(), e.Expires.UnixNano()}, &id); err != nil {
		return 0, err
	}
	held := []string{string(e.Manifest.Digest)}
	for _, r := range e.Refs {
		if r.Kind == stowage.RefBlob {
			held = append(held, string(r.Digest))
		}
	}
	if _, err := t.exec(sqlPutRecycleRefs, id, held); err != nil {
		return 0, err
	}
	return id, nil
}

func scanRecycled(row pgx.CollectableRow) (stowage.RecycledManifest, error) {
	var e stowage.RecycledManifest
	var rec, refs, tags string
	var deleted, expires int64
	if err := row.Scan(&e.ID, &rec, &refs, &tags, &deleted, &expires); err != nil {
		return e, err
	}
	e.Deleted, e.Expires = ts(deleted), ts(expires)
	var r recycledRecord
	if err := json.Unmarshal([]byte(rec), &r); err != nil {
		return e, err
	}
	e.Manifest, e.TagLocks = r.ManifestRecord, r.TagLocks
	if err := json.Unmarshal([]byte(refs), &e.Refs); err != nil {
		return e, err
	}
	return e, json.Unmarshal([]byte(tags), &e.Tags)
}

func (t *Tx) GetRecycled(id int64) (stowage.RecycledManifest, error) {
	return first(t, sqlGetRecycled, []any{id}, scanRecycled)
}

func (t *Tx) ListRecycled(repo string) ([]stowage.RecycledManifest, error) {
	return all(t, sqlListRecycled, []any{repo}, scanRecycled)
}

func (t *Tx) ExpiredRecycled(before time.Time, limit int) ([]stowage.RecycledManifest, error) {
	return all(t, sqlExpiredRecycled, []any{before.UnixNano(), limitOf(limit)}, scanRecycled)
}

func (t *Tx) DeleteRecycled(id int64) error {
	if err := affected(t.exec(sqlDeleteRecycled, id)); err != nil {
		return err
	}
	_, err := t.exec(sqlDeleteRecRefs, id)
	return err
}
