// Package rank pages through repositories in the order a person browsing
// them asks for (name, size, last change), a page at a time, without
// loading every repository: each order is a keyset walk over an index.
//
//	name      the primary key
//	updated   repositories_updated (updated, name), walked backwards
//	size      usage_repositories_size: the sizes of the last usage
//	          recording (usage/history, hourly and at start); repositories
//	          created since are listed after those, by name
//
// The bytes a row shows are always now's (computed for the page's rows
// only); by size, the order is that of the last recording.
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
	BySize    Order = "size"    // referenced bytes at the last recording, largest first
	ByUpdated Order = "updated" // last change, newest first
)

// Query asks for one page.
type Query struct {
	Order  Order
	Prefix string // only names that start with it ("" = all)
	// After is the cursor: the last row of the previous page (zero: the
	// first page).
	After Row
	Limit int
	// Hidden includes list-locked repositories.
	Hidden bool
}

// Row is one repository of a page.
type Row struct {
	Name    string    `json:"name"`
	Updated time.Time `json:"updated"`
	// ReferencedBytes is what its manifests reference now, each digest
	// once: usage's referencedBytes.
	ReferencedBytes int64 `json:"referencedBytes"`
	Tags            int64 `json:"tags"`
	Manifests       int64 `json:"manifests"`
	// The size order's keys: the recorded size, or Unmeasured (created
	// since the last recording).
	RecordedBytes int64 `json:"recordedBytes"`
	Unmeasured    bool  `json:"unmeasured,omitempty"`
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

// SQLSharedBy is SharedBy's query ($1 digest, $2 limit): the index of
// manifest_references by child (SQLite's manifest_references_child (child,
// repo), PostgreSQL's manifest_references_child_key (child, repo, parent))
// finds the rows.
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

// Query runs one statement for a database: SQL text with $1… parameters,
// and its arguments; rows of Columns.
type QueryFunc func(ctx context.Context, text string, args []any) ([]Row, error)

// Columns are what every statement returns, in order: name, updated (Unix
// ns), referenced bytes, tags, manifests, recorded bytes (-1: unmeasured).
// Referenced bytes and counts are the ones the database keeps as rows
// change (repository_usage): one probe per row.
const cols = `r.name, r.updated,
	coalesce((SELECT ru.referenced_bytes FROM repository_usage ru WHERE ru.repo = r.name), 0),
	coalesce((SELECT ru.tags FROM repository_usage ru WHERE ru.repo = r.name), 0),
	coalesce((SELECT ru.manifests FROM repository_usage ru WHERE ru.repo = r.name), 0)`

// Page answers q with the database's statements (query), in SQL both
// databases understand; the databases' Stores call it.
func Page(ctx context.Context, q Query, query QueryFunc) ([]Row, error) {
	if q.Limit <= 0 || q.Limit > MaxLimit {
		q.Limit = MaxLimit
	}
	// $1, $2: the prefix's range; $3: hidden too; $4: limit; $5, $6: the cursor.
	args := []any{q.Prefix, q.Prefix + nameCeiling, q.Hidden, q.Limit}
	where := `r.name >= $1 AND r.name < $2 AND ($3 OR r.locks & 8 = 0)`
	if q.Prefix == "" {
		// No name range: the planner then walks the order's index (a
		// range over every name looks selective to it, and it would sort).
		where = `$1 = '' AND $2 <> '' AND ($3 OR r.locks & 8 = 0)`
	}
	first := q.After.Name == ""
	switch q.Order {
	case ByUpdated:
		s := `SELECT ` + cols + `, 0 FROM repositories r WHERE ` + where
		if !first {
			s += ` AND (r.updated < $5 OR r.updated = $5 AND r.name < $6)`
			args = append(args, q.After.Updated.UnixNano(), q.After.Name)
		}
		return query(ctx, s+` ORDER BY r.updated DESC, r.name DESC LIMIT $4`, args)
	case BySize:
		var rows []Row
		if first || !q.After.Unmeasured {
			s := `SELECT ` + cols + `, u.referenced_bytes FROM usage_repositories u JOIN repositories r ON r.name = u.name WHERE ` + where
			a := args
			if !first {
				s += ` AND (u.referenced_bytes < $5 OR u.referenced_bytes = $5 AND u.name < $6)`
				a = append(a, q.After.RecordedBytes, q.After.Name)
			}
			var err error
			if rows, err = query(ctx, s+` ORDER BY u.referenced_bytes DESC, u.name DESC LIMIT $4`, a); err != nil || len(rows) == q.Limit {
				return rows, err
			}
			q.After = Row{}
		}
		// Then the repositories no recording has measured yet, by name.
		s := `SELECT ` + cols + `, -1 FROM repositories r WHERE ` + where + ` AND r.name > $5
			AND NOT EXISTS (SELECT 1 FROM usage_repositories u WHERE u.name = r.name) ORDER BY r.name LIMIT $4`
		args[3] = q.Limit - len(rows)
		more, err := query(ctx, s, append(args, q.After.Name))
		return append(rows, more...), err
	}
	s := `SELECT ` + cols + `, 0 FROM repositories r WHERE ` + where + ` AND r.name > $5 ORDER BY r.name LIMIT $4`
	return query(ctx, s, append(args, q.After.Name))
}
