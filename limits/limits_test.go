package limits_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/limits"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newClock() *clock { return &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)} }

// serve sends one request through the middleware; the identity is the
// X-Identity header (none: anonymous).
func serve(h http.Handler, method, path, identity string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, nil)
	if identity != "" {
		req.Header.Set("X-Identity", identity)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func handler(l *limits.Limiter) http.Handler {
	return l.Middleware(func(r *http.Request) string { return r.Header.Get("X-Identity") },
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) }))
}

func errorOf(t *testing.T, rec *httptest.ResponseRecorder) (stowage.ErrorCode, string) {
	t.Helper()
	var b struct {
		Errors []struct {
			Code    stowage.ErrorCode
			Message string
		}
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil || len(b.Errors) != 1 {
		t.Fatalf("error body %q: %v", rec.Body, err)
	}
	return b.Errors[0].Code, b.Errors[0].Message
}

func TestBurstOverIdentityLimitThenRecovers(t *testing.T) {
	clk := newClock()
	l := limits.New(limits.Config{Read: limits.Rate{Registry: 100, Identity: 5}, Now: clk.Now})
	h := handler(l)
	for i := 0; i < 5; i++ {
		if rec := serve(h, "GET", "/v2/a/manifests/latest", "alice"); rec.Code != 200 {
			t.Fatalf("request %d: %d", i, rec.Code)
		}
	}
	rec := serve(h, "HEAD", "/v2/a/blobs/x", "alice")
	if rec.Code != http.StatusTooManyRequests {
		t.Fatalf("6th read: %d, want 429", rec.Code)
	}
	if ra := rec.Header().Get("Retry-After"); ra != "12" { // 5 a minute: one every 12 s
		t.Fatalf("Retry-After %q, want 12", ra)
	}
	// Another identity is not held back by alice.
	if rec := serve(h, "GET", "/v2/a/manifests/latest", "bob"); rec.Code != 200 {
		t.Fatalf("bob: %d", rec.Code)
	}
	// Writes have their own (here unlimited) buckets.
	if rec := serve(h, "PUT", "/v2/a/manifests/latest", "alice"); rec.Code != 200 {
		t.Fatalf("alice's write: %d", rec.Code)
	}
	rec = serve(h, "GET", "/v2/a/manifests/latest", "alice")
	if code, msg := errorOf(t, rec); rec.Code != 429 || code != stowage.CodeTooManyRequests ||
		msg != "read limit of 5 requests per minute for identity alice exceeded; retry in 12 s" {
		t.Fatalf("refusal: %d %s %q", rec.Code, code, msg)
	}
	clk.Add(11 * time.Second)
	if rec := serve(h, "GET", "/v2/a/manifests/latest", "alice"); rec.Code != 429 || rec.Header().Get("Retry-After") != "1" {
		t.Fatalf("after 11 s: %d Retry-After %q, want 429 and 1", rec.Code, rec.Header().Get("Retry-After"))
	}
	clk.Add(time.Second)
	if rec := serve(h, "GET", "/v2/a/manifests/latest", "alice"); rec.Code != 200 {
		t.Fatalf("after the wait: %d", rec.Code)
	}
	st := l.Stats()
	if st.Allowed["read"] != 7 || st.Refused["read"] != 3 || st.Allowed["write"] != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestMessagesNameTheLimit(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cfg      limits.Config
		method   string
		path     string
		identity string
		n        int // requests allowed before the refusal
		msg      string
	}{
		{"identity reads", limits.Config{Read: limits.Rate{Identity: 5000}}, "GET", "/v2/", "alice", 5000,
			"read limit of 5,000 requests per minute for identity alice exceeded; retry in 1 s"},
		{"registry writes", limits.Config{Write: limits.Rate{Registry: 3, Identity: 1000}}, "PATCH", "/v2/a/blobs/uploads/x", "bob", 3,
			"write limit of 3 requests per minute for the registry exceeded; retry in 20 s"},
		{"anonymous deletes", limits.Config{Delete: limits.Rate{Identity: 2}}, "DELETE", "/v2/a/manifests/x", "", 2,
			"delete limit of 2 requests per minute for anonymous callers exceeded; retry in 30 s"},
		{"token requests", limits.Config{Token: limits.Rate{Identity: 1}, Read: limits.Rate{Identity: 1000}}, "GET", "/oauth2/token", "ip:127.0.0.1", 1,
			"token request limit of 1 requests per minute for identity ip:127.0.0.1 exceeded; retry in 60 s"},
		{"custom token path, POST", limits.Config{Token: limits.Rate{Registry: 1}, TokenPath: "/token"}, "POST", "/token", "x", 1,
			"token request limit of 1 requests per minute for the registry exceeded; retry in 60 s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			tc.cfg.Now = clk.Now
			h := handler(limits.New(tc.cfg))
			for i := 0; i < tc.n; i++ {
				if rec := serve(h, tc.method, tc.path, tc.identity); rec.Code != 200 {
					t.Fatalf("request %d: %d %s", i, rec.Code, rec.Body)
				}
			}
			rec := serve(h, tc.method, tc.path, tc.identity)
			if rec.Code != 429 {
				t.Fatalf("request %d: %d, want 429", tc.n+1, rec.Code)
			}
			code, msg := errorOf(t, rec)
			if code != stowage.CodeTooManyRequests || msg != tc.msg {
				t.Fatalf("%s %q\nwant %q", code, msg, tc.msg)
			}
			if tc.method != "HEAD" && rec.Header().Get("Retry-After") == "" {
				t.Fatal("no Retry-After")
			}
		})
	}
}

