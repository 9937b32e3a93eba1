// Package feed reads the change feed: the durable, ordered record of every
// committed change (stowage.Event), which the engine appends in the
// transaction that makes each change (stowage.EventTx). Replication,
// webhooks, the audit trail (`stowage events`, GET /api/v1/events) and the
// UI's activity view read it by cursor.
//
// # The cursor
//
// Every event has a sequence number, seq. A reader asks for the events after
// the last seq it has seen. The one promise that makes this work: once a
// reader has seen seq N, no event with a seq below N appears later. SQLite
// commits one writer at a time and numbers events at insert, so commit order
// is seq order. PostgreSQL commits concurrent transactions in any order, so
// an insert-time number (a sequence) may commit after a higher one was read;
// there, committed events get their seq afterwards, from the sequencer
// (Store.Sequence), one sequencer at a time, always above every seq given
// before. Readers call Sequence before they read, so they see what committed.
//
// # Retention
//
// The feed is trimmed by age and by count (Retention), always from the
// oldest end and never down to nothing (the newest event stays, SQLite
// numbers the next one after it). A reader whose cursor fell below the
// oldest retained event is told so (ErrBehind), never silently moved ahead.
package feed

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/stowage/stowage"
)

// Store is what a metadata database implements for the feed
// (meta/sqlite and meta/postgres; the shared suite is meta/metatest).
type Store interface {
	// Sequence gives a seq to every committed event that has none yet, in
	// the order they were inserted, each above every seq given before.
	// Several callers (nodes) may call it at once: they take turns. A no-op
	// where events are numbered at insert (SQLite).
	Sequence(ctx context.Context) error
	// Read returns, in seq order, the sequenced events with seq > q.After
	// that match q's filters, at most q.Limit of them, having examined at
	// most q.Scan rows (the repository filter narrows the rows examined;
	// the other filters apply to them). scanned is the cursor to continue
	// from: every matching event up to it was returned, so a filtered read
	// moves on even when it found nothing. scanned >= q.After.
	Read(ctx context.Context, q Query) (events []stowage.Event, scanned int64, err error)
	// Bounds returns the lowest and highest seq present (0, 0: no event yet).
	Bounds(ctx context.Context) (oldest, newest int64, err error)
	// Trim deletes, from the oldest end, the events older than olderThan
	// (zero: no age limit) and those beyond the newest keep (keep <= 0: no
	// count limit), in bounded batches. It stops at the first event that
	// is not old enough, so the retained events are always a contiguous
	// range of seq, and it never deletes the newest event.
	Trim(ctx context.Context, olderThan time.Time, keep int64) (deleted int64, err error)
}

// Query selects events. The zero Query is every event from the oldest
// retained one, DefaultLimit at a time.
type Query struct {
	After int64 // events with seq > After (0: from the oldest retained, unless Resume)
	// Resume says After is a cursor from an earlier read (even 0, from a
	// feed that was empty then): events after it that retention deleted
	// are an error (ErrBehind), never skipped. Without it, After == 0 means
	// "from the oldest retained event, whatever was trimmed".
	Resume bool
	Limit  int // at most this many events (<= 0: DefaultLimit; capped at MaxLimit)
	// Scan bounds the rows one Read examines (<= 0: DefaultScan), so a
	// filter that matches little costs a bounded amount per call.
	Scan  int
	Repo  string              // only this repository ("" = all)
	Actor string              // only this actor ("" = all)
	Kinds []stowage.EventKind // only these kinds (empty = all)
	Since time.Time           // only events at or after Since (zero = no bound)
	Until time.Time           // only events before Until (zero = no bound)
}

// Limits of one read.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
	DefaultScan  = 10000
)

// Normalized returns q with its limits filled in and clamped, as a Store
// expects them.
func (q Query) Normalized() Query {
	if q.Limit <= 0 {
		q.Limit = DefaultLimit
	}
	q.Limit = min(q.Limit, MaxLimit)
	if q.Scan <= 0 {
		q.Scan = DefaultScan
	}
	q.Scan = max(q.Scan, q.Limit)
	if q.After < 0 {
		q.After = 0
	}
	return q
}

// Match reports whether e passes q's filters (not the cursor): what a Store
// selects in SQL, for implementations and tests to agree on.
func (q Query) Match(e stowage.Event) bool {
	if q.Repo != "" && e.Repo != q.Repo || q.Actor != "" && e.Actor != q.Actor {
		return false
	}
	if !q.Since.IsZero() && e.Time.Before(q.Since) || !q.Until.IsZero() && !e.Time.Before(q.Until) {
		return false
	}
	if len(q.Kinds) == 0 {
		return true
	}
	for _, k := range q.Kinds {
		if e.Kind == k {
			return true
		}
	}
	return false
}

// Provider is a metadata database that has a change feed (both of ours do).
type Provider interface {
	Feed() Store
}

// Of returns db's feed store, if it has one.
func Of(db stowage.DB) (Store, bool) {
	p, ok := db.(Provider)
	if !ok {
		return nil, false
	}
	return p.Feed(), true
}

// Kinds lists every kind of event, for validating filters (a kind that is
// not here matches nothing, which a typo should not silently do).
var Kinds = []stowage.EventKind{
	stowage.EventPush, stowage.EventUntag, stowage.EventDelete, stowage.EventRepositoryDelete, stowage.EventRestore,
	stowage.EventLock, stowage.EventQuota, stowage.EventPolicy, stowage.EventUser, stowage.EventToken,
	stowage.EventScopeMap, stowage.EventPull, stowage.EventLoginFailed,
}

// ParseKinds reads a comma-separated list of kinds ("push,delete").
func ParseKinds(s string) ([]stowage.EventKind, error) {
	var out []stowage.EventKind
	for _, k := range strings.Split(s, ",") {
		k = strings.TrimSpace(k)
		if k == "" {
			continue
		}
		if !slices.Contains(Kinds, stowage.EventKind(k)) {
			names := make([]string, len(Kinds))
			for i, k := range Kinds {
				names[i] = string(k)
			}
			return nil, fmt.Errorf("unknown event kind %q: want one or more of %s", k, strings.Join(names, ", "))
		}
		out = append(out, stowage.EventKind(k))
	}
	return out, nil
}

// Cursor is where a durable reader of the feed (a Consumer: webhooks,
// replication to a peer) stands: Seq is the last event it has handled.
type Cursor struct {
	Name    string
	Seq     int64
	Updated time.Time
}

// CursorStore keeps the cursors of durable readers, so they resume after a
// restart, on any node, where they stopped.
type CursorStore interface {
	// Cursors lists every cursor, by name.
	Cursors(ctx context.Context) ([]Cursor, error)
	// Cursor returns the named cursor; ok is false when there is none.
	Cursor(ctx context.Context, name string) (c Cursor, ok bool, err error)
	// SaveCursor creates or moves the named cursor to seq.
	SaveCursor(ctx context.Context, name string, seq int64, now time.Time) error
	// DeleteCursor removes the named cursor (no error when there is none).
	DeleteCursor(ctx context.Context, name string) error
}

// CursorProvider is a metadata database that keeps feed cursors (both of
// ours do).
type CursorProvider interface {
	FeedCursors() CursorStore
}

// CursorsOf returns db's cursor store, if it has one.
func CursorsOf(db stowage.DB) (CursorStore, bool) {
	p, ok := db.(CursorProvider)
	if !ok {
		return nil, false
	}
	return p.FeedCursors(), true
}
