package replication

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/stowage/stowage"
)

// Locks (ACR's changeable attributes) replicate per attribute: each of
// write, delete, read and list of a repository, tag or manifest is a
// last-writer-wins register, a clock "lock:<target>:<attribute>" whose
// Digest records the value the change set (lockedMark, or "" for
// unlocked). So a lock set in one region is never reverted by a concurrent
// change of another attribute elsewhere (ACR #592), and an older change of
// the same attribute never wins.
//
// A removal of a target (untag, manifest delete) resets its locks: its
// clock "lock:<target>" records the removal, and a lock change older than
// that (or than the repository's delete) no longer counts. A lock change
// whose target is not here yet is recorded as its registers alone (it does
// not hold up the stream behind it); whenever the target comes into being
// here (a push, replicated or not, or a read-through copy), the engine's
// locks of it are set from the registers that are later than its last
// removal (applyLocks). Every region thus ends with the same locks for the
// same set of changes, whatever order they arrive in.

// lockedMark is the Digest of a lock attribute's clock whose last change
// locked it.
const lockedMark stowage.Digest = "locked"

var lockBits = []struct {
	bit  stowage.Locks
	name string
}{{stowage.LockWrite, "write"}, {stowage.LockDelete, "delete"}, {stowage.LockRead, "read"}, {stowage.LockList, "list"}}

// lockTarget is the clock name prefix of the locks an event or change is
// about: "lock:" plus the tag, "@" + digest, or nothing (the repository).
// It is also the name of the target's reset clock (its last removal).
func lockTarget(tag string, d stowage.Digest) string {
	switch {
	case d != "":
		return "lock:" + ManifestName(d)
	case tag != "":
		return "lock:" + tag
	}
	return "lock:"
}

// targetName is the clock name of a tag, a manifest ("@" + digest) or ""
// for the repository.
func targetName(tag string, d stowage.Digest) string {
	switch {
	case d != "":
		return ManifestName(d)
	case tag != "":
		return tag
	}
	return ""
}

// lockValues reads a lock event's locks before and after.
func lockValues(e stowage.Event) (before, after stowage.Locks, ok bool) {
	type attrs struct{ DeleteEnabled, WriteEnabled, ReadEnabled, ListEnabled bool }
	var d struct{ Before, After *attrs }
	if json.Unmarshal([]byte(e.Detail), &d) != nil || d.Before == nil || d.After == nil {
		return 0, 0, false
	}
	conv := func(a *attrs) stowage.Locks {
		var l stowage.Locks
		for bit, enabled := range map[stowage.Locks]bool{stowage.LockDelete: a.DeleteEnabled,
			stowage.LockWrite: a.WriteEnabled, stowage.LockRead: a.ReadEnabled, stowage.LockList: a.ListEnabled} {
			if !enabled {
				l |= bit
			}
		}
		return l
	}
	return conv(d.Before), conv(d.After), true
}

// getClock is GetClock with a missing clock as the zero reading.
func getClock(cs ClockStore, repo, name string) (Clock, error) {
	c, err := cs.GetClock(repo, name)
	if errors.Is(err, stowage.ErrNotFound) {
		return Clock{Repo: repo, Name: name}, nil
	}
	return c, err
}

// lockFloor is the reading of the last removal of a target (its reset
// clock, or its repository's delete): a lock change of it that is not
// later than that no longer counts.
func lockFloor(cs ClockStore, repo, name string) (HLC, error) {
	rc, err := getClock(cs, repo, RepositoryName)
	if err != nil {
		return HLC{}, err
	}
	floor := rc.HLC
	if name == "" {
		return floor, nil
	}
	reset, err := getClock(cs, repo, "lock:"+name)
	if err != nil {
		return HLC{}, err
	}
	if reset.HLC.After(floor) {
		floor = reset.HLC
	}
	return floor, nil
}

// resetLocks records the removal of targets (tags, "@" + digest) at h.
func resetLocks(cs ClockStore, repo string, names []string, h HLC) error {
	for _, n := range names {
		if n == "" {
			continue
		}
		cur, err := getClock(cs, repo, "lock:"+n)
		if err != nil {
			return err
		}
		if !h.After(cur.HLC) {
			continue
		}
		if err := cs.PutClock(Clock{Repo: repo, Name: "lock:" + n, HLC: h}); err != nil {
			return err
		}
	}
	return nil
}

