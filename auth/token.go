package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/internal/httperr"
)

// maxTokenRequest bounds a token request's form body (credentials, a
// refresh token, scopes).
const maxTokenRequest = 64 << 10

// TokenResponse is the token endpoint's answer. "token" and
// "access_token" hold the same token (Docker reads the first, OAuth2
// clients the second).
type TokenResponse struct {
	Token        string `json:"token"`
	AccessToken  string `json:"access_token"`
	ExpiresIn    int    `json:"expires_in"`
	IssuedAt     string `json:"issued_at"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope,omitempty"` // the granted access, in scope syntax
}

// TokenHandler serves the token endpoint (mount it at TokenPath):
//
//	GET  ?service=…&scope=…&scope=…[&offline_token=true]   with Basic credentials, or none (anonymous)
//	POST grant_type=password&username=…&password=…&scope=…&service=…&client_id=…
//	POST grant_type=refresh_token&refresh_token=…&scope=…&service=…&client_id=…
//
// It answers with a short-lived token carrying the access granted: what
// was asked for, as far as the caller may have it. A refresh token comes
// with GET offline_token=true and with the POST password grant.
func (a *Authority) TokenHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Pragma", "no-cache")
		res, err := a.token(w, r)
		if err != nil {
			a.WriteError(w, r, err)
			return
		}
		b, err := json.Marshal(res)
		if err != nil {
			a.WriteError(w, r, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.Write(b)
	})
}

