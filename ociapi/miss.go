package ociapi

import (
	"context"
	"net/http"

	"github.com/stowage/stowage"
)

// Miss fetches what a request misses from elsewhere (geo-replication's
// read-through: package replication). Each method stores what it fetched
// through the engine, so the handler then serves it as its own.
type Miss interface {
	// FetchManifest fetches repo's manifest ref (and what it references)
	// and returns its digest.
	FetchManifest(ctx context.Context, repo string, ref stowage.Reference) (stowage.Digest, error)
	// FetchBlob fetches repo's blob d.
	FetchBlob(ctx context.Context, repo string, d stowage.Digest) error
	// FetchReferences fetches the blobs and child manifests a manifest
	// being pushed references and repo lacks.
	FetchReferences(ctx context.Context, repo, mediaType string, body []byte) error
	// FetchReferrers fetches the referrers of repo's subject (of
	// artifactType, unless "") that are elsewhere and not in repo, within
	// a bounded time; the handler then lists repo's own.
	FetchReferrers(ctx context.Context, repo string, subject stowage.Digest, artifactType string) error
}

// MissHeader marks a request that must not be served from elsewhere (one
// region asking another: no ping-pong between two that both miss).
const MissHeader = "Stowage-Replication"

// WithMiss makes the handler ask m on a miss.
func (h *Handler) WithMiss(m Miss) *Handler {
	h.miss = m
	return h
}

func (h *Handler) mayFetch(r *http.Request, err error, codes ...stowage.ErrorCode) bool {
	if h.miss == nil || r.Header.Get(MissHeader) != "" {
		return false
	}
	code := stowage.ErrorCodeOf(err)
	for _, c := range codes {
		if code == c {
			return true
		}
	}
	return false
}

// manifestMiss answers a manifest GET/HEAD that failed with err: from
// elsewhere if it was a miss and the manifest can be fetched, else err.
func (h *Handler) manifestMiss(ctx context.Context, r *http.Request, repo string, ref stowage.Reference, err error) (stowage.ManifestRecord, []byte, error) {
	if !h.mayFetch(r, err, stowage.CodeManifestUnknown, stowage.CodeNameUnknown) {
		return stowage.ManifestRecord{}, nil, err
	}
	d, ferr := h.miss.FetchManifest(ctx, repo, ref)
	if ferr != nil {
		h.log.Debug("read-through found nothing", "repo", repo, "ref", ref.String(), "err", ferr)
		return stowage.ManifestRecord{}, nil, err
	}
	return h.reg.GetManifest(ctx, repo, stowage.Reference{Digest: d})
}

// blobMiss is manifestMiss for a blob GET/HEAD.
func (h *Handler) blobMiss(ctx context.Context, r *http.Request, repo string, d stowage.Digest, err error) (stowage.BlobRecord, error) {
	if !h.mayFetch(r, err, stowage.CodeBlobUnknown, stowage.CodeNameUnknown) {
		return stowage.BlobRecord{}, err
	}
	if ferr := h.miss.FetchBlob(ctx, repo, d); ferr != nil {
		h.log.Debug("read-through found nothing", "repo", repo, "digest", d, "err", ferr)
		return stowage.BlobRecord{}, err
	}
	return h.reg.StatBlob(ctx, repo, d)
}

// putMiss retries a manifest PUT that failed with MANIFEST_BLOB_UNKNOWN
// after fetching what it references from elsewhere.
func (h *Handler) putMiss(ctx context.Context, r *http.Request, repo string, ref stowage.Reference, body []byte, tags []string, err error) (stowage.PutManifestResult, error) {
	if !h.mayFetch(r, err, stowage.CodeManifestBlobUnknown) {
		return stowage.PutManifestResult{}, err
	}
	ct := r.Header.Get("Content-Type")
	if ferr := h.miss.FetchReferences(ctx, repo, ct, body); ferr != nil {
		return stowage.PutManifestResult{}, err
	}
	return h.reg.PutManifest(ctx, repo, ref, ct, body, tags)
}

// referrersMiss brings the referrers of a subject that are elsewhere and
// not here yet, before a referrers request lists them. A referrers answer
// is never an error for want of them, so it runs on every request (not
// from another region's), and what it cannot fetch is only logged.
func (h *Handler) referrersMiss(ctx context.Context, r *http.Request, repo string, subject stowage.Digest, artifactType string) {
	if h.miss == nil || r.Header.Get(MissHeader) != "" {
		return
	}
	if err := h.miss.FetchReferrers(ctx, repo, subject, artifactType); err != nil {
		h.log.Debug("read-through of referrers incomplete", "repo", repo, "subject", subject, "err", err)
	}
}
