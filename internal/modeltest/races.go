package modeltest

import (
	"bytes"
	"context"
	"io"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/gc"
)

// Race steps: a collection with one other request in the middle of it, at
// a point chosen with a hook, so the interleaving is the same every run.

// leftover stores a blob's object with no database row, as a crash of an
// older version could leave it: the orphan sweep's prey.
func (h *harness) leftover(ctx context.Context, op Op, n *node) error {
	d := h.pool.dig[op.Blob]
	if _, ok := h.m.live[d]; ok || h.m.deleting[d] {
		return nil
	}
	if st, err := h.blobState(ctx, d); err != nil || st != "" {
		return err // a pending row: not an orphan
	}
	b := h.pool.bytes(op.Blob)
	return n.store.Put(ctx, stowage.BlobKey(d), bytes.NewReader(b), int64(len(b)))
}

// gcRacePush runs a collection on n during which, just before the orphan
// sweep deletes the object of blob op.Blob, another node pushes that blob
// (the sweep's re-check passed: no row then). A registry with a fence
// either makes the push wait or keeps the object; without one, the push
// is acknowledged and its bytes deleted.
func (h *harness) gcRacePush(ctx context.Context, op Op, n *node) error {
	h.eng.clock.advance(op.Jump)
	d := h.pool.dig[op.Blob]
	repo := repoName(op.Repo)
	pusher := h.eng.nodes[(op.Node+1)%len(h.eng.nodes)]
	m := h.m
	want := okay
	if !m.writable(repo) || m.overQuota(repo, d, int64(len(h.pool.bytes(op.Blob)))) {
		want = fails(stowage.CodeDenied)
	}
	var pushErr error
	started, done := false, make(chan struct{})
	n.fst.beforeDelete = func(key string) {
		if started || key != stowage.BlobKey(d) {
			return
		}
		if st, err := h.blobState(ctx, d); err != nil || st != "" {
			return // the collector's own delete of a row it marked
		}
		started = true
		go func() {
			defer close(done)
			b := h.pool.bytes(op.Blob)
			_, pushErr = pusher.reg.PutBlob(ctx, repo, d, bytes.NewReader(b), int64(len(b)))
		}()
		select { // a fenced push waits for the sweep: let it
		case <-done:
		case <-time.After(300 * time.Millisecond):
		}
	}
	pushed := map[stowage.Digest]bool{}
	run := func() error {
		_, err := gc.New(n.reg).Collect(ctx, gc.Options{Grace: gcGrace, UploadExpiry: uploadExpiry})
		n.fst.beforeDelete = nil
		if !started {
			return err
		}
		<-done
		switch {
		case pushErr != nil && stowage.ErrorCodeOf(pushErr) == stowage.CodeUnavailable:
			// The push waited for the sweep and gave up: fine.
		case !want.matches(pushErr):
			return failf("outcome", "%s: the push during the orphan sweep returned %s, the model expects %s", op, errString(pushErr), want)
		case pushErr == nil:
			m.ensureRepo(repo).links[d] = true
			m.live[d] = int64(len(h.pool.bytes(op.Blob)))
			pushed[d] = true
		}
		return err
	}
	return h.collect(ctx, n, op.Jump >= fullJump, gcRun{run: run, pushed: pushed})
}

// gcDuringPatch runs a collection on n while a PATCH of upload slot
// op.Slot is half sent: the session's last progress is older than the
// upload expiry (the clock jumped), but its writer is live. The collector
// must leave it alone, and the PATCH succeed.
func (h *harness) gcDuringPatch(ctx context.Context, op Op, n *node) error {
	u := h.m.uploads[op.Slot]
	if u == nil {
		return nil
	}
	data := h.pool.bytes(u.blob)
	end := min(u.sent+op.Size, int64(len(data)))
	if end-u.sent < 2 || h.m.overQuota(repoName(u.repo), "", end) {
		return nil // (a chunk over the quota ends the session: not this race)
	}
	h.eng.clock.advance(op.Jump)
	writer := h.eng.nodes[(op.Node+1)%len(h.eng.nodes)]
	chunk := data[u.sent:end]
	pr, pw := io.Pipe()
	var patchErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, patchErr = writer.reg.WriteUpload(ctx, repoName(u.repo), u.id, u.sent, int64(len(chunk)), pr)
		pr.CloseWithError(io.ErrClosedPipe) // unblock the sender if the writer gave up
	}()
	pw.Write(chunk[:len(chunk)/2]) // returns once the writer has read it
	now := h.eng.clock.now().Add(writer.skew)
	run := func() error {
		gcDone := make(chan error, 1)
		go func() {
			_, err := gc.New(n.reg).Collect(ctx, gc.Options{Grace: gcGrace, UploadExpiry: uploadExpiry})
			gcDone <- err
		}()
		var err error
		select {
		case err = <-gcDone:
			pw.Write(chunk[len(chunk)/2:])
			pw.Close()
		case <-time.After(5 * time.Second): // a collector that waits for the writer
			pw.Write(chunk[len(chunk)/2:])
			pw.Close()
			err = <-gcDone
		}
		<-done
		if patchErr != nil {
			return failf("upload-expiry", "%s: a collection during the PATCH ended the session under its live writer: the PATCH returned %s", op, errString(patchErr))
		}
		u.sent, u.updated = end, now
		return err
	}
	return h.collect(ctx, n, op.Jump >= fullJump, gcRun{run: run, activeSlot: op.Slot + 1})
}

// patchRace sends a PATCH of upload slot op.Slot through two nodes at
// once, as a client that retried with another chunk size might: the node
// with the slower clock streams a 1000-byte chunk and has sent half of it
// when the other node starts an op.Size chunk at the same offset. The
// writer lease must keep them apart (one is refused, or fails to record
// its progress), and what is recorded must be the session's bytes: the
// finish and pull checks read them later.
func (h *harness) patchRace(ctx context.Context, op Op) error {
	u := h.m.uploads[op.Slot]
	if u == nil || len(h.eng.nodes) < 2 {
		return nil
	}
	data := h.pool.bytes(u.blob)
	slowEnd := min(u.sent+1000, int64(len(data)))
	fastEnd := min(u.sent+op.Size, int64(len(data)))
	if slowEnd-u.sent < 2 || h.m.overQuota(repoName(u.repo), "", max(slowEnd, fastEnd)) {
		return nil // (a chunk over the quota ends the session: not this race)
	}
	slow, fast := h.eng.nodes[0], h.eng.nodes[1]
	if slow.skew > fast.skew {
		slow, fast = fast, slow
	}
	repo := repoName(u.repo)
	small, big := data[u.sent:slowEnd], data[u.sent:fastEnd]
	pr, pw := io.Pipe()
	var slowErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, slowErr = slow.reg.WriteUpload(ctx, repo, u.id, u.sent, int64(len(small)), pr)
		pr.CloseWithError(io.ErrClosedPipe)
	}()
	pw.Write(small[:len(small)/2])
	_, fastErr := fast.reg.WriteUpload(ctx, repo, u.id, u.sent, int64(len(big)), bytes.NewReader(big))
	pw.Write(small[len(small)/2:])
	pw.Close()
	<-done
	switch {
	case fastErr == nil && slowErr == nil:
		return failf("upload-lease", "%s: both PATCHes of one session at the same offset succeeded", op)
	case fastErr == nil:
		u.sent, u.updated = fastEnd, h.eng.clock.now().Add(fast.skew)
	case slowErr == nil:
		u.sent, u.updated = slowEnd, h.eng.clock.now().Add(slow.skew)
	}
	return nil
}