func TestAnonymousCallersShareOneIdentity(t *testing.T) {
	clk := newClock()
	h := handler(limits.New(limits.Config{Read: limits.Rate{Identity: 2}, Now: clk.Now}))
	serve(h, "GET", "/v2/", "")
	serve(h, "GET", "/v2/", "")
	if rec := serve(h, "GET", "/v2/", ""); rec.Code != 429 {
		t.Fatalf("third anonymous read: %d", rec.Code)
	}
	if rec := serve(h, "GET", "/v2/", "alice"); rec.Code != 200 {
		t.Fatalf("alice: %d", rec.Code)
	}
}

func TestRefusedRequestsTakeNothing(t *testing.T) {
	clk := newClock()
	// The registry allows 3 a minute; alice 1. Alice's refusals must not
	// use up the registry's bucket.
	h := handler(limits.New(limits.Config{Read: limits.Rate{Registry: 3, Identity: 1}, Now: clk.Now}))
	serve(h, "GET", "/v2/", "alice")
	for i := 0; i < 10; i++ {
		if rec := serve(h, "GET", "/v2/", "alice"); rec.Code != 429 {
			t.Fatalf("alice %d: %d", i, rec.Code)
		}
	}
	for _, who := range []string{"bob", "carol"} {
		if rec := serve(h, "GET", "/v2/", who); rec.Code != 200 {
			t.Fatalf("%s: %d (alice's refusals used the registry's bucket)", who, rec.Code)
		}
	}
	rec := serve(h, "GET", "/v2/", "dave")
	if _, msg := errorOf(t, rec); rec.Code != 429 || !strings.Contains(msg, "for the registry") {
		t.Fatalf("dave after the registry's 3: %d %q", rec.Code, msg)
	}
}

