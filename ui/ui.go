// Package ui serves Stowage's web UI under /ui/: what uses space (the
// overview), the repositories and their images, and the actions a person
// takes there (delete and untag after a dry run, locks, retention), from
// templates and assets embedded in the binary. Pages are drawn on the server
// (html/template, SVG charts); a little JavaScript only adds conveniences.
//
// Authorization is the API's: every page and action is checked with
// auth.Authority.Authorize against the management API request that does the
// same thing (GET /api/v1/usage/<repo> for a repository's page, DELETE
// /api/v1/images/<repo>@<digest> for a delete, …), so the UI never shows or
// does what the caller could not through the API. With access control off,
// the UI is as open as the API is then.
package ui

import (
	"context"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/auth"
	"github.com/stowage/stowage/mgmt"
	"github.com/stowage/stowage/scrub"
	"github.com/stowage/stowage/ui/sessionstore"
	"github.com/stowage/stowage/usage/history"
	"github.com/stowage/stowage/usage/rank"
)

// Prefix is where the UI is served.
const Prefix = "/ui/"

//go:embed assets
var assets embed.FS

// Options wire the UI to the engine's pieces. Only Registry is required.
type Options struct {
	Registry *stowage.Registry
	// Auth is the access control; nil: access control is off, and the UI
	// is open as the API is then.
	Auth *auth.Authority
	// History and Rank are the database's stores (history.Of, rank.Of);
	// nil: no growth picture, and repositories listed by name only.
	History history.Store
	Rank    rank.Store
	// Policies runs retention (nil: no policy page).
	Policies mgmt.Policies
	// Topology reports storage copy health (nil: not shown).
	Topology mgmt.Topology
	// Scrub reports the last scrub (nil: not shown).
	Scrub interface {
		Last(ctx context.Context) (scrub.Report, error)
	}
	// GC reports the last garbage collection this node ran (LastGC).
	GC *GCRecorder
	// Replication reports replication status; nil: not configured, and
	// the overview shows nothing about it. (No replication exists yet: this
	// is its place.)
	Replication func(ctx context.Context) (any, error)
	// SharerScanLimit bounds how many images that use a blob the image
	// page reads to find the ones the caller may see (default 5000).
	SharerScanLimit int
	// SessionTTL is how long a login lasts (default 8 hours).
	SessionTTL time.Duration
	Logger     *slog.Logger
	Now        func() time.Time
}

// Handler serves /ui/.
type Handler struct {
	opts     Options
	reg      *stowage.Registry
	auth     *auth.Authority
	log      *slog.Logger
	now      func() time.Time
	pages    map[string]*template.Template
	static   http.Handler
	sessions *sessions
}

// New returns the UI's handler.
func New(opts Options) (*Handler, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = 8 * time.Hour
	}
	h := &Handler{opts: opts, reg: opts.Registry, auth: opts.Auth, log: opts.Logger, now: opts.Now}
	store, _ := sessionstore.Of(opts.Registry.DB())
	h.sessions = newSessions(store, opts.SessionTTL, opts.Now)
	if opts.GC != nil {
		opts.GC.attach(opts.Registry.DB())
	}
	var err error
	if h.pages, err = parsePages(); err != nil {
		return nil, err
	}
	static, err := fs.Sub(assets, "assets/static")
	if err != nil {
		return nil, err
	}
	h.static = http.StripPrefix(Prefix+"static/", http.FileServerFS(static))
	return h, nil
}

