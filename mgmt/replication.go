package mgmt

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/internal/httperr"
	"github.com/stowage/stowage/replication"
)

// Replication is a region's geo-replication (replication.Service).
type Replication interface {
	Apply(ctx context.Context, ch replication.Change) (replication.Result, error)
	Status(ctx context.Context) (replication.Status, error)
	Locate(ctx context.Context, repo string, ref stowage.Reference) ([]replication.Location, error)
	StartBackfill(ctx context.Context, peer string) error
}

// WithReplication enables /api/v1/replication/ (admins only, as every
// endpoint auth does not list):
//
//	POST /api/v1/replication/apply       a change from a peer (replication.Change) → replication.Result
//	GET  /api/v1/replication/status      per peer: state, lag, backlog, last error
//	GET  /api/v1/replication/status?ref=REPO:TAG|REPO@DIGEST   which regions hold it, at which digest
//	POST /api/v1/replication/backfill?peer=NAME   start a back-fill of the peer → 202 (progress: status)
func (h *Handler) WithReplication(r Replication) *Handler {
	h.repl = r
	return h
}

// maxChange bounds an apply request: a manifest (4 MiB) in base64, and more.
const maxChange = 8 << 20

func (h *Handler) serveReplication(ctx context.Context, w http.ResponseWriter, r *http.Request, arg string) error {
	if h.repl == nil && arg == "status" && r.Method == http.MethodGet && r.URL.Query().Get("ref") == "" {
		// Not configured is a status, not an error: no region, no peers.
		return writeJSON(w, replication.Status{Peers: []replication.PeerStatus{}})
	}
	if h.repl == nil {
		return stowage.Errorf(stowage.CodeUnsupported, "replication is not configured on this registry (replication.region and peers; see docs/replication.md)")
	}
	switch {
	case arg == "apply" && r.Method == http.MethodPost:
		b, err := httperr.ReadBody(r, maxChange, stowage.CodeSizeInvalid, "change")
		if err != nil {
			return err
		}
		var ch replication.Change
		if err := json.Unmarshal(b, &ch); err != nil {
			return stowage.Errorf(stowage.CodeInvalidParameter, "change: %v", err)
		}
		res, err := h.repl.Apply(ctx, ch)
		if err != nil {
			return err
		}
		return writeJSON(w, res)
	case arg == "backfill" && r.Method == http.MethodPost:
		peer := r.URL.Query().Get("peer")
		if peer == "" {
			return stowage.Errorf(stowage.CodeInvalidParameter, "name the peer to back-fill: ?peer=NAME (one of this region's peers, see replication status)")
		}
		if err := h.repl.StartBackfill(ctx, peer); err != nil {
			return err
		}
		w.WriteHeader(http.StatusAccepted)
		return nil
	case arg == "status" && r.Method == http.MethodGet:
		if s := r.URL.Query().Get("ref"); s != "" {
			repo, ref, err := ParseImageRef(s)
			if err != nil {
				return err
			}
			if ref == (stowage.Reference{}) {
				return stowage.Errorf(stowage.CodeInvalidParameter, "ref %q: want REPO:TAG or REPO@DIGEST", s)
			}
			locs, err := h.repl.Locate(ctx, repo, ref)
			if err != nil {
				return err
			}
			return writeJSON(w, map[string]any{"repository": repo, "reference": ref.String(), "regions": locs})
		}
		st, err := h.repl.Status(ctx)
		if err != nil {
			return err
		}
		return writeJSON(w, st)
	}
	return notFound(r)
}
