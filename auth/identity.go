package auth

import (
	"context"
	"net/http"
	"slices"

	"github.com/stowage/stowage"
)

// Kind says what kind of caller an identity is.
type Kind int

const (
	KindAnonymous Kind = iota // no credentials
	KindUser                  // a user (name and password)
	KindToken                 // a repository-scoped token
)

func (k Kind) String() string {
	switch k {
	case KindUser:
		return "user"
	case KindToken:
		return "token"
	}
	return "anonymous"
}

// Identity is who made a request and what it may do. The zero value is an
// anonymous caller who may do nothing.
//
// Its rights are those of the user or token (an admin's: everything; a
// token's or other user's: the rules of its scope map), plus content/read
// and metadata/read on every repository while anonymous pull is on. A
// request authenticated with a bearer token is further limited to the
// access listed in the token's claims: what the caller holds now and what
// the token grants, never more.
type Identity struct {
	Kind Kind
	Name string // "" for anonymous callers
	// Method is how the caller authenticated: "basic", "bearer" or "" (anonymous).
	Method string

	admin    bool
	rules    []Rule
	anonPull bool
	bearer   bool
	access   []ResourceActions // the claims of a bearer token
	stamp    string            // the credential used (for refresh tokens)
}

// IsAnonymous reports whether the caller gave no credentials.
func (id Identity) IsAnonymous() bool { return id.Kind == KindAnonymous }

// String names the identity for messages and logs: "user alice", "token ci", "anonymous".
func (id Identity) String() string { return describe(id.Kind, id.Name) }

// LimitName is the name request limits use for this caller: the user or
// token name, "" for every anonymous caller (they share one identity).
func (id Identity) LimitName() string { return id.Name }

// IsAdmin reports whether the caller may do everything, registry-wide
// operations included. Only users can be admins; a bearer token must also
// carry the registry:*:* claim, which is granted to admins who ask for it.
func (id Identity) IsAdmin() bool {
	return id.admin && (!id.bearer || id.claimsAllowAll())
}

// Can reports whether the caller may do action on repository repo.
func (id Identity) Can(repo string, action Action) bool {
	if !id.holds(repo, action) {
		return false
	}
	return !id.bearer || id.claimsAllow(repo, action)
}

// CanList reports whether repo appears in the caller's listings (the
// catalog): it needs metadata/read on it. A bearer token that lists the
// catalog carries registry:catalog:*, not one claim per repository, so for
// listings the caller's own rights decide.
func (id Identity) CanList(repo string) bool {
	if !id.holds(repo, MetadataRead) {
		return false
	}
	return !id.bearer || id.claimsCatalog() || id.claimsAllow(repo, MetadataRead)
}

// CanAll reports whether the caller may do action on every repository
// (registry-wide reads such as the usage of the whole registry).
func (id Identity) CanAll(action Action) bool {
	if !id.holdsAll(action) {
		return false
	}
	return !id.bearer || id.claimsAllowAll() || action == MetricsRead && id.claimsMetrics()
}

// claimsMetrics reports whether a bearer token carries registry:metrics:read.
func (id Identity) claimsMetrics() bool {
	for _, ra := range id.access {
		if ra.Type == "registry" && ra.Name == "metrics" && slices.Contains(ra.Actions, "read") {
			return true
		}
	}
	return false
}

// CanCatalog reports whether the caller may list the catalog: any
// authenticated caller (the listing is then filtered with CanList); with a
// bearer token, one that carries registry:catalog:*.
func (id Identity) CanCatalog() bool {
	if id.Kind == KindAnonymous {
		return false
	}
	return !id.bearer || id.claimsCatalog() || id.claimsAllowAll()
}

// holds reports the caller's own right, ignoring token claims.
func (id Identity) holds(repo string, action Action) bool {
	if id.admin {
		return true
	}
	if id.anonPull && (action == ContentRead || action == MetadataRead) {
		return true
	}
	for _, r := range id.rules {
		if r.Matches(repo) && slices.Contains(r.Actions, action) {
			return true
		}
	}
	return false
}

// holdsSome reports whether the caller holds action on at least one
// repository pattern (its own rights, ignoring token claims).
func (id Identity) holdsSome(action Action) bool {
	if id.admin {
		return true
	}
	if id.anonPull && (action == ContentRead || action == MetadataRead) {
		return true
	}
	for _, r := range id.rules {
		if slices.Contains(r.Actions, action) {
			return true
		}
	}
	return false
}

func (id Identity) holdsAll(action Action) bool {
	if id.admin {
		return true
	}
	if id.anonPull && (action == ContentRead || action == MetadataRead) {
		return true
	}
	for _, r := range id.rules {
		if r.Repository == AnyRepository && slices.Contains(r.Actions, action) {
			return true
		}
	}
	return false
}

func (id Identity) claimsAllow(repo string, action Action) bool {
	for _, ra := range id.access {
		if ra.Type == "repository" && ra.Name == repo {
			for _, a := range ra.Actions {
				if slices.Contains(scopeActionMeans(a), action) {
					return true
				}
			}
		}
	}
	return id.claimsAllowAll()
}

func (id Identity) claimsAllowAll() bool {
	for _, ra := range id.access {
		if ra.Type == "registry" && ra.Name == "*" && slices.Contains(ra.Actions, "*") {
			return true
		}
	}
	return false
}

func (id Identity) claimsCatalog() bool {
	for _, ra := range id.access {
		if ra.Type == "registry" && ra.Name == "catalog" && slices.Contains(ra.Actions, "*") {
			return true
		}
	}
	return false
}

// identity resolves a user or token of the state into an Identity (its
// current rights).
func (s *state) identity(kind Kind, name string) Identity {
	id := Identity{Kind: kind, Name: name, anonPull: s.AnonymousPull}
	switch kind {
	case KindUser:
		if u, ok := s.Users[name]; ok {
			id.admin = u.Admin
			id.rules = s.rulesOf(u.ScopeMap)
		}
	case KindToken:
		if t, ok := s.Tokens[name]; ok {
			id.rules = s.rulesOf(t.ScopeMap)
		}
	}
	return id
}

type ctxKey struct{}

// NewContext returns ctx carrying the identity, a listing filter
// (stowage.WithListFilter) so the catalog and the quota report show only
// the repositories the identity may list, and a delete filter
// (stowage.WithDeleteFilter) so a purge touches only repositories it may
// delete from.
func NewContext(ctx context.Context, id Identity) context.Context {
	ctx = context.WithValue(ctx, ctxKey{}, id)
	if !id.IsAdmin() {
		ctx = stowage.WithListFilter(ctx, id.CanList)
		ctx = stowage.WithDeleteFilter(ctx, func(repo string) bool { return id.Can(repo, ContentDelete) }, id.String())
	}
	return ctx
}

// FromContext returns the identity the middleware put into ctx.
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(ctxKey{}).(Identity)
	return id, ok
}

// LimitName names the caller of r for request limits (limits.Middleware):
// the user or token name of the identity the middleware put into the
// context, "" for anonymous callers (who share one identity). Requests no
// auth middleware handled (the token endpoint, where the credentials are
// yet to be checked) that carry credentials are named by client address,
// "ip:<address>", so that nobody can use up another's limit by claiming
// its name.
func (a *Authority) LimitName(r *http.Request) string {
	if id, ok := FromContext(r.Context()); ok {
		return id.Name
	}
	if r.Header.Get("Authorization") != "" || r.Method == http.MethodPost {
		return "ip:" + a.ClientIP(r)
	}
	return ""
}
