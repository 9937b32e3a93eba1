package modeltest

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/gc"
	"github.com/stowage/stowage/recyclebin"
)

// Collections and crashes: the steps whose outcome the model cannot
// compute alone (a lease it does not model, a fault that may land before
// or after an effect), so it learns from the engine which of the allowed
// outcomes happened, and checks that it is one of them.

// ---- garbage collection ----

const (
	gcGrace      = time.Hour
	uploadExpiry = 24 * time.Hour
	// fullJump is a clock jump after which every unreferenced blob and
	// every upload session is past its grace, lease and expiry, whatever
	// the nodes' skews (|skew| <= maxSkew).
	fullJump = 25 * time.Hour
	maxSkew  = 15 * time.Minute
)

// gc runs a collection on n and moves the model: recycle entries and
// uploads expire by the clock; unreferenced blobs go if the engine took
// them (their lease is not modelled), and all of them after a full jump.
func (h *harness) gc(ctx context.Context, n *node, full bool) error {
	return h.collect(ctx, n, full, gcRun{})
}

// gcRun is what a race step adds to a collection: a run function (the
// collection with something happening during it), blobs pushed meanwhile
// (they are young: not collected), an upload slot written meanwhile (its
// writer is live: not expired).
type gcRun struct {
	run        func() error
	pushed     map[stowage.Digest]bool
	activeSlot int // slot+1; 0: none
}

func (h *harness) collect(ctx context.Context, n *node, full bool, g gcRun) error {
	now := h.eng.clock.now().Add(n.skew)
	run := g.run
	if run == nil {
		// A collection from the queue alone (no full pass): the check
		// after a full jump below then holds only if every unreferenced
		// blob was in the queue.
		run = func() error {
			_, err := gc.New(n.reg).Collect(ctx, gc.Options{Grace: gcGrace, UploadExpiry: uploadExpiry, NoSweep: true})
			return err
		}
	}
	if err := run(); err != nil {
		if f, ok := err.(*failure); ok {
			return f
		}
		return failf("gc", "collection failed: %v", err)
	}
	m := h.m
	// Recycle bin entries expire now; what they held starts its grace
	// period now (recycle_core.go: ExpireRecycled), so this
	// collection may keep it.
	released := map[stowage.Digest]bool{}
	m.recycle = slices.DeleteFunc(m.recycle, func(e *mRecycled) bool {
		if !e.expires.Before(now) {
			return false
		}
		released[e.d] = true
		for _, r := range e.m.refs {
			released[r.Digest] = true
		}
		for _, k := range e.m.keep {
			released[k] = true
		}
		return true
	})
	for i, u := range m.uploads {
		if u != nil && u.updated.Before(now.Add(-uploadExpiry)) && i+1 != g.activeSlot {
			m.uploads[i] = nil
		}
	}
	clear(m.deleting)
	ref := m.referenced()
	for _, d := range sortedDigests(m.live) {
		if ref[d] {
			continue
		}
		st, err := h.blobState(ctx, d)
		if err != nil {
			return err
		}
		switch {
		case st == "":
			m.dropBlob(d)
		case full && !released[d] && !g.pushed[d]:
			return failf("gc", "after a collection past grace, lease and expiry, unreferenced blob %s is still %s", d, st)
		}
	}
	if full {
		// The storage sweep (a full pass) for the objects a crash left
		// without a row; every unreferenced blob is gone already.
		if _, err := gc.New(n.reg).Collect(ctx, gc.Options{Grace: gcGrace, UploadExpiry: uploadExpiry}); err != nil {
			return failf("gc", "full pass failed: %v", err)
		}
		return h.checkStorageExact(ctx)
	}
	return nil
}

// blobState is the blob row's state ("" if there is none).
func (h *harness) blobState(ctx context.Context, d stowage.Digest) (stowage.BlobState, error) {
	var st stowage.BlobState
	err := h.eng.db.View(ctx, func(tx stowage.Tx) error {
		b, err := tx.Blobs().GetBlob(d)
		if errors.Is(err, stowage.ErrNotFound) {
			return nil
		}
		st = b.State
		return err
	})
	return st, err
}

// ---- crashes ----

// gcHang is how long a collection under a fault may run before it counts
// as stuck.
const gcHang = 5 * time.Second

