package ui

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/auth"
	"github.com/stowage/stowage/ui/sessionstore"
)

// Sessions are server-side, in the metadata database (ui/sessionstore;
// in this process's memory only with a database that has no session
// store): the cookie holds a random session id and a random key; the
// database holds the id's SHA-256 and the credentials the person logged in
// with, sealed (AES-GCM) under that key, which the server never keeps.
// Every request opens them with the cookie's key and authenticates them
// again through auth (its credential cache makes that cheap), so the
// session is exactly as good as the credentials: a disabled user, a
// deleted token or a changed password ends it at once, and a token's
// session sees what its scope map allows. A database leak or a memory dump
// without the cookies yields neither a session nor a password. Sessions
// end after the TTL and at logout (the row is deleted); they survive a
// restart, and every node on the same database (docs/scale-out.md) knows
// them: no sticky sessions needed.
const (
	cookieSession = "stowage_ui"
	cookieCSRF    = "stowage_ui_csrf"  // double-submit token while logged out / access control off
	cookieFlash   = "stowage_ui_flash" // what the last action did, shown once
	maxSessions   = 10_000
)

type session struct {
	name    string
	sealed  []byte // the password, AES-GCM under the cookie's key
	nonce   []byte
	csrf    string
	expires time.Time
}

type sessions struct {
	store sessionstore.Store // nil: mem
	mu    sync.Mutex
	m     map[string]*session // by id hash, without a store
	ttl   time.Duration
	now   func() time.Time
}

func newSessions(store sessionstore.Store, ttl time.Duration, now func() time.Time) *sessions {
	return &sessions{store: store, m: map[string]*session{}, ttl: ttl, now: now}
}

func randomToken(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// create starts a session for name and password and sets its cookie.
func (s *sessions) create(w http.ResponseWriter, r *http.Request, name, password string) (*session, error) {
	key := make([]byte, 32)
	rand.Read(key)
	gcm, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	now := s.now()
	ss := &session{name: name, nonce: make([]byte, gcm.NonceSize()), csrf: randomToken(32), expires: now.Add(s.ttl)}
	rand.Read(ss.nonce)
	ss.sealed = gcm.Seal(nil, ss.nonce, []byte(password), []byte(name))
	id := randomToken(24)
	if s.store != nil {
		err := s.store.PutSession(r.Context(), sessionstore.Session{IDHash: sessionstore.HashID(id), Name: name, Sealed: ss.sealed,
			Nonce: ss.nonce, CSRF: ss.csrf, Expires: ss.expires}, now, maxSessions)
		if err != nil {
			return nil, err
		}
	} else {
		s.mu.Lock()
		s.sweep()
		if len(s.m) >= maxSessions {
			s.mu.Unlock()
			return nil, sessionstore.TooMany()
		}
		s.m[sessionstore.HashID(id)] = ss
		s.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: cookieSession, Value: id + "." + base64.RawURLEncoding.EncodeToString(key),
		Path: Prefix, HttpOnly: true, Secure: secure(r), SameSite: http.SameSiteStrictMode, Expires: ss.expires})
	return ss, nil
}

// sweep drops expired sessions (s.mu held).
func (s *sessions) sweep() {
	now := s.now()
	for k, v := range s.m {
		if !now.Before(v.expires) {
			delete(s.m, k)
		}
	}
}

type openSession struct {
	*session
	key []byte
}

// get returns the request's session, if it has a live one. A database
// that does not answer counts as no session (the login page then says
// what failed).
func (s *sessions) get(r *http.Request) (openSession, bool) {
	c, err := r.Cookie(cookieSession)
	if err != nil {
		return openSession{}, false
	}
	id, k, ok := strings.Cut(c.Value, ".")
	if !ok || id == "" {
		return openSession{}, false
	}
	key, err := base64.RawURLEncoding.DecodeString(k)
	if err != nil || len(key) != 32 {
		return openSession{}, false
	}
	h := sessionstore.HashID(id)
	if s.store != nil {
		row, err := s.store.GetSession(r.Context(), h, s.now())
		if err != nil {
			return openSession{}, false
		}
		return openSession{&session{name: row.Name, sealed: row.Sealed, nonce: row.Nonce, csrf: row.CSRF, expires: row.Expires}, key}, true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.m[h]
	if !ok || !s.now().Before(ss.expires) {
		delete(s.m, h)
		return openSession{}, false
	}
	return openSession{ss, key}, true
}

// authenticate checks the session's credentials again, through auth, as a
// Basic login of this request (same failed-login limits, same audit).
func (s *sessions) authenticate(a *auth.Authority, r *http.Request, os openSession) (auth.Identity, error) {
	gcm, err := newGCM(os.key)
	if err != nil {
		return auth.Identity{}, err
	}
	pw, err := gcm.Open(nil, os.nonce, os.sealed, []byte(os.name))
	if err != nil {
		return auth.Identity{}, stowage.Errorf(stowage.CodeUnauthorized, "the session is not valid; log in again")
	}
	return basicLogin(a, r, os.name, string(pw))
}

func basicLogin(a *auth.Authority, r *http.Request, name, password string) (auth.Identity, error) {
	r2 := r.Clone(r.Context())
	r2.Header = r.Header.Clone()
	r2.Header.Del("Cookie")
	r2.SetBasicAuth(name, password)
	return a.Authenticate(r2)
}

// end removes the request's session and its cookie.
func (s *sessions) end(w http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie(cookieSession)
	if err != nil {
		return
	}
	id, _, _ := strings.Cut(c.Value, ".")
	if s.store != nil {
		// A failure leaves a row that expires with its TTL; the cookie,
		// the row's only key, is cleared below.
		_ = s.store.DeleteSession(r.Context(), sessionstore.HashID(id))
	} else {
		s.mu.Lock()
		delete(s.m, sessionstore.HashID(id))
		s.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: cookieSession, Value: "", Path: Prefix, MaxAge: -1, HttpOnly: true,
		Secure: secure(r), SameSite: http.SameSiteStrictMode})
}

func newGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// ---- CSRF ----

// csrfToken is the token the forms of this page carry: the session's, or
// (logged out, or access control off) a double-submit cookie's, set here
// when missing.
func (h *Handler) csrfToken(w http.ResponseWriter, r *http.Request) string {
	if s, ok := h.sessions.get(r); ok {
		return s.csrf
	}
	if c, err := r.Cookie(cookieCSRF); err == nil && len(c.Value) >= 32 {
		return c.Value
	}
	t := randomToken(32)
	http.SetCookie(w, &http.Cookie{Name: cookieCSRF, Value: t, Path: Prefix, HttpOnly: true, Secure: secure(r),
		SameSite: http.SameSiteStrictMode})
	// The page rendered now must see it too.
	r.AddCookie(&http.Cookie{Name: cookieCSRF, Value: t})
	return t
}

// checkCSRF refuses a POST whose form token is not the expected one, or
// that comes from another origin.
func (h *Handler) checkCSRF(r *http.Request, id auth.Identity) error {
	bad := stowage.Errorf(stowage.CodeDenied, "the form expired or came from another site: reload the page and try again")
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return bad
		}
	}
	got := r.PostFormValue("csrf")
	want := ""
	if s, ok := h.sessions.get(r); ok {
		want = s.csrf
	} else if c, err := r.Cookie(cookieCSRF); err == nil {
		want = c.Value
	}
	if len(want) < 32 || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		return bad
	}
	return nil
}

// ---- login and logout ----

func (h *Handler) serveLogin(w http.ResponseWriter, r *http.Request) {
	v := &view{h: h, w: w, r: r}
	if h.auth == nil {
		http.Redirect(w, r, Prefix, http.StatusSeeOther)
		return
	}
	next := r.FormValue("next")
	if !strings.HasPrefix(next, Prefix) || strings.HasPrefix(next, "//") || strings.Contains(next, "\\") {
		next = Prefix
	}
	data := map[string]any{"Next": next}
	switch r.Method {
	case http.MethodGet:
		v.render(http.StatusOK, "login", "Log in", data)
	case http.MethodPost:
		if err := h.checkCSRF(r, auth.Identity{}); err != nil {
			v.fail(err)
			return
		}
		name, password := r.PostFormValue("name"), r.PostFormValue("password")
		id, err := basicLogin(h.auth, r, name, password)
		if err != nil {
			data["Error"] = errorMessage(err)
			data["Name"] = name
			v.render(statusOf(err), "login", "Log in", data)
			return
		}
		h.sessions.end(w, r) // a fresh session id at every login
		if _, err := h.sessions.create(w, r, name, password); err != nil {
			v.fail(err)
			return
		}
		h.log.Info("ui login", "audit", "ui.login", "actor", id.String(), "remote", h.auth.ClientIP(r))
		if next == Prefix {
			// A token or user without registry-wide reads starts at its repositories.
			if h.allow(id, http.MethodGet, "/api/v1/usage") != nil {
				next = Prefix + "repositories"
			}
		}
		http.Redirect(w, r, next, http.StatusSeeOther)
	default:
		v.fail(stowage.Errorf(stowage.CodeUnsupported, "use GET or POST"))
	}
}

func (h *Handler) serveLogout(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		(&view{h: h, w: w, r: r}).fail(stowage.Errorf(stowage.CodeUnsupported, "log out with the button (POST)"))
		return
	}
	if err := h.checkCSRF(r, auth.Identity{}); err != nil {
		(&view{h: h, w: w, r: r}).fail(err)
		return
	}
	h.sessions.end(w, r)
	http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
}

// secure reports whether cookies must be Secure: the connection is TLS, or
// a proxy in front says the client's was (X-Forwarded-Proto: https). A
// forged header only makes the cookie stricter.
func secure(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(strings.TrimSpace(strings.Split(r.Header.Get("X-Forwarded-Proto"), ",")[0]), "https")
}

// LimitName names the caller of a UI request for request limits (package
// limits): the session's user or token, "" without one (anonymous callers
// share one bucket), as the API's limits name callers by their credentials.
func (h *Handler) LimitName(r *http.Request) string {
	if h.auth == nil {
		return ""
	}
	if s, ok := h.sessions.get(r); ok {
		return s.name
	}
	return ""
}
