// Package rank pages through repositories in the order a person browsing
// them asks for (name, size, last change), a page at a time, without
// loading every repository: by name and by change time it is a keyset walk
// over an index; by size, one aggregate query the database sorts and cuts.
// Both metadata databases implement Store.
package rank

import (
	"context"
	"time"

	"github.com/stowage/stowage"
)

// Order is how a page is sorted.
type Order string

const (
	ByName    Order = "name"    // ascending, byte order
	BySize    Order = "size"    // referenced bytes, largest first (then name)
	ByUpdated Order = "updated" // last change, newest first (then name)
)

// Query asks for one page.
type Query struct {
	Order  Order
	Prefix string // only names that start with it ("" = all)
	// After is the cursor: the last row of the previous page (zero: the
	// first page). For ByName only its Name counts.
	After Row
	Limit int
	// Hidden includes list-locked repositories.
	Hidden bool
}

// Row is one repository of a page.
type Row struct {
	Name    string    `json:"name"`
	Updated time.Time `json:"updated"`
	// ReferencedBytes is what its manifests reference, each digest once:
	// usage's referencedBytes.
	ReferencedBytes int64 `json:"referencedBytes"`
	Tags            int64 `json:"tags"`
	Manifests       int64 `json:"manifests"`
}

// Store pages through repositories.
type Store interface {
	RepositoryPage(ctx context.Context, q Query) ([]Row, error)
	// SharedBy lists the manifests (any repository) that reference blob d,
	// by repository and digest, at most limit of them.
	SharedBy(ctx context.Context, d stowage.Digest, limit int) ([]Holder, error)
}

// Holder is a manifest that references a blob.
type Holder struct {
	Repo     string
	Manifest stowage.Digest
}

// SQLSharedBy is SharedBy's query ($1 digest, $2 limit): the index
// manifest_references_child (child, repo) finds the rows.
const SQLSharedBy = `SELECT repo, parent FROM manifest_references WHERE child = $1 ORDER BY repo, parent LIMIT $2`

// Provider is a database that pages repositories.
type Provider interface {
	Rank() Store
}

// Of returns db's Store, if it has one.
func Of(db stowage.DB) (Store, bool) {
	p, ok := db.(Provider)
	if !ok {
		return nil, false
	}
	return p.Rank(), true
}

// MaxLimit bounds a page.
const MaxLimit = 500

// nameCeiling is above every character a repository name may hold
// ([a-z0-9._/-]), so [prefix, prefix+nameCeiling) is every name that
// starts with prefix.
const nameCeiling = "~"

// SQL returns the query for q and its arguments, in the SQL both metadata
// databases understand (numbered parameters $1…; SQLite reads them as
// ?NNN when the caller replaces "$" by "?", see meta/sqlite). Columns: name,
// updated (Unix ns), referenced bytes, tags, manifests.
//
// By name and by change time, the page is a range of an index (the primary
// key, repositories_updated) and the sizes are computed for its rows only;
// by size, the database aggregates every repository's references once and
// returns the page (no rows reach the program but the page's).
func SQL(q Query) (string, []any) {
	limit := q.Limit
	if limit <= 0 || limit > MaxLimit {
		limit = MaxLimit
	}
	lo, hi := q.Prefix, q.Prefix+nameCeiling
	// The bytes a repository's manifests reference, each digest once
	// (usage's referencedBytes).
	const referenced = `(SELECT CAST(coalesce(sum(b.size), 0) AS BIGINT) FROM
			(SELECT digest AS d FROM manifests WHERE repo = r.name
			 UNION SELECT child FROM manifest_references WHERE repo = r.name AND kind = 'blob') x
			JOIN blobs b ON b.digest = x.d)`
	const counts = `(SELECT count(*) FROM tags t WHERE t.repo = r.name), (SELECT count(*) FROM manifests m WHERE m.repo = r.name)`
	const where = `r.name >= $1 AND r.name < $2 AND ($3 OR r.locks & 8 = 0)`
	switch q.Order {
	case BySize:
		s := `WITH refs AS (SELECT repo, digest AS d FROM manifests UNION SELECT repo, child FROM manifest_references WHERE kind = 'blob'),
			sz AS (SELECT x.repo, CAST(sum(b.size) AS BIGINT) AS s FROM refs x JOIN blobs b ON b.digest = x.d GROUP BY x.repo),
			page AS (SELECT r.name, r.updated, coalesce(sz.s, 0) AS s FROM repositories r LEFT JOIN sz ON sz.repo = r.name
				WHERE ` + where + `)
			SELECT r.name, r.updated, r.s, ` + counts + ` FROM page r
			WHERE $4 = '' OR r.s < $5 OR (r.s = $5 AND r.name > $4)
			ORDER BY r.s DESC, r.name LIMIT $6`
		return s, []any{lo, hi, q.Hidden, q.After.Name, q.After.ReferencedBytes, limit}
	case ByUpdated:
		s := `SELECT r.name, r.updated, ` + referenced + `, ` + counts + ` FROM repositories r
			WHERE ` + where + ` AND ($4 = '' OR r.updated < $5 OR (r.updated = $5 AND r.name > $4))
			ORDER BY r.updated DESC, r.name LIMIT $6`
		return s, []any{lo, hi, q.Hidden, q.After.Name, q.After.Updated.UnixNano(), limit}
	}
	s := `SELECT r.name, r.updated, ` + referenced + `, ` + counts + ` FROM repositories r
		WHERE ` + where + ` AND r.name > $4 ORDER BY r.name LIMIT $5`
	return s, []any{lo, hi, q.Hidden, q.After.Name, limit}
}
