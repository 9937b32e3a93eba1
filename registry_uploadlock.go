package stowage

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// defaultUploadLease is how long a writer's claim on an upload session lasts
// without renewal: how long a session stays blocked after the node writing
// it died (a restarted node ends its own leases at once:
// ReleaseUploadLeases). Claims are renewed every quarter of it while the
// writer works.
const defaultUploadLease = 30 * time.Second

// lockUpload serializes the writers of one upload session across every node
// sharing the database: the in-process mutex first, then a lease on the
// session's row (Tx.ClaimUpload), renewed while held. Without it, two
// PATCHes of one session that reach two nodes at once both append at the
// same offset: AdvanceUpload lets only one record its progress, but the
// bytes on storage may be the other's, so the session's hash state would
// not describe its data. A second writer while one is active is a client
// error (requests of one session are sequential), so it fails at once.
//
// A lease ends by the database's clock, so nodes whose clocks disagree
// still agree on who writes. And a lease can end while its writer still
// works (a pause longer than the lease: a stalled disk, a stopped process),
// so the lease alone cannot keep a stale writer's bytes out of the session.
// The session's generation fences it: a claim that takes over a lease that
// ran out while held bumps the generation (Tx.ClaimUpload); the new holder
// goes on in its own data object (adoptUpload copies the acknowledged bytes
// there), so the stale writer's late appends land in an object nobody will
// commit; and AdvanceUpload records progress only for the current
// generation.
//
// The lease is a row, not a session lock (an advisory lock would hold a
// pooled connection for as long as a chunk streams in, and enough parallel
// uploads would take every connection). It returns the session as the
// holder sees it (read in the claiming transaction, so its Gen is the
// holder's). The returned context ends if the lease is lost (its renewal
// failed, or the generation moved on), so the writer stops.
func (r *Registry) lockUpload(ctx context.Context, repo, id string) (context.Context, UploadRecord, func(), error) {
	unlock := r.uploads.lock(id)
	writer := r.nodeID + "/" + newID()
	claim := func(ctx context.Context) (u UploadRecord, err error) {
		err = r.db.Update(ctx, func(tx Tx) error {
			if err := tx.Uploads().ClaimUpload(id, writer, r.uploadLease); err != nil {
				return err
			}
			u, err = tx.Uploads().GetUpload(id)
			return err
		})
		return u, err
	}
	release := func() {
		// The session may be gone (finished or cancelled): nothing to release then.
		if err := r.db.Update(context.WithoutCancel(ctx), func(tx Tx) error { return tx.Uploads().ReleaseUpload(id, writer) }); err != nil {
			r.log.Warn("could not release an upload's writer lease; it ends by itself", "upload", id, "lease", r.uploadLease, "err", err)
		}
	}
	u, err := claim(ctx)
	if err == nil && u.Repo != repo {
		release()
		err = ErrNotFound
	}
	if err != nil {
		unlock()
		switch {
		case errors.Is(err, ErrLocked):
			return nil, u, nil, Errorf(CodeBlobUploadInvalid, "upload %s is being written by another request right now: send its chunks one after the other, then check its status (GET) and resume", id)
		case errors.Is(err, ErrNotFound):
			return nil, UploadRecord{}, nil, uploadUnknown(id)
		}
		return nil, u, nil, err
	}
	held, cancel := context.WithCancelCause(ctx)
	stop, done := make(chan struct{}), make(chan struct{})
	lease := &uploadLease{writer: writer, stop: stop, done: done}
	held = context.WithValue(held, uploadLeaseKey{}, lease)
	go func() {
		defer close(done)
		t := time.NewTicker(r.uploadRenew)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-held.Done():
				return
			case <-t.C:
				now, err := claim(held)
				if err == nil && now.Gen != u.Gen {
					err = fmt.Errorf("another writer took it over (generation %d, now %d)", u.Gen, now.Gen)
				}
				if err != nil && held.Err() == nil {
					cancel(fmt.Errorf("upload %s: %w: %w", id, errLeaseLost, err))
					return
				}
			}
		}
	}()
	return held, u, func() {
		lease.stopRenewal()
		cancel(nil)
		if !lease.released {
			release()
		}
		unlock()
	}, nil
}

// uploadLease is a writer's lease as lockUpload holds it, in its context
// (uploadLeaseKey), so that a writer's last transaction can end the lease
// itself (releaseIn) instead of a commit of its own after it.
type uploadLease struct {
	writer     string
	stop, done chan struct{}
	once       sync.Once
	released   bool // by the writer's last transaction; unlock has nothing to release
}

type uploadLeaseKey struct{}

// stopRenewal stops renewing the lease (once). The lease then runs for at
// most uploadLease more: enough for one transaction, and a writer that
// stalls longer is fenced by the generation as ever.
func (l *uploadLease) stopRenewal() {
	l.once.Do(func() {
		close(l.stop)
		<-l.done
	})
}

// releaseIn prepares the last transaction of a writer holding the lease in
// ctx (none: nil) to release it as well: it stops the renewal (a renewal
// after the release would take the lease again), and returns the function
// to call in that transaction and the one to call once it committed.
func releaseIn(ctx context.Context, id string) (inTx func(Tx) error, committed func()) {
	l, ok := ctx.Value(uploadLeaseKey{}).(*uploadLease)
	if !ok {
		return nil, nil
	}
	l.stopRenewal()
	return func(tx Tx) error { return tx.Uploads().ReleaseUpload(id, l.writer) }, func() { l.released = true }
}

// errLeaseLost is the cause of a lease context that ended because the lease
// did (the session is gone, or another writer took it over).
var errLeaseLost = errors.New("lost its writer lease")

// leaseEnded turns the error of a writer whose lease ended under it into
// what happened to the session (fenced): BLOB_UPLOAD_UNKNOWN if it is gone,
// and its data deleted; "taken over" if another writer has it.
func (r *Registry) leaseEnded(ctx context.Context, u UploadRecord, err error) error {
	if err == nil || !errors.Is(context.Cause(ctx), errLeaseLost) {
		return err
	}
	if ErrorCodeOf(err) == CodeBlobUploadUnknown || errors.Is(err, errTakenOver) {
		return err // fenced already
	}
	return r.fenced(ctx, u, err)
}

// ReleaseUploadLeases ends the upload leases this node held before a
// restart (all of them with all: a database only this process uses), so
// clients resume their sessions at once instead of after the lease. Its
// writers died with the process, so this is a clean release: the next
// writer goes on in the same data object.
func (r *Registry) ReleaseUploadLeases(ctx context.Context, all bool) (int64, error) {
	prefix := r.nodeID + "/"
	if all {
		prefix = ""
	}
	var n int64
	err := r.db.Update(ctx, func(tx Tx) (err error) {
		n, err = tx.Uploads().ReleaseUploadWriters(prefix)
		return err
	})
	return n, err
}
