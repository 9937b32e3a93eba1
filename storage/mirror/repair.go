package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/stowage/stowage"
)

// CopyStatus is the health of one copy, for `stowage storage status`.
type CopyStatus struct {
	Name        string    `json:"name"`
	State       string    `json:"state"` // healthy, degraded or down
	Failures    int       `json:"consecutiveFailures"`
	LastError   string    `json:"lastError,omitempty"`
	LastErrorAt time.Time `json:"lastErrorAt,omitempty"`
	LastOK      time.Time `json:"lastOK,omitempty"`
}

// Status is the mirror's state.
type Status struct {
	WriteQuorum    int          `json:"writeQuorum"`
	Copies         []CopyStatus `json:"copies"`
	PendingRepairs int          `json:"pendingRepairs"`
	Repaired       int64        `json:"repaired"`
}

// Status reports each copy's health and the repair queue.
func (b *Backend) Status() Status {
	st := Status{WriteQuorum: b.quorum}
	for _, c := range b.copies {
		state, _ := c.state()
		c.mu.Lock()
		st.Copies = append(st.Copies, CopyStatus{Name: c.Name, State: state, Failures: c.fails,
			LastError: c.lastErr, LastErrorAt: c.lastErrAt, LastOK: c.lastOK})
		c.mu.Unlock()
	}
	b.mu.Lock()
	st.PendingRepairs, st.Repaired = len(b.repair), b.repaired
	b.mu.Unlock()
	return st
}

// Repair works through the repair queue: it copies objects to the copies
// that lack them (from a copy that has them) and deletes objects that a
// copy kept after a delete. It also probes copies that are down, so they
// are used again once they answer. It returns how many objects it fixed.
// Serve runs it every minute.
func (b *Backend) Repair(ctx context.Context) (int, error) {
	for _, c := range b.copies {
		if state, _ := c.state(); state != Healthy {
			// Any answer, even "not found", means the copy is reachable.
			if _, err := c.Backend.Stat(ctx, "stowage-health-probe"); err == nil || stowage.IsNotExist(err) {
				c.ok()
			}
		}
	}
	b.mu.Lock()
	keys := make([]string, 0, len(b.repair))
	for k := range b.repair {
		keys = append(keys, k)
	}
	b.mu.Unlock()
	sort.Strings(keys)
	fixed := 0
	var errs []error
	for _, key := range keys {
		if ctx.Err() != nil {
			return fixed, ctx.Err()
		}
		b.mu.Lock()
		present, queued := b.repair[key]
		b.mu.Unlock()
		if !queued {
			continue
		}
		n, err := b.repairKey(ctx, key, present)
		fixed += n
		if err != nil {
			errs = append(errs, err)
			continue
		}
		b.mu.Lock()
		if b.repair[key] == present {
			delete(b.repair, key)
		}
		b.repaired += int64(n)
		b.mu.Unlock()
	}
	return fixed, errors.Join(errs...)
}

// repairKey makes every copy agree on key: holding it (present) or not.
func (b *Backend) repairKey(ctx context.Context, key string, present bool) (int, error) {
	fixed := 0
	if !present {
		for _, c := range b.copies {
			if _, err := c.Backend.Stat(ctx, key); stowage.IsNotExist(err) {
				continue
			} else if err != nil {
				return fixed, fmt.Errorf("copy %s: %w", c.Name, err)
			}
			if err := c.Backend.Delete(ctx, key); err != nil {
				return fixed, fmt.Errorf("copy %s: %w", c.Name, err)
			}
			fixed++
		}
		return fixed, nil
	}
	good := -1
	var lacking []int
	for i, c := range b.copies {
		_, err := c.Backend.Stat(ctx, key)
		switch {
		case err == nil:
			if good < 0 {
				good = i
			}
		case stowage.IsNotExist(err):
			lacking = append(lacking, i)
		default:
			return fixed, fmt.Errorf("copy %s: %w", c.Name, err)
		}
	}
	if good < 0 {
		return 0, nil // deleted meanwhile: nothing to repair
	}
	for _, i := range lacking {
		if err := b.copyTo(ctx, good, i, key); err != nil {
			return fixed, err
		}
		fixed++
	}
	return fixed, nil
}

// copyTo copies key from copy `from` to copy `to`, as stored.
func (b *Backend) copyTo(ctx context.Context, from, to int, key string) error {
	src, dst := b.copies[from], b.copies[to]
	oi, err := src.Backend.Stat(ctx, key)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src.Name, err)
	}
	rc, err := src.Backend.Open(ctx, key, 0)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src.Name, err)
	}
	defer rc.Close()
	if err := dst.Backend.Put(ctx, key, rc, oi.Size); err != nil {
		return fmt.Errorf("repair %s on copy %s from copy %s: %w", key, dst.Name, src.Name, err)
	}
	b.log.Info("repaired a storage copy", "key", key, "copy", dst.Name, "from", src.Name)
	return nil
}

// ScrubObject checks every copy of key with check (delegating to copies
// that are themselves Scrubbers) and rewrites missing or bad copies from a
// good one.
func (b *Backend) ScrubObject(ctx context.Context, key string, check func(io.Reader) error) (stowage.ScrubResult, error) {
	var res stowage.ScrubResult
	good := -1
	var bad []int
	for i, c := range b.copies {
		if sc, ok := c.Backend.(stowage.Scrubber); ok {
			sub, err := sc.ScrubObject(ctx, key, check)
			if err != nil {
				return res, err
			}
			res.Merge(sub)
			if sub.Good > 0 && good < 0 {
				good = i
			} else if sub.Good == 0 && len(sub.Errors) == 0 {
				bad = append(bad, i)
			}
			continue
		}
		res.Copies++
		rc, err := c.Backend.Open(ctx, key, 0)
		switch {
		case stowage.IsNotExist(err):
			res.Missing = append(res.Missing, c.Name)
			bad = append(bad, i)
			continue
		case err != nil:
			c.fail(err)
			res.Errors = append(res.Errors, fmt.Sprintf("%s: %v", c.Name, err))
			continue
		}
		err = check(rc)
		rc.Close()
		if err != nil {
			res.Corrupt = append(res.Corrupt, c.Name)
			bad = append(bad, i)
			continue
		}
		res.Good++
		if good < 0 {
			good = i
		}
	}
	if good < 0 {
		return res, nil
	}
	for _, i := range bad {
		if err := b.copyTo(ctx, good, i, key); err != nil {
			res.Errors = append(res.Errors, err.Error())
			continue
		}
		res.Repaired = append(res.Repaired, b.copies[i].Name)
	}
	return res, nil
}
