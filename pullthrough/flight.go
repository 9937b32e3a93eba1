package pullthrough

import (
	"context"
	"sync"
)

// flight runs one call per key at a time: the first caller (the leader)
// runs it, callers arriving meanwhile wait for its result. Per process:
// nodes sharing a database each have their own (see docs/pull-through.md).
type flight struct {
	mu    sync.Mutex
	calls map[string]*call
}

type call struct {
	done chan struct{}
	val  any
	err  error
}

// do runs fn unless a call for key is in flight, then waits for that one
// (or for ctx) and returns its result.
func (f *flight) do(ctx context.Context, key string, fn func() (any, error)) (any, error) {
	f.mu.Lock()
	if f.calls == nil {
		f.calls = map[string]*call{}
	}
	if c, ok := f.calls[key]; ok {
		f.mu.Unlock()
		select {
		case <-c.done:
			return c.val, c.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	c := &call{done: make(chan struct{})}
	f.calls[key] = c
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.calls, key)
		f.mu.Unlock()
		close(c.done)
	}()
	c.val, c.err = fn()
	return c.val, c.err
}

// busy reports whether a call for key is in flight.
func (f *flight) busy(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.calls[key]
	return ok
}
