package limits

import (
	"context"
	"sync"
	"time"
)

// LeaseTTL is how long a node may keep tokens it took from a shared Store
// before it must use them or give them back. It bounds how far the
// registry as a whole can go over a limit: tokens are counted when taken
// and used up to LeaseTTL later, so a burst may pass a bucket's capacity by
// what the bucket refills in LeaseTTL, 1/600 of a minute's worth (17
// requests on 10,000 a minute), and never in a steady state.
const LeaseTTL = 100 * time.Millisecond

// shared takes the tokens of requests from buckets in a Store, through a
// local fast path: each node takes a block of tokens at a time (a lease)
// and spends it locally, so a busy node asks the store about every
// LeaseTTL per bucket, not at every request. The block adapts to the
// node's traffic: it doubles when a lease was spent before it expired and
// halves when tokens were left over, between 1 and a fiftieth of the
// bucket (so one node never holds much of what the others could use).
// Tokens left when a lease expires go back to the store with the next
// take. While the store has none, requests are refused locally until it
// will hold one again, so a flood of refused requests costs the database
// one write per refill interval, not one per request.
type shared struct {
	store Store
	now   func() time.Time
	onErr func(error)
	max   int // leases kept; past it, idle ones go at once

	mu     sync.Mutex
	leases map[string]*lease
	swept  time.Time
}

type lease struct {
	mu         sync.Mutex
	tokens     int       // taken from the store, not used yet
	until      time.Time // spend them by then, or give them back
	block      int       // how many to take next time
	emptyUntil time.Time // the store had none: refuse until then
	used       time.Time
}

func newShared(store Store, now func() time.Time, max int, onErr func(error)) *shared {
	return &shared{store: store, now: now, max: max, onErr: onErr, leases: map[string]*lease{}}
}

// take takes one token from the bucket key (capacity tokens, refilled at
// capacity a minute), or says how long until there is one.
func (s *shared) take(ctx context.Context, key string, capacity int, now time.Time) (bool, time.Duration) {
	every := (time.Minute + time.Duration(capacity) - 1) / time.Duration(capacity)
	s.mu.Lock()
	e := s.leases[key]
	if e == nil {
		if len(s.leases) >= s.max {
			s.dropIdle(now, 0)
			// Still full: forget any, down to 90% (their unspent tokens
			// are lost, never given twice), so the next new keys do not
			// scan again.
			for k := range s.leases {
				if len(s.leases) < s.max*9/10 {
					break
				}
				delete(s.leases, k)
			}
		}
		e = &lease{block: 1}
		s.leases[key] = e
	}
	s.mu.Unlock()

	e.mu.Lock()
	defer e.mu.Unlock()
	e.used = now
	if e.tokens > 0 && now.Before(e.until) {
		e.tokens--
		return true, 0
	}
	if now.Before(e.emptyUntil) {
		return false, e.emptyUntil.Sub(now)
	}
	give := e.tokens
	switch maxBlock := max(1, capacity/50); {
	case give > 0:
		e.block = max(1, e.block/2)
	case !e.until.IsZero() && now.Before(e.until):
		e.block = min(maxBlock, e.block*2) // spent before it expired
	}
	took, left, err := s.store.TakeTokens(ctx, key, capacity, every, now, give, e.block)
	e.tokens, e.until = 0, now.Add(LeaseTTL)
	if err != nil {
		// The database is the registry's, and requests will find out
		// themselves if it is down: let this one through rather than turn
		// a hiccup into 429s, and say so (unless the request was
		// cancelled: its client is gone).
		if ctx.Err() == nil {
			s.onErr(err)
		}
		return true, 0
	}
	if took == 0 {
		wait := time.Duration((1 - left) * float64(every))
		wait = max(wait, time.Millisecond)
		e.emptyUntil = now.Add(wait)
		return false, wait
	}
	e.tokens = took - 1
	return true, 0
}

// putBack returns a token taken by take and not used (the other bucket of
// the request refused it): it stays in the lease, for the next request.
func (s *shared) putBack(key string) {
	s.mu.Lock()
	e := s.leases[key]
	s.mu.Unlock()
	if e != nil {
		e.mu.Lock()
		e.tokens++
		e.mu.Unlock()
	}
}

// sweep forgets leases idle and empty, and the store's full buckets; at
// most once a minute.
func (s *shared) sweep(ctx context.Context, now time.Time) {
	s.mu.Lock()
	if now.Sub(s.swept) < time.Minute {
		s.mu.Unlock()
		return
	}
	s.swept = now
	s.dropIdle(now, time.Minute)
	s.mu.Unlock()
	if _, err := s.store.SweepTokens(ctx, now); err != nil {
		s.onErr(err)
	}
}

// dropIdle forgets the leases holding nothing (no tokens that may still be
// spent, no refusal running) and unused for idle; s.mu held. Tokens of an
// expired lease are given up, not back: the bucket refills them anyway.
func (s *shared) dropIdle(now time.Time, idle time.Duration) {
	for k, e := range s.leases {
		if e.mu.TryLock() {
			if (e.tokens == 0 || !now.Before(e.until)) && !now.Before(e.emptyUntil) && now.Sub(e.used) >= idle {
				delete(s.leases, k)
			}
			e.mu.Unlock()
		}
	}
}

func (s *shared) size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.leases)
}
