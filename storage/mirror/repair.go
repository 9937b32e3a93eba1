package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
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
	// Read faults found on this copy: objects a read needed and it lacked,
	// and objects whose bytes from it a reader found damaged (each object
	// counted at most once a minute). Each is queued for repair.
	MissingFound int64 `json:"missingFound"`
	CorruptFound int64 `json:"corruptFound"`
}

// Status is the mirror's state.
type Status struct {
	WriteQuorum    int          `json:"writeQuorum"`
	Copies         []CopyStatus `json:"copies"`
	PendingRepairs int          `json:"pendingRepairs"`
	Repaired       int64        `json:"repaired"` // copies rewritten since the start: by the repair queue and by scrubs
	// Lost counts the objects no copy holds good bytes of (every copy
	// damaged or missing): nothing can repair them; restore them from a
	// backup. LostObjects names up to lostListed of them. Kept in the
	// repair queue (under the mirror's name and lostSuffix), so every node
	// shows them; rechecked every lostRecheck, and dropped once a copy is
	// good again (restored).
	Lost        int      `json:"lost"`
	LostObjects []string `json:"lostObjects,omitempty"`
}

// lostSuffix names, in the repair queue, the mirror's objects with no good
// copy. Their due time is lostDue, so the repair loop never claims them as
// repairs; Status lists them and recheckLost checks them again.
const lostSuffix = "#lost"

var lostDue = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)

// lostListed is how many lost objects Status names; lostRecheck is how
// often Repair checks them again (a restored object leaves the list).
const (
	lostListed  = 20
	lostRecheck = 10 * time.Minute
	lostListAge = 30 * time.Second
)

// markLost records that no copy of key holds good bytes: logged, and kept
// in the repair queue so that every node's status shows it.
func (b *Backend) markLost(ctx context.Context, key string, corrupt, missing []string) {
	b.log.Error("no copy of a damaged object is good; restore it from a backup (stowage storage status lists it)", "key", key, "corrupt", corrupt, "missing", missing)
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.timeout)
	defer cancel()
	if err := b.queue.AddRepair(qctx, b.name+lostSuffix, key, true, lostDue); err != nil {
		b.log.Error("could not record a lost object in the repair queue", "key", key, "err", err)
	}
}

// lostObjects lists up to limit lost objects with their seq.
func (b *Backend) lostObjects(ctx context.Context, limit int, fn func(key string, seq int64)) error {
	// A claim at lostDue that leaves them at lostDue: a listing.
	return b.queue.DueRepairs(ctx, b.name+lostSuffix, lostDue, lostDue, limit, func(key string, _ bool, seq int64) { fn(key, seq) })
}

