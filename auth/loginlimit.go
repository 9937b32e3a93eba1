package auth

import (
	"sync"
	"time"
)

// LoginLimit is a token bucket for failed logins: Burst failures are
// allowed at once, then one more every Every. While the bucket is empty,
// logins are refused with 429 before the password is even checked.
type LoginLimit struct {
	Burst int
	Every time.Duration
}

// Default failed-login limits: per client IP 10 failures, then one every
// 6 s; per name 20, then one every 3 s.
var (
	DefaultLoginLimitIP   = LoginLimit{Burst: 10, Every: 6 * time.Second}
	DefaultLoginLimitName = LoginLimit{Burst: 20, Every: 3 * time.Second}
)

// loginLimiter counts failed logins per client IP and per name. Its memory
// is bounded: buckets that have refilled are forgotten (a full bucket is
// the same as none), and past max entries the oldest are dropped.
type loginLimiter struct {
	now     func() time.Time
	ip      LoginLimit
	name    LoginLimit
	max     int
	mu      sync.Mutex
	buckets map[string]*loginBucket
	swept   time.Time
}

type loginBucket struct {
	tokens float64
	at     time.Time // of the last refill
	last   time.Time // of the last failure
	spec   LoginLimit
}

func newLoginLimiter(now func() time.Time, ip, name LoginLimit) *loginLimiter {
	return &loginLimiter{now: now, ip: ip, name: name, max: 100_000, buckets: map[string]*loginBucket{}}
}

func (b *loginBucket) refill(now time.Time) {
	if b.spec.Every <= 0 {
		b.tokens = float64(b.spec.Burst)
		return
	}
	if el := now.Sub(b.at); el > 0 {
		b.tokens += float64(el) / float64(b.spec.Every)
		if b.tokens > float64(b.spec.Burst) {
			b.tokens = float64(b.spec.Burst)
		}
	}
	b.at = now
}

func (b *loginBucket) full() bool { return b.tokens >= float64(b.spec.Burst) }

type limitKey struct {
	key  string
	spec LoginLimit
}

func (l *loginLimiter) keys(ip, name string) []limitKey {
	var ks []limitKey
	if ip != "" && l.ip.Burst > 0 {
		ks = append(ks, limitKey{"ip:" + ip, l.ip})
	}
	if name != "" && l.name.Burst > 0 {
		ks = append(ks, limitKey{"name:" + name, l.name})
	}
	return ks
}

// wait returns how long a login from ip for name must wait (0: it may go
// ahead) and which of the two limits holds it back.
func (l *loginLimiter) wait(ip, name string) (time.Duration, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	var longest time.Duration
	var which string
	for _, k := range l.keys(ip, name) {
		b, ok := l.buckets[k.key]
		if !ok {
			continue
		}
		b.refill(now)
		if b.tokens >= 1 {
			continue
		}
		if d := time.Duration((1 - b.tokens) * float64(k.spec.Every)); d > longest {
			longest, which = d, k.key
		}
	}
	return longest, which
}

// fail records a failed login from ip for name.
func (l *loginLimiter) fail(ip, name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	for _, k := range l.keys(ip, name) {
		b, ok := l.buckets[k.key]
		if !ok {
			b = &loginBucket{tokens: float64(k.spec.Burst), at: now, spec: k.spec}
			l.buckets[k.key] = b
		}
		b.refill(now)
		b.last = now
		b.tokens--
		if b.tokens < 0 {
			b.tokens = 0
		}
	}
	if now.Sub(l.swept) > time.Minute || len(l.buckets) > l.max {
		l.sweep(now)
	}
}

func (l *loginLimiter) sweep(now time.Time) {
	l.swept = now
	for k, b := range l.buckets {
		b.refill(now)
		if b.full() {
			delete(l.buckets, k)
		}
	}
	if len(l.buckets) <= l.max {
		return
	}
	// Still too many: drop the buckets least recently failed.
	var oldest time.Time
	for _, b := range l.buckets {
		if oldest.IsZero() || b.last.Before(oldest) {
			oldest = b.last
		}
	}
	cut := oldest.Add(now.Sub(oldest) / 2)
	for k, b := range l.buckets {
		if len(l.buckets) <= l.max*9/10 {
			break
		}
		if !b.last.After(cut) {
			delete(l.buckets, k)
		}
	}
}

func (l *loginLimiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
