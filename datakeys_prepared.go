package stowage

import "context"

// DataKeyPreparer is a Backend (storage/crypt) whose Put of a new object
// records a data-key row in the metadata database, in a commit of its own.
// PrepareDataKey makes that data key now, for the object at key, and returns
// its row, for the caller to record in a transaction it commits anyway
// before the Put (the engine's reserve), and a context under which the next
// Put of key uses that key and records nothing itself. The row is durable
// before the object exists, as with the Backend's own commit, in one commit
// fewer per push. A Put that fails forgets the row, as it forgets its own.
type DataKeyPreparer interface {
	PrepareDataKey(ctx context.Context, key string) (context.Context, DataKey, error)
}

// prepareDataKey asks r.store for the data key of a Put of key it is about
// to make. It returns ctx unchanged and nil when the store records none
// (not encrypted) or cannot prepare one now (then its Put makes it, as
// before).
func (r *Registry) prepareDataKey(ctx context.Context, key string) (context.Context, *DataKey) {
	p, ok := r.store.(DataKeyPreparer)
	if !ok {
		return ctx, nil
	}
	pctx, row, err := p.PrepareDataKey(ctx, key)
	if err != nil {
		return ctx, nil
	}
	return pctx, &row
}
