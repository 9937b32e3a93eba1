package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/feed"
)

// PageSize is how many events a webhook's consumer reads at a time; its
// cursor is saved after each page, so a restart sends at most this many
// events again (those of the page in flight).
const PageSize = 10

// runner delivers one webhook's events: a feed.Consumer whose Handle posts
// each matching event of a page, in order, and fails at the first event the
// receiver does not take (the consumer retries the page with backoff; the
// events this runner already delivered are not sent again, so only a
// restart re-sends, and only the page in flight).
type runner struct {
	name, id string
	consumer *feed.Consumer
	cancel   context.CancelFunc
	done     chan struct{}

	mu        sync.Mutex
	sent      int64 // the last seq delivered (or skipped) by this runner
	attempt   int   // attempts at the event after sent
	delivered int64
	failed    int64
	lastOK    time.Time
	lastErr   string
	lastErrAt time.Time
}

// Run delivers the events of every webhook until ctx ends: one consumer
// per webhook, started and stopped as webhooks are created and deleted (on
// any node). With several nodes on one database, one node at a time
// delivers every webhook's events: it holds the job lock "webhooks"; the
// others wait to take over (from the cursors) if it stops. One lock for
// all webhooks rather than one per consumer: on PostgreSQL a job lock holds
// a database connection for as long as it is held, and a registry with 50
// webhooks must not pin 50 of its pool's connections.
func (s *Service) Run(ctx context.Context) {
	for ctx.Err() == nil {
		err := stowage.ExclusiveJob(ctx, s.db, s.opts.Log, "webhooks", true, nil, func(held context.Context) error {
			s.loop(held)
			return nil
		})
		if ctx.Err() != nil {
			return
		}
		s.opts.Log.Warn("webhooks: lost the job lock or the database; taking it again", "err", err)
		t := time.NewTimer(time.Second)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
}

// loop runs the consumers while ctx (the job lock) lasts.
func (s *Service) loop(ctx context.Context) {
	defer s.stopAll()
	for {
		if err := s.sync(ctx); err != nil && ctx.Err() == nil {
			s.opts.Log.Warn("webhooks: could not list webhooks; trying again", "err", err)
		}
		t := time.NewTimer(s.opts.Sync)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.kick:
		case <-t.C:
		}
		t.Stop()
	}
}

// sync starts a consumer for each webhook that has none (or one started
// for a webhook since deleted and created again), stops those of deleted
// webhooks, and deletes cursors no webhook owns (left by a delete on a node
// whose consumer saved its cursor once more as it stopped), so they do not
// hold the feed's retention back.
func (s *Service) sync(ctx context.Context) error {
	rs, err := s.store.Webhooks(ctx)
	if err != nil {
		return err
	}
	ids := map[string]string{}
	for _, r := range rs {
		ids[r.Name] = r.ID
	}
	s.mu.Lock()
	var stale []string
	for name, run := range s.running {
		if ids[name] != run.id {
			stale = append(stale, name)
		}
	}
	s.mu.Unlock()
	for _, name := range stale {
		s.stop(name)
	}
	for _, r := range rs {
		s.mu.Lock()
		_, ok := s.running[r.Name]
		s.mu.Unlock()
		if !ok {
			s.start(ctx, r)
		}
	}
	cs, err := s.cursors.Cursors(ctx)
	if err != nil {
		return err
	}
	for _, c := range cs {
		name, ok := strings.CutPrefix(c.Name, "webhook:")
		if !ok || ids[name] != "" || s.opts.Now().Sub(c.Updated) < time.Minute { // young: a create in progress
			continue
		}
		if err := s.cursors.DeleteCursor(ctx, c.Name); err != nil {
			return err
		}
	}
	return nil
}

func (s *Service) start(parent context.Context, r Record) {
	ctx, cancel := context.WithCancel(parent)
	run := &runner{name: r.Name, id: r.ID, cancel: cancel, done: make(chan struct{})}
	run.consumer = &feed.Consumer{
		// No DB: no job lock of its own (Run holds "webhooks" for all).
		Name: CursorName(r.Name), Feed: s.feed, Cursors: s.cursors, Log: s.opts.Log,
		Query:  feed.Query{Kinds: eventKinds, Limit: PageSize},
		Handle: func(ctx context.Context, evs []stowage.Event) error { return s.handle(ctx, run, evs) },
		Behind: func(ctx context.Context, err error, oldest int64) (int64, error) {
			// Retention by count deleted events this webhook had not
			// been sent (it was failing for very long): say so, go on.
			s.opts.Log.Error("webhook: events were deleted by the change feed's retention before they were delivered; they are lost for this webhook", "webhook", r.Name, "err", err)
			s.record(ctx, Delivery{Webhook: r.Name, Time: s.opts.Now(), Error: "events lost: " + err.Error()})
			return max(oldest-1, 0), nil
		},
		Poll: s.opts.Poll, MinBackoff: s.opts.MinBackoff, MaxBackoff: s.opts.MaxBackoff, Now: s.opts.Now,
	}
	s.mu.Lock()
	s.running[r.Name] = run
	s.mu.Unlock()
	go func() {
		defer close(run.done)
		if err := run.consumer.Run(ctx); err != nil {
			s.opts.Log.Error("webhook: deliveries stopped", "webhook", r.Name, "err", err)
		}
	}()
}

