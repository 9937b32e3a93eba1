package metrics

import (
	"strings"

	"github.com/stowage/stowage/internal/ociroute"
)

// apiResources are the first segments of /api/v1/ paths that get their own
// route label; any other is "/api/v1/{other}" (a client may send anything,
// and each label value is a series kept for the life of the process). A new
// management endpoint adds its name here.
var apiResources = map[string]bool{
	"auth": true, "usage": true, "repositories": true, "images": true, "tags": true, "storage": true,
	"scrub": true, "quotas": true, "locks": true, "gc": true, "events": true, "keys": true,
	"retention": true, "purge": true, "purge-policies": true, "soft-delete": true, "recycle-bin": true,
	"webhooks": true, "replication": true,
}

// Route is the route template of a request path, for labels: the OCI
// endpoint's pattern for /v2/ (ociroute), the resource for /api/v1/ and the
// ACR API, fixed names for the rest, never the raw path.
func Route(path string) string {
	switch {
	case path == "/v2" || strings.HasPrefix(path, "/v2/"):
		rt, err := ociroute.ParseRoute(path)
		if err != nil {
			return "/v2/{unknown}"
		}
		return rt.Kind.Template()
	case strings.HasPrefix(path, "/api/v1/"):
		head, rest, more := strings.Cut(path[len("/api/v1/"):], "/")
		if !apiResources[head] {
			return "/api/v1/{other}"
		}
		if more && rest != "" {
			return "/api/v1/" + head + "/{rest}"
		}
		return "/api/v1/" + head
	case strings.HasPrefix(path, "/acr/v1/"):
		return acrRoute(path[len("/acr/v1/"):])
	case strings.HasPrefix(path, "/ui/") || path == "/ui":
		return "/ui/"
	}
	switch path {
	case "/metrics", "/healthz", "/readyz", "/oauth2/token", "/":
		return path
	}
	return "{other}"
}

// acrRoute: _catalog, <name>, <name>/_tags[/<tag>], <name>/_manifests[/<digest>].
func acrRoute(rest string) string {
	if rest == "_catalog" {
		return "/acr/v1/_catalog"
	}
	for _, k := range []string{"/_tags", "/_manifests"} {
		if i := strings.LastIndex(rest, k); i > 0 && (len(rest) == i+len(k) || rest[i+len(k)] == '/') {
			if len(rest) > i+len(k)+1 {
				return "/acr/v1/{name}" + k + "/{reference}"
			}
			return "/acr/v1/{name}" + k
		}
	}
	if rest == "" {
		return "/acr/v1/{other}"
	}
	return "/acr/v1/{name}"
}
