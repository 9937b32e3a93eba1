package mgmt

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/pullthrough"
)

// CacheRules manages pull-through cache rules (package pullthrough's
// *pullthrough.Service).
type CacheRules interface {
	CreateRule(ctx context.Context, r pullthrough.Rule, password string) (pullthrough.Rule, error)
	Rules(ctx context.Context) ([]pullthrough.Rule, error)
	Rule(ctx context.Context, name string) (pullthrough.Rule, error)
	DeleteRule(ctx context.Context, name string) error
}

// WithCacheRules enables /api/v1/cache-rules.
func (h *Handler) WithCacheRules(c CacheRules) *Handler {
	h.cache = c
	return h
}

// cacheRuleRequest is the body of POST /api/v1/cache-rules: a rule and
// the upstream's password (sealed at rest, never shown again).
type cacheRuleRequest struct {
	pullthrough.Rule
	Password string `json:"password,omitempty"`
}

// serveCacheRules serves:
//
//	GET    /api/v1/cache-rules         {"rules": [...]}
//	POST   /api/v1/cache-rules         create (201, the rule)
//	GET    /api/v1/cache-rules/NAME    one rule
//	DELETE /api/v1/cache-rules/NAME    204
func (h *Handler) serveCacheRules(ctx context.Context, w http.ResponseWriter, r *http.Request, name string) error {
	if h.cache == nil {
		return stowage.Errorf(stowage.CodeUnsupported, "pull-through cache rules are not enabled on this management API")
	}
	switch {
	case name == "" && r.Method == http.MethodGet:
		rules, err := h.cache.Rules(ctx)
		if err != nil {
			return err
		}
		if rules == nil {
			rules = []pullthrough.Rule{}
		}
		return writeJSON(w, map[string]any{"rules": rules})
	case name == "" && r.Method == http.MethodPost:
		var req cacheRuleRequest
		if err := decodeBody(r, &req); err != nil {
			return err
		}
		rule, err := h.cache.CreateRule(ctx, req.Rule, req.Password)
		if err != nil {
			return err
		}
		b, err := json.MarshalIndent(rule, "", "  ")
		if err != nil {
			return err
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		w.Write(append(b, '\n'))
		return nil
	case name != "" && r.Method == http.MethodGet:
		rule, err := h.cache.Rule(ctx, name)
		if err != nil {
			return err
		}
		return writeJSON(w, rule)
	case name != "" && r.Method == http.MethodDelete:
		if err := h.cache.DeleteRule(ctx, name); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return notFound(r)
}
