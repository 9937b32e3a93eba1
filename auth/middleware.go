package auth

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/internal/httperr"
	"github.com/stowage/stowage/internal/ociroute"
)

// need is what a request requires.
type need struct {
	repo   string
	action Action
	// all: action on every repository (registry-wide reads).
	all bool
	// admin: an admin only.
	admin bool
	// authenticated: any caller with credentials.
	authenticated bool
	// catalog: the catalog (authenticated; filtered by the handler).
	catalog bool
	// some: action on at least one repository pattern (the handler then
	// limits the request to the repositories it covers).
	some bool
}

// ociNeed maps a /v2/ request to what it requires.
func ociNeed(rt ociroute.Route, method string) need {
	switch rt.Kind {
	case ociroute.KindBase:
		return need{authenticated: true}
	case ociroute.KindCatalog:
		return need{catalog: true}
	case ociroute.KindTags, ociroute.KindReferrers:
		return need{repo: rt.Name, action: MetadataRead}
	case ociroute.KindUploadStart, ociroute.KindUpload:
		// Every step of an upload, cancelling included, is part of a push.
		return need{repo: rt.Name, action: ContentWrite}
	}
	switch method {
	case http.MethodGet, http.MethodHead:
		return need{repo: rt.Name, action: ContentRead}
	case http.MethodDelete:
		return need{repo: rt.Name, action: ContentDelete}
	}
	return need{repo: rt.Name, action: ContentWrite}
}

// scopeFor is the scope a challenge asks for so that the client gets a
// token that covers n. acr: ACR's action names for metadata.
func scopeFor(n need, acr bool) string {
	switch {
	case n.catalog:
		return "registry:catalog:*"
	case n.all && n.action == MetricsRead:
		return "registry:metrics:read"
	case n.admin || n.all:
		return "registry:*:*"
	case n.repo == "":
		return ""
	}
	var act string
	switch n.action {
	case ContentRead:
		act = "pull"
	case MetadataRead:
		act = "pull"
		if acr {
			act = "metadata_read"
		}
	case ContentWrite:
		act = "pull,push"
	case ContentDelete:
		act = "delete"
	case MetadataWrite:
		act = "metadata_write"
	}
	return "repository:" + n.repo + ":" + act
}

// challenge is the WWW-Authenticate value of a 401 from /v2/: where to get
// a token, for which service, with which scope.
func (a *Authority) challenge(r *http.Request, scopes []string, errCode string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `Bearer realm=%q,service=%q`, a.realm(r), a.service(r))
	if s := strings.Join(scopes, " "); s != "" {
		fmt.Fprintf(&b, `,scope=%q`, s)
	}
	if errCode != "" {
		fmt.Fprintf(&b, `,error=%q`, errCode)
	}
	return b.String()
}

func (id Identity) allows(n need) bool {
	switch {
	case n.admin:
		return id.IsAdmin()
	case n.catalog:
		return id.CanCatalog()
	case n.authenticated:
		return id.Kind != KindAnonymous
	case n.some:
		return id.Kind != KindAnonymous && id.holdsSome(n.action)
	case n.all:
		return id.Kind != KindAnonymous && id.CanAll(n.action)
	}
	return id.Can(n.repo, n.action)
}

// holdsNeed reports whether the caller's own rights (not a bearer token's
// claims) cover n: if so, a token with more scope would do.
func (id Identity) holdsNeed(n need) bool {
	switch {
	case n.admin:
		return id.admin
	case n.catalog, n.authenticated:
		return id.Kind != KindAnonymous
	case n.some:
		return id.Kind != KindAnonymous && id.holdsSome(n.action)
	case n.all:
		return id.Kind != KindAnonymous && id.holdsAll(n.action)
	}
	return id.holds(n.repo, n.action)
}

func (n need) describe() string {
	switch {
	case n.all && n.action == ReplicationApply:
		return `this needs replication/apply: a scope map rule {"repository": "*", "actions": ["replication/apply"]} (or an admin)`
	case n.all && n.action == MetricsRead:
		return `this needs metrics/read: a scope map rule {"repository": "*", "actions": ["metrics/read"]} (or an admin)`
	case n.admin:
		return "this needs an admin"
	case n.catalog:
		return "listing the catalog needs credentials"
	case n.authenticated:
		return "this needs credentials"
	case n.some && n.action == ContentDelete:
		return `purge needs content/delete on the repositories it purges, and this caller has it on none: a scope map rule such as {"repository": "team-a/*", "actions": ["content/delete"]}`
	case n.some:
		return fmt.Sprintf("this needs %s on at least one repository", n.action)
	case n.all:
		return fmt.Sprintf("this needs %s on every repository", n.action)
	}
	return fmt.Sprintf("%s on repository %s", n.action, n.repo)
}

