package feed

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/stowage/stowage"
)

// Retention bounds the feed. Zero fields are no bound.
type Retention struct {
	MaxAge   time.Duration // events older than this are deleted
	MaxCount int64         // at most this many events are kept
}

// DefaultRetention is what `stowage serve` keeps unless configured
// (events.max_age, events.max_count).
var DefaultRetention = Retention{MaxAge: 90 * 24 * time.Hour, MaxCount: 1_000_000}

func (r Retention) String() string {
	age, count := "no age limit", "no count limit"
	if r.MaxAge > 0 {
		age = "events.max_age " + r.MaxAge.String()
	}
	if r.MaxCount > 0 {
		count = fmt.Sprintf("events.max_count %d", r.MaxCount)
	}
	return age + ", " + count
}

// Options configures a Feed.
type Options struct {
	Retention Retention
	// Poll is how often Wait and Follow look for new events (default 500ms).
	Poll time.Duration
	Now  func() time.Time // for tests; default time.Now
	// Cursors, when set, holds retention back: events a durable reader
	// (Consumer) has not handled yet are not deleted by age (MaxCount
	// still applies, so a stuck reader cannot make the feed grow forever).
	Cursors CursorStore
}

// Feed reads the change feed for its consumers: pages by cursor, the
// "fell behind" rule, waiting for new events, and retention.
type Feed struct {
	store Store
	opts  Options

	closeOnce sync.Once
	closed    chan struct{}
}

// New returns a Feed over s.
func New(s Store, opts Options) *Feed {
	if opts.Poll <= 0 {
		opts.Poll = 500 * time.Millisecond
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Feed{store: s, opts: opts, closed: make(chan struct{})}
}

// Close makes waiting reads return what they have now (a server shutting
// down does not wait for its long polls). Reads still work afterwards.
func (f *Feed) Close() { f.closeOnce.Do(func() { close(f.closed) }) }

// Page is one read of the feed.
type Page struct {
	Events []stowage.Event
	// Next is the cursor to read on from (After of the next Query). It can
	// move past events that do not match the filters, so it may be beyond
	// the last event returned.
	Next int64
	// Oldest and Newest are the lowest and highest seq retained (0: none).
	Oldest, Newest int64
}

// ErrBehind is the cause of the error Read returns when events after the
// reader's cursor were deleted by retention before it read them
// (errors.Is(err, ErrBehind)). The error itself is a *stowage.Error with
// code stowage.CodeEventsTrimmed (HTTP 410 Gone) and a message that names
// the missed range, the retention that deleted it, and how to resume.
var ErrBehind = errors.New("the reader fell behind the retained events")

// ErrAhead is the cause of the error Read returns for a cursor past the
// newest event: it comes from another registry, or the database was
// restored from a backup older than the cursor.
var ErrAhead = errors.New("the cursor is past the newest event")

// Read returns the events after q.After that match q, numbering committed
// events first. A cursor whose next event was deleted by retention is an
// error (ErrBehind); q.After == 0 without q.Resume starts at the oldest
// retained event.
func (f *Feed) Read(ctx context.Context, q Query) (Page, error) {
	q = q.Normalized()
	if err := f.store.Sequence(ctx); err != nil {
		return Page{}, fmt.Errorf("change feed: number new events: %w", err)
	}
	evs, next, err := f.store.Read(ctx, q)
	if err != nil {
		return Page{}, fmt.Errorf("change feed: read: %w", err)
	}
	// Bounds after the read: if the oldest retained event is now above
	// After+1, events the reader had not seen may have been trimmed before
	// or while it read, so it is told, whatever the read returned.
	oldest, newest, err := f.store.Bounds(ctx)
	if err != nil {
		return Page{}, fmt.Errorf("change feed: bounds: %w", err)
	}
	if (q.After > 0 || q.Resume) && oldest > 0 && q.After < oldest-1 {
		return Page{}, f.behind(q.After, oldest, newest)
	}
	if q.After > newest {
		return Page{}, &stowage.Error{Code: stowage.CodeInvalidParameter, Err: ErrAhead,
			Detail: map[string]int64{"after": q.After, "newest": newest},
			Message: fmt.Sprintf("after=%d is past the newest event (%d): this cursor comes from another registry, "+
				"or the metadata database was restored from an older backup; re-sync, then read on from after=%d", q.After, newest, newest)}
	}
	return Page{Events: evs, Next: max(next, q.After), Oldest: oldest, Newest: newest}, nil
}

func (f *Feed) behind(after, oldest, newest int64) error {
	return &stowage.Error{Code: stowage.CodeEventsTrimmed, Err: ErrBehind,
		Detail: map[string]int64{"after": after, "firstMissed": after + 1, "lastMissed": oldest - 1, "oldest": oldest, "newest": newest},
		Message: fmt.Sprintf("events %d to %d were deleted by the change feed's retention (%s) before this reader read them; "+
			"the oldest retained event is %d. Re-sync what you keep from the registry itself (catalog, tags), "+
			"then resume with after=%d (or without after: from the oldest retained event); "+
			"to keep more, raise events.max_age or events.max_count", after+1, oldest-1, f.opts.Retention, oldest, oldest-1)}
}

// Wait is Read that, when nothing matches yet, keeps looking (every
// Options.Poll) until an event matches, d has passed, ctx ends or the Feed
// is closed; it then returns the (possibly empty) page, whose Next still
// moves past what it examined.
func (f *Feed) Wait(ctx context.Context, q Query, d time.Duration) (Page, error) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		p, err := f.Read(ctx, q)
		if err != nil || len(p.Events) > 0 || d <= 0 {
			return p, err
		}
		q.After, q.Resume = p.Next, true
		select {
		case <-ctx.Done():
			return p, nil
		case <-f.closed:
			return p, nil
		case <-deadline.C:
			return p, nil
		case <-time.After(f.opts.Poll):
		}
	}
}

