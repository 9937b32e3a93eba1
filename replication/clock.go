package replication

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/stowage/stowage"
)

// fetchedRegion marks the clock of a read-through copy (no region name can
// hold '~'): the manifest is here, but its push has not arrived.
const fetchedRegion = "~read-through"

func fetchedCopy(c Clock) bool {
	return c.HLC.Wall == 0 && c.HLC.Region == fetchedRegion && !c.Removed()
}

// RepositoryName is the Clock name of a repository's own deletion.
const RepositoryName = "repo:"

// ErrStale is the refusal of a change from another region (or a read-through
// fetch) that is older than what this region already has for the same tag
// or manifest: last writer wins, and it did not write last. The applier
// treats it as done (applying it is a no-op), which makes applying the same
// change twice the same as once.
var ErrStale = errors.New("replication: an equal or newer change is already here")

// Clocks is the engine's ChangeHook (stowage.Options.Changes) for a region:
// in the transaction of every push, untag and delete it reads and writes
// the clocks of the tags and manifest the change touches (ClockStore). A
// change made here gets a reading later than every reading of what it
// touches (Tick), and carries it in its event's Detail ("hlc"), which the
// replicator ships; a change applied from another region (WithApplied)
// is refused with ErrStale when this region has an equal or later reading.
//
// Why in the engine's transaction, and per tag: an apply endpoint that
// compared against the tag row's updated time would order a change made
// here after one received from a region whose clock is ahead as older than
// it, and the two regions would keep different digests. A reading ticked
// from the stored one in the same transaction is later than everything
// this region had seen of that tag, whatever the clocks say.
type Clocks struct {
	Region string
}

type appliedKey struct{}

type applied struct {
	hlc     HLC
	fetched bool          // a read-through copy: no clock of its own
	mask    stowage.Locks // a lock change: the attributes it sets
	// A delete: the tags it took where it was made (took: they are set).
	tags []string
	took bool
}

// withTook returns the applied ctx of a delete that took tags where it was
// made: a tag the delete removes here only because here it still points at
// the manifest (its move elsewhere has not arrived) keeps its clock, so
// that move, when it arrives, applies.
func withTook(ctx context.Context, tags []string) context.Context {
	a, _ := ctx.Value(appliedKey{}).(applied)
	a.tags, a.took = tags, true
	return context.WithValue(ctx, appliedKey{}, a)
}

// WithApplied returns ctx whose changes are the change h made in region
// origin: recorded with Origin = origin and clock h, refused (ErrStale)
// where this region has an equal or later reading.
func WithApplied(ctx context.Context, origin string, h HLC) context.Context {
	return context.WithValue(stowage.WithOrigin(ctx, origin), appliedKey{}, applied{hlc: h})
}

// WithFetched returns ctx whose manifest pushes are read-through copies
// fetched from peer: recorded with Origin = peer (never shipped), with no
// clock (replication brings the real one), and refused (ErrStale) if this
// region deleted the manifest.
func WithFetched(ctx context.Context, peer string) context.Context {
	return context.WithValue(stowage.WithOrigin(ctx, peer), appliedKey{}, applied{fetched: true})
}