// ServeHTTP routes a request under /ui/.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "same-origin")
	w.Header().Set("Cache-Control", "no-store")
	path := strings.TrimPrefix(r.URL.Path, strings.TrimSuffix(Prefix, "/"))
	if strings.HasPrefix(path, "/static/") {
		w.Header().Set("Cache-Control", "max-age=300")
		h.static.ServeHTTP(w, r)
		return
	}
	r = stowage.WithRequestActor(r)
	switch path {
	case "/login":
		h.serveLogin(w, r)
		return
	case "/logout":
		h.serveLogout(w, r)
		return
	}
	id, ok := h.identify(w, r)
	if !ok {
		return
	}
	if r.Method == http.MethodPost && h.auth != nil {
		// Changes are audit lines, as on the management API.
		sw := &statusWriter{ResponseWriter: w}
		w = sw
		defer func() {
			h.log.Info("ui request", "audit", "ui.request", "actor", id.String(), "request", r.Method+" "+r.URL.Path,
				"what", r.PostFormValue("what"), "target", r.PostFormValue("target"), "action", r.PostFormValue("action"),
				"status", sw.status, "remote", h.auth.ClientIP(r))
		}()
	}
	v := &view{h: h, w: w, r: r, id: id}
	if r.Method == http.MethodPost {
		if err := h.checkCSRF(r, id); err != nil {
			v.fail(err)
			return
		}
	}
	var err error
	switch {
	case path == "/" && r.Method == http.MethodGet:
		err = h.overview(v)
	case path == "/repositories" && r.Method == http.MethodGet:
		err = h.repositories(v)
	case path == "/repository" && r.Method == http.MethodGet:
		err = h.repository(v)
	case path == "/manifest" && r.Method == http.MethodGet:
		err = h.manifest(v)
	case path == "/delete" && (r.Method == http.MethodGet || r.Method == http.MethodPost):
		err = h.delete(v)
	case path == "/locks" && r.Method == http.MethodPost:
		err = h.locks(v)
	case path == "/policies" && r.Method == http.MethodGet:
		err = h.policies(v)
	case path == "/policies/retention" && r.Method == http.MethodPost:
		err = h.retention(v)
	case path == "/policies/purge" && r.Method == http.MethodPost:
		err = h.purgePolicy(v)
	case path == "" && r.Method == http.MethodGet:
		http.Redirect(w, r, Prefix, http.StatusFound)
		return
	default:
		err = stowage.Errorf(stowage.CodeNameUnknown, "no such page: %s (start at %s)", r.URL.Path, Prefix)
	}
	if err != nil {
		v.fail(err)
	}
}

// allow decides whether the caller may make the management API request
// method path: the API's own decision (auth.Authority.Authorize). With
// access control off, everything is allowed, as on the API.
func (h *Handler) allow(id auth.Identity, method, path string) error {
	if h.auth == nil {
		return nil
	}
	u, err := url.Parse(path)
	if err != nil {
		return stowage.Errorf(stowage.CodeInvalidParameter, "bad target")
	}
	return h.auth.Authorize(id, &http.Request{Method: method, URL: u, Header: http.Header{}})
}

// canList reports whether repo appears in the caller's listings (as in the
// catalog of the API).
func (h *Handler) canList(id auth.Identity, repo string) bool {
	return h.auth == nil || id.CanList(repo)
}

// identify returns the caller: with access control off, the anonymous
// caller who may do everything the open API allows; with it on, the
// session's user or token, authenticated again on every request (so a
// disabled user, a deleted token or a changed password ends the session at
// once). Without a valid session it redirects to the login page.
func (h *Handler) identify(w http.ResponseWriter, r *http.Request) (auth.Identity, bool) {
	if h.auth == nil {
		return auth.Identity{}, true
	}
	s, ok := h.sessions.get(r)
	if ok {
		id, err := h.sessions.authenticate(h.auth, r, s)
		if err == nil {
			return id, true
		}
		h.sessions.end(w, r)
		var se *stowage.Error
		if errors.As(err, &se) && se.Code == stowage.CodeTooManyRequests {
			(&view{h: h, w: w, r: r}).fail(err)
			return auth.Identity{}, false
		}
	}
	if r.Method != http.MethodGet {
		(&view{h: h, w: w, r: r}).fail(stowage.Errorf(stowage.CodeUnauthorized, "log in first (%slogin)", Prefix))
		return auth.Identity{}, false
	}
	next := r.URL.RequestURI()
	http.Redirect(w, r, Prefix+"login?next="+url.QueryEscape(next), http.StatusSeeOther)
	return auth.Identity{}, false
}

// statusWriter remembers the status of a response (for the audit line).
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}