// stop ends the named webhook's consumer on this node and waits for it.
func (s *Service) stop(name string) {
	s.mu.Lock()
	run := s.running[name]
	delete(s.running, name)
	s.mu.Unlock()
	if run != nil {
		run.cancel()
		<-run.done
	}
}

func (s *Service) stopAll() {
	s.mu.Lock()
	names := make([]string, 0, len(s.running))
	for n := range s.running {
		names = append(names, n)
	}
	s.mu.Unlock()
	for _, n := range names {
		s.stop(n)
	}
}

// handle delivers a page: each event the webhook is told about, in order.
func (s *Service) handle(ctx context.Context, run *runner, evs []stowage.Event) error {
	r, err := s.store.Webhook(ctx, run.name)
	if errors.Is(err, stowage.ErrNotFound) || err == nil && r.ID != run.id {
		run.cancel() // sync starts the new one, if any
		return errGone
	}
	if err != nil {
		return err
	}
	if !r.Enabled {
		return nil // a disabled webhook is sent nothing: its cursor moves on
	}
	scope, err := ParseScope(r.Scope)
	if err != nil {
		return err
	}
	sec, err := s.secretsOf(ctx, r)
	if err != nil {
		return err
	}
	for _, e := range evs {
		run.mu.Lock()
		skip := e.Seq <= run.sent
		run.mu.Unlock()
		if skip {
			continue
		}
		if Matches(r.Actions, scope, e) {
			run.mu.Lock()
			run.attempt++
			attempt := run.attempt
			run.mu.Unlock()
			d := s.send(ctx, r, sec, NewPayload(e, s.region(), s.opts.Host), e.Seq, attempt)
			run.mu.Lock()
			if d.Error != "" {
				run.failed++
				run.lastErr, run.lastErrAt = d.Error, d.Time
				run.mu.Unlock()
				return fmt.Errorf("webhook %s: event %d (%s %s): %s", r.Name, e.Seq, d.Action, e.Repo, d.Error)
			}
			run.delivered++
			run.lastOK = d.Time
			run.mu.Unlock()
		}
		run.mu.Lock()
		run.sent, run.attempt = e.Seq, 0
		run.mu.Unlock()
	}
	return nil
}

// maxAnswer bounds what is read of a receiver's answer (the rest is
// dropped; the connection is then not reused).
const maxAnswer = 64 << 10

// send posts p to r's URI once and records the attempt.
func (s *Service) send(ctx context.Context, r Record, sec secrets, p Payload, seq int64, attempt int) Delivery {
	start := s.opts.Now()
	d := Delivery{Webhook: r.Name, Time: start, EventID: p.ID, Seq: seq, Action: Action(p.Action),
		Repo: p.Target.Repository, Tag: p.Target.Tag, Digest: p.Target.Digest, Attempt: attempt}
	err := func() error {
		body, err := json.Marshal(p)
		if err != nil {
			return err
		}
		actx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
		defer cancel()
		req, err := http.NewRequestWithContext(actx, http.MethodPost, r.URI, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("User-Agent", "stowage-webhook/1") // a custom header may replace it
		for k, v := range sec.Headers {
			req.Header.Set(k, v)
		}
		ts := start.Unix()
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(HeaderEventID, p.ID)
		req.Header.Set(HeaderWebhook, r.Name)
		req.Header.Set(HeaderAttempt, strconv.Itoa(attempt))
		req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
		if seq > 0 {
			req.Header.Set(HeaderSeq, strconv.FormatInt(seq, 10))
		}
		if sec.Secret != "" {
			req.Header.Set(HeaderSignature, Sign(sec.Secret, ts, body))
		}
		resp, err := s.opts.Client.Do(req)
		if err != nil {
			if actx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
				return fmt.Errorf("no answer within %s", s.opts.Timeout)
			}
			return err
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer))
		resp.Body.Close()
		d.Status = resp.StatusCode
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			return fmt.Errorf("the receiver answered %s", resp.Status)
		}
		return nil
	}()
	d.Duration = s.opts.Now().Sub(start)
	if err != nil {
		d.Error = err.Error()
		if ctx.Err() != nil {
			d.Error = "interrupted: deliveries stopped (the registry is shutting down, or the webhook changed); it is sent again"
		}
	}
	s.record(ctx, d)
	return d
}

// record adds d to the delivery log; a failure to write it is logged (the
// delivery itself is what counts).
func (s *Service) record(ctx context.Context, d Delivery) {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.store.AddDelivery(wctx, d, s.opts.Keep); err != nil {
		s.opts.Log.Warn("webhook: could not record a delivery attempt", "webhook", d.Webhook, "err", err)
	}
}

// Counters are one webhook's delivery counters on this node, since it
// started (for metrics).
type Counters struct {
	Delivered      int64 // events the receiver took (2xx)
	FailedAttempts int64 // attempts that failed (each retry counts)
}

// Stats returns the counters of every webhook this node runs, by name.
func (s *Service) Stats() map[string]Counters {
	s.mu.Lock()
	runs := make([]*runner, 0, len(s.running))
	for _, r := range s.running {
		runs = append(runs, r)
	}
	s.mu.Unlock()
	out := make(map[string]Counters, len(runs))
	for _, r := range runs {
		r.mu.Lock()
		out[r.name] = Counters{Delivered: r.delivered, FailedAttempts: r.failed}
		r.mu.Unlock()
	}
	return out
}
