package stowage

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// uploadLease is how long a writer's claim on an upload session lasts
// without renewal: how long a session stays blocked after the node writing
// it died (a restarted node ends its own leases at once:
// ReleaseUploadLeases). Claims are renewed every uploadLease/4 while the
// writer works.
const uploadLease = 30 * time.Second

// lockUpload serializes the writers of one upload session across every node
// sharing the database: the in-process mutex first, then a lease on the
// session's row (Tx.ClaimUpload), renewed while held. Without it, two
// PATCHes of one session that reach two nodes at once both append at the
// same offset: AdvanceUpload lets only one record its progress, but the
// bytes on storage may be the other's, so the session's hash state would
// not describe its data. A second writer while one is active is a client
// error (requests of one session are sequential), so it fails at once.
//
// The lease is a row, not a session lock (an advisory lock would hold a
// pooled connection for as long as a chunk streams in, and enough parallel
// uploads would take every connection). The returned context ends if the
// lease is lost (its renewal failed), so the writer stops.
func (r *Registry) lockUpload(ctx context.Context, id string) (context.Context, func(), error) {
	unlock := r.uploads.lock(id)
	writer := r.nodeID + "/" + newID()
	claim := func(ctx context.Context) error {
		now := r.now()
		return r.db.Update(ctx, func(tx Tx) error { return tx.ClaimUpload(id, writer, now, now.Add(uploadLease)) })
	}
	if err := claim(ctx); err != nil {
		unlock()
		switch {
		case errors.Is(err, ErrLocked):
			return nil, nil, Errorf(CodeBlobUploadInvalid, "upload %s is being written by another request right now: send its chunks one after the other, then check its status (GET) and resume", id)
		case errors.Is(err, ErrNotFound):
			return nil, nil, uploadUnknown(id)
		}
		return nil, nil, err
	}
	held, cancel := context.WithCancelCause(ctx)
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(uploadLease / 4)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-held.Done():
				return
			case <-t.C:
				if err := claim(held); err != nil && held.Err() == nil {
					cancel(fmt.Errorf("upload %s lost its writer lease: %w", id, err))
					return
				}
			}
		}
	}()
	return held, func() {
		close(stop)
		<-done
		cancel(nil)
		// The session may be gone (finished or cancelled): nothing to release then.
		if err := r.db.Update(context.WithoutCancel(ctx), func(tx Tx) error { return tx.ReleaseUpload(id, writer) }); err != nil {
			r.log.Warn("could not release an upload's writer lease; it ends by itself", "upload", id, "lease", uploadLease, "err", err)
		}
		unlock()
	}, nil
}

// ReleaseUploadLeases ends the upload leases this node held before a
// restart (all of them with all: a database only this process uses), so
// clients resume their sessions at once instead of after uploadLease.
func (r *Registry) ReleaseUploadLeases(ctx context.Context, all bool) (int64, error) {
	prefix := r.nodeID + "/"
	if all {
		prefix = ""
	}
	var n int64
	err := r.db.Update(ctx, func(tx Tx) (err error) {
		n, err = tx.ReleaseUploadWriters(prefix)
		return err
	})
	return n, err
}
