package replication

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/stowage/stowage"
)

// Locks (ACR's changeable attributes) replicate per attribute: each of
// write, delete, read and list of a repository, tag or manifest has its own
// clock ("lock:<target>:<attribute>"), so a lock set in one region is never
// reverted by a concurrent change of another attribute elsewhere (ACR
// #592), and an older change of the same attribute never wins.

var lockBits = []struct {
	bit  stowage.Locks
	name string
}{{stowage.LockWrite, "write"}, {stowage.LockDelete, "delete"}, {stowage.LockRead, "read"}, {stowage.LockList, "list"}}

// lockTarget is the clock name prefix of the locks an event or change is
// about: "lock:" plus the tag, "@" + digest, or nothing (the repository).
func lockTarget(tag string, d stowage.Digest) string {
	switch {
	case d != "":
		return "lock:" + ManifestName(d)
	case tag != "":
		return "lock:" + tag
	}
	return "lock:"
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

// lockChange is Change for a lock event: a local one ticks the clocks of
// the attributes it changed; an applied one (the applier picked the
// attributes whose clocks are older, WithApplied + mask) checks them again
// in this transaction and records its reading for each.
func (c Clocks) lockChange(ctx context.Context, cs ClockStore, e *stowage.Event) error {
	a, isApplied := ctx.Value(appliedKey{}).(applied)
	var mask stowage.Locks
	if isApplied {
		mask = a.mask
	} else if before, after, ok := lockValues(*e); ok {
		mask = before ^ after
	}
	prefix := lockTarget(e.Tag, e.Digest)
	var names []string
	var last HLC
	for _, lb := range lockBits {
		if mask&lb.bit == 0 {
			continue
		}
		n := prefix + ":" + lb.name
		cl, err := cs.GetClock(e.Repo, n)
		if err != nil && !errors.Is(err, stowage.ErrNotFound) {
			return err
		}
		if isApplied && cl.HLC.Compare(a.hlc) >= 0 {
			return ErrStale
		}
		if cl.HLC.After(last) {
			last = cl.HLC
		}
		names = append(names, n)
	}
	if len(names) == 0 {
		return nil
	}
	h := a.hlc
	if !isApplied {
		h = Tick(last, e.Time, c.Region)
	}
	for _, n := range names {
		if err := cs.PutClock(Clock{Repo: e.Repo, Name: n, HLC: h}); err != nil {
			return err
		}
	}
	return setDetail(e, "hlc", h.String())
}

// lock applies a lock change: each attribute it set whose clock here is
// older. A target not here yet is an error (retried: its push is on its
// way from the region that made it), unless this region removed it later.
func (a *Applier) lock(ctx context.Context, ch Change) (Result, error) {
	if ch.Locks == nil || ch.LockMask == nil {
		return Result{}, stowage.Errorf(stowage.CodeUnsupported, "a lock change needs its locks and lockMask")
	}
	ref, name := stowage.Reference{}, ""
	switch {
	case ch.Digest != "":
		ref, name = stowage.Reference{Digest: ch.Digest}, ManifestName(ch.Digest)
	case len(ch.Tags) == 1:
		ref, name = stowage.Reference{Tag: ch.Tags[0]}, ch.Tags[0]
	}
	prefix := lockTarget(ref.Tag, ref.Digest)
	var mask stowage.Locks
	gone := false
	err := a.Reg.DB().View(ctx, func(tx stowage.Tx) error {
		ct, ok := tx.(ClockTx)
		if !ok {
			mask = *ch.LockMask
			return nil
		}
		cs := ct.ReplicationClocks()
		for _, lb := range lockBits {
			if *ch.LockMask&lb.bit == 0 {
				continue
			}
			cl, err := cs.GetClock(ch.Repo, prefix+":"+lb.name)
			if err != nil && !errors.Is(err, stowage.ErrNotFound) {
				return err
			}
			if cl.HLC.Compare(ch.HLC) < 0 {
				mask |= lb.bit
			}
		}
		if name != "" {
			cl, err := cs.GetClock(ch.Repo, name)
			gone = err == nil && cl.Removed()
		}
		return nil
	})
	if err != nil {
		return Result{}, err
	}
	if mask == 0 {
		return Result{Reason: reasonStale}, nil
	}
	actx := context.WithValue(ctx, appliedKey{}, applied{hlc: ch.HLC, mask: mask})
	_, err = a.Reg.SetLocks(actx, ch.Repo, ref, *ch.Locks&mask, ^*ch.Locks&mask)
	if c := stowage.ErrorCodeOf(err); (c == stowage.CodeManifestUnknown || c == stowage.CodeNameUnknown) && gone {
		return Result{Reason: "its target was removed here"}, nil
	}
	return outcome(err)
}
