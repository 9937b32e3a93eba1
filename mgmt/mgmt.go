// Package mgmt serves Stowage's management API (/api/v1/): usage, deletes
// with dry runs, and garbage collection. The CLI talks to it.
package mgmt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/gc"
	"github.com/stowage/stowage/internal/httperr"
	"github.com/stowage/stowage/policy"
)

// maxBody bounds the JSON bodies of management requests.
const maxBody = 1 << 20

// Handler serves /api/v1/.
type Handler struct {
	reg    *stowage.Registry
	log    *slog.Logger
	gc     Collector  // nil: no POST /api/v1/gc
	gcOpts gc.Options // defaults for POST /api/v1/gc
	scrub  Scrubber   // nil: no /api/v1/scrub
	keys   KeyManager // nil when encryption is off
	topo   Topology   // storage topology; nil in tests
	pol    Policies   // nil: no policy endpoints (WithPolicies)
	bin    RecycleBin

	events Events      // the change feed (events.go); nil: GET /api/v1/events is refused
	hooks  Webhooks    // webhooks.go; nil: /api/v1/webhooks is refused
	cache  CacheRules  // pull-through cache rules (cacherules.go); nil: refused
	repl   Replication // replication.go; nil: not configured
}

// Collector runs garbage collections (package gc's *gc.Collector).
type Collector interface {
	Collect(ctx context.Context, opts gc.Options) (gc.Report, error)
}

// WithGC enables POST /api/v1/gc; opts holds the configured grace period,
// lease and upload expiry.
func (h *Handler) WithGC(c Collector, opts gc.Options) *Handler {
	h.gc, h.gcOpts = c, opts
	return h
}

// WithKeys enables the key management endpoints (/api/v1/keys).
func (h *Handler) WithKeys(m KeyManager) *Handler {
	h.keys = m
	return h
}

