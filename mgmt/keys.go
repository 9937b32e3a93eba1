package mgmt

import (
	"context"
	"encoding/json"
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

// KeyStatus is GET /api/v1/keys (storage/crypt.Status). On the wire its
// names are lowerCamel like the rest of the API (MarshalJSON): provider,
// current {id, version}, versions, dataKeys [{id, version, count}].
type KeyStatus struct {
	Provider string
	Current  stowage.KeyVersion
	Versions []stowage.KeyVersion // held by the provider, if it says
	// DataKeys counts data keys per key version that wraps them.
	DataKeys []stowage.KeyVersionCount
}

// KeyRotation reports a rotation (storage/crypt.RotateProgress): current
// {id, version}, rewrapped, total, done.
type KeyRotation struct {
	Current   stowage.KeyVersion
	Rewrapped int64
	Total     int64 // data keys not on the current version when the pass began
	Done      bool
}

// KeyVersionJSON is a key version on the wire.
type KeyVersionJSON struct {
	ID      string `json:"id"`
	Version uint32 `json:"version"`
}

// KeyVersionOf is kv on the wire.
func KeyVersionOf(kv stowage.KeyVersion) KeyVersionJSON { return KeyVersionJSON{kv.ID, kv.Version} }

// KeyVersion is v as the Go type.
func (v KeyVersionJSON) KeyVersion() stowage.KeyVersion {
	return stowage.KeyVersion{ID: v.ID, Version: v.Version}
}

// DataKeyCountJSON is how many data keys a key version wraps, on the wire.
type DataKeyCountJSON struct {
	ID      string `json:"id"`
	Version uint32 `json:"version"`
	Count   int64  `json:"count"`
}

type keyStatusJSON struct {
	Provider string             `json:"provider"`
	Current  KeyVersionJSON     `json:"current"`
	Versions []KeyVersionJSON   `json:"versions,omitempty"`
	DataKeys []DataKeyCountJSON `json:"dataKeys"`
}

func (s KeyStatus) MarshalJSON() ([]byte, error) {
	w := keyStatusJSON{Provider: s.Provider, Current: KeyVersionOf(s.Current), DataKeys: []DataKeyCountJSON{}}
	for _, v := range s.Versions {
		w.Versions = append(w.Versions, KeyVersionOf(v))
	}
	for _, d := range s.DataKeys {
		w.DataKeys = append(w.DataKeys, DataKeyCountJSON{d.ID, d.Version, d.Count})
	}
	return json.Marshal(w)
}

func (s *KeyStatus) UnmarshalJSON(b []byte) error {
	var w keyStatusJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*s = KeyStatus{Provider: w.Provider, Current: w.Current.KeyVersion()}
	for _, v := range w.Versions {
		s.Versions = append(s.Versions, v.KeyVersion())
	}
	for _, d := range w.DataKeys {
		s.DataKeys = append(s.DataKeys, stowage.KeyVersionCount{KeyVersion: stowage.KeyVersion{ID: d.ID, Version: d.Version}, Count: d.Count})
	}
	return nil
}

type keyRotationJSON struct {
	Current   KeyVersionJSON `json:"current"`
	Rewrapped int64          `json:"rewrapped"`
	Total     int64          `json:"total"`
	Done      bool           `json:"done"`
}

func (r KeyRotation) MarshalJSON() ([]byte, error) {
	return json.Marshal(keyRotationJSON{KeyVersionOf(r.Current), r.Rewrapped, r.Total, r.Done})
}

func (r *KeyRotation) UnmarshalJSON(b []byte) error {
	var w keyRotationJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*r = KeyRotation{w.Current.KeyVersion(), w.Rewrapped, w.Total, w.Done}
	return nil
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
		return writeJSON(w, map[string]any{"retired": KeyVersionOf(kv)})
	}
	return notFound(r)
}
