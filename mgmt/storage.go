package mgmt

import (
	"context"
	"net/http"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/storage/mirror"
	"github.com/stowage/stowage/storage/shard"
)

// Topology is the storage tree as the management API sees it.
type Topology interface {
	Status() TopologyStatus
	Rebalance(ctx context.Context, dryRun bool, progress func(shard.RebalanceProgress)) (shard.RebalanceProgress, error)
}

// TopologyStatus is GET /api/v1/storage.
type TopologyStatus struct {
	Description string           `json:"description"`
	Mirrors     []MirrorStatus   `json:"mirrors,omitempty"`
	ShardSets   []ShardSetStatus `json:"shardSets,omitempty"`
}

// MirrorStatus is one mirror's health, by its place in the configuration.
type MirrorStatus struct {
	Path string `json:"path"`
	mirror.Status
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
		p, err := h.topo.Rebalance(ctx, dry, func(p shard.RebalanceProgress) { enc.progress("objects", p.Scanned, p.Total) })
		if err != nil {
			h.log.Error("rebalance failed", "err", err)
			enc.line(map[string]any{"error": err.Error()})
			return nil
		}
		h.log.Info("rebalance done", "scanned", p.Scanned, "misplaced", p.Misplaced, "moved", p.Moved, "dry_run", dry)
		enc.line(map[string]any{"report": p})
		return nil
	}
	return notFound(r)
}