// New returns the management API handler.
func New(reg *stowage.Registry, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{reg: reg, log: log}
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r = stowage.WithRequestActor(r) // who made the changes, for the change feed
	if err := h.serve(w, r); err != nil {
		httperr.Write(w, r, h.log, err)
	}
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) error {
	rest, ok := strings.CutPrefix(r.URL.Path, "/api/v1/")
	if !ok {
		return notFound(r)
	}
	ctx := r.Context()
	dry, err := boolParam(r, "dry_run")
	if err != nil {
		return err
	}
	head, arg, _ := strings.Cut(rest, "/")
	if err := h.unconfigured(head); err != nil {
		return err
	}
	switch {
	case head == "usage" && r.Method == http.MethodGet:
		return h.serveUsage(ctx, w, r, arg)
	case head == "repositories" && r.Method == http.MethodDelete:
		if err := stowage.ValidateName(arg); err != nil {
			return err
		}
		return h.report(w, r, func() (stowage.DeleteReport, error) { return h.reg.DeleteRepository(ctx, arg, dry) })
	case head == "images" && r.Method == http.MethodDelete:
		repo, ref, err := ParseImageRef(arg)
		if err != nil {
			return err
		}
		return h.report(w, r, func() (stowage.DeleteReport, error) { return h.reg.DeleteImage(ctx, repo, ref, dry) })
	case head == "tags" && r.Method == http.MethodDelete:
		repo, ref, err := ParseImageRef(arg)
		if err != nil {
			return err
		}
		if ref.IsDigest() {
			return stowage.Errorf(stowage.CodeTagInvalid, "untag needs repo:tag, not a digest")
		}
		return h.report(w, r, func() (stowage.DeleteReport, error) { return h.reg.Untag(ctx, repo, ref.Tag, dry) })
	case head == "storage":
		return h.serveStorage(ctx, w, r, head, arg, dry)
	case head == "replication":
		return h.serveReplication(ctx, w, r, arg)
	case head == "scrub":
		return h.serveScrub(ctx, w, r, arg)
	case head == "imports":
		return h.serveImports(ctx, w, r, arg)
	case head == "cache-rules":
		return h.serveCacheRules(ctx, w, r, arg)
	case head == "quotas" && arg == "" && r.Method == http.MethodGet:
		q, err := h.reg.Quotas(ctx)
		if err != nil {
			return err
		}
		if q, err = h.filterQuotas(ctx, q); err != nil {
			return err
		}
		return writeJSON(w, q)
	case head == "quotas" && arg != "" && (r.Method == http.MethodPut || r.Method == http.MethodDelete):
		if err := stowage.ValidateName(arg); err != nil {
			return err
		}
		var body struct {
			LimitBytes int64 `json:"limitBytes"`
		}
		if r.Method == http.MethodPut {
			if err := decodeBody(r, &body); err != nil {
				return err
			}
			if body.LimitBytes <= 0 {
				return stowage.Errorf(stowage.CodeInvalidParameter, "limitBytes must be a positive number of bytes (DELETE removes a quota)")
			}
		}
		if err := h.reg.SetQuota(ctx, arg, body.LimitBytes); err != nil {
			return err
		}
		q, err := h.reg.Quotas(ctx)
		if err != nil {
			return err
		}
		return writeJSON(w, q)
	case head == "keys":
		return h.serveKeys(ctx, w, r, arg)
	case head == "events" && arg == "" && r.Method == http.MethodGet:
		return h.serveEvents(ctx, w, r)
	case head == "webhooks":
		return h.serveWebhooks(ctx, w, r, arg)
	case head == "gc" && arg == "" && r.Method == http.MethodPost:
		return h.collect(ctx, w, r, dry)
	case head == "retention" && arg == "" && r.Method == http.MethodGet:
		p, last, err := h.pol.Retention(ctx)
		if err != nil {
			return err
		}
		return writeJSON(w, map[string]any{"policy": p, "lastRun": last})
	case head == "retention" && arg == "" && r.Method == http.MethodPut:
		var p policy.Retention
		if err := decodeBody(r, &p); err != nil {
			return err
		}
		if err := h.pol.SetRetention(ctx, p); err != nil {
			return err
		}
		return writeJSON(w, map[string]any{"policy": p})
	case head == "retention" && arg == "run" && r.Method == http.MethodPost:
		run, err := h.pol.ApplyRetention(ctx, dry)
		if err != nil {
			return err
		}
		return writeJSON(w, run)
	case head == "purge" && arg == "" && r.Method == http.MethodPost:
		return h.purge(ctx, w, r, dry)
	case head == "purge-policies" && arg == "" && r.Method == http.MethodGet:
		ps, err := h.pol.PurgePolicies(ctx)
		if err != nil {
			return err
		}
		return writeJSON(w, map[string]any{"policies": ps})
	case head == "purge-policies" && arg != "" && r.Method == http.MethodPut:
		var p policy.PurgePolicy
		if err := decodeBody(r, &p); err != nil {
			return err
		}
		p.Name = arg
		if err := h.pol.SetPurgePolicy(ctx, p); err != nil {
			return err
		}
		return writeJSON(w, map[string]any{"policy": p})
	case head == "purge-policies" && arg != "" && r.Method == http.MethodDelete:
		if err := h.pol.DeletePurgePolicy(ctx, arg); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	case head == "locks" && (r.Method == http.MethodGet || r.Method == http.MethodPatch):
		return h.locks(ctx, w, r, arg)
	case head == "soft-delete" && arg == "" && r.Method == http.MethodGet:
		p, err := h.bin.SoftDelete(ctx)
		if err != nil {
			return err
		}
		return writeJSON(w, map[string]any{"policy": p})
	case head == "soft-delete" && arg == "" && r.Method == http.MethodPut:
		var p stowage.SoftDeletePolicy
		if err := decodeBody(r, &p); err != nil {
			return err
		}
		if err := h.bin.SetSoftDelete(ctx, p); err != nil {
			return err
		}
		return writeJSON(w, map[string]any{"policy": p})
	case head == "recycle-bin" && r.Method == http.MethodGet:
		bin, err := h.bin.List(ctx, arg)
		if err != nil {
			return err
		}
		return writeJSON(w, map[string]any{"entries": recycledJSON(bin)})
	case head == "recycle-bin" && r.Method == http.MethodPost && strings.HasSuffix(arg, "/restore"):
		id, err := strconv.ParseInt(strings.TrimSuffix(arg, "/restore"), 10, 64)
		if err != nil {
			return stowage.Errorf(stowage.CodeInvalidParameter, "recycle bin entry %q: want a number from 'stowage recycle-bin'", arg)
		}
		rep, err := h.bin.Restore(ctx, id)
		if err != nil {
			return err
		}
		h.log.Info("restored from the recycle bin", "repository", rep.Repository, "digest", rep.Digest, "from", r.RemoteAddr)
		return writeJSON(w, rep)
	case head == "immutability" && arg == "" && r.Method == http.MethodGet:
		rules, err := h.reg.ImmutabilityRules(ctx)
		if err != nil {
			return err
		}
		return writeJSON(w, map[string]any{"rules": rules})
	case head == "immutability" && arg == "" && r.Method == http.MethodPut:
		var body struct {
			Rules []string `json:"rules"`
		}
		if err := decodeBody(r, &body); err != nil {
			return err
		}
		if err := h.reg.SetImmutabilityRules(ctx, body.Rules); err != nil {
			return err
		}
		return writeJSON(w, map[string]any{"rules": body.Rules})
	}
	return notFound(r)
}

