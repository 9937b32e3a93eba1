package ociapi

import (
	"context"
	"net/http"

	"github.com/stowage/stowage"
)

// Filler answers manifest and blob GETs and HEADs the registry cannot
// answer from what it holds, from elsewhere (package pullthrough: cache
// rules). Each method reports false, with no error, when the engine should
// answer the request as usual (nothing to fill, or filled into storage).
type Filler interface {
	ServeManifest(ctx context.Context, w http.ResponseWriter, r *http.Request, repo string, ref stowage.Reference) (bool, error)
	ServeBlob(ctx context.Context, w http.ResponseWriter, r *http.Request, repo string, d stowage.Digest) (bool, error)
}

// WithFiller makes GET and HEAD of manifests and blobs ask f first.
func (h *Handler) WithFiller(f Filler) *Handler {
	h.fill = f
	return h
}
