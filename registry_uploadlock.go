package stowage

import (
	"context"
	"errors"
)

// lockUpload serializes the writers of one upload session across every node
// sharing the database: the in-process mutex first, then the job lock
// "upload:<id>" (an advisory lock on PostgreSQL). Without it, two PATCHes of
// one session that reach two nodes at once both append at the same offset:
// AdvanceUpload lets only one record its progress, but the bytes on storage
// may be the other's, so the session's hash state would not describe its
// data. A second writer while one is active is a client error (requests of
// one session are sequential), so it fails at once instead of waiting.
//
// TODO(issue 7): WriteUpload, FinishUpload and CancelUpload (registry.go)
// call r.uploads.lock(id); they must call this instead.
func (r *Registry) lockUpload(ctx context.Context, id string) (func(), error) {
	unlock := r.uploads.lock(id)
	_, release, err := r.tryJobLock(ctx, "upload:"+id)
	if errors.Is(err, ErrLocked) {
		unlock()
		return nil, Errorf(CodeBlobUploadInvalid, "upload %s is being written by another request right now: send its chunks one after the other, then check its status (GET) and resume", id)
	}
	if err != nil {
		unlock()
		return nil, err
	}
	return func() { release(); unlock() }, nil
}