func notFound(r *http.Request) error {
	return stowage.Errorf(stowage.CodeNameUnknown, "no management endpoint %s %s (see docs/api.md)", r.Method, r.URL.Path)
}

// report writes a delete's report. ?limit=N lists at most N manifests and
// N tags (the report's "truncated" then counts them all): a bounded answer
// about deleting a repository of 100,000 manifests.
func (h *Handler) report(w http.ResponseWriter, r *http.Request, fn func() (stowage.DeleteReport, error)) error {
	limit := -1
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return stowage.Errorf(stowage.CodeInvalidParameter, "limit=%q: want how many manifests and tags to list, e.g. 100", s)
		}
		limit = n
	}
	rep, err := fn()
	if err != nil {
		return err
	}
	if limit >= 0 {
		rep.Truncate(limit)
	}
	return writeJSON(w, rep)
}

// collect runs a garbage collection and streams its progress as JSON lines
// ({"progress":…}), ending with {"report":…} or {"error":…}.
func (h *Handler) collect(ctx context.Context, w http.ResponseWriter, r *http.Request, dry bool) error {
	if h.gc == nil {
		return stowage.Errorf(stowage.CodeUnsupported, "garbage collection is not enabled on this management API")
	}
	opts := h.gcOpts
	opts.DryRun = dry
	if s := r.URL.Query().Get("min_age"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return stowage.Errorf(stowage.CodeInvalidParameter, "min_age=%q: want a duration such as 0s, 10m or 24h", s)
		}
		opts.MinAge = &d
	}
	if s := r.URL.Query().Get("sweep"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return stowage.Errorf(stowage.CodeInvalidParameter, "sweep=%q: want true or false", s)
		}
		opts.NoSweep = !b
	}
	enc := streamJSON(w)
	opts.Progress = enc.progress
	rep, err := h.gc.Collect(ctx, opts)
	if err != nil {
		h.log.ErrorContext(ctx, "garbage collection failed", "err", err)
		enc.line(map[string]any{"error": err.Error()})
		return nil
	}
	rep.Digests = nil
	enc.line(map[string]any{"report": rep})
	return nil
}

// Attributes is the JSON form of locks, with ACR's names.
type Attributes struct {
	WriteEnabled  *bool `json:"writeEnabled,omitempty"`
	DeleteEnabled *bool `json:"deleteEnabled,omitempty"`
	ReadEnabled   *bool `json:"readEnabled,omitempty"`
	ListEnabled   *bool `json:"listEnabled,omitempty"`
}

// changes returns the locks to set and to clear: a field false sets its
// lock, true clears it, absent leaves it.
func (a Attributes) changes() (set, clear stowage.Locks) {
	for _, f := range []struct {
		v    *bool
		lock stowage.Locks
	}{{a.WriteEnabled, stowage.LockWrite}, {a.DeleteEnabled, stowage.LockDelete}, {a.ReadEnabled, stowage.LockRead}, {a.ListEnabled, stowage.LockList}} {
		switch {
		case f.v == nil:
		case *f.v:
			clear |= f.lock
		default:
			set |= f.lock
		}
	}
	return set, clear
}

// AttributesOf turns locks into attributes (every field set).
func AttributesOf(l stowage.Locks) Attributes {
	b := func(lock stowage.Locks) *bool { v := l&lock == 0; return &v }
	return Attributes{b(stowage.LockWrite), b(stowage.LockDelete), b(stowage.LockRead), b(stowage.LockList)}
}

// locks shows (GET) or changes (PATCH, only the fields given) the locks of
// "repo", "repo:tag" or "repo@digest".
func (h *Handler) locks(ctx context.Context, w http.ResponseWriter, r *http.Request, target string) error {
	repo, ref, err := parseTarget(target)
	if err != nil {
		return err
	}
	var l stowage.Locks
	if r.Method == http.MethodGet {
		l, err = h.reg.Locks(ctx, repo, ref)
	} else {
		var a Attributes
		if err := decodeBody(r, &a); err != nil {
			return err
		}
		set, clear := a.changes()
		l, err = h.reg.SetLocks(ctx, repo, ref, set, clear)
		if err == nil {
			h.log.Info("locks changed", "target", target, "locks", l.String(), "from", r.RemoteAddr)
		}
	}
	if err != nil {
		return err
	}
	return writeJSON(w, map[string]any{"target": target, "changeableAttributes": AttributesOf(l)})
}

