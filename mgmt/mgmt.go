// Package mgmt serves Stowage's management API (/api/v1/): usage, deletes
// with dry runs, and garbage collection. The CLI talks to it.
package mgmt

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/ociapi"
)

// Handler serves /api/v1/.
type Handler struct {
	reg *stowage.Registry
	log *slog.Logger
	gc  stowage.GCOptions // defaults for POST /api/v1/gc
}

// New returns the management API handler; gc holds the configured grace
// period, lease and upload expiry.
func New(reg *stowage.Registry, log *slog.Logger, gc stowage.GCOptions) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{reg: reg, log: log, gc: gc}
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := h.serve(w, r); err != nil {
		ociapi.WriteError(w, r, h.log, err)
	}
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) error {
	rest, ok := strings.CutPrefix(r.URL.Path, "/api/v1/")
	if !ok {
		return notFound(r)
	}
	ctx := r.Context()
	dry, err := boolParam(r, "dry_run")
	if err != nil {
		return err
	}
	head, arg, _ := strings.Cut(rest, "/")
	switch {
	case head == "usage" && r.Method == http.MethodGet:
		if arg == "" {
			u, err := h.reg.Usage(ctx)
			if err != nil {
				return err
			}
			return writeJSON(w, u)
		}
		if err := stowage.ValidateName(arg); err != nil {
			return err
		}
		d, err := h.reg.RepositoryUsage(ctx, arg)
		if err != nil {
			return err
		}
		return writeJSON(w, d)
	case head == "repositories" && r.Method == http.MethodDelete:
		if err := stowage.ValidateName(arg); err != nil {
			return err
		}
		return h.report(w, func() (stowage.DeleteReport, error) { return h.reg.DeleteRepository(ctx, arg, dry) })
	case head == "images" && r.Method == http.MethodDelete:
		repo, ref, err := ParseImageRef(arg)
		if err != nil {
			return err
		}
		return h.report(w, func() (stowage.DeleteReport, error) { return h.reg.DeleteImage(ctx, repo, ref, dry) })
	case head == "tags" && r.Method == http.MethodDelete:
		repo, ref, err := ParseImageRef(arg)
		if err != nil {
			return err
		}
		if ref.IsDigest() {
			return stowage.Errorf(stowage.CodeTagInvalid, "untag needs repo:tag, not a digest")
		}
		return h.report(w, func() (stowage.DeleteReport, error) { return h.reg.Untag(ctx, repo, ref.Tag, dry) })
	case head == "gc" && arg == "" && r.Method == http.MethodPost:
		return h.collect(ctx, w, r, dry)
	}
	return notFound(r)
}

func notFound(r *http.Request) error {
	return stowage.Errorf(stowage.CodeNameUnknown, "no management endpoint %s %s (see docs/api.md)", r.Method, r.URL.Path)
}

func (h *Handler) report(w http.ResponseWriter, fn func() (stowage.DeleteReport, error)) error {
	rep, err := fn()
	if err != nil {
		return err
	}
	return writeJSON(w, rep)
}

// collect runs a garbage collection and streams its progress as JSON lines
// ({"progress":…}), ending with {"report":…} or {"error":…}.
func (h *Handler) collect(ctx context.Context, w http.ResponseWriter, r *http.Request, dry bool) error {
	opts := h.gc
	opts.DryRun = dry
	if s := r.URL.Query().Get("min_age"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return stowage.Errorf(stowage.CodeUnsupported, "min_age=%q: want a duration such as 0s, 10m or 24h", s)
		}
		opts.MinAge = &d
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	last := time.Time{}
	opts.Progress = func(phase string, done, total int64) {
		if time.Since(last) < 100*time.Millisecond && done != total {
			return
		}
		last = time.Now()
		enc.Encode(map[string]any{"progress": map[string]any{"phase": phase, "done": done, "total": total}})
		if flusher != nil {
			flusher.Flush()
		}
	}
	rep, err := h.reg.CollectGarbage(ctx, opts)
	if err != nil {
		h.log.Error("garbage collection failed", "err", err)
		return enc.Encode(map[string]any{"error": err.Error()})
	}
	rep.Digests = nil
	return enc.Encode(map[string]any{"report": rep})
}

// ParseImageRef parses "repo:tag" or "repo@digest".
func ParseImageRef(s string) (string, stowage.Reference, error) {
	var repo, r string
	if i := strings.LastIndexByte(s, '@'); i > 0 {
		repo, r = s[:i], s[i+1:]
	} else if i := strings.LastIndexByte(s, ':'); i > 0 && !strings.Contains(s[i:], "/") {
		repo, r = s[:i], s[i+1:]
	} else {
		return "", stowage.Reference{}, stowage.Errorf(stowage.CodeNameInvalid, "%q: want repository:tag or repository@sha256:…", s)
	}
	if err := stowage.ValidateName(repo); err != nil {
		return "", stowage.Reference{}, err
	}
	ref, err := stowage.ParseReference(r)
	return repo, ref, err
}

func boolParam(r *http.Request, name string) (bool, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, stowage.Errorf(stowage.CodeUnsupported, "%s=%q: want true or false", name, s)
	}
	return b, nil
}

func writeJSON(w http.ResponseWriter, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.Write(append(b, '\n'))
	return nil
}