// recheckLost checks the lost objects again (at most every lostRecheck):
// one with a good copy now (restored from a backup) is repaired on the
// other copies and leaves the list.
func (b *Backend) recheckLost(ctx context.Context) error {
	b.mu.Lock()
	if time.Since(b.lostChecked) < lostRecheck {
		b.mu.Unlock()
		return nil
	}
	b.lostChecked = time.Now()
	b.mu.Unlock()
	type item struct {
		key string
		seq int64
	}
	var items []item
	if err := b.lostObjects(ctx, repairBatch, func(key string, seq int64) { items = append(items, item{key, seq}) }); err != nil {
		return fmt.Errorf("repair queue: %w", err)
	}
	var errs []error
	for _, it := range items {
		res, err := b.checkKey(ctx, it.key)
		if err != nil || len(res.Errors) > 0 {
			continue // tried again at the next recheck
		}
		if res.Good > 0 || res.Copies == len(res.Missing) {
			// Good again, or deleted meanwhile (no copy holds it).
			if err := b.queue.RepairDone(ctx, b.name+lostSuffix, it.key, it.seq); err != nil {
				errs = append(errs, fmt.Errorf("repair queue: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}

// checkKey checks every copy of key and rewrites the missing or bad ones
// from a good one: through the verifier (the layers above: decryption,
// the digest) when it can check key, else here (ScrubObject against the
// digest of a blob key, when the copies hold plain bytes). A key neither
// can check gets Copies 0.
func (b *Backend) checkKey(ctx context.Context, key string) (stowage.ScrubResult, error) {
	b.mu.Lock()
	verify := b.verify
	b.mu.Unlock()
	d, isBlob := blobDigest(key)
	if !isBlob {
		return stowage.ScrubResult{}, nil
	}
	if verify != nil {
		return verify(ctx, key)
	}
	if !b.checkReads.Load() {
		return stowage.ScrubResult{}, nil // ciphertext, and no verifier
	}
	return b.ScrubObject(ctx, key, func(r io.Reader) error {
		_, err := io.Copy(io.Discard, stowage.NewVerifyingReader(r, d, -1))
		return err
	})
}

// Status reports each copy's health and the repair queue.
func (b *Backend) Status() Status {
	st := Status{WriteQuorum: b.quorum}
	for _, c := range b.copies {
		state, _ := c.state()
		c.mu.Lock()
		st.Copies = append(st.Copies, CopyStatus{Name: c.Name, State: state, Failures: c.fails,
			LastError: c.lastErr, LastErrorAt: c.lastErrAt, LastOK: c.lastOK, MissingFound: c.missing, CorruptFound: c.corrupt})
		c.mu.Unlock()
	}
	ctx, cancel := context.WithTimeout(context.Background(), min(b.timeout, 2*time.Second))
	defer cancel()
	n, err := b.queue.PendingRepairs(ctx, b.name)
	if err == nil {
		var v int
		v, err = b.queue.PendingRepairs(ctx, b.name+verifySuffix)
		n += v
	}
	b.mu.Lock()
	if err == nil {
		b.pending = n
	}
	st.PendingRepairs, st.Repaired = b.pending+len(b.unsaved), b.repaired
	b.mu.Unlock()
	if lost, err := b.queue.PendingRepairs(ctx, b.name+lostSuffix); err == nil && lost > 0 {
		st.Lost = lost
		// The list is a claim (a write): at most every lostListAge, not
		// at each /metrics scrape.
		b.mu.Lock()
		names, at := b.lostNames, b.lostNamesAt
		b.mu.Unlock()
		if time.Since(at) > lostListAge || len(names) != min(lost, lostListed) {
			names = nil
			if b.lostObjects(ctx, lostListed, func(key string, _ int64) { names = append(names, key) }) == nil {
				sort.Strings(names)
				b.mu.Lock()
				b.lostNames, b.lostNamesAt = names, time.Now()
				b.mu.Unlock()
			}
		}
		st.LostObjects = names
	}
	return st
}

// repairBatch is how many repairs Repair claims at a time.
const repairBatch = 100

// Repair works through the repair queue (shared by every node on the
// database): it copies objects to the copies that lack them (from a copy
// that has them) and deletes objects that a copy kept after a delete. It
// first probes copies that are not healthy, so they are used again once
// they answer; while a copy is still unreachable, repairs wait. A repair
// that fails is tried again a few minutes later. It returns how many
// objects it fixed. Serve runs it every minute.
func (b *Backend) Repair(ctx context.Context) (int, error) {
	var down []string
	for i, c := range b.copies {
		if state, _ := c.state(); state != Healthy {
			// Any answer, even "not found", means the copy is reachable.
			if _, err := b.statCopy(ctx, i, "stowage-health-probe"); err == nil || stowage.IsNotExist(err) {
				c.ok()
			} else {
				down = append(down, c.Name)
			}
		}
	}
	if err := b.flushUnsaved(ctx); err != nil {
		return 0, err
	}
	if len(down) > 0 {
		b.log.Debug("storage repairs wait: a copy does not answer", "copies", down)
		return 0, nil
	}
	fixed := 0
	var errs []error
	for {
		if err := ctx.Err(); err != nil {
			return fixed, err
		}
		type item struct {
			key     string
			present bool
			seq     int64
		}
		var batch []item
		now := time.Now()
		if err := b.queue.DueRepairs(ctx, b.name, now, now.Add(retryAfter), repairBatch, func(key string, present bool, seq int64) {
			batch = append(batch, item{key, present, seq})
		}); err != nil {
			return fixed, errors.Join(append(errs, fmt.Errorf("repair queue: %w", err))...)
		}
		if len(batch) == 0 {
			break
		}
		for _, it := range batch {
			if err := ctx.Err(); err != nil {
				return fixed, err
			}
			n, err := b.repairKey(ctx, it.key, it.present)
			fixed += n
			if err != nil {
				errs = append(errs, err)
				if b.unhealthy() != "" {
					// A copy stopped answering: the rest waits for
					// the next run's probe (claimed: tried again
					// after retryAfter), rather than each repair
					// waiting for the timeout.
					return fixed, errors.Join(errs...)
				}
				continue
			}
			if err := b.queue.RepairDone(ctx, b.name, it.key, it.seq); err != nil {
				errs = append(errs, fmt.Errorf("repair queue: %w", err))
			}
		}
	}
	n, err := b.verifyQueued(ctx)
	fixed += n
	if err != nil {
		errs = append(errs, err)
	}
	if err := b.recheckLost(ctx); err != nil {
		errs = append(errs, err)
	}
	return fixed, errors.Join(errs...)
}

// verifyQueued works the keys reads found damaged on a copy: the verifier
// (or, for plain bytes, the digest) checks every copy and rewrites the bad
// ones (counted in Repaired by copyTo). Without either they wait.
func (b *Backend) verifyQueued(ctx context.Context) (int, error) {
	b.mu.Lock()
	verify := b.verify
	b.mu.Unlock()
	if verify == nil && !b.checkReads.Load() {
		return 0, nil
	}
	fixed := 0
	var errs []error
	for {
		type item struct {
			key string
			seq int64
		}
		var batch []item
		now := time.Now()
		if err := b.queue.DueRepairs(ctx, b.name+verifySuffix, now, now.Add(retryAfter), repairBatch, func(key string, _ bool, seq int64) {
			batch = append(batch, item{key, seq})
		}); err != nil {
			return fixed, fmt.Errorf("repair queue: %w", err)
		}
		if len(batch) == 0 {
			return fixed, errors.Join(errs...)
		}
		for _, it := range batch {
			if err := ctx.Err(); err != nil {
				return fixed, err
			}
			res, err := b.checkKey(ctx, it.key)
			fixed += len(res.Repaired)
			if err == nil && len(res.Errors) > 0 {
				err = errors.New(strings.Join(res.Errors, "; "))
			}
			if err != nil {
				// Tried again after retryAfter.
				errs = append(errs, fmt.Errorf("check of %s: %w", it.key, err))
				continue
			}
			// No good copy: ScrubObject recorded it lost (markLost).
			if err := b.queue.RepairDone(ctx, b.name+verifySuffix, it.key, it.seq); err != nil {
				errs = append(errs, fmt.Errorf("repair queue: %w", err))
			}
		}
	}
}

// unhealthy names a copy that is not healthy ("" if none).
func (b *Backend) unhealthy() string {
	for _, c := range b.copies {
		if state, _ := c.state(); state != Healthy {
			return c.Name
		}
	}
	return ""
}

// flushUnsaved moves the repairs the queue refused earlier into it.
func (b *Backend) flushUnsaved(ctx context.Context) error {
	b.mu.Lock()
	keys := make([]string, 0, len(b.unsaved))
	for k := range b.unsaved {
		keys = append(keys, k)
	}
	b.mu.Unlock()
	sort.Strings(keys)
	for _, k := range keys {
		b.mu.Lock()
		present, ok := b.unsaved[k]
		b.mu.Unlock()
		if !ok {
			continue
		}
		if err := b.queue.AddRepair(ctx, b.name, k, present, time.Now()); err != nil {
			return fmt.Errorf("repair queue: %w", err)
		}
		b.mu.Lock()
		if b.unsaved[k] == present {
			delete(b.unsaved, k)
		}
		b.mu.Unlock()
	}
	return nil
}

// repairKey makes every copy agree on key: holding it (present) or not.
func (b *Backend) repairKey(ctx context.Context, key string, present bool) (int, error) {
	good := -1
	var lacking, holding []int
	for i, c := range b.copies {
		_, err := b.statCopy(ctx, i, key)
		switch {
		case err == nil:
			holding = append(holding, i)
			if good < 0 {
				good = i
			}
		case stowage.IsNotExist(err):
			lacking = append(lacking, i)
		default:
			c.fail(err)
			return 0, fmt.Errorf("copy %s: %w", c.Name, err)
		}
	}
	fixed := 0
	if !present {
		// Delete only if some copy lacks it, which is what a delete that
		// reached some copies leaves. Every copy holding it means it was
		// written again since (a blob pushed anew): it stays.
		if len(lacking) == 0 {
			return 0, nil
		}
		for _, i := range holding {
			if err := b.deleteCopy(ctx, i, key); err != nil {
				return fixed, fmt.Errorf("copy %s: %w", b.copies[i].Name, err)
			}
			fixed++
			b.mu.Lock()
			b.repaired++
			b.mu.Unlock()
		}
		return fixed, nil
	}
	if good < 0 || len(lacking) == 0 {
		return 0, nil // deleted meanwhile, or nothing lacks it
	}
	// The source's bytes are checked before they are copied: copying a
	// damaged copy over a missing one is no repair (outside review). A
	// blob key is checked through the verifier (under encryption, the
	// layer above decrypts) or against its digest (plain bytes), which
	// also rewrites the missing copies from a good one, or records the
	// object lost when none is.
	if _, isBlob := blobDigest(key); isBlob {
		res, err := b.checkKey(ctx, key)
		if err != nil {
			return 0, err
		}
		if res.Copies > 0 {
			bad := len(res.Missing) + len(res.Corrupt)
			switch {
			case res.Good > 0 && len(res.Repaired) >= bad:
				// Every bad copy rewritten from a checked one (an
				// error, such as a shard's "not on its owner" note,
				// does not undo that).
				return len(res.Repaired), nil
			case res.Good == 0 && bad > 0 && len(res.Errors) == 0:
				return 0, nil // no good copy: recorded lost (ScrubObject)
			case len(res.Errors) > 0:
				return len(res.Repaired), errors.New(strings.Join(res.Errors, "; "))
			default:
				return len(res.Repaired), fmt.Errorf("repair of %s: %d of %d bad copies rewritten", key, len(res.Repaired), bad)
			}
		}
	}
	// Not content-addressed (or nothing can check it here): copied as stored.
	for _, i := range lacking {
		if err := b.copyTo(ctx, good, i, key); err != nil {
			return fixed, err
		}
		fixed++
	}
	return fixed, nil
}

// copyTo copies key from copy `from` to copy `to`, as stored. Opening,
// and each step of the write, are bounded by the timeout.
func (b *Backend) copyTo(ctx context.Context, from, to int, key string) error {
	src, dst := b.copies[from], b.copies[to]
	oi, err := b.statCopy(ctx, from, key)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src.Name, err)
	}
	rc, err := b.openCopy(ctx, from, key, 0)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src.Name, err)
	}
	defer rc.Close()
	errs, rerr := b.fanOut(ctx, []int{to}, rc, func(ctx context.Context, i int, r io.Reader) error {
		return b.copies[i].Backend.Put(ctx, key, r, oi.Size)
	})
	if err := errors.Join(rerr, errs[0]); err != nil {
		return fmt.Errorf("repair %s on copy %s from copy %s: %w", key, dst.Name, src.Name, err)
	}
	b.log.Info("repaired a storage copy", "key", key, "copy", dst.Name, "from", src.Name)
	b.mu.Lock()
	b.repaired++ // storage status counts every rewritten copy: the repair queue's and the scrubs'
	b.mu.Unlock()
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
		rc, err := b.openCopy(ctx, i, key, 0)
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
		ok, err := stowage.CheckCopy(ctx, rc, check)
		rc.Close()
		switch {
		case err != nil:
			// Not damage: the copy could not be read, or a key is
			// unavailable. It is neither counted corrupt nor rewritten.
			if stowage.ErrorCodeOf(err) != stowage.CodeUnavailable {
				c.fail(err)
			}
			res.Errors = append(res.Errors, fmt.Sprintf("%s: %v", c.Name, err))
			continue
		case !ok:
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
		if len(bad) > 0 && len(res.Errors) == 0 && len(res.Missing) < res.Copies {
			// Every copy was read: none is good, and some copy holds it.
			b.markLost(ctx, key, res.Corrupt, res.Missing)
		}
		return res, nil
	}
	for _, i := range bad {
		if err := b.copyTo(ctx, good, i, key); err != nil {
			res.Errors = append(res.Errors, err.Error())
			continue
		}
		res.Repaired = append(res.Repaired, b.copies[i].Name)
	}
	if len(res.Errors) == 0 {
		b.setSuspect(key, -1) // every copy checked and, if bad, rewritten
	}
	if len(res.Repaired) > 0 {
		// Perhaps an object recorded lost, restored from a backup on one
		// copy (a scrub then rewrote the others): the next repair run
		// checks the lost list at once rather than within lostRecheck.
		b.mu.Lock()
		b.lostChecked = time.Time{}
		b.mu.Unlock()
	}
	return res, nil
}
