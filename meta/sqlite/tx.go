package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/stowage/stowage"
)

// Tx implements stowage.Tx.
type Tx struct {
	db   *DB
	pool *sql.DB
	tx   *sql.Tx
	ctx  context.Context
}

var (
	_ stowage.Tx              = (*Tx)(nil)
	_ stowage.ReferrersPageTx = (*Tx)(nil)
)

// prepared returns q as a statement of this transaction, prepared once per connection.
func (t *Tx) prepared(q string) (*sql.Stmt, error) {
	if st := t.db.stmt(t.pool, q); st != nil {
		return t.tx.StmtContext(t.ctx, st), nil
	}
	return t.tx.PrepareContext(t.ctx, q) // not in allQueries: prepared for this transaction only
}

func (t *Tx) exec(q string, args ...any) (sql.Result, error) {
	st, err := t.prepared(q)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(t.ctx, args...)
}

// scanner is what row returns: a *sql.Row, or the error preparing it.
type scanner interface{ Scan(dest ...any) error }

type errScanner struct{ err error }

func (e errScanner) Scan(...any) error { return e.err }

func (t *Tx) row(q string, args ...any) scanner {
	st, err := t.prepared(q)
	if err != nil {
		return errScanner{err}
	}
	return st.QueryRowContext(t.ctx, args...)
}

func (t *Tx) query(q string, args ...any) (*sql.Rows, error) {
	st, err := t.prepared(q)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(t.ctx, args...)
}

func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return stowage.ErrNotFound
	}
	return err
}

func affected(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return stowage.ErrNotFound
	}
	return nil
}

func limitOf(n int) int {
	if n <= 0 {
		return -1 // SQLite: no limit
	}
	return n
}

