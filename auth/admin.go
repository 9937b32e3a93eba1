package auth

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/internal/httperr"
)

// AdminPrefix is where Handler is mounted.
const AdminPrefix = "/api/v1/auth/"

// Handler serves the access control management API under /api/v1/auth/
// (admins only, except whoami). JSON in and out; errors as OCI error
// bodies. Every operation is logged as an audit line.
//
//	GET    whoami                            the caller (any authenticated caller)
//	GET    users                             list users
//	POST   users                             {"name","password","admin","scopeMap"} → 201
//	GET    users/<name>
//	PATCH  users/<name>                      {"admin"?,"disabled"?,"scopeMap"?}
//	DELETE users/<name>
//	PUT    users/<name>/password             {"password"}
//	GET    scope-maps                        built-in ones first
//	GET    scope-maps/<name>
//	PUT    scope-maps/<name>                 {"description","rules":[{"repository","actions"}]} → 201 created / 200 replaced
//	DELETE scope-maps/<name>                 refused while tokens or users use it
//	GET    tokens                            (never passwords or hashes)
//	POST   tokens                            {"name","scopeMap","status"?,"expiry"?} → 201 with both passwords, shown once
//	GET    tokens/<name>
//	PATCH  tokens/<name>                     {"status"?,"scopeMap"?,"expiry"?,"noExpiry"?}
//	DELETE tokens/<name>
//	POST   tokens/<name>/passwords           {"name":"password1"|"password2","expiry"?} → the new password, shown once
//	DELETE tokens/<name>/passwords/<which>
//	GET    anonymous-pull                    {"enabled": bool}
//	PUT    anonymous-pull                    {"enabled": bool}
//
// It authenticates requests itself unless ManagementMiddleware already
// put an identity into the context.
func (a *Authority) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		id, ok := FromContext(r.Context())
		if !ok {
			var err error
			if id, err = a.Authenticate(r); err != nil {
				w.Header().Set("WWW-Authenticate", `Basic realm="stowage"`)
				a.WriteError(w, r, err)
				return
			}
		}
		rest, ok := strings.CutPrefix(r.URL.Path, AdminPrefix)
		if !ok {
			httperr.Write(w, r, a.log, adminNotFound(r))
			return
		}
		if rest == "whoami" {
			if id.Kind == KindAnonymous {
				a.refuse(w, r, id, need{authenticated: true}, true)
				return
			}
			if r.Method != http.MethodGet {
				httperr.Write(w, r, a.log, adminNotFound(r))
				return
			}
			writeJSON(w, http.StatusOK, map[string]any{"kind": id.Kind.String(), "name": id.Name, "admin": id.IsAdmin(), "method": id.Method})
			return
		}
		if !id.IsAdmin() {
			a.refuse(w, r, id, need{admin: true}, true)
			return
		}
		if err := a.admin(w, r, id, rest); err != nil {
			httperr.Write(w, r, a.log, err)
		}
	})
}

func adminNotFound(r *http.Request) error {
	return stowage.Errorf(stowage.CodeNameUnknown, "no access control endpoint %s %s (users, scope-maps, tokens, anonymous-pull, whoami under %s)", r.Method, trunc(r.URL.Path), AdminPrefix)
}

