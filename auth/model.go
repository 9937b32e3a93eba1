package auth

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/stowage/stowage"
)

// Action is one thing a caller may do to a repository, with ACR's names.
type Action string

// The actions of a scope map rule.
const (
	ContentRead   Action = "content/read"   // pull: manifests and blobs
	ContentWrite  Action = "content/write"  // push: uploads, mounts, manifests, tags
	ContentDelete Action = "content/delete" // delete manifests, tags, blobs, repositories
	MetadataRead  Action = "metadata/read"  // list tags, referrers, the catalog, read locks and usage
	MetadataWrite Action = "metadata/write" // change locks (changeable attributes)
)

// MetricsRead lets a caller scrape /metrics (Prometheus) and nothing else.
// It is registry-wide, so it is valid only in a rule for every repository
// ("*"), and it is not one of the repository actions (Actions): "*" in a
// scope does not mean it, and it gives no right on any repository.
const MetricsRead Action = "metrics/read"

// ReplicationApply lets a caller apply changes from another region
// (POST /api/v1/replication/apply, docs/replication.md): the least
// privilege a geo-replication peer needs with content/read and
// content/write on "*". Registry-wide like MetricsRead. It can apply any
// replicated change, users and tokens included: give it only to peers.
const ReplicationApply Action = "replication/apply"

// Actions lists every repository action, in a fixed order.
var Actions = []Action{ContentRead, ContentWrite, ContentDelete, MetadataRead, MetadataWrite}

func (a Action) valid() bool { return slices.Contains(Actions, a) }

// AnyRepository is the rule pattern that matches every repository.
const AnyRepository = "*"

// Rule grants actions on the repositories its pattern matches: an exact
// name ("team-a/app"), a prefix ending in "/*" that matches every
// repository below it ("team-a/*" matches "team-a/app" and
// "team-a/tools/x", not "team-a"), or "*" for all.
type Rule struct {
	Repository string   `json:"repository"`
	Actions    []Action `json:"actions"`
}

// Matches reports whether the rule's pattern matches the repository.
func (r Rule) Matches(repo string) bool { return patternMatches(r.Repository, repo) }

func patternMatches(pattern, repo string) bool {
	if pattern == AnyRepository {
		return true
	}
	if prefix, ok := strings.CutSuffix(pattern, "/*"); ok {
		return len(repo) > len(prefix)+1 && strings.HasPrefix(repo, prefix) && repo[len(prefix)] == '/'
	}
	return pattern == repo
}

func validatePattern(p string) error {
	if p == AnyRepository {
		return nil
	}
	name := strings.TrimSuffix(p, "/*")
	if err := stowage.ValidateName(name); err != nil {
		return stowage.Errorf(stowage.CodeInvalidParameter,
			"repository pattern %q: want a repository name (team-a/app), a prefix ending in /* (team-a/*) or * for all", trunc(p))
	}
	return nil
}

// ScopeMap is a named list of rules (as in Azure Container Registry).
type ScopeMap struct {
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	Rules       []Rule    `json:"rules"`
	BuiltIn     bool      `json:"builtIn,omitempty"` // a system scope map: cannot be changed or deleted
	Created     time.Time `json:"created"`
	Updated     time.Time `json:"updated"`
}

// The built-in scope maps, with ACR's names.
var builtInScopeMaps = []ScopeMap{
	{Name: "_repositories_pull", Description: "Can pull any repository of the registry", BuiltIn: true,
		Rules: []Rule{{AnyRepository, []Action{ContentRead, MetadataRead}}}},
	{Name: "_repositories_push", Description: "Can push to any repository of the registry", BuiltIn: true,
		Rules: []Rule{{AnyRepository, []Action{ContentRead, ContentWrite, MetadataRead}}}},
	{Name: "_repositories_admin", Description: "Can perform all read, write and delete operations on the registry's repositories", BuiltIn: true,
		Rules: []Rule{{AnyRepository, []Action{ContentRead, ContentWrite, ContentDelete, MetadataRead, MetadataWrite}}}},
}

// Status is a token's status.
type Status string

const (
	Enabled  Status = "enabled"
	Disabled Status = "disabled"
)

// storedUser is a person or machine with a password; an admin may do everything.
// A user who is not an admin has the rights of its scope map, if any.
type storedUser struct {
	Name         string    `json:"name"`
	PasswordHash string    `json:"passwordHash,omitempty"` // bcrypt
	Stamp        string    `json:"stamp,omitempty"`        // changes with the password: invalidates refresh tokens and cached logins
	Admin        bool      `json:"admin"`
	Disabled     bool      `json:"disabled"`
	ScopeMap     string    `json:"scopeMap,omitempty"`
	Created      time.Time `json:"created"`
	Updated      time.Time `json:"updated"`
}

// tokenPassword is one of a token's two passwords.
type tokenPassword struct {
	Hash    string     `json:"hash,omitempty"` // bcrypt
	Stamp   string     `json:"stamp,omitempty"`
	Created time.Time  `json:"created"`
	Expiry  *time.Time `json:"expiry,omitempty"`
}

func (p *tokenPassword) expired(now time.Time) bool {
	return p.Expiry != nil && !now.Before(*p.Expiry)
}