// Middleware guards the OCI Distribution API (/v2/). It authenticates the
// request (Basic or Bearer; none: anonymous), decides from the route and
// method what it needs, and answers 401 with a Bearer challenge (no or
// insufficient credentials) or 403 DENIED (credentials that do not allow
// it). Allowed requests go on with the identity in their context
// (FromContext), which the handler uses to filter the catalog.
//
//	GET/HEAD manifests, blobs          content/read
//	PUT manifests, uploads (all)       content/write
//	DELETE manifests, blobs            content/delete
//	tags/list, referrers               metadata/read
//	/v2/, _catalog                     any authenticated caller
//
// A cross-repository mount (POST …/blobs/uploads/?mount=&from=) also needs
// content/read on from; without it the mount parameters are dropped and
// the request becomes a normal upload (202), as the specification allows.
// A mount without from (any copy in the registry) needs content/read on
// every repository, else it becomes a normal upload too.
func (a *Authority) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st, err := a.store.get(r.Context())
		if err != nil {
			httperr.Write(w, r, a.log, err)
			return
		}
		w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
		id, err := a.authenticate(r, st)
		if err != nil {
			w.Header().Set("WWW-Authenticate", a.challenge(r, nil, errCodeFor(r)))
			a.WriteError(w, r, err)
			return
		}
		rt, perr := ociroute.ParseRoute(r.URL.Path)
		if perr != nil {
			// The handler answers with the parse error, except to
			// strangers at a closed registry: they learn nothing.
			if id.Kind == KindAnonymous && !st.AnonymousPull {
				a.refuse(w, r, id, need{authenticated: true}, false)
				return
			}
		} else {
			n := ociNeed(rt, r.Method)
			if !id.allows(n) {
				a.refuse(w, r, id, n, false)
				return
			}
			if rt.Kind == ociroute.KindUploadStart && r.Method == http.MethodPost {
				r = a.guardMount(r, id, rt.Name)
			}
		}
		next.ServeHTTP(w, a.withIdentity(r, id))
	})
}

// withIdentity returns r with id in its context (NewContext) and id as
// the actor of its changes (stowage.WithActor): its name and the client's
// address, which the engine copies into the change feed's events.
func (a *Authority) withIdentity(r *http.Request, id Identity) *http.Request {
	ctx := stowage.WithActor(NewContext(r.Context(), id), stowage.RequestActor(r, id.Name, a.ClientIP(r)))
	return r.WithContext(ctx)
}

func errCodeFor(r *http.Request) string {
	if strings.HasPrefix(strings.ToLower(r.Header.Get("Authorization")), "bearer ") {
		return "invalid_token"
	}
	return ""
}

// refuse answers a request the caller may not make: 401 with a challenge
// when other credentials (or a token with more scope) could do it, 403
// DENIED when the caller's own rights do not cover it.
func (a *Authority) refuse(w http.ResponseWriter, r *http.Request, id Identity, n need, mgmt bool) {
	acr := strings.HasPrefix(r.URL.Path, "/acr/")
	if id.Kind == KindAnonymous || id.bearer && id.holdsNeed(n) {
		errCode := ""
		if id.bearer {
			errCode = "insufficient_scope"
		}
		var scopes []string
		if s := scopeFor(n, acr); s != "" {
			scopes = append(scopes, s)
		}
		if mgmt && !acr {
			w.Header().Set("WWW-Authenticate", `Basic realm="stowage"`)
		} else {
			w.Header().Set("WWW-Authenticate", a.challenge(r, scopes, errCode))
		}
		msg := "authentication required: log in (" + n.describe() + ")"
		if id.bearer {
			msg = "the bearer token does not cover this request (" + n.describe() + "); get a token for scope " + strings.Join(scopes, " ")
		}
		httperr.Write(w, r, a.log, &stowage.Error{Code: stowage.CodeUnauthorized, Message: msg})
		return
	}
	a.log.InfoContext(r.Context(), "request denied", "audit", "authz.denied", "actor", id.String(), "need", n.describe(),
		"request", r.Method+" "+trunc(r.URL.Path), "remote", a.ClientIP(r))
	msg := fmt.Sprintf("%s may not do this: %s", id, n.describe())
	if !n.admin && !n.all && !n.catalog && !n.authenticated && !n.some {
		msg = fmt.Sprintf("%s may not do this: it needs %s; ask an admin to add it to its scope map", id, n.describe())
	}
	httperr.Write(w, r, a.log, stowage.Errorf(stowage.CodeDenied, "%s", msg))
}