// applyLocks sets the engine's locks of the target name (a tag, "@" +
// digest, "" for the repository), if it exists in tx, from its registers
// later than its last removal. An attribute without one is unlocked if the
// target was ever removed (a removal resets locks, also where a later
// change kept the target), else it stays as it is (a lock older than
// replication); with keep, it always stays (a restore from the recycle bin
// brings back the locks the target had).
func applyLocks(tx stowage.Tx, cs ClockStore, repo, name string, keep bool) error {
	floor, err := lockFloor(cs, repo, name)
	if err != nil {
		return err
	}
	var set, clear stowage.Locks
	for _, lb := range lockBits {
		cl, err := getClock(cs, repo, "lock:"+name+":"+lb.name)
		if err != nil {
			return err
		}
		if cl.HLC.IsZero() || !cl.HLC.After(floor) {
			if !floor.IsZero() && !keep {
				clear |= lb.bit
			}
			continue
		}
		if cl.Digest == lockedMark {
			set |= lb.bit
		} else {
			clear |= lb.bit
		}
	}
	if set|clear == 0 {
		return nil
	}
	var cur stowage.Locks
	switch {
	case name == "":
		rec, err := tx.Repositories().GetRepository(repo)
		if err != nil {
			return ignoreNotFound(err)
		}
		cur = rec.Locks
	case name[0] == '@':
		m, err := tx.Manifests().GetManifest(repo, stowage.Digest(name[1:]))
		if err != nil {
			return ignoreNotFound(err)
		}
		cur = m.Locks
	default:
		t, err := tx.Tags().GetTagRecord(repo, name)
		if err != nil {
			return ignoreNotFound(err)
		}
		cur = t.Locks
	}
	l := cur&^clear | set
	switch {
	case l == cur:
		return nil
	case name == "":
		return tx.Repositories().SetRepositoryLocks(repo, l)
	case name[0] == '@':
		return tx.Manifests().SetManifestLocks(repo, stowage.Digest(name[1:]), l)
	}
	return tx.Tags().SetTagLocks(repo, name, l)
}

func ignoreNotFound(err error) error {
	if errors.Is(err, stowage.ErrNotFound) {
		return nil
	}
	return err
}

// lockChange is Change for a lock event: a local one ticks the clocks of
// the attributes it changed (later than anything seen of the target); an
// applied one (the applier picked the attributes whose clocks are older,
// WithApplied + mask) checks them again in this transaction and records
// its reading for each.
func (c Clocks) lockChange(ctx context.Context, cs ClockStore, e *stowage.Event) error {
	a, isApplied := ctx.Value(appliedKey{}).(applied)
	before, after, ok := lockValues(*e)
	var mask stowage.Locks
	if isApplied {
		mask = a.mask
	} else if ok {
		mask = before ^ after
	}
	name := targetName(e.Tag, e.Digest)
	floor, err := lockFloor(cs, e.Repo, name)
	if err != nil {
		return err
	}
	if isApplied && floor.Compare(a.hlc) >= 0 {
		return ErrStale // its target was removed later
	}
	last := floor
	if !isApplied && name != "" {
		// A change made after the target came (back) here is later than
		// its coming.
		tc, err := getClock(cs, e.Repo, name)
		if err != nil {
			return err
		}
		if tc.HLC.After(last) {
			last = tc.HLC
		}
	}
	prefix := lockTarget(e.Tag, e.Digest)
	var names []string
	var values []stowage.Digest
	for _, lb := range lockBits {
		if mask&lb.bit == 0 {
			continue
		}
		n := prefix + ":" + lb.name
		cl, err := getClock(cs, e.Repo, n)
		if err != nil {
			return err
		}
		if isApplied && cl.HLC.Compare(a.hlc) >= 0 {
			return ErrStale
		}
		if cl.HLC.After(last) {
			last = cl.HLC
		}
		v := stowage.Digest("")
		if after&lb.bit != 0 {
			v = lockedMark
		}
		names, values = append(names, n), append(values, v)
	}
	if len(names) == 0 {
		return nil
	}
	h := a.hlc
	if !isApplied {
		h = Tick(last, e.Time, c.Region)
	}
	for i, n := range names {
		if err := cs.PutClock(Clock{Repo: e.Repo, Name: n, Digest: values[i], HLC: h}); err != nil {
			return err
		}
	}
	return setDetail(e, "hlc", h.String())
}

// lock applies a lock change: each attribute it set whose clock here is
// older (and later than the target's last removal). A target not here
// (yet) does not hold up what follows: the change is recorded in its
// registers, and applied when the target comes (applyLocks).
func (a *Applier) lock(ctx context.Context, ch Change) (Result, error) {
	if ch.Locks == nil || ch.LockMask == nil {
		return Result{}, stowage.Errorf(stowage.CodeUnsupported, "a lock change needs its locks and lockMask")
	}
	ref := stowage.Reference{}
	switch {
	case ch.Digest != "":
		ref = stowage.Reference{Digest: ch.Digest}
	case len(ch.Tags) == 1:
		ref = stowage.Reference{Tag: ch.Tags[0]}
	}
	var mask stowage.Locks
	err := a.Reg.DB().View(ctx, func(tx stowage.Tx) error {
		ct, ok := tx.(ClockTx)
		if !ok {
			mask = *ch.LockMask
			return nil
		}
		var err error
		mask, err = newerLocks(ct.ReplicationClocks(), ch, ref)
		return err
	})
	if err != nil {
		return Result{}, err
	}
	if mask == 0 {
		return Result{Reason: reasonStale}, nil
	}
	actx := context.WithValue(ctx, appliedKey{}, applied{hlc: ch.HLC, mask: mask})
	_, err = a.Reg.SetLocks(actx, ch.Repo, ref, *ch.Locks&mask, ^*ch.Locks&mask)
	if c := stowage.ErrorCodeOf(err); c == stowage.CodeManifestUnknown || c == stowage.CodeNameUnknown {
		return a.pendingLock(ctx, ch, ref)
	}
	return outcome(err)
}

