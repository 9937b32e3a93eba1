package ociapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/internal/httperr"
	"github.com/stowage/stowage/internal/ociroute"
)

// Handler serves /v2/. Each endpoint parses its request, calls the engine
// and returns an error; ServeHTTP writes errors in one place.
type Handler struct {
	reg  *stowage.Registry
	log  *slog.Logger
	fill Filler // nil: no pull-through (fill.go)
	miss Miss   // WithMiss (miss.go); nil: a miss is an error
}

// New returns the /v2/ handler.
func New(reg *stowage.Registry, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{reg: reg, log: log}
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	r = stowage.WithRequestActor(r)
	if err := h.serve(w, r); err != nil {
		httperr.Write(w, r, h.log, err)
	}
}

func methodNotAllowed(r *http.Request) error {
	return stowage.Errorf(stowage.CodeUnsupported, "%s is not supported on %s", r.Method, trunc(r.URL.Path))
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) error {
	rt, err := ociroute.ParseRoute(r.URL.Path)
	if err != nil {
		return err
	}
	ctx := r.Context()
	switch rt.Kind {
	case ociroute.KindBase:
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			return methodNotAllowed(r)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "2")
		if r.Method == http.MethodGet {
			io.WriteString(w, "{}")
		}
		return nil
	case ociroute.KindCatalog:
		if r.Method != http.MethodGet {
			return methodNotAllowed(r)
		}
		return h.catalog(ctx, w, r)
	case ociroute.KindTags:
		if r.Method != http.MethodGet {
			return methodNotAllowed(r)
		}
		return h.tags(ctx, w, r, rt)
	case ociroute.KindManifest:
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			if h.fill != nil {
				if done, err := h.fill.ServeManifest(ctx, w, r, rt.Name, rt.Ref); done || err != nil {
					return err
				}
			}
			return h.getManifest(ctx, w, r, rt)
		case http.MethodPut:
			return h.putManifest(ctx, w, r, rt)
		case http.MethodDelete:
			if err := h.reg.DeleteManifest(ctx, rt.Name, rt.Ref); err != nil {
				return err
			}
			w.WriteHeader(http.StatusAccepted)
			return nil
		}
	case ociroute.KindBlob:
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			if h.fill != nil {
				if done, err := h.fill.ServeBlob(ctx, w, r, rt.Name, rt.Digest); done || err != nil {
					return err
				}
			}
			return h.getBlob(ctx, w, r, rt)
		case http.MethodDelete:
			if err := h.reg.DeleteBlob(ctx, rt.Name, rt.Digest); err != nil {
				return err
			}
			w.WriteHeader(http.StatusAccepted)
			return nil
		}
	case ociroute.KindUploadStart:
		if r.Method == http.MethodPost {
			return h.startUpload(ctx, w, r, rt)
		}
	case ociroute.KindUpload:
		switch r.Method {
		case http.MethodGet:
			u, err := h.reg.GetUpload(ctx, rt.Name, rt.UploadID)
			if err != nil {
				return err
			}
			uploadHeaders(w, u)
			w.WriteHeader(http.StatusNoContent)
			return nil
		case http.MethodPatch:
			return h.patchUpload(ctx, w, r, rt)
		case http.MethodPut:
			return h.finishUpload(ctx, w, r, rt)
		case http.MethodDelete:
			if err := h.reg.CancelUpload(ctx, rt.Name, rt.UploadID); err != nil {
				return err
			}
			w.WriteHeader(http.StatusNoContent)
			return nil
		}
	case ociroute.KindReferrers:
		if r.Method == http.MethodGet {
			return h.referrers(ctx, w, r, rt)
		}
	}
	return methodNotAllowed(r)
}

// ---- blobs ----

