package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	iofs "io/fs"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/storage/mirror"
)

// Health endpoints, unauthenticated and revealing nothing but what failed:
//
//	GET /healthz   200 "ok": the process serves HTTP (liveness)
//	GET /readyz    200 {"status":"ready"} when the metadata database answers
//	               a query and the storage answers a probe, each within
//	               readyTimeout; else 503 {"status":"not ready","failed":[…]}
//	               naming "database" and/or "storage" (readiness). Why it
//	               failed goes to the log, once per change.

const readyTimeout = 2 * time.Second

// readyProbeKey is the storage key the readiness probe stats. It never
// exists: a storage that answers "not found" is up.
const readyProbeKey = "readyz-probe"

func healthz(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") }

type readiness struct {
	db      stowage.DB
	store   stowage.Backend
	topo    *topology // its mirrors, if any (nil: none)
	log     *slog.Logger
	timeout time.Duration // 0: readyTimeout

	mu       sync.Mutex
	last     map[string]string // what failed at the last check, and why
	inFlight map[string]bool   // checks still running (past their timeout)
}

// errStillRunning: the check started by an earlier probe has not returned
// (a hung file system ignores its context): no second one is started, so
// probes every few seconds do not pile up goroutines.
var errStillRunning = errors.New("the previous check has not returned yet")

// start marks check name running, unless it still is.
func (rd *readiness) start(name string) bool {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	if rd.inFlight[name] {
		return false
	}
	if rd.inFlight == nil {
		rd.inFlight = map[string]bool{}
	}
	rd.inFlight[name] = true
	return true
}

func (rd *readiness) finished(name string) {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	delete(rd.inFlight, name)
}

func (rd *readiness) check(ctx context.Context) map[string]error {
	timeout := rd.timeout
	if timeout == 0 {
		timeout = readyTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	checks := map[string]func(context.Context) error{
		"database": func(ctx context.Context) error {
			return rd.db.View(ctx, func(tx stowage.Tx) error {
				_, err := tx.Settings().GetSetting("readyz-probe")
				if errors.Is(err, stowage.ErrNotFound) {
					return nil
				}
				return err
			})
		},
		"storage": func(ctx context.Context) error {
			_, err := rd.store.Stat(ctx, readyProbeKey)
			if err == nil || errors.Is(err, iofs.ErrNotExist) {
				return nil
			}
			// A mirror answers "unavailable" for a missing key when one
			// copy fails, though the others serve every read: ready while
			// each mirror has a copy that is not down.
			if ctx.Err() == nil && rd.topo != nil && rd.topo.mirrorsServe() {
				return nil
			}
			return err
		},
	}
	var mu sync.Mutex
	failed := map[string]error{}
	var wg sync.WaitGroup
	for name, fn := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !rd.start(name) {
				mu.Lock()
				failed[name] = errStillRunning
				mu.Unlock()
				return
			}
			done := make(chan error, 1)
			go func() {
				defer rd.finished(name)
				done <- fn(ctx)
			}()
			var err error
			select {
			case err = <-done:
			case <-ctx.Done():
				err = ctx.Err() // a check that ignores its context does not hold the answer
			}
			if err != nil {
				mu.Lock()
				failed[name] = err
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return failed
}

// mirrorsServe reports whether the storage has mirrors and each has a copy
// that is not down (fewer than 3 failures in a row).
func (t *topology) mirrorsServe() bool {
	if len(t.mirrors) == 0 {
		return false
	}
	for _, m := range t.mirrors {
		serves := false
		for _, c := range m.m.Status().Copies {
			if c.State != mirror.Down {
				serves = true
			}
		}
		if !serves {
			return false
		}
	}
	return true
}

func (rd *readiness) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	failed := rd.check(r.Context())
	rd.logChange(failed)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if len(failed) == 0 {
		io.WriteString(w, `{"status":"ready"}`+"\n")
		return
	}
	names := make([]string, 0, len(failed))
	for n := range failed {
		names = append(names, n)
	}
	sort.Strings(names)
	b, _ := json.Marshal(struct {
		Status string   `json:"status"`
		Failed []string `json:"failed"`
	}{"not ready", names})
	w.WriteHeader(http.StatusServiceUnavailable)
	w.Write(append(b, '\n'))
}

// logChange logs what failed (with the errors) when it differs from the
// last check, and when readiness comes back.
func (rd *readiness) logChange(failed map[string]error) {
	now := map[string]string{}
	for n, err := range failed {
		now[n] = err.Error()
	}
	rd.mu.Lock()
	defer rd.mu.Unlock()
	changed := len(now) != len(rd.last)
	for n, e := range now {
		if rd.last[n] != e {
			changed = true
		}
	}
	if !changed {
		return
	}
	if len(now) == 0 {
		rd.log.Info("ready again: the database and the storage answer")
	} else {
		args := []any{}
		for n, e := range now {
			args = append(args, n, e)
		}
		rd.log.Warn("not ready (GET /readyz answers 503)", args...)
	}
	rd.last = now
}
