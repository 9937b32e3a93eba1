// Package pullthrough caches images of other registries (as ACR's artifact
// cache): a cache rule maps a local repository prefix to an upstream
// registry path (docker-hub/* → registry-1.docker.io/library/*), and a pull
// of a manifest or blob under that prefix that the registry does not hold
// fetches it from the upstream, streams it to the client while storing it
// through the engine's push path, and keeps it: cached content is ordinary
// content (usage, retention, GC, locks and quotas apply).
//
// Rules live in the metadata database (the cache_rules table, through
// Store); their upstream credentials are sealed there with the registry's
// encryption keyring, like the token signing key (see seal.go).
package pullthrough

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/remote"
)

// DefaultTagTTL is how long a cached tag is served before the upstream is
// asked again whether it moved.
const DefaultTagTTL = time.Hour

// Rule maps local repositories to upstream ones.
type Rule struct {
	Name string `json:"name"`
	// Source is the local repository, or a prefix ending in "/*"
	// ("docker-hub/*" covers docker-hub/alpine and docker-hub/library/x).
	Source string `json:"source"`
	// Upstream is REGISTRY/PATH, ending in "/*" exactly when Source does:
	// the part of the local name under the prefix replaces the "*".
	Upstream string `json:"upstream"`
	// Username for the upstream ("" for anonymous pulls).
	Username string `json:"username,omitempty"`
	// HasPassword says whether a password is stored (sealed); the password
	// itself never leaves the server.
	HasPassword bool `json:"hasPassword"`
	// PlainHTTP talks to the upstream over http://.
	PlainHTTP bool `json:"plainHTTP,omitempty"`
	// TagTTL: a tag is re-checked upstream when it was last checked longer
	// ago than this; digests are kept for good.
	TagTTL  Duration  `json:"tagTTL"`
	Created time.Time `json:"created"`
}

// Duration is a time.Duration written as "1h0m0s" in JSON.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Duration(d).String() + `"`), nil
}

func (d *Duration) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	v, err := time.ParseDuration(s)
	if err != nil {
		return stowage.Errorf(stowage.CodeInvalidParameter, "tagTTL %s: want a duration such as 30m or 1h", s)
	}
	*d = Duration(v)
	return nil
}

// ErrExists: a rule with that name or source exists.
var ErrExists = errors.New("a cache rule with that name or source exists")

// Record is a rule as stored: the password sealed (Secret; nil without one).
type Record struct {
	Rule
	Secret []byte
}

// Store keeps the rules (meta/sqlite and meta/postgres implement it), and
// the data keys that seal their passwords (the databases' key store).
type Store interface {
	// PutCacheRule adds a rule; a rule with the same name or source is
	// refused with stowage.ErrExists.
	PutCacheRule(ctx context.Context, r Record) error
	// CacheRules lists every rule, by name.
	CacheRules(ctx context.Context) ([]Record, error)
	// DeleteCacheRule removes a rule; stowage.ErrNotFound if none.
	DeleteCacheRule(ctx context.Context, name string) error
	PutDataKey(ctx context.Context, k stowage.DataKey) error
	GetDataKey(ctx context.Context, id string) (stowage.DataKey, error)
	// DeleteDataKeys forgets the data keys recorded for obj.
	DeleteDataKeys(ctx context.Context, obj string) error
}

// Validate checks a rule's fields (not whether it overlaps another).
func (r *Rule) Validate() error {
	bad := func(format string, args ...any) error {
		return stowage.Errorf(stowage.CodeInvalidParameter, format, args...)
	}
	if r.Name == "" || len(r.Name) > 64 || strings.Trim(r.Name, "abcdefghijklmnopqrstuvwxyz0123456789-_.") != "" {
		return bad("cache rule name %q: want 1 to 64 lower-case letters, digits, '-', '_' or '.'", r.Name)
	}
	srcWild, upWild := strings.HasSuffix(r.Source, "/*"), strings.HasSuffix(r.Upstream, "/*")
	if srcWild != upWild {
		return bad("source %q and upstream %q: both end in /* (a prefix) or neither does (one repository)", r.Source, r.Upstream)
	}
	if err := stowage.ValidateName(strings.TrimSuffix(r.Source, "/*")); err != nil {
		return bad("source %q: want a repository name or a prefix ending in /*, e.g. docker-hub/*", r.Source)
	}
	up := strings.TrimSuffix(r.Upstream, "/*")
	host, path, _ := strings.Cut(up, "/")
	wholeRegistry := upWild && path == "" && strings.ContainsAny(host, ".:") // ghcr.io/*
	if !wholeRegistry {
		if _, err := remote.ParseImage(up); err != nil || path == "" || strings.ContainsAny(path, ":@") {
			return bad("upstream %q: want REGISTRY/PATH, e.g. registry-1.docker.io/library/* or ghcr.io/org/*", r.Upstream)
		}
	}
	if strings.ContainsAny(host, "/@ ") || host == "" {
		return bad("upstream %q: want REGISTRY/PATH, e.g. registry-1.docker.io/library/* or ghcr.io/org/*", r.Upstream)
	}
	if r.TagTTL == 0 {
		r.TagTTL = Duration(DefaultTagTTL)
	}
	if r.TagTTL < 0 {
		return bad("tagTTL %s: want a positive duration", time.Duration(r.TagTTL))
	}
	return nil
}

// upstreamHost and path of the rule's upstream: "registry-1.docker.io",
// "library" (docker.io is Docker Hub's API host).
func (r *Rule) upstream() (host, path string) {
	up := strings.TrimSuffix(r.Upstream, "/*")
	host, path, _ = strings.Cut(up, "/")
	if host == "docker.io" || host == "index.docker.io" {
		host = "registry-1.docker.io"
	}
	return host, path
}

// Map returns the upstream repository of local repository repo, and
// whether the rule covers it.
func (r *Rule) Map(repo string) (string, bool) {
	_, path := r.upstream()
	if prefix, ok := strings.CutSuffix(r.Source, "*"); ok {
		rest, ok := strings.CutPrefix(repo, prefix)
		if !ok || rest == "" {
			return "", false
		}
		if path == "" { // the whole registry
			host, _ := r.upstream()
			if host == "registry-1.docker.io" && !strings.Contains(rest, "/") {
				return "library/" + rest, true // Docker Hub's official images
			}
			return rest, true
		}
		return path + "/" + rest, true
	}
	if repo != r.Source {
		return "", false
	}
	return path, true
}

// match returns the rule covering repo: the exact one, else the longest
// prefix.
func match(rules []Record, repo string) (*Record, string) {
	var best *Record
	var bestUp string
	for i := range rules {
		up, ok := rules[i].Map(repo)
		if !ok {
			continue
		}
		if best == nil || len(rules[i].Source) > len(best.Source) || !strings.HasSuffix(rules[i].Source, "*") {
			best, bestUp = &rules[i], up
			if !strings.HasSuffix(rules[i].Source, "*") {
				break
			}
		}
	}
	return best, bestUp
}
