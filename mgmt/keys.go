package mgmt

import (
	"context"
	"net/http"
	"strconv"
	"strings"

	"github.com/stowage/stowage"
)

// KeyManager is the encryption key hierarchy as the management API sees it
// (storage/crypt.Manager, wired in cmd/stowage).
type KeyManager interface {
	// Status reports the current key, its versions and the data keys each wraps.
	Status(ctx context.Context) (KeyStatus, error)
	// Rotate makes a new key version current (unless !newVersion: only
	// rewrap onto the current one) and rewraps every data key onto it;
	// progress (may be nil) is called as it goes.
	Rotate(ctx context.Context, newVersion bool, progress func(KeyRotation)) (KeyRotation, error)
	// Current is the key version new data keys are wrapped with.
	Current(ctx context.Context) (stowage.KeyVersion, error)
	// Retire removes a key version no data key uses.
	Retire(ctx context.Context, kv stowage.KeyVersion) error
}

// KeyStatus is GET /api/v1/keys (storage/crypt.Status).
type KeyStatus struct {
	Provider string               `json:"provider"`
	Current  stowage.KeyVersion   `json:"current"`
	Versions []stowage.KeyVersion `json:"versions,omitempty"` // held by the provider, if it says
	// DataKeys counts data keys per key version that wraps them.
	DataKeys []stowage.KeyVersionCount `json:"data_keys"`
}

// KeyRotation reports a rotation (storage/crypt.RotateProgress).
type KeyRotation struct {
	Current   stowage.KeyVersion `json:"current"`
	Rewrapped int64              `json:"rewrapped"`
	Total     int64              `json:"total"` // data keys not on the current version when the pass began
	Done      bool               `json:"done"`
}

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
		p, err := h.keys.Rotate(ctx, !rewrapOnly, func(p KeyRotation) {
			enc.progress("data keys", p.Rewrapped, p.Total)
		})
		if err != nil {
			h.log.ErrorContext(ctx, "key rotation failed", "err", err)
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
		cur, err := h.keys.Current(ctx)
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
