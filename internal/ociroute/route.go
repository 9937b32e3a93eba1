// Package ociroute parses the request paths of the OCI Distribution API
// (/v2/): which endpoint, which repository, reference, digest or upload. The
// API (ociapi) serves them; access control (auth) decides on them without
// depending on the handler.
package ociroute

import (
	"strings"

	"github.com/stowage/stowage"
)

// Kind names an endpoint of the distribution API.
type Kind int

const (
	KindBase        Kind = iota + 1 // /v2/
	KindCatalog                     // /v2/_catalog
	KindTags                        // /v2/<name>/tags/list
	KindManifest                    // /v2/<name>/manifests/<reference>
	KindBlob                        // /v2/<name>/blobs/<digest>
	KindUploadStart                 // /v2/<name>/blobs/uploads/
	KindUpload                      // /v2/<name>/blobs/uploads/<id>
	KindReferrers                   // /v2/<name>/referrers/<digest>
)

// Route is a parsed request path.
type Route struct {
	Kind     Kind
	Name     string            // repository
	Ref      stowage.Reference // manifests
	Digest   stowage.Digest    // blobs, referrers
	UploadID string            // uploads
}

func noRoute(path string) error {
	return stowage.Errorf(stowage.CodeNameUnknown, "no API endpoint at %q", trunc(path))
}

func trunc(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

// ParseRoute parses a URL path under /v2/. Repository names contain slashes,
// so the endpoint is recognized from the tail of the path, and what remains
// before it is the name.
func ParseRoute(path string) (Route, error) {
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		if path == "/v2" {
			return Route{Kind: KindBase}, nil
		}
		return Route{}, noRoute(path)
	}
	switch rest {
	case "":
		return Route{Kind: KindBase}, nil
	case "_catalog":
		return Route{Kind: KindCatalog}, nil
	}
	var rt Route
	var name string
	switch {
	case strings.HasSuffix(rest, "/tags/list"):
		rt.Kind, name = KindTags, strings.TrimSuffix(rest, "/tags/list")
	case strings.HasSuffix(rest, "/blobs/uploads/") || strings.HasSuffix(rest, "/blobs/uploads"):
		rt.Kind = KindUploadStart
		name = strings.TrimSuffix(strings.TrimSuffix(rest, "/"), "/blobs/uploads")
	default:
		i := strings.LastIndexByte(rest, '/')
		if i <= 0 {
			return Route{}, noRoute(path)
		}
		head, last := rest[:i], rest[i+1:]
		j := strings.LastIndexByte(head, '/')
		if j <= 0 {
			return Route{}, noRoute(path)
		}
		name, endpoint := head[:j], head[j+1:]
		var err error
		switch endpoint {
		case "manifests":
			rt.Kind = KindManifest
			rt.Ref, err = stowage.ParseReference(last)
		case "blobs":
			rt.Kind = KindBlob
			rt.Digest, err = stowage.ParseDigest(last)
		case "referrers":
			rt.Kind = KindReferrers
			rt.Digest, err = stowage.ParseDigest(last)
		case "uploads":
			n, ok := strings.CutSuffix(name, "/blobs")
			if !ok {
				return Route{}, noRoute(path)
			}
			rt.Kind, name = KindUpload, n
			if !validUploadID(last) {
				err = stowage.Errorf(stowage.CodeBlobUploadUnknown, "upload %q is unknown", trunc(last))
			}
			rt.UploadID = last
		default:
			return Route{}, noRoute(path)
		}
		if err := stowage.ValidateName(name); err != nil {
			return Route{}, err
		}
		if err != nil {
			return Route{}, err
		}
		rt.Name = name
		return rt, nil
	}
	if err := stowage.ValidateName(name); err != nil {
		return Route{}, err
	}
	rt.Name = name
	return rt, nil
}

func validUploadID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