// newerLocks returns the attributes of ch's mask whose registers here are
// older than ch, none if its target was removed later.
func newerLocks(cs ClockStore, ch Change, ref stowage.Reference) (stowage.Locks, error) {
	floor, err := lockFloor(cs, ch.Repo, targetName(ref.Tag, ref.Digest))
	if err != nil || floor.Compare(ch.HLC) >= 0 {
		return 0, err
	}
	prefix := lockTarget(ref.Tag, ref.Digest)
	var mask stowage.Locks
	for _, lb := range lockBits {
		if *ch.LockMask&lb.bit == 0 {
			continue
		}
		cl, err := getClock(cs, ch.Repo, prefix+":"+lb.name)
		if err != nil {
			return 0, err
		}
		if cl.HLC.Compare(ch.HLC) < 0 {
			mask |= lb.bit
		}
	}
	return mask, nil
}

// errTargetCame: the target of a lock change to be recorded as pending
// came meanwhile; the change is retried (and applied to the target).
var errTargetCame = errors.New("replication: the lock change's target came meanwhile")

// pendingLock records a lock change whose target is not here: its
// registers only, in a transaction that checks the target is still not
// here (one that came meanwhile was set from the registers without it).
func (a *Applier) pendingLock(ctx context.Context, ch Change, ref stowage.Reference) (Result, error) {
	applied := false
	err := a.Reg.DB().Update(ctx, func(tx stowage.Tx) error {
		ct, ok := tx.(ClockTx)
		if !ok {
			return fmt.Errorf("the metadata database keeps no replication clocks")
		}
		var err error
		switch {
		case ref.IsDigest():
			_, err = tx.Manifests().GetManifest(ch.Repo, ref.Digest)
		case ref.Tag != "":
			_, err = tx.Tags().GetTagRecord(ch.Repo, ref.Tag)
		default:
			_, err = tx.Repositories().GetRepository(ch.Repo)
		}
		if err == nil {
			return errTargetCame // retried: applied to the target then
		} else if !errors.Is(err, stowage.ErrNotFound) {
			return err
		}
		cs := ct.ReplicationClocks()
		mask, err := newerLocks(cs, ch, ref)
		if err != nil {
			return err
		}
		prefix := lockTarget(ref.Tag, ref.Digest)
		for _, lb := range lockBits {
			if mask&lb.bit == 0 {
				continue
			}
			v := stowage.Digest("")
			if *ch.Locks&lb.bit != 0 {
				v = lockedMark
			}
			if err := cs.PutClock(Clock{Repo: ch.Repo, Name: prefix + ":" + lb.name, Digest: v, HLC: ch.HLC}); err != nil {
				return err
			}
			applied = true
		}
		return nil
	})
	switch {
	case err != nil:
		return Result{}, err
	case !applied:
		return Result{Reason: reasonStale}, nil
	}
	return Result{Applied: true, Reason: reasonPending}, nil
}

const reasonPending = "its target is not here yet: recorded, and applied when it comes"

// relock applies the removal of names (tags, "@" + digest) at h to their
// locks, whether the removal itself was applied here or not (a later push
// kept the target here; the region that removed it had it come back
// without those locks), and sets the locks of those that exist here (all
// of repo's when everything: a repository delete) from their registers.
func (a *Applier) relock(ctx context.Context, repo string, names []string, h HLC, everything bool) error {
	return a.Reg.DB().Update(ctx, func(tx stowage.Tx) error {
		ct, ok := tx.(ClockTx)
		if !ok {
			return nil
		}
		cs := ct.ReplicationClocks()
		if err := resetLocks(cs, repo, names, h); err != nil {
			return err
		}
		if everything {
			names = []string{""}
			ms, err := tx.Manifests().ListManifests(repo)
			if err != nil {
				return ignoreNotFound(err)
			}
			for _, m := range ms {
				names = append(names, ManifestName(m.Digest))
				ts, err := tx.Tags().TagsOf(repo, m.Digest)
				if err != nil {
					return err
				}
				names = append(names, ts...)
			}
		}
		for _, n := range names {
			if err := applyLocks(tx, cs, repo, n, false); err != nil {
				return err
			}
		}
		return nil
	})
}
