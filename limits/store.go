package limits

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"math"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Store keeps token buckets that several limiters share: the nodes of a
// registry on one database take their requests' tokens from the same
// buckets, so a limit holds for the registry as a whole (meta/postgres and
// meta/sqlite implement it; MemStore keeps them in memory, for one
// process).
//
// A bucket is named by its key. It holds at most capacity tokens and gains
// one every every; a bucket never seen before (or forgotten by a sweep) is
// full. The caller passes both with every call: they are the limit in force
// on that node, not stored state.
type Store interface {
	// TakeTokens refills the bucket key to now, puts back give tokens taken
	// earlier and not used (never past capacity), then takes up to want
	// whole tokens, never more than it holds. It returns how many it took
	// and how many are left, a fraction of a token included. With give and
	// want 0 it only reads. Concurrent calls, from any node, never take the
	// same token twice.
	TakeTokens(ctx context.Context, key string, capacity int, every time.Duration, now time.Time, give, want int) (took int, left float64, err error)
	// SweepTokens forgets the buckets that are full by now (a full bucket
	// is the same as none), and says how many it forgot.
	SweepTokens(ctx context.Context, now time.Time) (int, error)
}

// Refill is the arithmetic of a bucket, the same in every Store: a bucket
// that held tokens at time at holds, at now, tokens plus one every every
// since, plus give, at most capacity; of that it takes up to want whole
// tokens. It returns what it took and what is left.
func Refill(tokens float64, at time.Time, capacity int, every time.Duration, now time.Time, give, want int) (took int, left float64) {
	level := tokens + float64(give)
	if el := now.Sub(at); el > 0 && every > 0 {
		level += float64(el) / float64(every)
	}
	if every <= 0 || level > float64(capacity) {
		level = float64(capacity)
	}
	took = min(max(want, 0), int(math.Floor(level)))
	if took < 0 {
		took = 0
	}
	return took, level - float64(took)
}

// MemStore is a Store in memory: the buckets of one process. Its memory is
// bounded: full buckets are forgotten at each sweep (at most once a
// minute), and past max buckets the least recently used go.
type MemStore struct {
	mu      sync.Mutex
	max     int
	buckets map[string]*memBucket
	swept   time.Time
}

type memBucket struct {
	tokens float64
	at     time.Time // of the last refill
	full   time.Time // full by then
}

// NewMemStore returns an empty MemStore keeping at most max buckets
// (default 100,000).
func NewMemStore(max int) *MemStore {
	if max <= 0 {
		max = 100_000
	}
	return &MemStore{max: max, buckets: map[string]*memBucket{}}
}

// TakeTokens implements Store.
func (s *MemStore) TakeTokens(_ context.Context, key string, capacity int, every time.Duration, now time.Time, give, want int) (int, float64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.buckets[key]
	if !ok {
		if give == 0 && want == 0 {
			return 0, float64(capacity), nil
		}
		b = &memBucket{tokens: float64(capacity), at: now}
		s.buckets[key] = b
	}
	took, left := Refill(b.tokens, b.at, capacity, every, now, give, want)
	if give == 0 && want == 0 {
		return 0, left, nil
	}
	b.tokens = left
	if now.After(b.at) {
		b.at = now
	}
	b.full = b.at.Add(time.Duration((float64(capacity) - left) * float64(every)))
	if now.Sub(s.swept) > time.Minute || len(s.buckets) > s.max {
		s.sweep(now)
	}
	return took, left, nil
}

// SweepTokens implements Store.
func (s *MemStore) SweepTokens(_ context.Context, now time.Time) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sweep(now), nil
}

func (s *MemStore) sweep(now time.Time) int {
	s.swept = now
	n := len(s.buckets)
	for k, b := range s.buckets {
		if !now.Before(b.full) {
			delete(s.buckets, k)
		}
	}
	if len(s.buckets) > s.max {
		// Still too many: drop those that will be full soonest (the least
		// used) until 90% of the bound remain.
		type entry struct {
			k    string
			full time.Time
		}
		es := make([]entry, 0, len(s.buckets))
		for k, b := range s.buckets {
			es = append(es, entry{k, b.full})
		}
		slices.SortFunc(es, func(a, b entry) int { return a.full.Compare(b.full) })
		for _, e := range es[:len(es)-s.max*9/10] {
			delete(s.buckets, e.k)
		}
	}
	return n - len(s.buckets)
}

// Len is how many buckets are kept.
func (s *MemStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.buckets)
}

// KeyPart makes s safe in a bucket's key, whatever a client sent: short,
// printable UTF-8 as it is; anything else (a NUL, invalid UTF-8, a name of
// a kilobyte, which PostgreSQL would refuse or which would bloat its table)
// as "#" and a hash of it.
func KeyPart(s string) string {
	if len(s) <= 128 && utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '#' }) {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return "#" + hex.EncodeToString(sum[:16])
}