type recycled struct {
	ID         int64    `json:"id"`
	Repository string   `json:"repository"`
	Digest     string   `json:"digest"`
	MediaType  string   `json:"mediaType"`
	Tags       []string `json:"tags"`
	Deleted    string   `json:"deletedTime"`
	Expires    string   `json:"expiresTime"`
}

func recycledJSON(bin []stowage.RecycledManifest) []recycled {
	out := make([]recycled, 0, len(bin))
	for _, e := range bin {
		tags := e.Tags
		if tags == nil {
			tags = []string{}
		}
		out = append(out, recycled{e.ID, e.Manifest.Repo, string(e.Manifest.Digest), e.Manifest.MediaType, tags,
			e.Deleted.UTC().Format(time.RFC3339), e.Expires.UTC().Format(time.RFC3339)})
	}
	return out
}

// parseTarget parses "repo", "repo:tag" or "repo@digest".
func parseTarget(s string) (string, stowage.Reference, error) {
	if strings.ContainsAny(s, ":@") {
		return ParseImageRef(s)
	}
	return s, stowage.Reference{}, stowage.ValidateName(s)
}

// decodeBody reads a JSON request body of at most maxBody bytes into v. A
// longer one is answered 413 (http.MaxBytesReader would also close the
// connection, which a client still sending sees as a reset).
func decodeBody(r *http.Request, v any) error {
	b, err := httperr.ReadBody(r, maxBody, stowage.CodeSizeInvalid, "request body")
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return stowage.Errorf(stowage.CodeInvalidParameter, "request body: %v (see docs/managing-space.md for the format)", err)
	}
	return nil
}

// purge runs a purge; progress and report stream as JSON lines, as for gc.
func (h *Handler) purge(ctx context.Context, w http.ResponseWriter, r *http.Request, dry bool) error {
	q := r.URL.Query()
	opts := policy.PurgeOptions{DryRun: dry}
	for _, f := range q["filter"] {
		pf, err := stowage.ParsePurgeFilter(f)
		if err != nil {
			return err
		}
		opts.Filters = append(opts.Filters, pf)
	}
	if len(opts.Filters) == 0 {
		return stowage.Errorf(stowage.CodeInvalidParameter, "purge needs at least one filter=REPOSITORY_REGEX:TAG_REGEX")
	}
	if keep, who := stowage.DeleteFilter(ctx); keep != nil {
		var err error
		if opts.Filters, err = h.scopePurge(ctx, opts.Filters, keep, who); err != nil {
			return err
		}
	}
	if s := q.Get("ago"); s != "" {
		d, err := policy.ParseAge(s)
		if err != nil {
			return stowage.Errorf(stowage.CodeInvalidParameter, "ago=%q: want e.g. 30d, 12h or 1d12h", s)
		}
		opts.Ago = d
	}
	if s := q.Get("keep"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return stowage.Errorf(stowage.CodeInvalidParameter, "keep=%q: want a number >= 0", s)
		}
		opts.Keep = n
	}
	untagged, err := boolParam(r, "untagged")
	if err != nil {
		return err
	}
	opts.Untagged = untagged
	enc := streamJSON(w)
	opts.Progress = func(done, total int64) { enc.progress("repositories", done, total) }
	run, err := h.pol.Purge(ctx, opts)
	if err != nil {
		h.log.ErrorContext(ctx, "purge failed", "err", err)
		enc.line(map[string]any{"error": err.Error()})
		return nil
	}
	h.log.Info("purge done", "tags", run.Tags, "manifests", run.Manifests, "bytes", run.BytesFreed, "dry_run", dry)
	enc.line(map[string]any{"report": run})
	return nil
}

