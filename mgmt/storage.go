package mgmt

import (
	"context"
	"net/http"

	"time"

	"github.com/stowage/stowage"
)

// Topology is the storage tree as the management API sees it (the mirrors
// and shard sets of storage/mirror and storage/shard, wired in
// cmd/stowage).
type Topology interface {
	Status() TopologyStatus
	// Rebalance moves the objects of every shard set that are not on their
	// shard; dryRun only counts. progress (may be nil) gets running totals.
	Rebalance(ctx context.Context, dryRun bool, progress func(RebalanceProgress)) (RebalanceProgress, error)
}

// RebalanceProgress reports a rebalance (storage/shard.RebalanceProgress).
type RebalanceProgress struct {
	Total     int64 `json:"total"`     // objects on all shards when the walk began
	Scanned   int64 `json:"scanned"`   // objects looked at
	Misplaced int64 `json:"misplaced"` // objects found away from their owner
	Moved     int64 `json:"moved"`     // of those, moved (or already present at the owner)
	Skipped   int64 `json:"skipped"`   // of those, left: deleted meanwhile (by the collector)
	Bytes     int64 `json:"bytes"`     // bytes copied
}

// TopologyStatus is GET /api/v1/storage.
type TopologyStatus struct {
	Description string           `json:"description"`
	Mirrors     []MirrorStatus   `json:"mirrors,omitempty"`
	ShardSets   []ShardSetStatus `json:"shardSets,omitempty"`
}

// MirrorStatus is one mirror's health, by its place in the configuration
// (storage/mirror.Status).
type MirrorStatus struct {
	Path           string       `json:"path"`
	WriteQuorum    int          `json:"writeQuorum"`
	Copies         []CopyStatus `json:"copies"`
	PendingRepairs int          `json:"pendingRepairs"`
	Repaired       int64        `json:"repaired"` // copies rewritten since the start, by the repair queue and by scrubs
	// Lost counts the objects no copy holds good bytes of: restore them
	// from a backup. LostObjects names up to 20 of them.
	Lost        int      `json:"lost"`
	LostObjects []string `json:"lostObjects,omitempty"`
}

// CopyStatus is one copy of a mirror (storage/mirror.CopyStatus).
type CopyStatus struct {
	Name        string    `json:"name"`
	State       string    `json:"state"` // healthy, degraded or down
	Failures    int       `json:"consecutiveFailures"`
	LastError   string    `json:"lastError,omitempty"`
	LastErrorAt time.Time `json:"lastErrorAt,omitzero"` // omitted when there was no error
	LastOK      time.Time `json:"lastOK,omitzero"`
	// Read faults found on the copy (each object at most once a minute),
	// each queued for repair at once.
	MissingFound int64 `json:"missingFound"`
	CorruptFound int64 `json:"corruptFound"`
}

// ShardSetStatus names a shard set's shards.
type ShardSetStatus struct {
	Path   string   `json:"path"`
	Shards []string `json:"shards"`
}

// WithTopology enables /api/v1/storage.
func (h *Handler) WithTopology(t Topology) *Handler {
	h.topo = t
	return h
}

// serveStorage serves:
//
//	GET  /api/v1/storage                         topology and health of every copy
//	POST /api/v1/storage/rebalance[?dry_run=true]  move misplaced objects (JSON lines)
func (h *Handler) serveStorage(ctx context.Context, w http.ResponseWriter, r *http.Request, head, arg string, dry bool) error {
	switch {
	case head == "storage" && arg == "" && r.Method == http.MethodGet:
		if h.topo == nil {
			return writeJSON(w, TopologyStatus{})
		}
		return writeJSON(w, h.topo.Status())
	case head == "storage" && arg == "rebalance" && r.Method == http.MethodPost:
		if h.topo == nil {
			return stowage.Errorf(stowage.CodeUnsupported, "no storage topology is configured")
		}
		enc := streamJSON(w)
		p, err := h.topo.Rebalance(ctx, dry, func(p RebalanceProgress) { enc.progress("objects", p.Scanned, p.Total) })
		if err != nil {
			h.log.ErrorContext(ctx, "rebalance failed", "err", err)
			enc.line(map[string]any{"error": err.Error()})
			return nil
		}
		h.log.Info("rebalance done", "scanned", p.Scanned, "misplaced", p.Misplaced, "moved", p.Moved, "dry_run", dry)
		enc.line(map[string]any{"report": p})
		return nil
	}
	return notFound(r)
}