func (a *Authority) token(w http.ResponseWriter, r *http.Request) (TokenResponse, error) {
	st, err := a.store.get(r.Context())
	if err != nil {
		return TokenResponse{}, err
	}
	var id Identity
	var scopes []string
	var aud string
	var refresh bool
	switch r.Method {
	case http.MethodGet:
		q := r.URL.Query()
		scopes = q["scope"]
		if aud, err = a.audience(r, q.Get("service")); err != nil {
			return TokenResponse{}, err
		}
		refresh, _ = strconv.ParseBool(q.Get("offline_token"))
		creds, err := ParseAuthorization(r.Header.Get("Authorization"))
		if err != nil {
			a.authFailed(r, "", "header", err.Error())
			return TokenResponse{}, err
		}
		switch creds.Scheme {
		case "":
			id = st.identity(KindAnonymous, "")
		case "basic":
			if id, err = a.login(r, st, creds.Username, creds.Password); err != nil {
				return TokenResponse{}, err
			}
		default:
			return TokenResponse{}, authError("the token endpoint takes Basic credentials (or none, for anonymous access), not a bearer token")
		}
	case http.MethodPost:
		// Read within a bound, then parse: a larger body gets a readable
		// 413 (the error writer drains the rest), not a reset connection.
		body, err := httperr.ReadBody(r, maxTokenRequest, stowage.CodeInvalidParameter, "token request body")
		if err != nil {
			return TokenResponse{}, err
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		if err := r.ParseForm(); err != nil {
			return TokenResponse{}, stowage.Errorf(stowage.CodeInvalidParameter, "the token request is not a valid form (application/x-www-form-urlencoded): %v", err)
		}
		f := r.PostForm
		scopes = f["scope"]
		if aud, err = a.audience(r, f.Get("service")); err != nil {
			return TokenResponse{}, err
		}
		switch gt := f.Get("grant_type"); gt {
		case "password":
			user, pass := f.Get("username"), f.Get("password")
			if user == "" {
				return TokenResponse{}, stowage.Errorf(stowage.CodeInvalidParameter, "grant_type=password needs username and password")
			}
			if id, err = a.login(r, st, user, pass); err != nil {
				return TokenResponse{}, err
			}
			refresh = true
		case "refresh_token":
			rt := f.Get("refresh_token")
			if rt == "" {
				return TokenResponse{}, stowage.Errorf(stowage.CodeInvalidParameter, "grant_type=refresh_token needs refresh_token")
			}
			var c Claims
			id, c, err = a.verify(st, rt, useRefresh, aud)
			if err != nil {
				a.authFailed(r, c.Subject, "refresh_token", err.Error())
				return TokenResponse{}, &stowage.Error{Code: stowage.CodeUnauthorized,
					Message: "the refresh token is invalid, expired or revoked; log in again", Err: err}
			}
			if id.Kind == KindAnonymous {
				return TokenResponse{}, authError("the refresh token is not bound to a user or token; log in again")
			}
		case "":
			return TokenResponse{}, stowage.Errorf(stowage.CodeInvalidParameter, "the token request needs grant_type=password or grant_type=refresh_token")
		default:
			return TokenResponse{}, stowage.Errorf(stowage.CodeInvalidParameter, "grant_type=%q is not supported: use password or refresh_token", trunc(gt))
		}
	default:
		w.Header().Set("Allow", "GET, POST")
		return TokenResponse{}, stowage.Errorf(stowage.CodeUnsupported, "the token endpoint takes GET or POST")
	}
	asked, bad := ParseScopes(scopes)
	for _, err := range bad {
		a.log.Debug("token request: scope ignored", "err", err, "name", id.Name)
	}
	return a.issue(r, id, asked, aud, refresh && id.Kind != KindAnonymous)
}

// audience is the service a token request is for: the configured
// service (a request naming another is refused), else the one the client
// names (the registry's host as in its challenge: the token endpoint may be
// reached under another name), else the request's host. A token is good
// only for requests to its audience.
func (a *Authority) audience(r *http.Request, service string) (string, error) {
	switch {
	case a.opts.Service != "" && service != "" && service != a.opts.Service:
		return "", stowage.Errorf(stowage.CodeInvalidParameter,
			"this token endpoint issues tokens for service %q, not %q: use the service from the registry's WWW-Authenticate challenge", a.opts.Service, trunc(service))
	case a.opts.Service != "":
		return a.opts.Service, nil
	case service != "":
		return strings.ToLower(service), nil
	}
	return a.service(r), nil
}

// issue signs an access token (and a refresh token when asked) for id.
func (a *Authority) issue(r *http.Request, id Identity, asked []Scope, aud string, refresh bool) (TokenResponse, error) {
	now := a.now()
	c := Claims{
		Issuer:    a.opts.Issuer,
		Subject:   id.Name,
		Audience:  aud,
		IssuedAt:  now.Unix(),
		NotBefore: now.Unix(),
		Expiry:    now.Add(a.opts.TokenTTL).Unix(),
		ID:        randomID(12),
		Access:    Grant(id, asked),
		Kind:      id.Kind.String(),
		// The stamp of the password used: at the token endpoint it comes
		// from the login or from the refresh token.
		Credential: id.stamp,
		Use:        useAccess,
	}
	if c.Access == nil {
		c.Access = []ResourceActions{}
	}
	tok, err := a.key.sign(c)
	if err != nil {
		return TokenResponse{}, err
	}
	res := TokenResponse{Token: tok, AccessToken: tok, ExpiresIn: int(a.opts.TokenTTL / time.Second),
		IssuedAt: now.UTC().Format(time.RFC3339), Scope: accessScope(c.Access)}
	if refresh {
		rc := c
		rc.Access, rc.ID, rc.Use = []ResourceActions{}, randomID(12), useRefresh
		rc.Expiry = now.Add(a.opts.RefreshTTL).Unix()
		if res.RefreshToken, err = a.key.sign(rc); err != nil {
			return TokenResponse{}, err
		}
	}
	a.log.Debug("token issued", "subject", id.String(), "access", res.Scope, "refresh", refresh, "client", a.ClientIP(r))
	return res, nil
}

func accessScope(access []ResourceActions) string {
	s := make([]string, 0, len(access))
	for _, ra := range access {
		s = append(s, Scope{Type: ra.Type, Class: ra.Class, Name: ra.Name, Actions: ra.Actions}.String())
	}
	return strings.Join(s, " ")
}

// WriteError writes err as an OCI error response; a TOOMANYREQUESTS
// error from the failed-login limit gets its Retry-After header.
func (a *Authority) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	var e *stowage.Error
	if errors.As(err, &e) {
		if d, ok := e.Detail.(retryDetail); ok {
			w.Header().Set("Retry-After", strconv.Itoa(d.RetryAfterSeconds))
		}
	}
	httperr.Write(w, r, a.log, err)
}