func TestIdleIdentitiesAreEvicted(t *testing.T) {
	clk := newClock()
	l := limits.New(limits.Config{Read: limits.Rate{Identity: 60}, Write: limits.Rate{Identity: 60}, MaxIdentities: 50, Now: clk.Now})
	for i := 0; i < 1000; i++ {
		l.Allow(limits.Read, fmt.Sprintf("user%d", i))
		if n := l.Identities(); n > 51 {
			t.Fatalf("after %d identities: %d buckets kept, bound 50", i+1, n)
		}
	}
	// A minute later every bucket has refilled: all are dropped.
	clk.Add(61 * time.Second)
	l.Allow(limits.Write, "someone")
	if n := l.Identities(); n != 1 {
		t.Fatalf("after a minute idle: %d buckets, want 1", n)
	}
	// A busy identity keeps its (partly used) bucket through a sweep.
	for i := 0; i < 30; i++ {
		l.Allow(limits.Read, "busy")
	}
	clk.Add(61 * time.Second)
	for i := 0; i < 59; i++ {
		if !l.Allow(limits.Read, "busy").OK {
			t.Fatalf("busy request %d refused after a refill", i)
		}
	}
	clk.Add(30 * time.Second) // triggers a sweep; busy has refilled only half
	if d := l.Allow(limits.Read, "busy"); !d.OK {
		t.Fatalf("busy after 30 s: %+v", d)
	}
}

func TestTiers(t *testing.T) {
	for _, tc := range []struct {
		tier                  string
		read, write, del, tok limits.Rate
	}{
		{"basic", limits.Rate{10000, 5000}, limits.Rate{2000, 1000}, limits.Rate{1000, 500}, limits.Rate{2000, 500}},
		{"Standard", limits.Rate{10000, 5000}, limits.Rate{2000, 1000}, limits.Rate{1000, 500}, limits.Rate{2000, 500}},
		{"premium", limits.Rate{20000, 10000}, limits.Rate{4000, 2000}, limits.Rate{4000, 2000}, limits.Rate{4000, 1000}},
	} {
		c, err := limits.ForTier(tc.tier)
		if err != nil || c.Read != tc.read || c.Write != tc.write || c.Delete != tc.del || c.Token != tc.tok {
			t.Errorf("ForTier(%s) = %+v, %v", tc.tier, c, err)
		}
		if err := c.Validate(); err != nil {
			t.Errorf("ForTier(%s) does not validate: %v", tc.tier, err)
		}
	}
	if _, err := limits.ForTier("gold"); stowage.ErrorCodeOf(err) != stowage.CodeInvalidParameter {
		t.Errorf("ForTier(gold): %v", err)
	}
	if err := (limits.Config{Write: limits.Rate{Identity: -1}}).Validate(); err == nil {
		t.Error("a negative limit validated")
	}
}

func TestClassOf(t *testing.T) {
	l := limits.New(limits.Config{})
	for _, tc := range []struct {
		method, path string
		want         limits.Class
	}{
		{"GET", "/v2/a/manifests/x", limits.Read}, {"HEAD", "/v2/a/blobs/x", limits.Read},
		{"PUT", "/v2/a/manifests/x", limits.Write}, {"PATCH", "/v2/a/blobs/uploads/x", limits.Write},
		{"POST", "/v2/a/blobs/uploads/", limits.Write}, {"DELETE", "/v2/a/manifests/x", limits.Delete},
		{"GET", "/oauth2/token", limits.Token}, {"POST", "/oauth2/token", limits.Token}, {"TRACE", "/", limits.Write},
	} {
		if got := l.ClassOf(httptest.NewRequest(tc.method, tc.path, nil)); got != tc.want {
			t.Errorf("ClassOf(%s %s) = %s, want %s", tc.method, tc.path, got, tc.want)
		}
	}
}

func TestConcurrentUseIsExact(t *testing.T) {
	clk := newClock()
	l := limits.New(limits.Config{Read: limits.Rate{Registry: 500, Identity: 1000}, Now: clk.Now})
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				if l.Allow(limits.Read, fmt.Sprintf("id%d", g)).OK {
					mu.Lock()
					ok++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if ok != 500 {
		t.Fatalf("%d allowed, want exactly the registry's 500", ok)
	}
}
