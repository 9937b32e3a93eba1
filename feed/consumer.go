package feed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/stowage/stowage"
)

// A Consumer is a durable reader of the feed: webhook deliveries and
// replication to a peer are each one. It reads the events after its cursor
// (kept in a CursorStore under its name, so it resumes where it stopped
// after a restart, on any node), hands each page to Handle, and moves the
// cursor past the page only when Handle succeeded: every event is handled
// at least once, in seq order. A failing Handle is retried with backoff,
// never skipped. Where several nodes share the database, one node at a time
// runs a given consumer (it holds the job lock "feed:<name>"; the others
// wait to take over).
//
// Retention: Feed.Trim does not delete by age an event some cursor has not
// passed (events.max_count still bounds the feed, so a consumer stuck for
// long can fall behind; Behind says what to do then).
type Consumer struct {
	Name    string
	Feed    *Feed
	Cursors CursorStore
	DB      stowage.DB // for the job lock; nil: no lock (one process)
	Log     *slog.Logger
	// Query filters the events Handle sees (After and Resume come from the
	// cursor). The cursor moves past events that do not match too.
	Query Query
	// Handle handles a page of events, in order. nil error: handled.
	Handle func(ctx context.Context, evs []stowage.Event) error
	// Behind is called when events after the cursor were deleted by
	// retention (err wraps ErrBehind; oldest is the oldest retained seq).
	// It returns the seq to resume after (oldest-1 after a re-sync), or an
	// error, which stops Run. nil Behind: stop with the error.
	Behind func(ctx context.Context, err error, oldest int64) (int64, error)
	// FromOldest makes a consumer without a cursor start at the oldest
	// retained event; by default it starts after the newest (only what
	// happens from now on).
	FromOldest bool
	// Poll bounds one long poll (default 30s); MinBackoff and MaxBackoff
	// bound the pause after a failure (default 1s and 1m).
	Poll, MinBackoff, MaxBackoff time.Duration
	Now                          func() time.Time

	mu     sync.Mutex
	status ConsumerStatus
}

// ConsumerStatus is what a Consumer reports about itself.
type ConsumerStatus struct {
	Cursor      int64     // the last event handled
	Handled     int64     // events handled since this process started it
	LastHandled time.Time // when Handle last succeeded (zero: not yet)
	LastError   string    // the last failure ("" once a page succeeds)
	LastErrorAt time.Time
	Failures    int // consecutive failures
	Running     bool
}

// Status returns the consumer's state as this process sees it.
func (c *Consumer) Status() ConsumerStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

func (c *Consumer) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// StartCursor creates the named cursor if it does not exist: after the
// newest event (so the reader sees what happens from now on), or, with
// fromOldest, before the oldest retained one. It returns the cursor.
func StartCursor(ctx context.Context, f *Feed, cs CursorStore, name string, fromOldest bool, now time.Time) (Cursor, error) {
	if c, ok, err := cs.Cursor(ctx, name); err != nil || ok {
		return c, err
	}
	if err := f.store.Sequence(ctx); err != nil {
		return Cursor{}, err
	}
	oldest, newest, err := f.store.Bounds(ctx)
	if err != nil {
		return Cursor{}, err
	}
	seq := newest
	if fromOldest {
		seq = max(oldest-1, 0)
	}
	if err := cs.SaveCursor(ctx, name, seq, now); err != nil {
		return Cursor{}, err
	}
	return Cursor{Name: name, Seq: seq, Updated: now}, nil
}

// Run consumes until ctx ends (returning nil then), or Behind gives up.
func (c *Consumer) Run(ctx context.Context) error {
	if c.Log == nil {
		c.Log = slog.Default()
	}
	c.setRunning(true)
	defer c.setRunning(false)
	for {
		var err error
		if c.DB != nil {
			err = stowage.ExclusiveJob(ctx, c.DB, c.Log, "feed:"+c.Name, true, nil, c.run)
		} else {
			err = c.run(ctx)
		}
		if ctx.Err() != nil {
			return nil
		}
		var stop *stopError
		if errors.As(err, &stop) {
			return stop.err
		}
		// Lost the lock or the database: wait a little and take it again.
		c.fail(err)
		if !sleep(ctx, c.backoff()) {
			return nil
		}
	}
}