// crash runs op.Inner with a fault armed (the nth write to storage or the
// nth database transaction fails, and every later one: the process is
// dead), then restarts every node and checks that the state is the one
// before the step or the one after it. A power cut (opPowerCut) is the
// same with the machine stopping at the nth file system call of a leaf,
// and a power loss (unsynced writes forgotten) before the restart: what
// was acknowledged before must all be there, and the step fully or not.
func (h *harness) crash(ctx context.Context, op Op) error {
	inner := *op.Inner
	if inner.Node >= len(h.eng.nodes) {
		inner.Node = 0
	}
	n := h.eng.nodes[inner.Node]
	// The fault, and the restart after it.
	f := &n.fst.fault
	if op.InDB {
		f = &n.fdb.fault
	}
	arm := func() { f.arm(op.FaultAt, op.After) }
	disarm := func() {
		f.mu.Lock()
		fired := f.fired
		f.mu.Unlock()
		h.countFired(op, fired)
		f.arm(0, false)
	}
	restart := h.eng.reopen
	if op.Kind == opPowerCut {
		// The machine stops at the leaf's FaultAt-th file system call
		// (on the OS's file system: after the step), then loses power;
		// the power loss clears the crash point.
		arm, disarm, restart = func() {}, func() {}, h.eng.powerLoss
		if fsys := h.eng.leafFS(op.Leaf); fsys != nil {
			arm = func() { fsys.CrashAfter(op.FaultAt) }
			disarm = func() { h.countFired(op, fsys.Crashed()) }
		}
	}
	now := h.eng.clock.now().Add(n.skew)
	if inner.Kind == opGC {
		h.eng.clock.advance(inner.Jump)
		now = h.eng.clock.now().Add(n.skew)
		arm()
		gctx, cancel := context.WithTimeout(ctx, gcHang)
		_, err := gc.New(n.reg).Collect(gctx, gc.Options{Grace: gcGrace, UploadExpiry: uploadExpiry})
		hung := gctx.Err() != nil && ctx.Err() == nil
		cancel()
		disarm()
		if hung {
			return failf("gc-hang", "%s: the collection did not end within %v once its writes failed (last error %v)", op, gcHang, err)
		}
		if err := restart(ctx); err != nil {
			return err
		}
		return h.afterCrashedGC(ctx, now)
	}
	if inner.Kind == opRestart || inner.Kind == opPowerLoss || inner.Kind == opAdvance || inner.Kind == opCrash || inner.Kind == opPowerCut {
		return h.step(ctx, inner)
	}
	if op.Kind == opCrash && op.InDB && inner.Kind == opCancel && h.known(defectCancelIgnoresDBError) {
		return nil // the cancel would be acknowledged, the session left (see the defect)
	}
	before := h.m.clone()
	want, apply, run := h.plan(ctx, inner, n, now)
	if want == nil {
		return nil
	}
	arm()
	err := run()
	disarm()
	h.fail = nil
	var cands []*model
	switch {
	case err == nil && !want.ok:
		return failf("outcome", "%s: engine succeeded under a fault, the model expects %s", op, want)
	case err == nil:
		apply()
		if f := h.fail; f != nil {
			h.fail = nil
			return f
		}
		cands = []*model{h.m}
	case want.ok:
		cands = append(cands, before)
		cands = append(cands, h.finishMid(before, inner, now)...)
		apply()
		cands = append(cands, h.m)
		if u := before.uploads[inner.Slot]; inner.Kind == opFinish && u != nil && u.sent == 0 && h.known(defectFinishNotAtomic) {
			// The blob recorded, the session not yet ended.
			x := h.m.clone()
			x.uploads[inner.Slot] = before.clone().uploads[inner.Slot]
			cands = append(cands, x)
		}
	default: // it fails anyway
		cands = []*model{before}
		// (A finish that fails after appending the rest, as one with a
		// wrong digest does, may die before it drops the session.)
		cands = append(cands, h.finishMid(before, inner, now)...)
		if want.onFail != nil {
			want.onFail()
			cands = append(cands, h.m)
		}
	}
	if err := restart(ctx); err != nil {
		return err
	}
	got, err := h.summaryOf(ctx, nil, append(cands, before)...)
	if err != nil {
		return err
	}
	var diffs []string
	for _, c := range cands {
		s, err := h.summary(ctx, c)
		if err != nil {
			return err
		}
		if s == got {
			h.m = c
			return nil
		}
		diffs = append(diffs, diff(s, got))
	}
	kind := "crash"
	if op.Kind == opPowerCut {
		kind = "power-cut"
	}
	return failf(kind, "%s: after the restart the state is neither before nor after the step:\n%s", op, strings.Join(diffs, "\n--- or ---\n"))
}

// finishMid is the state of a chunked finish that appended the rest and
// recorded it, then died: none for other steps.
func (h *harness) finishMid(before *model, inner Op, now time.Time) []*model {
	if inner.Kind != opFinish {
		return nil
	}
	mid := before.clone()
	if u := mid.uploads[inner.Slot]; u != nil && u.sent > 0 {
		u.sent, u.updated = int64(len(h.pool.bytes(u.blob))), now
		return []*model{mid}
	}
	return nil
}

// afterCrashedGC learns from the engine which of the collection's
// effects happened: each is allowed either way.
func (h *harness) afterCrashedGC(ctx context.Context, now time.Time) error {
	m := h.m
	bin, err := recyclebin.New(h.eng.nodes[0].reg).List(ctx, "")
	if err != nil {
		return err
	}
	present := map[string]int{}
	for _, e := range bin {
		present[e.Manifest.Repo+"@"+string(e.Manifest.Digest)]++
	}
	m.recycle = slices.DeleteFunc(m.recycle, func(e *mRecycled) bool {
		k := e.repo + "@" + string(e.d)
		if e.expires.Before(now) && present[k] == 0 {
			return true
		}
		present[k]--
		return false
	})
	for i, u := range m.uploads {
		if u == nil {
			continue
		}
		err := h.eng.db.View(ctx, func(tx stowage.Tx) error { _, err := tx.Uploads().GetUpload(u.id); return err })
		if errors.Is(err, stowage.ErrNotFound) && u.updated.Before(now.Add(-uploadExpiry)) {
			m.uploads[i] = nil
		}
	}
	ref := m.referenced()
	for _, d := range sortedDigests(m.live) {
		if ref[d] {
			continue
		}
		st, err := h.blobState(ctx, d)
		if err != nil {
			return err
		}
		switch st {
		case "":
			m.dropBlob(d)
		case stowage.BlobDeleting:
			m.dropBlob(d)
			m.deleting[d] = true
		}
	}
	// The orphan sweep claims an object no row knows with a 'deleting'
	// row before it deletes it; a crash between leaves the claim, which
	// the next collection finishes (pushes wait for it meanwhile).
	for _, d := range h.pool.dig {
		if _, ok := m.live[d]; ok || m.deleting[d] {
			continue
		}
		if st, err := h.blobState(ctx, d); err != nil {
			return err
		} else if st == stowage.BlobDeleting {
			m.deleting[d] = true
		}
	}
	return nil
}
