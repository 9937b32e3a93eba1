package limits_test

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stowage/stowage/limits"
	"github.com/stowage/stowage/meta/postgres"
	"github.com/stowage/stowage/meta/postgres/pgtest"
	"github.com/stowage/stowage/meta/sqlite"
)

// stores opens, for each kind of Store, two handles on one store: two
// nodes. The SQLite ones are two opens of one file; the PostgreSQL ones two
// pools on one schema (skipped without the test server; the PostgreSQL
// stage, scripts/postgres-test.sh, runs them).
func stores(t testing.TB) []struct {
	name string
	open func(t testing.TB) (limits.Store, limits.Store)
} {
	return []struct {
		name string
		open func(t testing.TB) (limits.Store, limits.Store)
	}{
		{"memory", func(t testing.TB) (limits.Store, limits.Store) {
			s := limits.NewMemStore(0)
			return s, s
		}},
		{"sqlite", func(t testing.TB) (limits.Store, limits.Store) {
			path := filepath.Join(t.TempDir(), "stowage.db")
			a, err := sqlite.Open(context.Background(), path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { a.Close() })
			b, err := sqlite.Open(context.Background(), path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.Close() })
			return a, b
		}},
		{"postgres", func(t testing.TB) (limits.Store, limits.Store) {
			cs := pgtest.Schema(t, "stowage_limits")
			var dbs [2]*postgres.DB
			for i := range dbs {
				db, err := postgres.Open(context.Background(), cs, postgres.Options{MaxConns: 8})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { db.Close() })
				dbs[i] = db
			}
			return dbs[0], dbs[1]
		}},
	}
}

// TestStoreContract: the arithmetic of TakeTokens and SweepTokens, the same
// in every Store.
func TestStoreContract(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	ctx := context.Background()
	for _, st := range stores(t) {
		t.Run(st.name, func(t *testing.T) {
			a, b := st.open(t)
			for i, step := range []struct {
				store      limits.Store
				at         time.Duration // after t0
				give, want int
				took       int
				left       float64
			}{
				{a, 0, 0, 0, 0, 5},                         // never seen: full, and only read
				{a, 0, 0, 3, 3, 2},                         // takes 3 of 5
				{b, 0, 0, 5, 2, 0},                         // the other node: only 2 left
				{b, 0, 0, 1, 0, 0},                         // none
				{a, 1500 * time.Millisecond, 0, 0, 0, 1.5}, // one every second
				{a, 2 * time.Second, 0, 1, 1, 1},           // refilled 2, took 1
				{b, 2 * time.Second, 10, 0, 0, 5},          // a give-back never passes capacity
				{a, time.Second, 0, 5, 5, 0},               // a clock behind does not refill
				{a, 3 * time.Second, 1, 2, 2, 0},           // refilled 1, given 1, took 2
			} {
				took, left, err := step.store.TakeTokens(ctx, "k", 5, time.Second, t0.Add(step.at), step.give, step.want)
				if err != nil {
					t.Fatal(err)
				}
				if took != step.took || math.Abs(left-step.left) > 1e-9 {
					t.Fatalf("step %d: took %d left %v, want %d and %v", i, took, left, step.took, step.left)
				}
			}
			// Another key is another bucket; a sweep forgets only full ones.
			if took, _, _ := a.TakeTokens(ctx, "other", 100, time.Millisecond, t0, 0, 1); took != 1 {
				t.Fatalf("other bucket: took %d", took)
			}
			n, err := b.SweepTokens(ctx, t0.Add(3*time.Second))
			if err != nil || n != 1 {
				t.Fatalf("sweep at 3 s: %d %v, want 1 (the other bucket, full again)", n, err)
			}
			if n, err := b.SweepTokens(ctx, t0.Add(time.Hour)); err != nil || n != 1 {
				t.Fatalf("sweep an hour later: %d %v, want 1", n, err)
			}
			if _, left, _ := a.TakeTokens(ctx, "k", 5, time.Second, t0.Add(time.Hour), 0, 0); left != 5 {
				t.Fatalf("after the sweep: %v left, want a full bucket", left)
			}
		})
	}
}