// storedToken is a repository-scoped access token (as in ACR): a name, a scope
// map, a status, an optional expiry, and up to two passwords so that one
// can be rotated while the other is in use.
type storedToken struct {
	Name      string            `json:"name"`
	ScopeMap  string            `json:"scopeMap"`
	Status    Status            `json:"status"`
	Expiry    *time.Time        `json:"expiry,omitempty"`
	Passwords [2]*tokenPassword `json:"passwords"`
	Created   time.Time         `json:"created"`
	Updated   time.Time         `json:"updated"`
}

func (t *storedToken) expired(now time.Time) bool { return t.Expiry != nil && !now.Before(*t.Expiry) }

// state is everything the authority knows, stored as one JSON document.
// Snapshots are immutable once published: changes work on a fresh copy.
type state struct {
	Version       int64                   `json:"version"`
	AnonymousPull bool                    `json:"anonymousPull"`
	Users         map[string]*storedUser  `json:"users"`
	ScopeMaps     map[string]*ScopeMap    `json:"scopeMaps"`
	Tokens        map[string]*storedToken `json:"tokens"`
}

func newState() *state {
	return &state{Users: map[string]*storedUser{}, ScopeMaps: map[string]*ScopeMap{}, Tokens: map[string]*storedToken{}}
}

func (s *state) normalize() {
	if s.Users == nil {
		s.Users = map[string]*storedUser{}
	}
	if s.ScopeMaps == nil {
		s.ScopeMaps = map[string]*ScopeMap{}
	}
	if s.Tokens == nil {
		s.Tokens = map[string]*storedToken{}
	}
}

// scopeMap returns a scope map by name, built-in ones included.
func (s *state) scopeMap(name string) (*ScopeMap, bool) {
	for i := range builtInScopeMaps {
		if builtInScopeMaps[i].Name == name {
			return &builtInScopeMaps[i], true
		}
	}
	m, ok := s.ScopeMaps[name]
	return m, ok
}

func (s *state) rulesOf(scopeMap string) []Rule {
	if scopeMap == "" {
		return nil
	}
	if m, ok := s.scopeMap(scopeMap); ok {
		return m.Rules
	}
	return nil
}

func (s *state) enabledAdmins() int {
	n := 0
	for _, u := range s.Users {
		if u.Admin && !u.Disabled {
			n++
		}
	}
	return n
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// validateName checks a user, token or scope map name: 1 to 64 letters,
// digits, '.', '_' and '-', starting with a letter or digit (no ':', which
// separates name and password in basic authentication).
func validateName(kind, name string) error {
	ok := name != "" && len(name) <= 64 && isAlnum(name[0])
	for i := 0; ok && i < len(name); i++ {
		c := name[i]
		ok = isAlnum(c) || c == '.' || c == '_' || c == '-'
	}
	if !ok {
		return stowage.Errorf(stowage.CodeInvalidParameter,
			"%s name %q: want 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", kind, trunc(name))
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func validateRules(rules []Rule) ([]Rule, error) {
	if len(rules) == 0 {
		return nil, stowage.Errorf(stowage.CodeInvalidParameter,
			`a scope map needs at least one rule, e.g. {"repository": "team-a/*", "actions": ["content/read", "metadata/read"]}`)
	}
	if len(rules) > 500 {
		return nil, stowage.Errorf(stowage.CodeInvalidParameter, "a scope map holds at most 500 rules; use prefixes (team-a/*) to cover more repositories")
	}
	out := make([]Rule, 0, len(rules))
	for _, r := range rules {
		if err := validatePattern(r.Repository); err != nil {
			return nil, err
		}
		if len(r.Actions) == 0 {
			return nil, stowage.Errorf(stowage.CodeInvalidParameter, "rule for %q has no actions: want some of %s", r.Repository, actionList())
		}
		var acts []Action
		for _, a := range r.Actions {
			if a == MetricsRead || a == ReplicationApply {
				if r.Repository != AnyRepository {
					return nil, stowage.Errorf(stowage.CodeInvalidParameter,
						`rule for %q: %s is registry-wide: put it in a rule for every repository, {"repository": "*", "actions": ["%s"]}`, trunc(r.Repository), a, a)
				}
				if !slices.Contains(acts, a) {
					acts = append(acts, a)
				}
				continue
			}
			if !a.valid() {
				return nil, stowage.Errorf(stowage.CodeInvalidParameter, "rule for %q: unknown action %q: want some of %s", r.Repository, trunc(string(a)), actionList())
			}
			if !slices.Contains(acts, a) {
				acts = append(acts, a)
			}
		}
		out = append(out, Rule{r.Repository, acts})
	}
	return out, nil
}

func actionList() string {
	s := make([]string, len(Actions))
	for i, a := range Actions {
		s[i] = string(a)
	}
	return strings.Join(s, ", ") + " (and metrics/read, replication/apply, in a rule for *)"
}

func trunc(s string) string {
	if len(s) > 100 {
		return s[:100] + "…"
	}
	return s
}

// describe names an identity for messages and logs.
func describe(kind Kind, name string) string {
	switch kind {
	case KindUser:
		return fmt.Sprintf("user %s", name)
	case KindToken:
		return fmt.Sprintf("token %s", name)
	}
	return "anonymous"
}
