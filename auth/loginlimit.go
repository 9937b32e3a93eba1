package auth

import (
	"context"
	"sync"
	"time"

	"github.com/stowage/stowage/limits"
)

// LoginLimit is a token bucket for failed logins: Burst failures are
// allowed at once, then one more every Every.
type LoginLimit struct {
	Burst int
	Every time.Duration
}

// Default failed-login limits (see docs/access.md, Failed-login limits):
//
//   - per client address and name: 10 failures, then one every 6 s; the
//     guesser's own failures hold it back, nobody else's;
//   - per name, from every address: 20, then one every 3 s; while it
//     holds, it holds back only the addresses that have failed that name
//     themselves, so a distributed guesser is slowed and its victim, from
//     any address that has not failed the name, can still log in;
//   - per client address, whatever the name: 100, then one a second; a
//     guard on the bcrypt work one address can cause (password spraying
//     costs a bcrypt run per name tried), ten times looser than the
//     limit it replaces.
//
// Credentials that logged in successfully on this node within KnownGoodTTL
// pass every limit (their password is still checked): a victim who logged
// in recently is never held back by someone else's failures.
var (
	DefaultLoginLimitPair = LoginLimit{Burst: 10, Every: 6 * time.Second}
	DefaultLoginLimitName = LoginLimit{Burst: 20, Every: 3 * time.Second}
	DefaultLoginLimitIP   = LoginLimit{Burst: 100, Every: time.Second}
)

// KnownGoodTTL is how long a successful login exempts its credentials from
// the failed-login limits.
const KnownGoodTTL = 24 * time.Hour

// loginLimiter counts failed logins in a limits.Store: the database's when
// several nodes share one (so the limits hold across them), else one in
// memory.
type loginLimiter struct {
	store            limits.Store
	now              func() time.Time
	pair, name, addr LoginLimit
	known            *knownGood
	onErr            func(error)
}

func newLoginLimiter(store limits.Store, now func() time.Time, pair, name, addr LoginLimit, onErr func(error)) *loginLimiter {
	if store == nil {
		store = limits.NewMemStore(100_000)
	}
	return &loginLimiter{store: store, now: now, pair: pair, name: name, addr: addr,
		known: &knownGood{ttl: KnownGoodTTL, max: 100_000, m: map[[32]byte]time.Time{}}, onErr: onErr}
}

type loginKey struct {
	key  string
	spec LoginLimit
}

func (l *loginLimiter) keys(ip, name string) (pair, byName, byAddr loginKey) {
	ip, name = limits.KeyPart(ip), limits.KeyPart(name)
	return loginKey{"login:pair:" + ip + " " + name, l.pair}, loginKey{"login:name:" + name, l.name},
		loginKey{"login:addr:" + ip, l.addr}
}

// level reads how many failures a bucket still allows (Burst: none
// recently).
func (l *loginLimiter) level(ctx context.Context, k loginKey, now time.Time) float64 {
	if k.spec.Burst <= 0 {
		return float64(max(k.spec.Burst, 0)) + 1e9 // off
	}
	_, left, err := l.store.TakeTokens(ctx, k.key, k.spec.Burst, k.spec.Every, now, 0, 0)
	if err != nil {
		if ctx.Err() == nil {
			l.onErr(err)
		}
		return float64(k.spec.Burst) // let it through: the password check still runs
	}
	return left
}

// wait returns how long a login from ip for name must wait (0: check its
// password) and which limit holds it back: "pair", "name" or "addr".
// known: these credentials logged in successfully recently.
func (l *loginLimiter) wait(ctx context.Context, ip, name string, known bool) (time.Duration, string) {
	if known {
		return 0, ""
	}
	now := l.now()
	pair, byName, byAddr := l.keys(ip, name)
	hold := func(k loginKey, left float64) time.Duration {
		return time.Duration((1 - left) * float64(k.spec.Every))
	}
	pairLeft := l.level(ctx, pair, now)
	if pairLeft < 1 {
		return hold(pair, pairLeft), "pair"
	}
	// The name's limit holds back only addresses that failed it too (all,
	// with the pair limit off).
	if pair.spec.Burst <= 0 || pairLeft < float64(pair.spec.Burst)-1e-9 {
		if left := l.level(ctx, byName, now); left < 1 {
			return hold(byName, left), "name"
		}
	}
	if left := l.level(ctx, byAddr, now); left < 1 {
		return hold(byAddr, left), "addr"
	}
	return 0, ""
}

// fail records a failed login from ip for name, even if the client has
// gone meanwhile (a guesser must not escape the count by hanging up).
func (l *loginLimiter) fail(ctx context.Context, ip, name string) {
	ctx = context.WithoutCancel(ctx)
	now := l.now()
	pair, byName, byAddr := l.keys(ip, name)
	for _, k := range []loginKey{pair, byName, byAddr} {
		if k.spec.Burst <= 0 {
			continue
		}
		if _, _, err := l.store.TakeTokens(ctx, k.key, k.spec.Burst, k.spec.Every, now, 0, 1); err != nil && ctx.Err() == nil {
			l.onErr(err)
		}
	}
}

// knownGood remembers credentials (by the hash the credential cache uses)
// that logged in successfully on this node, for ttl. It only exempts them
// from the failed-login limits: their password is still checked.
type knownGood struct {
	ttl time.Duration
	max int
	mu  sync.Mutex
	m   map[[32]byte]time.Time
}

func (k *knownGood) has(key [32]byte, now time.Time) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	until, ok := k.m[key]
	return ok && now.Before(until)
}

func (k *knownGood) add(key [32]byte, now time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.m) >= k.max {
		for key, until := range k.m {
			if !now.Before(until) {
				delete(k.m, key)
			}
		}
		if len(k.m) >= k.max {
			clear(k.m)
		}
	}
	k.m[key] = now.Add(k.ttl)
}
