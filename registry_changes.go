package stowage

import "context"

// ChangeHook sees every tag and manifest change inside the transaction that
// makes it, with the change feed event about to be appended (push, untag,
// delete, repository.delete), so a capability can record facts of its own
// in the same transaction (replication: the hybrid logical clock of each
// tag and the tombstones of deleted manifests) and add to the event's
// Detail. An error aborts the whole change. nil (the default): nothing.
type ChangeHook interface {
	Change(ctx context.Context, tx Tx, e *Event) error
}

// BlobDeleteHook is the optional capability of a ChangeHook that sees
// each blob delete (DELETE /v2/<repo>/blobs/<digest>) in its transaction
// (geo-replication keeps a tombstone, so read-through does not bring the
// blob back).
type BlobDeleteHook interface {
	BlobDeleted(ctx context.Context, tx Tx, repo string, d Digest) error
}

// appendChange runs the hook, then appends e.
func appendChange(ctx context.Context, hook ChangeHook, tx Tx, e Event) error {
	if hook != nil {
		if err := hook.Change(ctx, tx, &e); err != nil {
			return err
		}
	}
	return tx.Events().Append(e)
}

type originKey struct{}

// WithOrigin returns ctx whose changes are recorded as first made in region
// (Event.Origin): a change applied from another region, which must not be
// shipped again.
func WithOrigin(ctx context.Context, region string) context.Context {
	return context.WithValue(ctx, originKey{}, region)
}

// OriginFrom returns the region ctx's changes come from ("" = here).
func OriginFrom(ctx context.Context) string {
	s, _ := ctx.Value(originKey{}).(string)
	return s
}

// AppendChange appends e in tx after the registry's change hook
// (Options.Changes) has seen it: for a capability that changes tags and
// manifests in its own transaction (recyclebin's restore).
func (r *Registry) AppendChange(ctx context.Context, tx Tx, e Event) error {
	return appendChange(ctx, r.changes, tx, e)
}