// filterQuotas keeps, for a caller limited to some repositories (a listing
// filter in ctx), the quotas of the repositories it may list; the
// registry's usage (it tells of every repository) only if it may list
// every repository.
func (h *Handler) filterQuotas(ctx context.Context, q stowage.QuotaReport) (stowage.QuotaReport, error) {
	keep := stowage.ListFilter(ctx)
	if keep == nil {
		return q, nil
	}
	out := stowage.QuotaReport{Registry: stowage.Quota{LimitBytes: q.Registry.LimitBytes}, Repositories: []stowage.Quota{}}
	for _, rq := range q.Repositories {
		if keep(rq.Repository) {
			out.Repositories = append(out.Repositories, rq)
		}
	}
	all := true
	err := stowage.EachRepository(ctx, h.reg.Parts().DB, func(repo string) error {
		if !keep(repo) {
			all = false
			return errStop
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return q, err
	}
	if all {
		out.Registry.UsedBytes = q.Registry.UsedBytes
	} else {
		out.Registry.UsageHidden = true
	}
	return out, nil
}

var errStop = errors.New("stop")

// scopePurge checks a purge by a caller who may delete from some
// repositories only (keep): every repository the filters match that the
// caller may see must be one of them, or the purge is refused, naming them.
// Repositories the caller may not see are left out as if they did not exist
// (refusing because of them would tell a caller, one regular expression at
// a time, which names exist: found by an outside review). It returns
// filters narrowed to exactly the repositories checked, so a repository
// created meanwhile is not purged.
func (h *Handler) scopePurge(ctx context.Context, filters []stowage.PurgeFilter, keep func(string) bool, who string) ([]stowage.PurgeFilter, error) {
	var out []stowage.PurgeFilter
	var denied []string
	list := stowage.ListFilter(ctx)
	err := stowage.EachRepository(ctx, h.reg.Parts().DB, func(repo string) error {
		var tags []*regexp.Regexp
		for _, f := range filters {
			if f.Repo.MatchString(repo) {
				tags = append(tags, f.Tag)
			}
		}
		switch {
		case len(tags) == 0:
		case keep(repo):
			for _, t := range tags {
				out = append(out, stowage.PurgeFilter{Repo: regexp.MustCompile("^" + regexp.QuoteMeta(repo) + "$"), Tag: t})
			}
		case list == nil || list(repo):
			denied = append(denied, repo)
		default: // not visible to the caller: as if it did not exist
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(denied) > 0 {
		names := denied
		if len(names) > 5 {
			names = append(names[:5:5], "…")
		}
		return nil, stowage.Errorf(stowage.CodeDenied,
			"%s may purge only repositories it may delete from (content/delete), and the filter also matches %s; narrow the repository part of the filter to its repositories (e.g. 'team-a/.*:pr-.*')", who, strings.Join(names, ", "))
	}
	if len(out) == 0 {
		// Nothing in scope matches: a filter that matches no repository.
		out = []stowage.PurgeFilter{{Repo: regexp.MustCompile(`^\x00$`), Tag: filters[0].Tag}}
	}
	return out, nil
}

// jsonLines writes a response as JSON lines, flushed as they come.
type jsonLines struct {
	w    http.ResponseWriter
	enc  *json.Encoder
	last time.Time
}

func streamJSON(w http.ResponseWriter) *jsonLines {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	return &jsonLines{w: w, enc: json.NewEncoder(w)}
}

func (j *jsonLines) line(v any) error {
	err := j.enc.Encode(v)
	if f, ok := j.w.(http.Flusher); ok {
		f.Flush()
	}
	return err
}

// progress writes a progress line, at most ten a second (and always the last).
func (j *jsonLines) progress(phase string, done, total int64) {
	if time.Since(j.last) < 100*time.Millisecond && done != total {
		return
	}
	j.last = time.Now()
	j.line(map[string]any{"progress": map[string]any{"phase": phase, "done": done, "total": total}})
}

// ParseImageRef parses "repo:tag" or "repo@digest".
func ParseImageRef(s string) (string, stowage.Reference, error) {
	var repo, r string
	if i := strings.LastIndexByte(s, '@'); i > 0 {
		repo, r = s[:i], s[i+1:]
	} else if i := strings.LastIndexByte(s, ':'); i > 0 && !strings.Contains(s[i:], "/") {
		repo, r = s[:i], s[i+1:]
	} else {
		return "", stowage.Reference{}, stowage.Errorf(stowage.CodeNameInvalid, "%q: want repository:tag or repository@sha256:…", s)
	}
	if err := stowage.ValidateName(repo); err != nil {
		return "", stowage.Reference{}, err
	}
	ref, err := stowage.ParseReference(r)
	return repo, ref, err
}

func boolParam(r *http.Request, name string) (bool, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, stowage.Errorf(stowage.CodeInvalidParameter, "%s=%q: want true or false", name, s)
	}
	return b, nil
}

func writeJSON(w http.ResponseWriter, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.Write(append(b, '\n'))
	return nil
}
