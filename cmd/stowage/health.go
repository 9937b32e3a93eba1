package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/storage/mirror"
)

// Health endpoints, unauthenticated and revealing nothing but what failed:
//
//	GET /healthz   200 "ok": the process serves HTTP (liveness)
//	GET /readyz    200 {"status":"ready"} when the metadata database answers
//	               a query and the storage has its readiness markers, each within
//	               readyTimeout; else 503 {"status":"not ready","failed":[…]}
//	               naming "database" and/or "storage" (readiness). Why it
//	               failed goes to the log, once per change.

const readyTimeout = 2 * time.Second

// The storage probe reads marker objects that the registry writes to its
// storage at its first start (readyMarkerKey, and with shards one more per
// shard, on that shard) and records in the database (setting
// readyMarkersSetting). A marker that was written but is missing now means
// the storage is not the one this registry wrote: its root moved away, or
// an empty mount point of a volume that is not mounted. A marker not yet
// recorded (first start, an upgrade, a shard added) is written then.
const (
	readyMarkerKey      = "readyz/marker"
	readyMarkerBody     = "stowage readiness marker: GET /readyz needs this object; do not delete it\n"
	readyMarkersSetting = "readyz-markers"
)

func healthz(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") }

type readiness struct {
	db      stowage.DB
	store   stowage.Backend
	topo    *topology // its mirrors, if any (nil: none)
	log     *slog.Logger
	timeout time.Duration // 0: readyTimeout

	mu       sync.Mutex
	last     map[string]string // what failed at the last check, and why
	markers  []string          // the markers recorded as written, at the last read
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
			err := rd.probeMarkers(ctx)
			if err == nil {
				return nil
			}
			// A mirror answers "unavailable" when one copy fails, though
			// the others serve every read: ready while each mirror has a
			// copy that is not down.
			var missing *missingMarkerError
			if ctx.Err() == nil && !errors.As(err, &missing) && rd.topo != nil && rd.topo.mirrorsServe() {
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
				err := fn(ctx)
				// Finished before the answer is sent: a probe right after
				// this one must not find the check still "running".
				rd.finished(name)
				done <- err
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

// missingMarkerError: a marker the registry wrote is gone.
type missingMarkerError struct{ key string }

func (e *missingMarkerError) Error() string {
	return "the storage has lost its readiness marker " + e.key + ", which this registry wrote at its first start: " +
		"the storage root moved away, or a volume is not mounted (an empty mount point). If the storage is right " +
		"(copied without that object), put an object at that key back (any content will do)."
}

// markerKeys are the storage's readiness markers: readyMarkerKey, and with
// shards one key owned by each shard.
func (rd *readiness) markerKeys() []string {
	keys := []string{readyMarkerKey}
	if rd.topo == nil {
		return keys
	}
	for j, sh := range rd.topo.shards {
		o, ok := sh.r.(interface{ Owner(string) string })
		if !ok {
			continue
		}
		for _, name := range sh.names {
			for k := 0; k < 10_000; k++ { // each shard owns about 1/n of the keys
				key := fmt.Sprintf("readyz/shards%d/%d", j, k)
				if o.Owner(key) == name {
					keys = append(keys, key)
					break
				}
			}
		}
	}
	return keys
}

// probeMarkers stats every marker (a HEAD on S3 or Azure, a stat on a file
// system). A missing one the database records as written fails the probe;
// one it does not record is written and recorded.
func (rd *readiness) probeMarkers(ctx context.Context) error {
	var written []string
	err := rd.db.View(ctx, func(tx stowage.Tx) error {
		v, err := tx.Settings().GetSetting(readyMarkersSetting)
		if errors.Is(err, stowage.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return json.Unmarshal([]byte(v), &written)
	})
	// The database check reports a database that does not answer; the
	// storage's answer then goes by the markers known from the last read.
	dbDown := err != nil
	rd.mu.Lock()
	if dbDown {
		written = rd.markers
	} else {
		rd.markers = written
	}
	rd.mu.Unlock()
	var add []string
	for _, key := range rd.markerKeys() {
		_, err := rd.store.Stat(ctx, key)
		switch {
		case err == nil:
			if !slices.Contains(written, key) {
				add = append(add, key)
			}
		case !errors.Is(err, iofs.ErrNotExist):
			return err
		case slices.Contains(written, key):
			return &missingMarkerError{key}
		case dbDown:
			// Not known to be written, and nowhere to record it now.
		default:
			if err := rd.store.Put(ctx, key, strings.NewReader(readyMarkerBody), int64(len(readyMarkerBody))); err != nil {
				return fmt.Errorf("writing the readiness marker %s: %w", key, err)
			}
			add = append(add, key)
		}
	}
	if len(add) == 0 || dbDown {
		return nil
	}
	return rd.db.Update(ctx, func(tx stowage.Tx) error {
		var now []string
		if v, err := tx.Settings().GetSetting(readyMarkersSetting); err == nil {
			json.Unmarshal([]byte(v), &now)
		} else if !errors.Is(err, stowage.ErrNotFound) {
			return err
		}
		for _, k := range add {
			if !slices.Contains(now, k) {
				now = append(now, k)
			}
		}
		b, _ := json.Marshal(now)
		return tx.Settings().PutSetting(readyMarkersSetting, string(b), time.Now())
	})
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
