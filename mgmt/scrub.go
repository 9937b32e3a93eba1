package mgmt

import (
	"context"
	"net/http"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/scrub"
)

// Scrubber runs scrubs and keeps the last report (package scrub's
// *scrub.Runner).
type Scrubber interface {
	Run(ctx context.Context, opts scrub.Options) (scrub.Report, error)
	Last(ctx context.Context) (scrub.Report, error)
}

// WithScrub enables /api/v1/scrub.
func (h *Handler) WithScrub(s Scrubber) *Handler {
	h.scrub = s
	return h
}

// serveScrub serves:
//
//	GET  /api/v1/scrub    the last scrub's report
//	POST /api/v1/scrub    scrub now (JSON lines with progress)
func (h *Handler) serveScrub(ctx context.Context, w http.ResponseWriter, r *http.Request, arg string) error {
	if arg != "" || r.Method != http.MethodGet && r.Method != http.MethodPost {
		return notFound(r)
	}
	if h.scrub == nil {
		return stowage.Errorf(stowage.CodeUnsupported, "scrub is not enabled on this management API")
	}
	if r.Method == http.MethodGet {
		rep, err := h.scrub.Last(ctx)
		if err != nil {
			return stowage.Errorf(stowage.CodeNameUnknown, "no scrub has run yet: run `stowage scrub`")
		}
		return writeJSON(w, rep)
	}
	enc := streamJSON(w)
	rep, err := h.scrub.Run(ctx, scrub.Options{Progress: func(done, total int64) { enc.progress("blobs", done, total) }})
	if err != nil {
		h.log.ErrorContext(ctx, "scrub failed", "err", err)
		enc.line(map[string]any{"error": err.Error()})
		return nil
	}
	h.log.Info("scrub done", "blobs", rep.Blobs, "ok", rep.OK, "repaired", rep.Repaired, "degraded", rep.Degraded, "lost", rep.Lost)
	enc.line(map[string]any{"report": rep})
	return nil
}