// TestSharedLimitHoldsAcrossNodes: two limiters (two nodes) on one store
// allow, together, what the limit allows: not twice as much. Requests come
// from 4 goroutines per node, for two identities.
func TestSharedLimitHoldsAcrossNodes(t *testing.T) {
	for _, st := range stores(t) {
		t.Run(st.name, func(t *testing.T) {
			a, b := st.open(t)
			clk := newClock()
			cfg := limits.Config{Read: limits.Rate{Registry: 100, Identity: 60}, Write: limits.Rate{Registry: 10_000}, Now: clk.Now}
			cfgA, cfgB := cfg, cfg
			cfgA.Store, cfgB.Store = a, b
			nodes := []*limits.Limiter{limits.New(cfgA), limits.New(cfgB)}
			burst := func(class limits.Class, perGoroutine int) map[string]int {
				var mu sync.Mutex
				allowed := map[string]int{}
				var wg sync.WaitGroup
				for n, l := range nodes {
					for g := 0; g < 4; g++ {
						wg.Add(1)
						go func() {
							defer wg.Done()
							for i := 0; i < perGoroutine; i++ {
								id := []string{"alice", "bob"}[(g+i)%2]
								if d := l.Allow(class, id); d.OK {
									mu.Lock()
									allowed[id]++
									allowed[fmt.Sprint("node", n)]++
									allowed[""]++
									mu.Unlock()
								} else if d.RetryAfter <= 0 {
									t.Errorf("refused with Retry-After %v", d.RetryAfter)
								}
							}
						}()
					}
				}
				wg.Wait()
				return allowed
			}
			got := burst(limits.Read, 50) // 400 requests
			if got[""] != 100 || got["alice"] > 60 || got["bob"] > 60 {
				t.Fatalf("a burst of 400 reads on two nodes: %v allowed, want 100 in all (the registry's limit), at most 60 per identity", got)
			}
			// Six seconds refill a tenth of the registry's bucket: 10 more.
			clk.Add(6 * time.Second)
			if got := burst(limits.Read, 25); got[""] != 10 {
				t.Fatalf("6 s later: %v allowed, want 10", got)
			}
			// A large limit, where nodes take blocks of tokens (up to 200):
			// never more than the limit; less by at most what a node that
			// has finished still holds (the clock stands still, so its
			// lease never expires and gives them back).
			if got := burst(limits.Write, 2000); got[""] > 10_000 || got[""] < 10_000-2*200 {
				t.Fatalf("a burst of 16,000 writes: %d allowed, want 9,600 to 10,000", got[""])
			}
		})
	}
}