func (h *Handler) getBlob(ctx context.Context, w http.ResponseWriter, r *http.Request, rt ociroute.Route) error {
	if r.Method == http.MethodHead {
		b, err := h.reg.StatBlob(ctx, rt.Name, rt.Digest)
		if err != nil {
			b, err = h.blobMiss(ctx, r, rt.Name, rt.Digest, err)
		}
		if err != nil {
			return err
		}
		blobHeaders(w, b)
		w.Header().Set("Content-Length", strconv.FormatInt(b.Size, 10))
		w.WriteHeader(http.StatusOK)
		return nil
	}
	b, err := h.reg.StatBlob(ctx, rt.Name, rt.Digest)
	if err != nil {
		b, err = h.blobMiss(ctx, r, rt.Name, rt.Digest, err)
	}
	if err != nil {
		return err
	}
	start, length, status := int64(0), b.Size, http.StatusOK
	if rh := r.Header.Get("Range"); rh != "" {
		var ok bool
		if start, length, ok = ParseRange(rh, b.Size); !ok {
			w.Header().Set("Content-Range", "bytes */"+strconv.FormatInt(b.Size, 10))
			return stowage.Errorf(stowage.CodeRangeInvalid, "range %q cannot be served from a blob of %d bytes", trunc(rh), b.Size)
		}
		status = http.StatusPartialContent
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, start+length-1, b.Size))
	}
	rc, _, err := h.reg.OpenBlob(ctx, rt.Name, rt.Digest, start)
	if err != nil {
		return err
	}
	defer rc.Close()
	blobHeaders(w, b)
	w.Header().Set("Content-Length", strconv.FormatInt(length, 10))
	w.WriteHeader(status)
	// An *os.File goes out with sendfile(2), anything else in 1 MiB writes.
	if n, err := copyBlob(w, rc, length); err != nil && ctx.Err() == nil {
		h.log.WarnContext(ctx, "blob send failed", "repo", rt.Name, "digest", rt.Digest, "sent", n, "err", err)
	}
	return nil
}

func blobHeaders(w http.ResponseWriter, b stowage.BlobRecord) {
	hd := w.Header()
	hd.Set("Content-Type", "application/octet-stream")
	hd.Set("Docker-Content-Digest", string(b.Digest))
	hd.Set("Accept-Ranges", "bytes")
	hd.Set("ETag", `"`+string(b.Digest)+`"`)
	hd.Set("Cache-Control", "max-age=31536000")
}

// ---- uploads ----

func (h *Handler) startUpload(ctx context.Context, w http.ResponseWriter, r *http.Request, rt ociroute.Route) error {
	q := r.URL.Query()
	if m := q.Get("mount"); m != "" {
		d, err := stowage.ParseDigest(m)
		if err != nil {
			return err
		}
		if from := q.Get("from"); from == "" || stowage.ValidateName(from) == nil {
			b, ok, err := h.reg.MountBlob(ctx, rt.Name, from, d)
			if err != nil {
				return err
			}
			if ok {
				blobCreated(w, rt.Name, b.Digest)
				return nil
			}
		}
		// Not mountable: fall through to a regular upload, as the spec asks.
	} else if ds := q.Get("digest"); ds != "" {
		d, err := stowage.ParseDigest(ds)
		if err != nil {
			return err
		}
		b, err := h.reg.PutBlob(ctx, rt.Name, d, r.Body, r.ContentLength)
		if err != nil {
			return err
		}
		blobCreated(w, rt.Name, b.Digest)
		return nil
	}
	u, err := h.reg.StartUpload(ctx, rt.Name)
	if err != nil {
		return err
	}
	uploadHeaders(w, u)
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	return nil
}

