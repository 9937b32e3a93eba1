package mgmt

import (
	"context"
	"net/http"
	"strconv"
	"strings"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/storage/crypt"
)

// serveKeys serves the encryption key endpoints:
//
//	GET    /api/v1/keys                      current key, versions, data keys per version
//	POST   /api/v1/keys/rotate[?rewrap_only=true]   new version + rewrap (JSON lines with progress)
//	DELETE /api/v1/keys/versions/<N>         retire a version no data key uses
func (h *Handler) serveKeys(ctx context.Context, w http.ResponseWriter, r *http.Request, arg string) error {
	if h.keys == nil {
		if arg == "" && r.Method == http.MethodGet {
			return writeJSON(w, map[string]any{"encryption": "none"})
		}
		return stowage.Errorf(stowage.CodeUnsupported, "encryption at rest is off on this registry (encryption: none): there are no keys to manage")
	}
	switch {
	case arg == "" && r.Method == http.MethodGet:
		st, err := h.keys.Status(ctx)
		if err != nil {
			return err
		}
		return writeJSON(w, map[string]any{"encryption": "on", "status": st})
	case arg == "rotate" && r.Method == http.MethodPost:
		rewrapOnly, err := boolParam(r, "rewrap_only")
		if err != nil {
			return err
		}
		enc := streamJSON(w)
		p, err := h.keys.Rotate(ctx, crypt.RotateOptions{NewVersion: !rewrapOnly, Progress: func(p crypt.RotateProgress) {
			enc.progress("data keys", p.Rewrapped, p.Total)
		}})
		if err != nil {
			h.log.Error("key rotation failed", "err", err)
			enc.line(map[string]any{"error": err.Error()})
			return nil
		}
		h.log.Info("key rotation done", "current", p.Current.String(), "rewrapped", p.Rewrapped)
		enc.line(map[string]any{"report": p})
		return nil
	case strings.HasPrefix(arg, "versions/") && r.Method == http.MethodDelete:
		v, err := strconv.ParseUint(strings.TrimPrefix(arg, "versions/"), 10, 32)
		if err != nil || v == 0 {
			return stowage.Errorf(stowage.CodeInvalidParameter, "key version %q: want a positive number", strings.TrimPrefix(arg, "versions/"))
		}
		cur, err := h.keys.Keys.Current(ctx)
		if err != nil {
			return err
		}
		kv := stowage.KeyVersion{ID: cur.ID, Version: uint32(v)}
		if err := h.keys.Retire(ctx, kv); err != nil {
			return err
		}
		h.log.Info("key version retired", "key", kv.String())
		return writeJSON(w, map[string]any{"retired": kv})
	}
	return notFound(r)
}