type stopError struct{ err error }

func (e *stopError) Error() string { return e.err.Error() }

func (c *Consumer) run(ctx context.Context) error {
	cur, err := StartCursor(ctx, c.Feed, c.Cursors, c.Name, c.FromOldest, c.now())
	if err != nil {
		return fmt.Errorf("feed consumer %s: cursor: %w", c.Name, err)
	}
	c.mu.Lock()
	c.status.Cursor = cur.Seq
	c.mu.Unlock()
	poll := c.Poll
	if poll <= 0 {
		poll = 30 * time.Second
	}
	after := cur.Seq
	for ctx.Err() == nil {
		q := c.Query
		q.After, q.Resume = after, true
		p, err := c.Feed.Wait(ctx, q, poll)
		if errors.Is(err, ErrBehind) {
			if c.Behind == nil {
				return &stopError{fmt.Errorf("feed consumer %s: %w", c.Name, err)}
			}
			_, oldest := behindRange(err)
			resume, berr := c.Behind(ctx, err, oldest)
			if berr != nil {
				return &stopError{fmt.Errorf("feed consumer %s: %w", c.Name, berr)}
			}
			if err := c.Cursors.SaveCursor(ctx, c.Name, resume, c.now()); err != nil {
				return err
			}
			after = resume
			continue
		}
		if err != nil {
			return err
		}
		if len(p.Events) > 0 {
			if !c.handle(ctx, p.Events) {
				return nil // ctx ended while retrying
			}
		}
		if p.Next != after {
			// Saved even when ctx has just ended: the page was handled,
			// and re-handling it after a restart is what at-least-once
			// allows, not what it wants.
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			err := c.Cursors.SaveCursor(sctx, c.Name, p.Next, c.now())
			cancel()
			if err != nil {
				return fmt.Errorf("feed consumer %s: save cursor: %w", c.Name, err)
			}
			after = p.Next
			c.mu.Lock()
			c.status.Cursor = after
			c.mu.Unlock()
		}
	}
	return nil
}

// handle calls Handle until it succeeds or ctx ends (false).
func (c *Consumer) handle(ctx context.Context, evs []stowage.Event) bool {
	for {
		err := c.Handle(ctx, evs)
		if err == nil {
			c.mu.Lock()
			c.status.Handled += int64(len(evs))
			c.status.LastHandled = c.now()
			c.status.LastError, c.status.Failures = "", 0
			c.mu.Unlock()
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		c.fail(err)
		c.Log.Warn("feed consumer: handling failed; retrying", "consumer", c.Name,
			"first", evs[0].Seq, "last", evs[len(evs)-1].Seq, "err", err)
		if !sleep(ctx, c.backoff()) {
			return false
		}
	}
}

func (c *Consumer) fail(err error) {
	if err == nil {
		return
	}
	c.mu.Lock()
	c.status.LastError, c.status.LastErrorAt = err.Error(), c.now()
	c.status.Failures++
	c.mu.Unlock()
}

func (c *Consumer) setRunning(r bool) {
	c.mu.Lock()
	c.status.Running = r
	c.mu.Unlock()
}

// backoff doubles from MinBackoff with each consecutive failure, up to
// MaxBackoff.
func (c *Consumer) backoff() time.Duration {
	lo, hi := c.MinBackoff, c.MaxBackoff
	if lo <= 0 {
		lo = time.Second
	}
	if hi <= 0 {
		hi = time.Minute
	}
	c.mu.Lock()
	n := c.status.Failures
	c.mu.Unlock()
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// behindRange reads the missed range from an ErrBehind error.
func behindRange(err error) (after, oldest int64) {
	var se *stowage.Error
	if errors.As(err, &se) {
		if d, ok := se.Detail.(map[string]int64); ok {
			return d["after"], d["oldest"]
		}
	}
	return 0, 0
}