func (h *Handler) patchUpload(ctx context.Context, w http.ResponseWriter, r *http.Request, rt ociroute.Route) error {
	start, length, err := chunkRange(r)
	if err != nil {
		return err
	}
	u, err := h.reg.WriteUpload(ctx, rt.Name, rt.UploadID, start, length, r.Body)
	if err != nil {
		if stowage.ErrorCodeOf(err) == stowage.CodeRangeInvalid {
			// Tell the client where to resume.
			if cur, e := h.reg.GetUpload(ctx, rt.Name, rt.UploadID); e == nil {
				uploadHeaders(w, cur)
			}
		}
		return err
	}
	uploadHeaders(w, u)
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// chunkRange reads Content-Range and Content-Length of a chunk: start is -1
// when the client did not say where the chunk begins, length -1 when unknown.
func chunkRange(r *http.Request) (start, length int64, err error) {
	start, length = -1, r.ContentLength
	if cr := r.Header.Get("Content-Range"); cr != "" {
		s, n, ok := ParseContentRange(cr)
		if !ok {
			return 0, 0, stowage.Errorf(stowage.CodeRangeInvalid, "invalid Content-Range %q: want <start>-<end>", trunc(cr))
		}
		if length >= 0 && length != n {
			return 0, 0, stowage.Errorf(stowage.CodeRangeInvalid, "Content-Range %q says %d bytes but Content-Length is %d", trunc(cr), n, length)
		}
		start, length = s, n
	}
	return start, length, nil
}

func (h *Handler) finishUpload(ctx context.Context, w http.ResponseWriter, r *http.Request, rt ociroute.Route) error {
	ds := r.URL.Query().Get("digest")
	if ds == "" {
		return stowage.Errorf(stowage.CodeDigestInvalid, "the final PUT of an upload needs a digest query parameter (?digest=sha256:…)")
	}
	d, err := stowage.ParseDigest(ds)
	if err != nil {
		return err
	}
	start, length, err := chunkRange(r)
	if err != nil {
		return err
	}
	b, err := h.reg.FinishUpload(ctx, rt.Name, rt.UploadID, d, start, length, r.Body)
	if err != nil {
		return err
	}
	blobCreated(w, rt.Name, b.Digest)
	return nil
}

func blobCreated(w http.ResponseWriter, name string, d stowage.Digest) {
	hd := w.Header()
	hd.Set("Location", "/v2/"+name+"/blobs/"+string(d))
	hd.Set("Docker-Content-Digest", string(d))
	hd.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

func uploadHeaders(w http.ResponseWriter, u stowage.UploadRecord) {
	hd := w.Header()
	hd.Set("Location", "/v2/"+u.Repo+"/blobs/uploads/"+u.ID)
	hd.Set("Docker-Upload-UUID", u.ID)
	end := u.Size - 1
	if end < 0 {
		end = 0
	}
	hd.Set("Range", "0-"+strconv.FormatInt(end, 10))
}

// ---- manifests ----

func (h *Handler) getManifest(ctx context.Context, w http.ResponseWriter, r *http.Request, rt ociroute.Route) error {
	m, body, err := h.reg.GetManifest(ctx, rt.Name, rt.Ref)
	if err != nil {
		m, body, err = h.manifestMiss(ctx, r, rt.Name, rt.Ref, err)
	}
	if err != nil {
		return err
	}
	hd := w.Header()
	hd.Set("Content-Type", m.MediaType)
	hd.Set("Docker-Content-Digest", string(m.Digest))
	hd.Set("ETag", `"`+string(m.Digest)+`"`)
	hd.Set("Content-Length", strconv.Itoa(len(body)))
	if inm := r.Header.Get("If-None-Match"); inm != "" && strings.Contains(inm, string(m.Digest)) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write(body)
	}
	return nil
}

func (h *Handler) putManifest(ctx context.Context, w http.ResponseWriter, r *http.Request, rt ociroute.Route) error {
	body, err := httperr.ReadBody(r, stowage.MaxManifestSize, stowage.CodeManifestInvalid, "manifest")
	if err != nil {
		return err
	}
	var tags []string
	for _, t := range r.URL.Query()["tag"] {
		if err := stowage.ValidateTag(t); err != nil {
			return err
		}
		tags = append(tags, t)
	}
	res, err := h.reg.PutManifest(ctx, rt.Name, rt.Ref, r.Header.Get("Content-Type"), body, tags)
	if err != nil {
		res, err = h.putMiss(ctx, r, rt.Name, rt.Ref, body, tags, err)
	}
	if err != nil {
		return err
	}
	hd := w.Header()
	hd.Set("Location", "/v2/"+rt.Name+"/manifests/"+string(res.Digest))
	hd.Set("Docker-Content-Digest", string(res.Digest))
	if res.Subject != "" {
		hd.Set("OCI-Subject", string(res.Subject))
	}
	for _, t := range tags {
		hd.Add("OCI-Tag", t)
	}
	hd.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
	return nil
}

// referrers streams the index of a subject's referrers, a page at a time.
func (h *Handler) referrers(ctx context.Context, w http.ResponseWriter, r *http.Request, rt ociroute.Route) error {
	at := r.URL.Query().Get("artifactType")
	if at != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	h.referrersMiss(ctx, r, rt.Name, rt.Digest, at)
	open, _ := json.Marshal(stowage.MediaTypeOCIIndex)
	l := newJSONList(w, stowage.MediaTypeOCIIndex, `{"schemaVersion":2,"mediaType":`+string(open)+`,"manifests":[`)
	items := make([]any, 0, stowage.ListPageSize)
	return l.finish(h.reg.EachReferrer(ctx, rt.Name, rt.Digest, at, func(page []stowage.Descriptor) error {
		items = items[:0]
		for _, d := range page {
			items = append(items, d)
		}
		return l.values(items)
	}))
}

// ---- listings ----

// maxPage bounds n: a longer page is cut to it, with a Link header to the
// rest (the spec lets a registry return fewer than n), so a page is never
// built larger than this in memory.
const maxPage = 10_000

// page reads n and last; n < 0 means "all".
func page(r *http.Request) (n int, last string, err error) {
	q := r.URL.Query()
	n = -1
	if s := q.Get("n"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 {
			return 0, "", stowage.Errorf(stowage.CodePaginationInvalid, "invalid n=%q: want a non-negative number", trunc(s))
		}
		n = min(v, maxPage)
	}
	return n, q.Get("last"), nil
}

// list answers a listing: without n, the whole list streamed as walk hands
// it over a page at a time; with n, one page read whole (plus one item, to
// know whether a next page exists) and a Link header to the next.
func list(w http.ResponseWriter, r *http.Request, open string,
	fetch func(last string, n int) ([]string, error),
	walk func(last string, fn func(page []string) error) error) error {
	n, last, err := page(r)
	if err != nil {
		return err
	}
	l := newJSONList(w, "application/json", open)
	if n < 0 {
		return l.finish(walk(last, l.strings))
	}
	if n == 0 {
		// Nothing to list, but an unknown repository is still an error.
		if _, err := fetch(last, 1); err != nil {
			return err
		}
		return l.finish(nil)
	}
	items, err := fetch(last, n+1)
	if err != nil {
		return err
	}
	if len(items) > n {
		items = items[:n]
		q := url.Values{"n": {strconv.Itoa(n)}, "last": {items[n-1]}}
		w.Header().Set("Link", fmt.Sprintf(`<%s?%s>; rel="next"`, r.URL.Path, q.Encode()))
	}
	if err := l.strings(items); err != nil {
		return err
	}
	return l.finish(nil)
}

func (h *Handler) tags(ctx context.Context, w http.ResponseWriter, r *http.Request, rt ociroute.Route) error {
	name, _ := json.Marshal(rt.Name)
	return list(w, r, `{"name":`+string(name)+`,"tags":[`,
		func(last string, n int) ([]string, error) { return h.reg.ListTags(ctx, rt.Name, last, n) },
		func(last string, fn func([]string) error) error { return h.reg.EachTag(ctx, rt.Name, last, fn) })
}

func (h *Handler) catalog(ctx context.Context, w http.ResponseWriter, r *http.Request) error {
	return list(w, r, `{"repositories":[`,
		func(last string, n int) ([]string, error) { return h.reg.Catalog(ctx, last, n) },
		func(last string, fn func([]string) error) error { return h.reg.EachRepository(ctx, last, fn) })
}

// trunc shortens what a client sent for a message.
func trunc(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}
