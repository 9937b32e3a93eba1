package replication

import (
	"context"
	"io"
	"sync"
	"time"
)

// rateLimit paces the bytes sent to one peer (all its concurrent uploads
// together) to at most perSecond, allowing a burst of one second.
type rateLimit struct {
	mu        sync.Mutex
	perSecond float64
	tokens    float64
	last      time.Time
}

func newRateLimit(perSecond int64) *rateLimit {
	return &rateLimit{perSecond: float64(perSecond), tokens: float64(perSecond), last: time.Now()}
}

// wait takes n bytes' worth, sleeping until they are available.
func (l *rateLimit) wait(ctx context.Context, n int) error {
	l.mu.Lock()
	now := time.Now()
	l.tokens = min(l.perSecond, l.tokens+now.Sub(l.last).Seconds()*l.perSecond)
	l.last = now
	l.tokens -= float64(n)
	var d time.Duration
	if l.tokens < 0 {
		d = time.Duration(-l.tokens / l.perSecond * float64(time.Second))
	}
	l.mu.Unlock()
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// limitedReader reads from r at most as fast as l allows.
type limitedReader struct {
	ctx context.Context
	r   io.Reader
	l   *rateLimit
}

func (lr *limitedReader) Read(p []byte) (int, error) {
	if len(p) > 64<<10 {
		p = p[:64<<10] // small steps keep the pace smooth
	}
	n, err := lr.r.Read(p)
	if n > 0 {
		if werr := lr.l.wait(lr.ctx, n); werr != nil {
			return n, werr
		}
	}
	return n, err
}
