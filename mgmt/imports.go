package mgmt

import (
	"context"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/remote"
)

// ImportRequest is the body of POST /api/v1/imports: copy an image from
// another registry into this one, server-side (as `az acr import`).
type ImportRequest struct {
	// Source is REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@DIGEST.
	Source string `json:"source"`
	// Target is REPOSITORY[:TAG] here; "" means the source's repository
	// and tag.
	Target string `json:"target,omitempty"`
	// Username and Password for the source registry (Basic, or the token
	// flow). They are used for this import only: never stored or logged.
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	// Referrers also copies signatures, SBOMs and other referrers.
	Referrers bool `json:"referrers,omitempty"`
	// Platform: "" or "all" (every platform of an index), or "os/arch[/variant]".
	Platform string `json:"platform,omitempty"`
	// PlainHTTP talks to the source over http:// (a registry without TLS).
	PlainHTTP bool `json:"plainHTTP,omitempty"`
}

// serveImports serves POST /api/v1/imports: the copy runs in this request
// and streams JSON lines, {"progress":{"phase","done","total",…}} as it
// goes, then {"report":…} or {"error":…}. Every blob and manifest goes
// through the engine's push path, so locks, quotas and immutability apply
// as for a push. Closing the connection cancels the import (what was
// pushed stays: a retry skips it).
func (h *Handler) serveImports(ctx context.Context, w http.ResponseWriter, r *http.Request, arg string) error {
	if arg != "" || r.Method != http.MethodPost {
		return notFound(r)
	}
	var req ImportRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	src, err := remote.ParseImage(req.Source)
	if err != nil {
		return err
	}
	repo, tags := src.Repo, []string(nil)
	if !src.Ref.IsDigest() {
		tags = []string{src.Ref.Tag}
	}
	if req.Target != "" {
		if repo, tags, err = importTarget(req.Target); err != nil {
			return err
		}
	}
	if p := req.Platform; p != "" && p != "all" && (strings.Count(p, "/") < 1 || strings.Count(p, "/") > 2 || strings.Contains(p, "//")) {
		return stowage.Errorf(stowage.CodeInvalidParameter, "platform %q: want all, or os/arch such as linux/amd64 (or os/arch/variant)", p)
	}
	c := remote.New(src.Registry, remote.Options{Username: req.Username, Password: req.Password, PlainHTTP: req.PlainHTTP,
		UserAgent: "stowage-import", Logger: h.log})
	req.Password = ""
	enc := streamJSON(w)
	start := time.Now()
	opts := remote.CopyOptions{Referrers: req.Referrers, Platform: req.Platform, Logger: h.log,
		Progress: func(p remote.Progress) { enc.importProgress(p) }}
	rep, err := remote.Copy(ctx, c, src.Repo, src.Ref, registrySink{h.reg}, repo, tags, opts)
	if err != nil {
		h.log.Warn("import failed", "source", src.String(), "target", repo, "err", err)
		enc.line(map[string]any{"error": err.Error()})
		return nil
	}
	h.log.Info("imported", "source", src.String(), "target", repo, "tags", tags, "digest", rep.Digest, "manifests", rep.Manifests,
		"blobs", rep.Blobs, "bytes", rep.BytesCopied, "took", time.Since(start).Round(time.Millisecond))
	enc.line(map[string]any{"report": importReport{rep, tags, time.Since(start).Round(time.Millisecond).String()}})
	return nil
}

type importReport struct {
	remote.CopyReport
	Tags     []string `json:"tags"`
	Duration string   `json:"duration"`
}

// importTarget parses REPOSITORY[:TAG].
func importTarget(s string) (string, []string, error) {
	if i := strings.LastIndexByte(s, ':'); i > 0 && !strings.Contains(s[i:], "/") {
		if err := stowage.ValidateTag(s[i+1:]); err != nil {
			return "", nil, err
		}
		if err := stowage.ValidateName(s[:i]); err != nil {
			return "", nil, err
		}
		return s[:i], []string{s[i+1:]}, nil
	}
	if strings.Contains(s, "@") {
		return "", nil, stowage.Errorf(stowage.CodeInvalidParameter, "target %q: want REPOSITORY or REPOSITORY:TAG (the digest is the source's)", s)
	}
	return s, nil, stowage.ValidateName(s)
}

// importProgress writes a copy's progress line (at most ten a second): the
// phase's done and total (bytes for "blobs"), and every count.
func (j *jsonLines) importProgress(p remote.Progress) {
	done, total := int64(p.ManifestsTotal), int64(p.ManifestsTotal)
	switch p.Phase {
	case "blobs":
		done, total = p.Bytes, p.BytesTotal
	case "push":
		done = int64(p.Manifests)
	}
	if time.Since(j.last) < 100*time.Millisecond && done != total {
		return
	}
	j.last = time.Now()
	j.line(map[string]any{"progress": map[string]any{"phase": p.Phase, "done": done, "total": total, "copy": p}})
}

// registrySink puts an import into the registry through the engine's push
// path.
type registrySink struct{ reg *stowage.Registry }

// HasBlob: the repository holds it, or another one does and it is mounted
// (no copy: blobs are stored once).
func (s registrySink) HasBlob(ctx context.Context, repo string, d stowage.Digest) (bool, error) {
	_, err := s.reg.StatBlob(ctx, repo, d)
	if err == nil {
		return true, nil
	}
	if stowage.ErrorCodeOf(err) != stowage.CodeBlobUnknown {
		return false, err
	}
	_, ok, err := s.reg.MountBlob(ctx, repo, "", d)
	return ok, err
}

func (s registrySink) PutBlob(ctx context.Context, repo string, d stowage.Digest, r io.Reader, size int64) error {
	_, err := s.reg.PutBlob(ctx, repo, d, r, size)
	return err
}

func (s registrySink) PutManifest(ctx context.Context, repo string, m remote.Manifest, tags []string) error {
	_, err := s.reg.PutManifest(ctx, repo, stowage.Reference{Digest: m.Digest}, m.MediaType, m.Body, tags)
	return err
}
