package replication

import (
	"context"
	"errors"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/feed"
)

// PeerStatus is what `stowage replication status` shows for one peer.
type PeerStatus struct {
	Name string `json:"name"`
	URL  string `json:"url"`
	// State: "shipping" (running, nothing failing), "retrying" (the last
	// attempt failed), "stopped" (not running in this process: another
	// node holds the job, or it gave up).
	State        string    `json:"state"`
	Cursor       int64     `json:"cursor"`     // the last event shipped (or passed over)
	LagEvents    int64     `json:"lagEvents"`  // changes made here after the cursor
	LagSeconds   float64   `json:"lagSeconds"` // age of the oldest of them (0: none)
	BacklogBytes int64     `json:"backlogBytes"`
	LagExact     bool      `json:"lagExact"` // false: counted over the first MaxScan events only, or the backlog sized from the first 1000 pushes
	LastShipped  time.Time `json:"lastShipped,omitzero"`
	LastError    string    `json:"lastError,omitempty"`
	LastErrorAt  time.Time `json:"lastErrorAt,omitzero"`
	Failures     int       `json:"failures,omitempty"`
	// Backfill: the last back-fill of the peer started in this process
	// (nil: none), its progress while it runs.
	Backfill *BackfillStatus `json:"backfill,omitempty"`
	// AutoBackfills: back-fills this process started by itself (cursor
	// behind the feed's retention, new peer on a trimmed feed).
	AutoBackfills int64 `json:"autoBackfills"`
	// Parked: changes this process passed over because the peer refused
	// them for good (a limit there, a manifest it cannot take), the last
	// refusal and when: shipped again by a back-fill once the cause is gone.
	Parked       int64     `json:"parked"`
	LastParked   string    `json:"lastParked,omitempty"`
	LastParkedAt time.Time `json:"lastParkedAt,omitzero"`
}

// MaxScan bounds the events a status counts; maxSized the pushes whose
// configs and layers it adds to the backlog (each a manifest read).
const (
	MaxScan  = 100_000
	maxSized = 1000
)

// Status reports the replicator's state and backlog at now.
func (r *Replicator) Status(ctx context.Context, now time.Time) (PeerStatus, error) {
	st := r.consumer.Status()
	ps := PeerStatus{Name: r.Peer.Name, URL: r.Peer.URL, LastShipped: st.LastHandled, LastError: st.LastError,
		LastErrorAt: st.LastErrorAt, Failures: st.Failures, LagExact: true, Backfill: r.BackfillStatus(),
		AutoBackfills: r.AutoBackfills()}
	ps.Parked, ps.LastParked, ps.LastParkedAt = r.Parked()
	switch {
	case !st.Running:
		ps.State = "stopped"
	case st.Failures > 0:
		ps.State = "retrying"
	default:
		ps.State = "shipping"
	}
	cur, ok, err := r.cursors.Cursor(ctx, ConsumerName(r.Peer.Name))
	if err != nil {
		return ps, err
	}
	if ok {
		ps.Cursor = cur.Seq
	}
	q := feed.Query{After: ps.Cursor, Resume: ok, Kinds: Kinds, Limit: feed.MaxLimit}
	images := 0 // pushes whose images were sized (the rest: their manifests only)
	for scanned := 0; ; {
		p, err := r.feed.Read(ctx, q)
		if errors.Is(err, feed.ErrBehind) && scanned == 0 {
			// Retention deleted events after the cursor (the replicator
			// is about to back-fill them): count from the oldest retained.
			q.After, q.Resume, ps.LagExact = 0, false, false
			continue
		}
		if err != nil {
			return ps, err
		}
		for _, e := range p.Events {
			if e.Origin != "" {
				continue
			}
			if ps.LagEvents == 0 {
				ps.LagSeconds = max(0, now.Sub(e.Time).Seconds())
			}
			ps.LagEvents++
			if e.Kind == stowage.EventPush {
				if images < maxSized {
					ps.BacklogBytes += r.imageBytes(ctx, e)
					images++
				} else {
					ps.BacklogBytes += e.Size
					ps.LagExact = false
				}
			}
		}
		scanned += len(p.Events)
		if p.Next == q.After {
			break
		}
		if scanned >= MaxScan {
			ps.LagExact = false
			break
		}
		q.After, q.Resume = p.Next, true
	}
	return ps, nil
}

// imageBytes is the size of a pushed manifest plus the blobs it lists
// (what shipping it sends at most; blobs the peer has are skipped).
func (r *Replicator) imageBytes(ctx context.Context, e stowage.Event) int64 {
	n := e.Size
	rec, body, err := r.Reg.GetManifest(ctx, e.Repo, stowage.Reference{Digest: e.Digest})
	if err != nil {
		return n
	}
	m, err := stowage.ParseManifest(rec.MediaType, body)
	if err != nil {
		return n
	}
	if m.Config != nil {
		n += m.Config.Size
	}
	for _, l := range m.Layers {
		n += l.Size
	}
	return n
}

// Gauge is one of the replicator's gauges, per peer (for /metrics).
type Gauge struct {
	Name, Help string
	Value      func(PeerStatus) float64
}

// Gauges lists the gauges Metrics reports.
var Gauges = []Gauge{
	{"stowage_replication_lag_events", "Changes made in this region not yet shipped to the peer.", func(p PeerStatus) float64 { return float64(p.LagEvents) }},
	{"stowage_replication_lag_seconds", "Age of the oldest change not yet shipped to the peer (0: none).", func(p PeerStatus) float64 { return p.LagSeconds }},
	{"stowage_replication_backlog_bytes", "Bytes the unshipped pushes would send at most.", func(p PeerStatus) float64 { return float64(p.BacklogBytes) }},
	{"stowage_replication_cursor", "The last event shipped to the peer (seq).", func(p PeerStatus) float64 { return float64(p.Cursor) }},
	{"stowage_replication_consecutive_failures", "Attempts in a row that failed to ship to the peer.", func(p PeerStatus) float64 { return float64(p.Failures) }},
	{"stowage_replication_shipping", "1 if this process ships to the peer and the last attempt succeeded.", func(p PeerStatus) float64 {
		if p.State == "shipping" {
			return 1
		}
		return 0
	}},
}