// Follow calls fn with every event after q.After that matches q, in order,
// waiting for new ones, until ctx ends (it then returns ctx's error) or fn
// or a read fails.
func (f *Feed) Follow(ctx context.Context, q Query, fn func(stowage.Event) error) error {
	for {
		p, err := f.Wait(ctx, q, time.Minute)
		if err != nil {
			return err
		}
		for _, e := range p.Events {
			if err := fn(e); err != nil {
				return err
			}
		}
		q.After, q.Resume = p.Next, true
		if err := ctx.Err(); err != nil {
			return err
		}
		select {
		case <-f.closed:
			return ErrClosed
		default:
		}
	}
}

// ErrClosed is Follow's answer once the Feed is closed.
var ErrClosed = errors.New("change feed closed")

// Trim applies the retention: deletes what is older than MaxAge and beyond
// the newest MaxCount events (never the newest event).
func (f *Feed) Trim(ctx context.Context) (int64, error) {
	r := f.opts.Retention
	if r.MaxAge <= 0 && r.MaxCount <= 0 {
		return 0, nil
	}
	var olderThan time.Time
	if r.MaxAge > 0 {
		olderThan = f.opts.Now().Add(-r.MaxAge)
	}
	if err := f.store.Sequence(ctx); err != nil { // so the count counts every committed event
		return 0, err
	}
	if !olderThan.IsZero() && f.opts.Cursors != nil {
		// The store deletes by age up to the first event at or after
		// olderThan; the first event a reader has not handled must be
		// that event or an earlier one.
		cs, err := f.opts.Cursors.Cursors(ctx)
		if err != nil {
			return 0, fmt.Errorf("change feed: cursors: %w", err)
		}
		for _, c := range cs {
			evs, _, err := f.store.Read(ctx, Query{After: c.Seq, Limit: 1, Scan: 1})
			if err != nil {
				return 0, err
			}
			if len(evs) == 1 && evs[0].Time.Before(olderThan) {
				olderThan = evs[0].Time
			}
		}
	}
	return f.store.Trim(ctx, olderThan, r.MaxCount)
}

// Retention returns the retention the feed applies.
func (f *Feed) Retention() Retention { return f.opts.Retention }
