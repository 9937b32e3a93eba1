package main

import (
	"context"
	"net/http"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/auth"
	"github.com/stowage/stowage/limits"
	"github.com/stowage/stowage/mgmt"
	"github.com/stowage/stowage/ui"
	usagereport "github.com/stowage/stowage/usage"
	"github.com/stowage/stowage/usage/history"
	"github.com/stowage/stowage/usage/rank"
)

// usageHistoryInterval is how often today's usage row (and each
// repository's size) is recorded again; it is also recorded at start.
const usageHistoryInterval = time.Hour

// mountUI serves the web UI under /ui/ (docs/ui.md); the function it
// returns starts the daily usage history job it draws the growth picture
// from.
func (m *Main) mountUI(mux *http.ServeMux, reg *stowage.Registry, a *auth.Authority, lim *limits.Limiter, pol mgmt.Policies,
	topo mgmt.Topology, scrubber mgmt.Scrubber, gcRec *ui.GCRecorder) (func(context.Context), error) {
	db := reg.Parts().DB
	opts := ui.Options{Registry: reg, Auth: a, Policies: pol, Topology: topo, Scrub: scrubber, GC: gcRec, Logger: m.log}
	opts.History, _ = history.Of(db)
	opts.Rank, _ = rank.Of(db)
	h, err := ui.New(opts)
	if err != nil {
		return nil, err
	}
	var handler http.Handler = h
	if lim != nil { // the request limits of the API, per session's user or token
		handler = lim.Middleware(h.LimitName, h)
	}
	mux.Handle(ui.Prefix, handler)
	mux.Handle("/ui", http.RedirectHandler(ui.Prefix, http.StatusFound))
	return func(ctx context.Context) {
		if opts.History == nil {
			return
		}
		rep := usagereport.New(reg)
		m.jobs.Add(1)
		go func() { // once at start: today's row, and the sizes the size order uses
			defer m.jobs.Done()
			if _, err := history.Record(ctx, opts.History, rep, reg.Parts().Now()); err != nil && ctx.Err() == nil {
				m.log.Error("usage history: today's row could not be recorded; the hourly job tries again", "err", err)
			}
		}()
		// Every hour (one node), today's row is recorded again: a day's row
		// is its usage at the last recording, the day's end.
		m.scheduled(ctx, reg, "usage history", "usage-history", usageHistoryInterval, func(ctx context.Context) error {
			_, err := history.Record(ctx, opts.History, rep, reg.Parts().Now())
			return err
		})
	}, nil
}