// Change implements stowage.ChangeHook.
func (c Clocks) Change(ctx context.Context, tx stowage.Tx, e *stowage.Event) error {
	ct, ok := tx.(ClockTx)
	if !ok {
		return nil
	}
	cs := ct.ReplicationClocks()
	a, isApplied := ctx.Value(appliedKey{}).(applied)
	var names []string // tags and manifests the change touches
	var outcome []stowage.Digest
	switch e.Kind {
	case stowage.EventPush, stowage.EventRestore: // a restore brings the manifest and its tags back
		names, outcome = append(names, ManifestName(e.Digest)), append(outcome, e.Digest)
		for _, t := range EventTags(*e) {
			names, outcome = append(names, t), append(outcome, e.Digest)
		}
	case stowage.EventUntag:
		names, outcome = append(names, e.Tag), append(outcome, "")
	case stowage.EventDelete:
		names, outcome = append(names, ManifestName(e.Digest)), append(outcome, "")
		for _, t := range EventTags(*e) {
			names, outcome = append(names, t), append(outcome, "")
		}
	case stowage.EventLock:
		return c.lockChange(ctx, cs, e)
	case stowage.EventRepositoryDelete:
		names, outcome = append(names, RepositoryName), append(outcome, "")
	case stowage.EventUser, stowage.EventToken, stowage.EventScopeMap:
		return c.identityChange(ctx, cs, e)
	default:
		return nil // the rest: not replicated yet
	}
	// A repository delete is one tombstone for all it held: whatever of the
	// repository is older than it is gone.
	repoClock, err := cs.GetClock(e.Repo, RepositoryName)
	if err != nil && !errors.Is(err, stowage.ErrNotFound) {
		return err
	}
	repoGone := repoClock.Removed() && !repoClock.HLC.IsZero()
	cur := make([]Clock, len(names))
	for i, n := range names {
		cl, err := cs.GetClock(e.Repo, n)
		if err != nil && !errors.Is(err, stowage.ErrNotFound) {
			return err
		}
		cur[i] = cl
	}
	if isApplied && a.fetched {
		// A copy of what a peer has: only a tombstone stops it (the
		// manifest's, or its repository's unless the manifest is newer).
		if cur[0].Removed() && !cur[0].HLC.IsZero() || repoGone && !cur[0].HLC.After(repoClock.HLC) {
			return ErrStale
		}
		if cur[0].HLC.IsZero() { // mark it a copy (see fetchedCopy)
			if err := cs.PutClock(Clock{Repo: e.Repo, Name: names[0], Digest: e.Digest, HLC: HLC{Region: fetchedRegion}}); err != nil {
				return err
			}
		}
		return applyLocks(tx, cs, e.Repo, names[0], false)
	}
	if !isApplied && e.Kind == stowage.EventDelete && e.Reason != stowage.ReasonUser && fetchedCopy(cur[0]) {
		// Retention (or a purge) removing a read-through copy whose push
		// has not arrived yet: a local clean-up, not a delete of the
		// image, which the region that made it still has. No clock, and
		// not shipped; the push, when it comes, brings it back.
		return setDetail(e, "localCopy", true)
	}
	var h HLC
	own := make([]bool, len(names)) // keeps its own clock (withTook)
	if isApplied {
		h = a.hlc
		if (e.Kind == stowage.EventPush || e.Kind == stowage.EventRestore) && repoGone && repoClock.HLC.Compare(h) >= 0 {
			return ErrStale // its repository was deleted later
		}
		if e.Kind == stowage.EventRepositoryDelete {
			// Checked here, in the transaction that deletes: a push made
			// here after the applier looked (and later than the delete)
			// must stay, so the delete of the whole repository is refused
			// and the applier deletes only what is older.
			latest, err := cs.LatestLive(e.Repo)
			if err != nil && !errors.Is(err, stowage.ErrNotFound) {
				return err
			}
			if err == nil && latest.HLC.Compare(h) >= 0 {
				return ErrStale
			}
		}
		for i, cl := range cur {
			if e.Kind == stowage.EventDelete && i > 0 && a.took && !contains(a.tags, names[i]) {
				own[i] = true // removed here, not where the delete was made
				if cl.HLC.IsZero() {
					names[i] = ""
				}
				continue
			}
			if cl.HLC.Compare(h) < 0 {
				continue
			}
			// An equal or later reading is here. For the manifest of a
			// push that is fine unless it is a tombstone (the manifest
			// exists here with a later clock); for anything else the
			// change lost.
			if (e.Kind == stowage.EventPush || e.Kind == stowage.EventRestore) && i == 0 && !cl.Removed() {
				names[i] = ""
				continue
			}
			if e.Kind == stowage.EventDelete && i > 0 {
				names[i] = "" // that tag moved later: leave its clock
				continue
			}
			return ErrStale
		}
	} else {
		var last HLC
		if repoGone {
			last = repoClock.HLC
		}
		for _, cl := range cur {
			if cl.HLC.After(last) {
				last = cl.HLC
			}
		}
		if e.Kind == stowage.EventRepositoryDelete {
			// Later than everything it removes, whatever this region's
			// clock says (else a peer keeps what is "later" than it).
			latest, err := cs.LatestLive(e.Repo)
			if err != nil && !errors.Is(err, stowage.ErrNotFound) {
				return err
			}
			if err == nil && latest.HLC.After(last) {
				last = latest.HLC
			}
		}
		now := e.Time
		if now.IsZero() {
			now = time.Now()
		}
		h = Tick(last, now, c.Region)
	}
	var removed []string
	for i, n := range names {
		if n == "" {
			continue
		}
		at := h
		if own[i] {
			at = cur[i].HLC
		} else {
			removed = append(removed, n)
		}
		if err := cs.PutClock(Clock{Repo: e.Repo, Name: n, Digest: outcome[i], HLC: at}); err != nil {
			return err
		}
	}
	switch e.Kind {
	case stowage.EventUntag, stowage.EventDelete:
		// What goes loses its locks: older lock changes of it no longer
		// count (locks.go).
		if err := resetLocks(cs, e.Repo, removed, h); err != nil {
			return err
		}
	case stowage.EventPush, stowage.EventRestore:
		// What comes (back) gets the locks its registers hold (a lock
		// change that arrived before it, locks.go).
		for _, n := range append([]string{""}, names...) {
			if err := applyLocks(tx, cs, e.Repo, n, e.Kind == stowage.EventRestore); err != nil {
				return err
			}
		}
	}
	return setDetail(e, "hlc", h.String())
}

// EventTags lists the tags an event names: its Tag and, for a push of
// several tags or a delete, those in Detail ("tags").
func EventTags(e stowage.Event) []string {
	var d struct {
		Tags []string `json:"tags"`
	}
	if e.Detail != "" {
		_ = json.Unmarshal([]byte(e.Detail), &d)
	}
	out := d.Tags
	if e.Tag != "" && !contains(out, e.Tag) {
		out = append([]string{e.Tag}, out...)
	}
	return out
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// EventHLC reads the clock reading a change carries in its Detail; an event
// from before replication was configured has none, and gets its time, in
// region.
func EventHLC(e stowage.Event, region string) HLC {
	var d struct {
		HLC string `json:"hlc"`
	}
	if e.Detail != "" && json.Unmarshal([]byte(e.Detail), &d) == nil && d.HLC != "" {
		if h, err := ParseHLC(d.HLC); err == nil {
			return h
		}
	}
	return HLC{Wall: e.Time.UnixMilli(), Region: region}
}

// setDetail adds key to e's Detail object.
func setDetail(e *stowage.Event, key string, v any) error {
	m := map[string]any{}
	if e.Detail != "" {
		if err := json.Unmarshal([]byte(e.Detail), &m); err != nil {
			return fmt.Errorf("event detail: %w", err)
		}
	}
	m[key] = v
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	e.Detail = string(b)
	return nil
}
