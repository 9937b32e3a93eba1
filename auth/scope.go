package auth

import (
	"slices"
	"strings"

	"github.com/stowage/stowage"
)

// ResourceActions is one entry of a token's "access" claim, as in the
// Docker token specification: {"type": "repository", "name": "team-a/app",
// "actions": ["pull", "push"]}.
type ResourceActions struct {
	Type    string   `json:"type"`
	Class   string   `json:"class,omitempty"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// Scope is one parsed scope: resourcetype[(class)]:resourcename:action[,action…].
type Scope struct {
	Type    string // "repository", "registry"
	Class   string // from "repository(plugin)"; usually empty
	Name    string // a repository name, or "catalog" for registry:catalog:*
	Actions []string
}

// String formats the scope back into its wire form.
func (s Scope) String() string {
	t := s.Type
	if s.Class != "" {
		t += "(" + s.Class + ")"
	}
	return t + ":" + s.Name + ":" + strings.Join(s.Actions, ",")
}

const maxScopeLen = 1024

// ParseScope parses one scope. The resource name may itself hold colons
// (a registry host with a port: repository:localhost:5000/x:pull), so the
// type ends at the first colon and the actions start after the last one.
func ParseScope(s string) (Scope, error) {
	bad := func(why string) (Scope, error) {
		return Scope{}, stowage.Errorf(stowage.CodeInvalidParameter,
			"scope %q: %s; want e.g. repository:team-a/app:pull,push or registry:catalog:*", trunc(s), why)
	}
	if len(s) > maxScopeLen {
		return bad("too long")
	}
	i, j := strings.IndexByte(s, ':'), strings.LastIndexByte(s, ':')
	if i < 0 || i == j {
		return bad("want type:name:actions")
	}
	typ, name, acts := s[:i], s[i+1:j], s[j+1:]
	var sc Scope
	if k := strings.IndexByte(typ, '('); k >= 0 {
		if !strings.HasSuffix(typ, ")") || k == 0 {
			return bad("bad resource class")
		}
		sc.Class = typ[k+1 : len(typ)-1]
		typ = typ[:k]
		if !isToken(sc.Class, false) {
			return bad("bad resource class")
		}
	}
	if !isToken(typ, false) {
		return bad("bad resource type")
	}
	sc.Type = typ
	if name == "" || strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r >= 0x7f || r == '"' || r == '\\' }) {
		return bad("bad resource name")
	}
	sc.Name = name
	if acts == "" {
		return bad("no actions")
	}
	for _, a := range strings.Split(acts, ",") {
		if !isToken(a, true) {
			return bad("bad action")
		}
		if !slices.Contains(sc.Actions, a) {
			sc.Actions = append(sc.Actions, a)
		}
	}
	return sc, nil
}

// isToken reports whether s is a non-empty run of the characters a scope
// component may hold (actions may also be "*" and ACR's "content/read").
func isToken(s string, action bool) bool {
	if s == "" {
		return false
	}
	if action && s == "*" {
		return true
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isAlnum(c) || c == '_' || c == '-' || c == '.' || action && c == '/') {
			return false
		}
	}
	return true
}

// ParseScopes parses the scope parameters of a token request: each may
// hold several scopes separated by spaces (OAuth2), and the parameter may
// repeat (Docker). Scopes that do not parse are returned as errors; the
// token endpoint ignores them, as it ignores access it does not grant.
func ParseScopes(params []string) ([]Scope, []error) {
	var out []Scope
	var errs []error
	for _, p := range params {
		for _, f := range strings.Fields(p) {
			sc, err := ParseScope(f)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			out = append(out, sc)
			if len(out) >= 100 {
				return out, errs
			}
		}
	}
	return out, errs
}

// scopeActionMeans maps an action of a scope or claim to the scope map
// actions it stands for: Docker's pull, push and delete, ACR's
// metadata_read and metadata_write, "*" for all, and the scope map
// actions themselves.
func scopeActionMeans(a string) []Action {
	switch a {
	case "pull":
		return []Action{ContentRead, MetadataRead}
	case "push":
		return []Action{ContentWrite, ContentRead}
	case "delete":
		return []Action{ContentDelete}
	case "metadata_read":
		return []Action{MetadataRead}
	case "metadata_write":
		return []Action{MetadataWrite}
	case "*":
		return Actions
	}
	if Action(a).valid() {
		return []Action{Action(a)}
	}
	return nil
}

// grantedBy says which rights earn a scope action: pull needs content/read
// or metadata/read (tags/list), push needs content/write, "*" needs every
// action, the others their own.
func grantable(id Identity, repo, a string) bool {
	switch a {
	case "pull":
		return id.holds(repo, ContentRead) || id.holds(repo, MetadataRead)
	case "push":
		return id.holds(repo, ContentWrite)
	case "*":
		for _, x := range Actions {
			if !id.holds(repo, x) {
				return false
			}
		}
		return true
	}
	means := scopeActionMeans(a)
	if len(means) != 1 {
		return false
	}
	return id.holds(repo, means[0])
}

// Grant returns the access a token for id may carry: the intersection of
// what was asked and what id may do. Asking for more is not an error; it
// is just not granted.
func Grant(id Identity, asked []Scope) []ResourceActions {
	var out []ResourceActions
	add := func(typ, class, name string, acts []string) {
		for i := range out {
			if out[i].Type == typ && out[i].Class == class && out[i].Name == name {
				for _, a := range acts {
					if !slices.Contains(out[i].Actions, a) {
						out[i].Actions = append(out[i].Actions, a)
					}
				}
				return
			}
		}
		out = append(out, ResourceActions{Type: typ, Class: class, Name: name, Actions: acts})
	}
	for _, sc := range asked {
		switch sc.Type {
		case "repository":
			if stowage.ValidateName(sc.Name) != nil {
				continue
			}
			var acts []string
			for _, a := range sc.Actions {
				if a == "*" && !grantable(id, sc.Name, "*") {
					// Not everything: grant what Docker's names allow.
					for _, d := range []string{"pull", "push", "delete"} {
						if grantable(id, sc.Name, d) && !slices.Contains(acts, d) {
							acts = append(acts, d)
						}
					}
					continue
				}
				if grantable(id, sc.Name, a) && !slices.Contains(acts, a) {
					acts = append(acts, a)
				}
			}
			if len(acts) > 0 {
				add(sc.Type, sc.Class, sc.Name, acts)
			}
		case "registry":
			if sc.Name == "metrics" && (slices.Contains(sc.Actions, "read") || slices.Contains(sc.Actions, "*")) {
				if id.holdsAll(MetricsRead) {
					add("registry", "", "metrics", []string{"read"})
				}
				continue
			}
			if !slices.Contains(sc.Actions, "*") {
				continue
			}
			switch {
			case sc.Name == "catalog" && id.Kind != KindAnonymous:
				add("registry", "", "catalog", []string{"*"})
			case sc.Name == "*" && id.admin:
				add("registry", "", "*", []string{"*"})
			}
		}
	}
	return out
}
