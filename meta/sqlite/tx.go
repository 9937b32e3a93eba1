package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
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

var _ stowage.Tx = (*Tx)(nil)

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

// Repositories.

func (t *Tx) CreateRepository(name string, now time.Time) error {
	_, err := t.exec(sqlCreateRepository, name, now.UnixNano(), now.UnixNano())
	return err
}

func (t *Tx) GetRepository(name string) (stowage.RepositoryRecord, error) {
	r := stowage.RepositoryRecord{Name: name}
	var created, updated int64
	err := t.row(sqlGetRepository, name).Scan(&created, &updated, &r.TagsVersion)
	r.Created, r.Updated = ts(created), ts(updated)
	return r, notFound(err)
}

func (t *Tx) ListRepositories(after string, limit int) ([]string, error) {
	return t.joined(sqlListRepositories, after, limitOf(limit))
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

// Blobs.

func (t *Tx) PutBlob(b stowage.BlobRecord) error {
	_, err := t.exec(sqlPutBlob,
		string(b.Digest), b.Size, b.Created.UnixNano())
	return err
}

func (t *Tx) GetBlob(d stowage.Digest) (stowage.BlobRecord, error) {
	b := stowage.BlobRecord{Digest: d}
	var created int64
	err := t.row(sqlGetBlob, string(d)).Scan(&b.Size, &created)
	b.Created = ts(created)
	return b, notFound(err)
}

func (t *Tx) LinkBlob(repo string, d stowage.Digest, now time.Time) error {
	_, err := t.exec(sqlLinkBlob,
		repo, string(d), now.UnixNano())
	return err
}

func (t *Tx) UnlinkBlob(repo string, d stowage.Digest) error {
	return affected(t.exec(sqlUnlinkBlob, repo, string(d)))
}

func (t *Tx) RepositoryBlob(repo string, d stowage.Digest) (stowage.BlobRecord, error) {
	b := stowage.BlobRecord{Digest: d}
	var created int64
	err := t.row(sqlRepositoryBlob, repo, string(d)).Scan(&b.Size, &created)
	b.Created = ts(created)
	return b, notFound(err)
}

// Manifests.

func (t *Tx) PutManifest(m stowage.ManifestRecord, refs []stowage.ManifestRef) error {
	var ann string
	if len(m.Annotations) > 0 {
		b, err := json.Marshal(m.Annotations)
		if err != nil {
			return err
		}
		ann = string(b)
	}
	if _, err := t.exec(sqlPutManifest,
		m.Repo, string(m.Digest), m.MediaType, m.ArtifactType, m.Size, string(m.Subject), ann, m.Created.UnixNano()); err != nil {
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
	var digest, subject, ann string
	var created int64
	if err := scan(&m.Repo, &digest, &m.MediaType, &m.ArtifactType, &m.Size, &subject, &ann, &created); err != nil {
		return m, notFound(err)
	}
	m.Digest, m.Subject, m.Created = stowage.Digest(digest), stowage.Digest(subject), ts(created)
	if ann != "" {
		if err := json.Unmarshal([]byte(ann), &m.Annotations); err != nil {
			return m, err
		}
	}
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
	rows, err := t.query(sqlReferrers,
		repo, string(subject))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []stowage.ManifestRecord
	for rows.Next() {
		m, err := scanManifest(rows.Scan)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// Tags.

func (t *Tx) PutTag(repo, tag string, d stowage.Digest, now time.Time) error {
	_, err := t.exec(sqlPutTag,
		repo, tag, string(d), now.UnixNano())
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
		u.Size, u.HashState, u.Chunks, u.Updated.UnixNano(), u.ID, fromSize))
}

func (t *Tx) GetUpload(id string) (stowage.UploadRecord, error) {
	u := stowage.UploadRecord{ID: id}
	var started, updated int64
	err := t.row(sqlGetUpload, id).
		Scan(&u.Repo, &u.Size, &u.HashState, &u.Chunks, &started, &updated)
	u.Started, u.Updated = ts(started), ts(updated)
	return u, notFound(err)
}

func (t *Tx) DeleteUpload(id string) error {
	return affected(t.exec(sqlDeleteUpload, id))
}

// ts turns stored Unix nanoseconds into a UTC time.
func ts(n int64) time.Time { return time.Unix(0, n).UTC() }