// BenchmarkAllow measures the cost of a request's limit check: in-process
// buckets, and shared ones in each store (two identities, registry and
// identity limits, the local fast path on).
func BenchmarkAllow(b *testing.B) {
	cfg := limits.Config{Read: limits.Rate{Registry: 1 << 30, Identity: 1 << 30}}
	b.Run("local", func(b *testing.B) {
		benchAllow(b, limits.New(cfg))
	})
	for _, st := range stores(b) {
		b.Run(st.name, func(b *testing.B) {
			s, _ := st.open(b)
			c := cfg
			c.Store = s
			benchAllow(b, limits.New(c))
		})
		// Without the fast path: every request takes its tokens from the
		// store (what a limit of under 50 a minute does).
		b.Run(st.name+"-every-request", func(b *testing.B) {
			s, _ := st.open(b)
			ctx := context.Background()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, _, err := s.TakeTokens(ctx, "bench", 1<<30, time.Nanosecond, time.Now(), 0, 1); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

func benchAllow(b *testing.B, l *limits.Limiter) {
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			if !l.Allow(limits.Read, []string{"alice", "bob"}[i%2]).OK {
				b.Fatal("refused")
			}
		}
	})
}

func TestKeyPart(t *testing.T) {
	long := strings.Repeat("x", 129)
	for _, tc := range []struct {
		in     string
		hashed bool
	}{
		{"alice", false}, {"ip:10.0.0.1", false}, {"ädmin", false}, {"", false},
		{"a\x00b", true}, {"\xff", true}, {"a\nb", true}, {"#x", true}, {long, true},
	} {
		got := limits.KeyPart(tc.in)
		if tc.hashed != (got != tc.in) || tc.hashed && (len(got) != 33 || got[0] != '#') {
			t.Errorf("KeyPart(%q) = %q", tc.in, got)
		}
	}
	if limits.KeyPart("a\x00b") == limits.KeyPart("a\x00c") {
		t.Error("two names, one key")
	}
}

// TestSharedLeasesAreBounded: a limiter on a store keeps at most
// MaxIdentities leases, however many identities ask.
func TestSharedLeasesAreBounded(t *testing.T) {
	clk := newClock()
	l := limits.New(limits.Config{Read: limits.Rate{Identity: 60}, MaxIdentities: 50, Store: limits.NewMemStore(0), Now: clk.Now})
	for i := 0; i < 1000; i++ {
		if !l.Allow(limits.Read, fmt.Sprintf("user%d", i)).OK {
			t.Fatalf("user%d refused", i)
		}
		if n := l.Identities(); n > 50 {
			t.Fatalf("after %d identities: %d leases kept, bound 50", i+1, n)
		}
	}
}

// countingStore counts the takes that reach the store.
type countingStore struct {
	limits.Store
	mu    sync.Mutex
	takes int
}

func (c *countingStore) TakeTokens(ctx context.Context, key string, capacity int, every time.Duration, now time.Time, give, want int) (int, float64, error) {
	c.mu.Lock()
	c.takes++
	c.mu.Unlock()
	return c.Store.TakeTokens(ctx, key, capacity, every, now, give, want)
}

// TestSharedAsksTheStoreRarely: the local fast path. A node serving 1,000
// reads a second for 10 s (under its limits: 100,000 a minute for the
// registry, 60,000 for the one identity) asks the store about its two
// buckets some 10 to 20 times a second each, not 1,000 times; and a flood
// of refused requests costs about one take per refill interval.
func TestSharedAsksTheStoreRarely(t *testing.T) {
	clk := newClock()
	store := &countingStore{Store: limits.NewMemStore(0)}
	l := limits.New(limits.Config{Read: limits.Rate{Registry: 100_000, Identity: 60_000}, Store: store, Now: clk.Now})
	for i := 0; i < 10_000; i++ {
		if !l.Allow(limits.Read, "ci").OK {
			t.Fatalf("request %d refused", i)
		}
		clk.Add(time.Millisecond)
	}
	if store.takes > 2*10*20 {
		t.Fatalf("10,000 requests in 10 s took from the store %d times, want at most 400", store.takes)
	}
	t.Logf("10,000 requests in 10 s: %d takes from the store", store.takes)

	// A flood: 600 a minute allowed (one every 100 ms), 10,000 requests
	// in 10 s: about 100 allowed, about 100 takes (plus the first burst).
	store.takes = 0
	l = limits.New(limits.Config{Write: limits.Rate{Registry: 600}, Store: store, Now: clk.Now})
	ok := 0
	for i := 0; i < 10_000; i++ {
		if l.Allow(limits.Write, "flood").OK {
			ok++
		}
		clk.Add(time.Millisecond)
	}
	if ok > 600+100+1 || store.takes > 600+2*100 {
		t.Fatalf("a flood: %d allowed, %d takes from the store; want at most 701 allowed and 800 takes", ok, store.takes)
	}
	t.Logf("a flood of 10,000 requests in 10 s on 600 a minute: %d allowed, %d takes from the store", ok, store.takes)
}