// guardMount drops the mount parameters of an upload the caller may not
// mount from, so the handler starts a normal upload instead.
func (a *Authority) guardMount(r *http.Request, id Identity, name string) *http.Request {
	q := r.URL.Query()
	if q.Get("mount") == "" {
		return r
	}
	from := q.Get("from")
	var ok bool
	if from == "" {
		ok = id.CanAll(ContentRead)
	} else {
		ok = stowage.ValidateName(from) == nil && id.Can(from, ContentRead)
	}
	if ok {
		return r
	}
	a.log.Debug("cross-repository mount refused: no content/read on the source; starting a normal upload",
		"actor", id.String(), "repository", name, "from", from)
	q.Del("mount")
	q.Del("from")
	r2 := r.Clone(r.Context())
	u := *r.URL
	u.RawQuery = q.Encode()
	r2.URL = &u
	r2.RequestURI = u.RequestURI()
	return r2
}

// ---- the management API ----

// mgmtNeed maps a request of the management API (/api/v1/, /acr/v1/) to
// what it requires. Registry-wide reads need metadata/read on every
// repository; changes that are not clearly about one repository need an
// admin, and so does anything not listed.
func mgmtNeed(r *http.Request) need {
	admin := need{admin: true}
	if r.URL.Path == "/metrics" {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			return need{all: true, action: MetricsRead}
		}
		return admin
	}
	if rest, ok := strings.CutPrefix(r.URL.Path, "/acr/v1/"); ok {
		return acrNeed(r.Method, rest)
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/api/v1/")
	if !ok {
		return admin
	}
	head, arg, _ := strings.Cut(rest, "/")
	get := r.Method == http.MethodGet || r.Method == http.MethodHead
	repoOr := func(repo string, action Action) need {
		if stowage.ValidateName(repo) != nil {
			return admin
		}
		return need{repo: repo, action: action}
	}
	switch head {
	case "replication":
		if arg == "apply" && r.Method == http.MethodPost {
			return need{all: true, action: ReplicationApply} // a peer (docs/replication.md)
		}
	case "usage":
		if !get {
			return admin
		}
		if arg == "" {
			return need{all: true, action: MetadataRead}
		}
		return repoOr(arg, MetadataRead)
	case "repositories":
		if r.Method == http.MethodDelete {
			return repoOr(arg, ContentDelete)
		}
	case "images", "tags":
		if r.Method == http.MethodDelete {
			return repoOr(targetRepo(arg), ContentDelete)
		}
	case "locks":
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			return repoOr(targetRepo(arg), MetadataRead)
		case http.MethodPatch:
			return repoOr(targetRepo(arg), MetadataWrite)
		}
	case "recycle-bin":
		if get {
			if arg == "" {
				return need{all: true, action: MetadataRead}
			}
			return repoOr(arg, MetadataRead)
		}
	case "retention", "purge-policies", "soft-delete", "immutability":
		if get {
			return need{all: true, action: MetadataRead}
		}
	case "quotas":
		if get && arg == "" {
			// The report is filtered to the repositories the caller may
			// list (stowage.ListFilter); the registry's usage needs
			// metadata/read on every repository.
			return need{authenticated: true}
		}
	case "purge":
		if r.Method == http.MethodPost && arg == "" {
			// content/delete somewhere; the handler then refuses a filter
			// that matches a repository the caller sees but may not delete
			// from, and leaves out those it may not see
			// (stowage.DeleteFilter).
			return need{some: true, action: ContentDelete}
		}
	case "auth":
		if arg == "whoami" {
			return need{authenticated: true}
		}
	}
	return admin
}

// targetRepo returns the repository of "repo", "repo:tag" or "repo@digest".
func targetRepo(s string) string {
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		return s[:i]
	}
	if i := strings.LastIndexByte(s, ':'); i >= 0 && !strings.Contains(s[i:], "/") {
		return s[:i]
	}
	return s
}

func acrNeed(method, rest string) need {
	if rest == "_catalog" {
		if method == http.MethodGet {
			return need{catalog: true}
		}
		return need{admin: true}
	}
	name, kind, item := rest, "", ""
	for _, k := range []string{"/_tags", "/_manifests"} {
		if i := strings.LastIndex(rest, k); i > 0 && (len(rest) == i+len(k) || rest[i+len(k)] == '/') {
			name, kind, item = rest[:i], k[2:], strings.TrimPrefix(rest[i+len(k):], "/")
			break
		}
	}
	if stowage.ValidateName(name) != nil {
		return need{admin: true}
	}
	switch {
	case method == http.MethodGet || method == http.MethodHead:
		return need{repo: name, action: MetadataRead}
	case method == http.MethodPatch && (kind == "" || item != ""):
		return need{repo: name, action: MetadataWrite}
	case method == http.MethodDelete && (kind == "" || item != ""):
		return need{repo: name, action: ContentDelete}
	}
	return need{admin: true}
}