func (t *Tx) strings(q string, args ...any) ([]string, error) {
	rows, err := t.query(q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// scanAll reads every row of a query with scan.
func scanAll[T any](rows *sql.Rows, err error, scan func(func(...any) error) (T, error)) ([]T, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows.Scan)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// Repositories.

func (t *Tx) CreateRepository(name string, now time.Time) error {
	_, err := t.exec(sqlCreateRepository, name, now.UnixNano(), now.UnixNano())
	return err
}

func (t *Tx) GetRepository(name string) (stowage.RepositoryRecord, error) {
	r := stowage.RepositoryRecord{Name: name}
	var created, updated int64
	err := t.row(sqlGetRepository, name).Scan(&created, &updated, &r.TagsVersion, &r.Locks)
	r.Created, r.Updated = ts(created), ts(updated)
	return r, notFound(err)
}

func (t *Tx) ListRepositories(after string, limit int, hidden bool) ([]string, error) {
	return t.joined(sqlListRepositories, after, hidden, limitOf(limit))
}

// joined runs a query that aggregates names into one comma-separated value.
// Names and tags cannot contain commas, and one row scans far faster than
// thousands (a full tag list is a hot path).
func (t *Tx) joined(q string, args ...any) ([]string, error) {
	var s sql.NullString
	if err := t.row(q, args...).Scan(&s); err != nil {
		return nil, err
	}
	if !s.Valid || s.String == "" {
		return nil, nil
	}
	names := strings.Split(s.String, ",")
	// SQLite documents group_concat's order as arbitrary; the rows arrive
	// sorted, so this costs one linear pass, and guarantees the order.
	slices.Sort(names)
	return names, nil
}

func (t *Tx) DeleteRepository(name string) error {
	if _, err := t.GetRepository(name); err != nil {
		return err
	}
	// The repository's row first: its tags' trigger then finds no row to
	// bump (a repository of 100,000 tags would otherwise bump it 100,000
	// times).
	for _, q := range []string{sqlDeleteRepository, sqlDeleteRepoLinks, sqlDeleteRepoManifests, sqlDeleteRepoRefs, sqlDeleteRepoTags, sqlDeleteRepoUploads} {
		if _, err := t.exec(q, name); err != nil {
			return err
		}
	}
	return nil
}

// Blobs.

func scanBlob(scan func(...any) error) (stowage.BlobRecord, error) {
	var b stowage.BlobRecord
	var d, state string
	var created, used, unref int64
	if err := scan(&d, &b.Size, &created, &state, &used, &unref); err != nil {
		return b, notFound(err)
	}
	b.Digest, b.State = stowage.Digest(d), stowage.BlobState(state)
	b.Created, b.LastUsed, b.UnreferencedSince = ts(created), ts(used), ts(unref)
	return b, nil
}

func (t *Tx) blobs(q string, args ...any) ([]stowage.BlobRecord, error) {
	rows, err := t.query(q, args...)
	return scanAll(rows, err, scanBlob)
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
	return scanBlob(t.row(sqlGetBlob, string(d)).Scan)
}

func (t *Tx) SetBlobState(d stowage.Digest, state stowage.BlobState) error {
	return affected(t.exec(sqlSetBlobState, string(state), string(d)))
}

func (t *Tx) TouchBlob(d stowage.Digest, now time.Time) error {
	_, err := t.exec(sqlTouchBlob, now.UnixNano(), string(d))
	return err
}

func (t *Tx) MarkUnreferenced(ds []stowage.Digest, now time.Time) error {
	for _, d := range ds {
		if _, err := t.exec(sqlMarkUnreferenced, now.UnixNano(), string(d)); err != nil {
			return err
		}
	}
	return nil
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
	var locks stowage.Locks
	b, err := scanBlob(func(dest ...any) error {
		return t.row(sqlRepositoryBlob, repo, string(d)).Scan(append(dest, &locks)...)
	})
	b.RepoLocks = locks
	return b, err
}

func (t *Tx) LinkedBlob(d stowage.Digest, without stowage.Locks) (stowage.BlobRecord, error) {
	return scanBlob(t.row(sqlLinkedBlob, string(d), int(without)).Scan)
}

func (t *Tx) BlobReferenced(d stowage.Digest) (bool, error) {
	var ok bool
	err := t.row(sqlBlobReferenced, string(d), string(d), string(d)).Scan(&ok)
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
		m.Repo, string(m.Digest), m.MediaType, m.Size, string(m.Subject), m.Created.UnixNano(), int(m.Locks)); err != nil {
		return err
	}
	if _, err := t.exec(sqlDeleteManifestRefs, m.Repo, string(m.Digest)); err != nil {
		return err
	}
	for _, r := range refs {
		if _, err := t.exec(sqlPutManifestRef,
			m.Repo, string(m.Digest), string(r.Digest), string(r.Kind)); err != nil {
			return err
		}
	}
	return nil
}

func scanManifest(scan func(...any) error) (stowage.ManifestRecord, error) {
	var m stowage.ManifestRecord
	var digest, subject string
	var created int64
	if err := scan(&m.Repo, &digest, &m.MediaType, &m.Size, &subject, &created, &m.Locks); err != nil {
		return m, notFound(err)
	}
	m.Digest, m.Subject, m.Created = stowage.Digest(digest), stowage.Digest(subject), ts(created)
	return m, nil
}

func (t *Tx) GetManifest(repo string, d stowage.Digest) (stowage.ManifestRecord, error) {
	return scanManifest(t.row(sqlGetManifest, repo, string(d)).Scan)
}

func (t *Tx) DeleteManifest(repo string, d stowage.Digest) error {
	if err := affected(t.exec(sqlDeleteManifest, repo, string(d))); err != nil {
		return err
	}
	_, err := t.exec(sqlDeleteManifestRefs, repo, string(d))
	return err
}

func (t *Tx) Referrers(repo string, subject stowage.Digest) ([]stowage.ManifestRecord, error) {
	rows, err := t.query(sqlReferrers, repo, string(subject))
	return scanAll(rows, err, scanManifest)
}

func (t *Tx) ReferrersPage(repo string, subject stowage.Digest, after stowage.Digest, limit int) ([]stowage.ManifestRecord, error) {
	rows, err := t.query(sqlReferrersPage, repo, string(subject), string(after), limitOf(limit))
	return scanAll(rows, err, scanManifest)
}

func (t *Tx) ListManifests(repo string) ([]stowage.ManifestRecord, error) {
	rows, err := t.query(sqlListManifests, repo)
	return scanAll(rows, err, scanManifest)
}

func (t *Tx) ManifestRefs(repo string, d stowage.Digest) ([]stowage.ManifestRef, error) {
	rows, err := t.query(sqlManifestRefs, repo, string(d))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []stowage.ManifestRef
	for rows.Next() {
		var child, kind string
		if err := rows.Scan(&child, &kind); err != nil {
			return nil, err
		}
		out = append(out, stowage.ManifestRef{Digest: stowage.Digest(child), Kind: stowage.RefKind(kind)})
	}
	return out, rows.Err()
}

func (t *Tx) ManifestParents(repo string, d stowage.Digest) ([]stowage.Digest, error) {
	names, err := t.strings(sqlManifestParents, repo, string(d))
	out := make([]stowage.Digest, len(names))
	for i, n := range names {
		out[i] = stowage.Digest(n)
	}
	return out, err
}

// Tags.

func (t *Tx) PutTag(repo, tag string, d stowage.Digest, now time.Time) error {
	_, err := t.exec(sqlPutTag, repo, tag, string(d), now.UnixNano(), now.UnixNano())
	return err
}

func (t *Tx) GetTag(repo, tag string) (stowage.Digest, error) {
	var d string
	err := t.row(sqlGetTag, repo, tag).Scan(&d)
	return stowage.Digest(d), notFound(err)
}

func (t *Tx) ListTags(repo, after string, limit int) ([]string, error) {
	return t.joined(sqlListTags, repo, after, limitOf(limit))
}

func (t *Tx) TagsOf(repo string, d stowage.Digest) ([]string, error) {
	return t.strings(sqlTagsOf, repo, string(d))
}

func (t *Tx) DeleteTag(repo, tag string) error {
	return affected(t.exec(sqlDeleteTag, repo, tag))
}

// Uploads.

func (t *Tx) PutUpload(u stowage.UploadRecord) error {
	_, err := t.exec(sqlPutUpload,
		u.ID, u.Repo, u.Size, u.HashState, u.Chunks, u.Started.UnixNano(), u.Updated.UnixNano())
	return err
}

func (t *Tx) AdvanceUpload(u stowage.UploadRecord, fromSize int64) error {
	return affected(t.exec(sqlAdvanceUpload,
		u.Size, u.HashState, u.Chunks, u.Updated.UnixNano(), u.DataGen, string(u.Verified), u.ID, fromSize, u.Gen))
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
	res, err := t.exec(sqlReleaseWriters, prefix, prefix)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (t *Tx) GetUpload(id string) (stowage.UploadRecord, error) {
	u := stowage.UploadRecord{ID: id}
	var started, updated int64
	err := t.row(sqlGetUpload, id).
		Scan(&u.Repo, &u.Size, &u.HashState, &u.Chunks, &started, &updated, &u.Gen, &u.DataGen, &u.Verified)
	u.Started, u.Updated = ts(started), ts(updated)
	return u, notFound(err)
}

func (t *Tx) StaleUploads(before time.Time, limit int) ([]stowage.UploadRecord, error) {
	rows, err := t.query(sqlStaleUploads, before.UnixNano(), limitOf(limit))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []stowage.UploadRecord
	for rows.Next() {
		var u stowage.UploadRecord
		var started, updated int64
		if err := rows.Scan(&u.ID, &u.Repo, &u.Size, &u.HashState, &u.Chunks, &started, &updated, &u.Gen, &u.DataGen, &u.Verified); err != nil {
			return nil, err
		}
		u.Started, u.Updated = ts(started), ts(updated)
		out = append(out, u)
	}
	return out, rows.Err()
}

func (t *Tx) DeleteUpload(id string) error {
	return affected(t.exec(sqlDeleteUpload, id))
}

// ts turns stored Unix nanoseconds into a UTC time.
func ts(n int64) time.Time { return time.Unix(0, n).UTC() }

// Usage.

func (t *Tx) BlobTotals() (count, bytes int64, err error) {
	err = t.row(sqlBlobTotals).Scan(&count, &bytes)
	return count, bytes, err
}

func (t *Tx) HeldBytes() (n int64, err error) {
	err = t.row(sqlHeldBytes).Scan(&n)
	return n, err
}

func (t *Tx) RepositoryHeldBytes(repo string) (n int64, err error) {
	err = t.row(sqlRepoHeldBytes, repo, repo).Scan(&n)
	return n, err
}

func (t *Tx) Totals() (u stowage.UsageTotals, err error) {
	err = t.row(sqlUsageTotals).Scan(&u.Blobs, &u.PhysicalBytes, &u.Repositories, &u.ReferencedBytes, &u.Manifests, &u.Tags, &u.UntaggedManifests)
	return u, err
}

func (t *Tx) repositoryUsage(q string, args ...any) ([]stowage.RepositoryUsage, error) {
	rows, err := t.query(q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []stowage.RepositoryUsage
	for rows.Next() {
		var u stowage.RepositoryUsage
		if err := rows.Scan(&u.Name, &u.ReferencedBytes, &u.UniqueBytes, &u.Manifests, &u.Tags, &u.UntaggedManifests); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

func (t *Tx) RepositoryUsage(after string, limit int) ([]stowage.RepositoryUsage, error) {
	if limit <= 0 {
		return t.repositoryUsage(sqlRepositoryUsageAll, after)
	}
	return t.repositoryUsage(sqlRepositoryUsage, after, limit)
}

func (t *Tx) LargestRepositories(limit int) ([]stowage.RepositoryUsage, error) {
	return t.repositoryUsage(sqlLargestRepositories, sqlLimit(limit))
}

// sqlLimit is a LIMIT for SQLite: -1 is none.
func sqlLimit(n int) int {
	if n <= 0 {
		return -1
	}
	return n
}

func (t *Tx) RepositoryUsageOf(repo string) (stowage.RepositoryUsage, error) {
	return t.repositoryRow(sqlRepositoryUsageOf, repo)
}

func (t *Tx) RepositoryKept(repo string) (stowage.RepositoryUsage, error) {
	return t.repositoryRow(sqlRepositoryKept, repo)
}

func (t *Tx) repositoryRow(query, repo string) (u stowage.RepositoryUsage, err error) {
	err = t.row(query, repo).Scan(&u.Name, &u.ReferencedBytes, &u.UniqueBytes, &u.Manifests, &u.Tags, &u.UntaggedManifests)
	if errors.Is(err, sql.ErrNoRows) {
		err = stowage.ErrNotFound
	}
	return u, err
}

// cursorArgs are ManifestUsage's cursor parameters: digest, created (the
// start: above every time).
func cursorArgs(after stowage.ManifestCursor) (string, int64) {
	if after.Digest == "" && after.Created.IsZero() {
		return "", math.MaxInt64
	}
	return string(after.Digest), after.Created.UnixNano()
}

func (t *Tx) ManifestUsage(repo string, after stowage.ManifestCursor, limit int) ([]stowage.ManifestUsage, error) {
	d0, c0 := cursorArgs(after)
	rows, err := t.query(sqlManifestUsage, repo, d0, c0, sqlLimit(limit))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []stowage.ManifestUsage
	for rows.Next() {
		var u stowage.ManifestUsage
		var d, tags string
		var created int64
		if err := rows.Scan(&d, &u.MediaType, &created, &u.Size, &u.UniqueBytes, &tags); err != nil {
			return nil, err
		}
		u.Digest, u.Created = stowage.Digest(d), ts(created)
		if tags != "" {
			u.Tags = strings.Split(tags, ",")
			slices.Sort(u.Tags)
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// Retention and settings.

func (t *Tx) SetUntaggedSince(repo string, d stowage.Digest, at time.Time) error {
	_, err := t.exec(sqlSetUntaggedSince, at.UnixNano(), repo, string(d))
	return err
}

func (t *Tx) UntaggedManifests(repo string, before time.Time) ([]stowage.ManifestRecord, error) {
	rows, err := t.query(sqlUntaggedManifests, repo, before.UnixNano())
	return scanAll(rows, err, scanManifest)
}

func scanTag(scan func(...any) error) (stowage.TagRecord, error) {
	var r stowage.TagRecord
	var d string
	var updated, created int64
	err := scan(&r.Name, &d, &updated, &r.Locks, &created)
	r.Digest, r.Updated, r.Created = stowage.Digest(d), ts(updated), ts(created)
	return r, notFound(err)
}

func (t *Tx) TagRecords(repo string) ([]stowage.TagRecord, error) {
	rows, err := t.query(sqlTagRecords, repo)
	return scanAll(rows, err, scanTag)
}

func (t *Tx) GetTagRecord(repo, tag string) (stowage.TagRecord, error) {
	return scanTag(t.row(sqlGetTagRecord, repo, tag).Scan)
}

func (t *Tx) SetRepositoryLocks(name string, l stowage.Locks) error {
	return affected(t.exec(sqlSetRepoLocks, int(l), name))
}

func (t *Tx) SetTagLocks(repo, tag string, l stowage.Locks) error {
	return affected(t.exec(sqlSetTagLocks, int(l), repo, tag))
}

func (t *Tx) SetManifestLocks(repo string, d stowage.Digest, l stowage.Locks) error {
	if err := affected(t.exec(sqlSetManifestLock, int(l), repo, string(d))); err != nil {
		return err
	}
	_, err := t.exec(sqlBumpTagsVersion, repo)
	return err
}

func (t *Tx) GetSetting(key string) (string, error) {
	var v string
	err := t.row(sqlGetSetting, key).Scan(&v)
	return v, notFound(err)
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
	res, err := t.exec(sqlPutRecycled, e.Manifest.Repo, string(e.Manifest.Digest), string(rec), string(refs), string(tags),
		e.Deleted.UnixNano(), e.Expires.UnixNano())
	if err != nil {
		return 0, err
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, err
	}
	held := []stowage.Digest{e.Manifest.Digest}
	for _, r := range e.Refs {
		if r.Kind == stowage.RefBlob {
			held = append(held, r.Digest)
		}
	}
	for _, d := range held {
		if _, err := t.exec(sqlPutRecycleRef, id, string(d)); err != nil {
			return 0, err
		}
	}
	return id, nil
}

func scanRecycled(scan func(...any) error) (stowage.RecycledManifest, error) {
	var e stowage.RecycledManifest
	var rec, refs, tags string
	var deleted, expires int64
	if err := scan(&e.ID, &rec, &refs, &tags, &deleted, &expires); err != nil {
		return e, notFound(err)
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
	return scanRecycled(t.row(sqlGetRecycled, id).Scan)
}

func (t *Tx) ListRecycled(repo string) ([]stowage.RecycledManifest, error) {
	rows, err := t.query(sqlListRecycled, repo, repo)
	return scanAll(rows, err, scanRecycled)
}

func (t *Tx) ExpiredRecycled(before time.Time, limit int) ([]stowage.RecycledManifest, error) {
	rows, err := t.query(sqlExpiredRecycled, before.UnixNano(), limitOf(limit))
	return scanAll(rows, err, scanRecycled)
}

func (t *Tx) DeleteRecycled(id int64) error {
	if err := affected(t.exec(sqlDeleteRecycled, id)); err != nil {
		return err
	}
	_, err := t.exec(sqlDeleteRecRefs, id)
	return err
}