func (a *Authority) admin(w http.ResponseWriter, r *http.Request, id Identity, rest string) error {
	ctx := r.Context()
	parts := strings.Split(rest, "/")
	for _, p := range parts[1:] {
		if p == "" {
			return adminNotFound(r)
		}
	}
	// done audits an operation (reads too) and writes its answer.
	done := func(op, target string, err error, status int, v any) error {
		a.audit(r, id, op, target, err)
		if err != nil {
			return err
		}
		if v == nil {
			w.WriteHeader(status)
			return nil
		}
		return writeJSON(w, status, v)
	}
	m := r.Method
	switch {
	case parts[0] == "users" && len(parts) == 1 && m == http.MethodGet:
		us, err := a.Users(ctx)
		return done("user.list", "", err, http.StatusOK, map[string]any{"users": us})
	case parts[0] == "users" && len(parts) == 1 && m == http.MethodPost:
		var spec UserSpec
		if err := decode(w, r, &spec); err != nil {
			return err
		}
		u, err := a.CreateUser(ctx, spec)
		return done("user.create", spec.Name, err, http.StatusCreated, u)
	case parts[0] == "users" && len(parts) == 2 && m == http.MethodGet:
		u, err := a.User(ctx, parts[1])
		return done("user.show", parts[1], err, http.StatusOK, u)
	case parts[0] == "users" && len(parts) == 2 && m == http.MethodPatch:
		var c UserChange
		if err := decode(w, r, &c); err != nil {
			return err
		}
		u, err := a.UpdateUser(ctx, parts[1], c)
		return done("user.update", parts[1], err, http.StatusOK, u)
	case parts[0] == "users" && len(parts) == 2 && m == http.MethodDelete:
		return done("user.delete", parts[1], a.DeleteUser(ctx, parts[1]), http.StatusNoContent, nil)
	case parts[0] == "users" && len(parts) == 3 && parts[2] == "password" && m == http.MethodPut:
		var body struct {
			Password string `json:"password"`
		}
		if err := decode(w, r, &body); err != nil {
			return err
		}
		return done("user.password", parts[1], a.SetPassword(ctx, parts[1], body.Password), http.StatusNoContent, nil)

	case parts[0] == "scope-maps" && len(parts) == 1 && m == http.MethodGet:
		ms, err := a.ScopeMaps(ctx)
		return done("scopemap.list", "", err, http.StatusOK, map[string]any{"scopeMaps": ms})
	case parts[0] == "scope-maps" && len(parts) == 2 && m == http.MethodGet:
		sm, err := a.ScopeMap(ctx, parts[1])
		return done("scopemap.show", parts[1], err, http.StatusOK, sm)
	case parts[0] == "scope-maps" && len(parts) == 2 && m == http.MethodPut:
		var spec ScopeMapSpec
		if err := decode(w, r, &spec); err != nil {
			return err
		}
		sm, created, err := a.PutScopeMap(ctx, parts[1], spec)
		status := http.StatusOK
		if created {
			status = http.StatusCreated
		}
		return done("scopemap.put", parts[1], err, status, sm)
	case parts[0] == "scope-maps" && len(parts) == 2 && m == http.MethodDelete:
		return done("scopemap.delete", parts[1], a.DeleteScopeMap(ctx, parts[1]), http.StatusNoContent, nil)

	case parts[0] == "tokens" && len(parts) == 1 && m == http.MethodGet:
		ts, err := a.Tokens(ctx)
		return done("token.list", "", err, http.StatusOK, map[string]any{"tokens": ts})
	case parts[0] == "tokens" && len(parts) == 1 && m == http.MethodPost:
		var spec TokenSpec
		if err := decode(w, r, &spec); err != nil {
			return err
		}
		t, err := a.CreateToken(ctx, spec)
		return done("token.create", spec.Name, err, http.StatusCreated, t)
	case parts[0] == "tokens" && len(parts) == 2 && m == http.MethodGet:
		t, err := a.Token(ctx, parts[1])
		return done("token.show", parts[1], err, http.StatusOK, t)
	case parts[0] == "tokens" && len(parts) == 2 && m == http.MethodPatch:
		var c TokenChange
		if err := decode(w, r, &c); err != nil {
			return err
		}
		t, err := a.UpdateToken(ctx, parts[1], c)
		op := "token.update"
		if c.Status != nil {
			op = "token." + strings.TrimSuffix(string(*c.Status), "d") // token.enable / token.disable
		}
		return done(op, parts[1], err, http.StatusOK, t)
	case parts[0] == "tokens" && len(parts) == 2 && m == http.MethodDelete:
		return done("token.delete", parts[1], a.DeleteToken(ctx, parts[1]), http.StatusNoContent, nil)
	case parts[0] == "tokens" && len(parts) == 3 && parts[2] == "passwords" && m == http.MethodPost:
		var body struct {
			Name   string     `json:"name"`
			Expiry *time.Time `json:"expiry,omitempty"`
		}
		if err := decode(w, r, &body); err != nil {
			return err
		}
		p, err := a.GeneratePassword(ctx, parts[1], body.Name, body.Expiry)
		return done("token.password.generate", parts[1]+"/"+body.Name, err, http.StatusCreated, p)
	case parts[0] == "tokens" && len(parts) == 4 && parts[2] == "passwords" && m == http.MethodDelete:
		return done("token.password.delete", parts[1]+"/"+parts[3], a.DeletePassword(ctx, parts[1], parts[3]), http.StatusNoContent, nil)

	case parts[0] == "anonymous-pull" && len(parts) == 1 && m == http.MethodGet:
		on, err := a.AnonymousPull(ctx)
		return done("anonymous-pull.show", "", err, http.StatusOK, map[string]bool{"enabled": on})
	case parts[0] == "anonymous-pull" && len(parts) == 1 && m == http.MethodPut:
		var body struct {
			Enabled *bool `json:"enabled"`
		}
		if err := decode(w, r, &body); err != nil {
			return err
		}
		if body.Enabled == nil {
			return stowage.Errorf(stowage.CodeInvalidParameter, `want {"enabled": true} or {"enabled": false}`)
		}
		err := a.SetAnonymousPull(ctx, *body.Enabled)
		return done("anonymous-pull.set", strconv.FormatBool(*body.Enabled), err, http.StatusOK, map[string]bool{"enabled": *body.Enabled})
	}
	return adminNotFound(r)
}

// maxAdminBody bounds a management request's JSON body.
const maxAdminBody = 1 << 20

// decode reads a JSON request body of at most maxAdminBody bytes into v; a
// larger one is answered 413, readably (see httperr.ReadBody).
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := httperr.ReadBody(r, maxAdminBody, stowage.CodeInvalidParameter, "request body")
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return stowage.Errorf(stowage.CodeInvalidParameter, "request body: %v (see docs/access.md for the format)", err)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
	return nil
}