// ManagementMiddleware guards the management APIs (/api/v1/ and /acr/v1/;
// the /api/v1/auth/ handler checks for itself as well). Every request
// needs credentials: Basic (a 401 asks for them with a Basic challenge on
// /api/v1/, a Bearer one on /acr/v1/, as ACR does) or a bearer token.
//
//	GET usage/<repo>, locks/<target>, recycle-bin/<repo>   metadata/read on the repository
//	GET usage, retention, purge-policies, soft-delete,
//	    immutability, recycle-bin                           metadata/read on every repository
//	GET quotas                                              authenticated (filtered to what the caller may list)
//	POST purge                                              authenticated (every repository the filter
//	                                                        matches needs content/delete)
//	GET /metrics                                            metrics/read (a rule for *)
//	DELETE repositories/, images/, tags/                    content/delete on the repository
//	PATCH locks/<target>                                    metadata/write on the repository
//	/acr/v1/<repo>…: GET metadata/read, PATCH metadata/write, DELETE content/delete
//	/acr/v1/_catalog                                        authenticated (filtered by the handler)
//	everything else (gc, purge, keys, storage, scrub, retention and
//	policy changes, restores, auth)                         admin
//
// Changes (methods other than GET and HEAD) are logged as audit lines with
// the caller, the request, the status and where it came from.
func (a *Authority) ManagementMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st, err := a.store.get(r.Context())
		if err != nil {
			httperr.Write(w, r, a.log, err)
			return
		}
		acr := strings.HasPrefix(r.URL.Path, "/acr/")
		id, err := a.authenticate(r, st)
		if err != nil {
			if acr {
				w.Header().Set("WWW-Authenticate", a.challenge(r, nil, errCodeFor(r)))
			} else {
				w.Header().Set("WWW-Authenticate", `Basic realm="stowage"`)
			}
			a.WriteError(w, r, err)
			return
		}
		n := mgmtNeed(r)
		if id.Kind == KindAnonymous || !id.allows(n) {
			a.refuse(w, r, id, n, true)
			return
		}
		r = a.withIdentity(r, id)
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			next.ServeHTTP(w, r)
			return
		}
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		attrs := []any{"audit", "mgmt.request", "actor", id.String(), "request", r.Method + " " + trunc(r.URL.Path),
			"query", trunc(redactQuery(r.URL.RawQuery)), "status", sw.status}
		a.log.InfoContext(r.Context(), "management request", append(attrs, a.from(r)...)...)
	})
}

func redactQuery(q string) string {
	if q == "" {
		return ""
	}
	v, err := url.ParseQuery(q)
	if err != nil {
		return "(unparsable)"
	}
	for k := range v {
		if strings.Contains(strings.ToLower(k), "password") || strings.Contains(strings.ToLower(k), "token") {
			v.Set(k, "REDACTED")
		}
	}
	return v.Encode()
}

// statusWriter remembers the status of a response; it passes Flush on,
// so streamed answers (gc progress) still stream.
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

func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Authorize decides whether id may make request r, by the same rules as
// Middleware (paths under /v2/) and ManagementMiddleware (/api/v1/,
// /acr/v1/; anything else needs an admin). It returns nil, an UNAUTHORIZED
// error (other credentials, or a token with more scope, could do it) or a
// DENIED one. It does not look at mount parameters (see Middleware).
func (a *Authority) Authorize(id Identity, r *http.Request) error {
	var n need
	p := r.URL.Path
	switch {
	case p == "/v2" || strings.HasPrefix(p, "/v2/"):
		rt, err := ociroute.ParseRoute(p)
		if err != nil {
			if id.Kind == KindAnonymous && !id.anonPull {
				return authError("authentication required: log in")
			}
			return nil
		}
		n = ociNeed(rt, r.Method)
	case strings.HasPrefix(p, "/api/v1/") || strings.HasPrefix(p, "/acr/v1/") || p == "/metrics":
		if id.Kind == KindAnonymous {
			return authError("authentication required: log in")
		}
		n = mgmtNeed(r)
	default:
		n = need{admin: true}
	}
	if id.allows(n) {
		return nil
	}
	if id.Kind == KindAnonymous || id.bearer && id.holdsNeed(n) {
		return authError("authentication required: log in (" + n.describe() + ")")
	}
	return stowage.Errorf(stowage.CodeDenied, "%s may not do this: %s", id, n.needs())
}

// needs says what a refused request needs, as one clause: "it needs
// metadata/read on repository x", or describe's own sentence ("this needs
// an admin") where it is one.
func (n need) needs() string {
	if n.admin || n.all || n.catalog || n.authenticated || n.some {
		return n.describe()
	}
	return "it needs " + n.describe()
}
