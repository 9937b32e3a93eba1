package stowage

import "context"

// ListFilter returns the listing filter of ctx (WithListFilter), nil if
// the caller may list every repository.
func ListFilter(ctx context.Context) func(repo string) bool {
	keep, _ := ctx.Value(listFilterKey{}).(func(string) bool)
	return keep
}

type deleteFilterKey struct{}

type deleteFilter struct {
	keep func(string) bool
	who  string
}

// WithDeleteFilter returns a context under which operations that delete
// across repositories (a purge) may touch only the repositories keep
// accepts; who names the caller in refusals. Access control puts the
// caller's rights here.
func WithDeleteFilter(ctx context.Context, keep func(repo string) bool, who string) context.Context {
	return context.WithValue(ctx, deleteFilterKey{}, deleteFilter{keep, who})
}

// DeleteFilter returns the delete filter of ctx and whom it limits (nil if
// the caller may delete from every repository).
func DeleteFilter(ctx context.Context) (keep func(repo string) bool, who string) {
	f, _ := ctx.Value(deleteFilterKey{}).(deleteFilter)
	return f.keep, f.who
}
