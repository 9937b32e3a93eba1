package pullthrough

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/remote"
)

// Options configure a Service.
type Options struct {
	// Keys seals and opens upstream passwords; nil (encryption: none)
	// refuses rules with a password.
	Keys   Keyring
	Logger *slog.Logger
	Now    func() time.Time
	// Reload is how long the rule list is kept in memory before it is read
	// again (rules created through another node show up within it); 0
	// means 5 s.
	Reload time.Duration
	// Remote adjusts the upstream clients' options (tests: retries, HTTP client).
	Remote func(*remote.Options)
	// Self returns the host:port addresses this server listens on and is
	// known by; a rule whose upstream is one of them is refused.
	Self func() []string
}

// Service is the pull-through cache: the rules and the fill of misses.
type Service struct {
	reg   *stowage.Registry
	store Store
	opts  Options
	log   *slog.Logger
	id    string // this node's id in HopHeader

	mu      sync.Mutex
	rules   []Record
	loaded  time.Time
	clients map[string]*remote.Client // by rule name and creation time
	checked map[string]time.Time      // "repo:tag" → when the upstream last confirmed it

	blobs, manifests, copies flight
	bg                       sync.WaitGroup
	bgCtx                    context.Context
	stop                     context.CancelFunc

	// BlobFetches counts blobs read from upstreams (for tests and metrics).
	BlobFetches atomic.Int64
}

// New returns the pull-through cache over reg, with rules in store.
func New(reg *stowage.Registry, store Store, opts Options) *Service {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Reload <= 0 {
		opts.Reload = 5 * time.Second
	}
	s := &Service{reg: reg, store: store, opts: opts, log: opts.Logger, id: newNodeID(), clients: map[string]*remote.Client{}, checked: map[string]time.Time{}}
	s.bgCtx, s.stop = context.WithCancel(context.Background())
	return s
}

// Close stops the copies running in the background and waits for them.
func (s *Service) Close() {
	s.stop()
	s.bg.Wait()
}

// ---- rules ----

// CreateRule validates and stores a rule; password ("" for none) is sealed.
func (s *Service) CreateRule(ctx context.Context, r Rule, password string) (Rule, error) {
	r.HasPassword = password != ""
	r.Created = s.opts.Now().UTC().Truncate(time.Second)
	if err := r.Validate(); err != nil {
		return r, err
	}
	if err := s.checkNotSelf(ctx, r); err != nil {
		return r, err
	}
	if password != "" && r.Username == "" {
		return r, stowage.Errorf(stowage.CodeInvalidParameter, "cache rule %s: a password needs a username", r.Name)
	}
	rec := Record{Rule: r}
	if password != "" {
		secret, dk, err := seal(ctx, s.opts.Keys, r.Name, password, r.Created)
		if err != nil {
			return r, err
		}
		if err := s.store.PutDataKey(ctx, dk); err != nil {
			return r, err
		}
		rec.Secret = secret
	}
	if err := s.store.PutCacheRule(ctx, rec); err != nil {
		if rec.Secret != nil {
			s.store.DeleteDataKeys(ctx, dataKeyObject(r.Name))
		}
		if errors.Is(err, ErrExists) {
			return r, stowage.Errorf(stowage.CodeInvalidParameter, "a cache rule named %s, or one for source %s, exists: delete it first (stowage cache-rule delete)", r.Name, r.Source)
		}
		return r, err
	}
	s.invalidate()
	s.log.Info("cache rule created", "rule", r.Name, "source", r.Source, "upstream", r.Upstream, "username", r.Username, "tagTTL", time.Duration(r.TagTTL))
	return r, nil
}

// Rules lists the rules (never their passwords).
func (s *Service) Rules(ctx context.Context) ([]Rule, error) {
	recs, err := s.store.CacheRules(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Rule, 0, len(recs))
	for _, r := range recs {
		out = append(out, r.Rule)
	}
	return out, nil
}

// Rule returns one rule.
func (s *Service) Rule(ctx context.Context, name string) (Rule, error) {
	rules, err := s.Rules(ctx)
	if err != nil {
		return Rule{}, err
	}
	for _, r := range rules {
		if r.Name == name {
			return r, nil
		}
	}
	return Rule{}, ruleUnknown(name)
}

func ruleUnknown(name string) error {
	return stowage.Errorf(stowage.CodeNameUnknown, "no cache rule named %s (stowage cache-rule list shows them)", name)
}

// DeleteRule removes a rule and its sealed password. What it cached stays
// (ordinary content: delete it like any other).
func (s *Service) DeleteRule(ctx context.Context, name string) error {
	err := s.store.DeleteCacheRule(ctx, name)
	if errors.Is(err, stowage.ErrNotFound) {
		return ruleUnknown(name)
	}
	if err != nil {
		return err
	}
	if err := s.store.DeleteDataKeys(ctx, dataKeyObject(name)); err != nil {
		s.log.Warn("cache rule deleted, but not the data key of its password", "rule", name, "err", err)
	}
	s.invalidate()
	s.log.Info("cache rule deleted", "rule", name)
	return nil
}

func (s *Service) invalidate() {
	s.mu.Lock()
	s.loaded = time.Time{}
	s.mu.Unlock()
}

// match returns the rule covering repo and its upstream repository (nil
// when none does). The rules are read again after opts.Reload.
func (s *Service) match(ctx context.Context, repo string) (*Record, string) {
	s.mu.Lock()
	stale := time.Since(s.loaded) > s.opts.Reload
	rules := s.rules
	s.mu.Unlock()
	if stale {
		recs, err := s.store.CacheRules(ctx)
		if err != nil {
			s.log.Warn("cannot read the cache rules; using the last ones read", "err", err)
		} else {
			s.mu.Lock()
			s.rules, s.loaded, rules = recs, time.Now(), recs
			s.mu.Unlock()
		}
	}
	return match(rules, repo)
}

// client returns the upstream client of rule r (one per rule, so tokens
// are shared by every pull through it).
func (s *Service) client(ctx context.Context, r *Record) (*remote.Client, error) {
	key := r.Name + "|" + r.Created.String()
	s.mu.Lock()
	c, ok := s.clients[key]
	s.mu.Unlock()
	if ok {
		return c, nil
	}
	o := remote.Options{Username: r.Username, PlainHTTP: r.PlainHTTP, UserAgent: "stowage-pull-through", Logger: s.log, Retries: 2, MaxBackoff: 5 * time.Second,
		CacheManifests: 256} // the client's GET and the background copy read each manifest once
	if r.Secret != nil {
		p, err := open(ctx, s.opts.Keys, s.store, r.Name, r.Secret)
		if err != nil {
			return nil, err
		}
		o.Password = p
	}
	if s.opts.Remote != nil {
		s.opts.Remote(&o)
	}
	host, _ := r.upstream()
	c = remote.New(host, o)
	s.mu.Lock()
	defer s.mu.Unlock()
	// Concurrent first pulls each built one: all use the first stored, so
	// they share its manifest cache (each manifest read once upstream) and
	// its tokens. (Each kept its own: 2-3 upstream GETs of one manifest for
	// 10 concurrent pulls, under -race.)
	if prev, ok := s.clients[key]; ok {
		return prev, nil
	}
	s.clients[key] = c
	return c, nil
}

// ---- tags ----

func (s *Service) fresh(key string, ttl Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.checked[key]
	return ok && s.opts.Now().Sub(t) < time.Duration(ttl)
}

func (s *Service) markChecked(key string) {
	s.mu.Lock()
	s.checked[key] = s.opts.Now()
	s.mu.Unlock()
}

// checkTimeout bounds a tag check when a cached tag could be served.
const checkTimeout = 10 * time.Second

// retryDown is how long a cached tag is served without asking an upstream
// that did not answer again (at most the rule's TTL).
const retryDown = 30 * time.Second

// backOff makes key fresh for retryDown: the next pulls do not wait on an
// upstream that just failed.
func (s *Service) backOff(key string, ttl Duration) {
	s.mu.Lock()
	s.checked[key] = s.opts.Now().Add(min(retryDown, time.Duration(ttl)) - time.Duration(ttl))
	s.mu.Unlock()
}

func unavailable(up string, err error) error {
	if lerr := loopError(up, err); lerr != nil {
		return lerr
	}
	return &stowage.Error{Code: stowage.CodeUnavailable,
		Message: fmt.Sprintf("the upstream of this cached repository (%s) cannot be reached and nothing is cached for this reference: %v", up, err)}
}

// ServeManifest fills a manifest GET or HEAD under a cache rule: a tag
// that is not here, or whose last check is older than the rule's TTL, is
// resolved upstream; a manifest that is not here is fetched (its digest
// verified), served from those bytes, and the whole image is copied in the
// background through the engine's push path (blobs first, then manifests,
// then the tag). It reports false when the engine should answer from what
// it holds: no rule covers repo, the content is here and fresh, the
// upstream lacks it, or the upstream is down or rate limiting and a
// cached tag exists (served stale, logged).
func (s *Service) ServeManifest(ctx context.Context, w http.ResponseWriter, r *http.Request, repo string, ref stowage.Reference) (bool, error) {
	ok, err := s.serveManifest(ctx, w, r, repo, ref)
	markLoop(w, err)
	return ok, err
}

func (s *Service) serveManifest(ctx context.Context, w http.ResponseWriter, r *http.Request, repo string, ref stowage.Reference) (bool, error) {
	rule, up := s.match(ctx, repo)
	if rule == nil {
		return false, nil
	}
	ctx, err := s.hop(ctx, r, rule)
	if err != nil {
		return false, err
	}
	local, lerr := s.reg.ResolveManifest(ctx, repo, ref)
	have := lerr == nil
	if lerr != nil && stowage.ErrorCodeOf(lerr) != stowage.CodeManifestUnknown {
		return false, nil // a lock: the engine says so
	}
	if !have {
		if l, err := s.reg.Locks(ctx, repo, stowage.Reference{}); err == nil && l&stowage.LockRead != 0 {
			return false, nil // a read-locked repository is not filled either
		}
	}
	key := repo + ":" + ref.Tag
	if ref.IsDigest() {
		if have {
			return false, nil // digests are kept for good
		}
	} else if have && s.fresh(key, rule.TagTTL) {
		return false, nil
	}
	c, err := s.client(ctx, rule)
	if err != nil {
		return false, err
	}
	want := ref
	if !ref.IsDigest() {
		desc, err := once(ctx, &s.manifests, "head:"+c.Host()+"/"+up+":"+ref.Tag, func(ctx context.Context) (stowage.Descriptor, error) {
			if have {
				// A cached tag is there to serve: do not keep the client
				// waiting on an upstream that hangs.
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, checkTimeout)
				defer cancel()
			}
			return c.HeadManifest(ctx, up, ref)
		})
		switch {
		case err != nil && have:
			s.log.Warn("serving a cached tag without checking the upstream: it did not answer", "repository", repo, "tag", ref.Tag,
				"digest", local.Digest, "upstream", c.Host()+"/"+up, "err", err)
			s.backOff(key, rule.TagTTL)
			return false, nil
		case remote.IsNotFound(err):
			return false, nil
		case err != nil:
			return false, unavailable(c.Host()+"/"+up, err)
		case have && desc.Digest == local.Digest:
			s.markChecked(key)
			return false, nil
		}
		want = stowage.Reference{Digest: desc.Digest}
		// The tag moved to content already here: move it through the engine.
		if _, body, err := s.reg.GetManifest(ctx, repo, want); err == nil {
			m, _ := s.reg.ResolveManifest(ctx, repo, want)
			if _, err := s.reg.PutManifest(ctx, repo, ref, m.MediaType, body, nil); err != nil {
				if !have {
					// No cached tag to fall back on: the refusal (a
					// write lock, a quota) is the answer, not a 404.
					return false, err
				}
				s.log.Warn("cannot move a cached tag to the upstream's digest; serving the cached one", "repository", repo, "tag", ref.Tag, "err", err)
			} else {
				s.markChecked(key)
			}
			return false, nil
		}
	}
	m, err := once(ctx, &s.manifests, "get:"+c.Host()+"/"+up+"@"+string(want.Digest), func(ctx context.Context) (remote.Manifest, error) {
		return c.GetManifest(ctx, up, want)
	})
	switch {
	case err != nil && have:
		s.log.Warn("serving a cached tag: the upstream's manifest could not be read", "repository", repo, "tag", ref.Tag, "err", err)
		return false, nil
	case remote.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, unavailable(c.Host()+"/"+up, err)
	}
	var tags []string
	if !ref.IsDigest() {
		tags = []string{ref.Tag}
	}
	s.startCopy(ctx, rule, c, repo, up, m, tags, key)
	hd := w.Header()
	hd.Set("Content-Type", m.MediaType)
	hd.Set("Docker-Content-Digest", string(m.Digest))
	hd.Set("ETag", `"`+string(m.Digest)+`"`)
	hd.Set("Content-Length", strconv.Itoa(len(m.Body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write(m.Body)
	}
	return true, nil
}

// once runs fn through f under key, in a context that outlives the
// caller's (a leader whose client left still finishes for the others).
// A blob fill may take long (layers of gigabytes over a slow link); a
// manifest request, not.
func once[T any](ctx context.Context, f *flight, key string, fn func(ctx context.Context) (T, error)) (T, error) {
	limit := 5 * time.Minute
	if strings.HasPrefix(key, "blob:") {
		limit = 2 * time.Hour
	}
	v, err := f.do(ctx, key, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), limit)
		defer cancel()
		return fn(ctx)
	})
	t, _ := v.(T)
	return t, err
}

// startCopy copies the image m of upstream up into repo in the
// background (one copy per repository and digest at a time), tagging it
// with tags; key's tag counts as checked when it is done.
func (s *Service) startCopy(ctx context.Context, rule *Record, c *remote.Client, repo, up string, m remote.Manifest, tags []string, key string) {
	ck := repo + "@" + string(m.Digest)
	if s.copies.busy(ck) {
		return
	}
	s.bg.Add(1)
	// The request's actor stays (the change feed says who pulled it in);
	// its cancellation does not.
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Hour)
	go func() {
		defer s.bg.Done()
		defer cancel()
		stop := context.AfterFunc(s.bgCtx, cancel)
		defer stop()
		s.copies.do(bctx, ck, func() (any, error) {
			start := time.Now()
			rep, err := remote.Copy(bctx, c, up, stowage.Reference{Digest: m.Digest}, s.sink(rule, c, up), repo, tags, remote.CopyOptions{Logger: s.log})
			if err != nil {
				s.log.Warn("pull-through: caching an image failed (the next pull tries again)", "repository", repo, "digest", m.Digest, "upstream", c.Host()+"/"+up, "err", err)
				return nil, err
			}
			if len(tags) > 0 {
				s.markChecked(key)
			}
			s.log.Info("pull-through: image cached", "repository", repo, "tags", tags, "digest", m.Digest, "upstream", c.Host()+"/"+up,
				"manifests", rep.Manifests, "blobs", rep.Blobs+rep.BlobsPresent, "took", time.Since(start).Round(time.Millisecond))
			return nil, nil
		})
	}()
}

// ---- blobs ----

// ServeBlob fills a blob GET or HEAD under a cache rule when repo lacks
// the blob: it is mounted from another repository that holds it, or
// fetched from the upstream once however many requests ask for it at the
// same time. The request that fetches it (a GET without Range) gets the
// bytes as they arrive, while they are stored; the last piece is held back
// until the registry verified the digest and stored the blob, and on a
// mismatch the response is cut short, so a client never takes a blob that
// is not what it asked for. The others wait, then the engine serves them
// from storage (it reports false).
func (s *Service) ServeBlob(ctx context.Context, w http.ResponseWriter, r *http.Request, repo string, d stowage.Digest) (bool, error) {
	ok, err := s.serveBlob(ctx, w, r, repo, d)
	markLoop(w, err)
	return ok, err
}

func (s *Service) serveBlob(ctx context.Context, w http.ResponseWriter, r *http.Request, repo string, d stowage.Digest) (bool, error) {
	rule, up := s.match(ctx, repo)
	if rule == nil {
		return false, nil
	}
	ctx, err := s.hop(ctx, r, rule)
	if err != nil {
		return false, err
	}
	if _, err := s.reg.StatBlob(ctx, repo, d); err == nil || stowage.ErrorCodeOf(err) != stowage.CodeBlobUnknown {
		return false, nil
	}
	var out *streamOut
	if r.Method == http.MethodGet && r.Header.Get("Range") == "" {
		out = &streamOut{w: w, d: d, size: -1}
	}
	c, err := s.client(ctx, rule)
	if err != nil {
		return false, err
	}
	err = s.fill(ctx, c, repo, up, d, out)
	if out != nil && out.started() {
		if err != nil {
			s.log.Warn("pull-through: blob fetch failed after the response began; cutting it short", "repository", repo, "digest", d, "err", err)
			panic(http.ErrAbortHandler)
		}
		return true, nil
	}
	switch {
	case err == nil:
		return false, nil
	case remote.IsNotFound(err):
		return false, nil
	case isStowageError(err):
		return false, err // the engine refused it (a lock, a quota), or the upstream's bytes were bad (503)
	default:
		return false, unavailable(c.Host()+"/"+up, err)
	}
}

// fill puts blob d into repo: mounted if another repository holds it, else
// fetched from upstream up (once per digest and repository at a time), with
// the bytes also going to out (the leader's client) when not nil.
func (s *Service) fill(ctx context.Context, c *remote.Client, repo, up string, d stowage.Digest, out *streamOut) error {
	_, err := once(ctx, &s.blobs, "blob:"+repo+"@"+string(d), func(ctx context.Context) (struct{}, error) {
		var none struct{}
		if _, err := s.reg.StatBlob(ctx, repo, d); err == nil {
			return none, nil // a leader before us stored it
		}
		if _, ok, err := s.reg.MountBlob(ctx, repo, "", d); err != nil || ok {
			return none, err
		}
		rc, size, err := c.OpenBlob(ctx, up, d)
		if err != nil {
			return none, err
		}
		defer rc.Close()
		s.BlobFetches.Add(1)
		hb := &holdBack{r: rc}
		if out != nil {
			out.size, hb.out = size, out
		}
		if _, err := s.reg.PutBlob(ctx, repo, d, hb, size); err != nil {
			if hb.err != nil && hb.err != io.EOF || badBytes(err) {
				// The upstream's bytes failed (altered on the way, cut
				// short), not the client's request: a 503 naming the
				// upstream, which a client may retry.
				cause := err
				if hb.err != nil && hb.err != io.EOF {
					cause = hb.err
				}
				return none, &stowage.Error{Code: stowage.CodeUnavailable, Err: err,
					Message: fmt.Sprintf("the upstream of this cached repository (%s) sent blob %s, but not whole or not matching its digest: %v; nothing was kept, try again later", c.Host()+"/"+up, d, errText(cause))}
			}
			return none, err
		}
		hb.flush()
		return none, nil
	})
	return err
}

// sink is how a background copy stores an image: blobs through fill (so a
// client's request and the copy fetch each blob once), manifests through
// the engine.
func (s *Service) sink(rule *Record, c *remote.Client, up string) remote.Sink {
	return copySink{s: s, c: c, up: up}
}

type copySink struct {
	s  *Service
	c  *remote.Client
	up string
}

func (k copySink) HasBlob(ctx context.Context, repo string, d stowage.Digest) (bool, error) {
	if err := k.s.fill(ctx, k.c, repo, k.up, d, nil); err != nil {
		return false, err
	}
	return true, nil
}

func (k copySink) PutBlob(ctx context.Context, repo string, d stowage.Digest, r io.Reader, size int64) error {
	_, err := k.s.reg.PutBlob(ctx, repo, d, r, size)
	return err
}

func (k copySink) PutManifest(ctx context.Context, repo string, m remote.Manifest, tags []string) error {
	_, err := k.s.reg.PutManifest(ctx, repo, stowage.Reference{Digest: m.Digest}, m.MediaType, m.Body, tags)
	return err
}

// streamOut is the leader's response: headers go out with the first bytes.
type streamOut struct {
	w     http.ResponseWriter
	d     stowage.Digest
	size  int64
	begun bool
	gone  bool // the client left: the fill goes on for the others
}

func (o *streamOut) started() bool { return o.begun }

func (o *streamOut) write(p []byte) {
	if len(p) == 0 || o.gone {
		return
	}
	if !o.begun {
		hd := o.w.Header()
		hd.Set("Content-Type", "application/octet-stream")
		hd.Set("Docker-Content-Digest", string(o.d))
		hd.Set("ETag", `"`+string(o.d)+`"`)
		if o.size >= 0 {
			hd.Set("Content-Length", strconv.FormatInt(o.size, 10))
		}
		o.w.WriteHeader(http.StatusOK)
		o.begun = true
	}
	if _, err := o.w.Write(p); err != nil {
		o.gone = true
	}
}

// holdBack passes what it reads to out one read late, so the last piece
// reaches the client only after flush (once the blob is verified and
// stored).
type holdBack struct {
	r       io.Reader
	out     *streamOut
	pending []byte
	err     error // the first error reading the upstream (io.EOF at the end)
}

// badBytes reports whether the engine refused a blob for its bytes (digest,
// size, a read that failed), not for a policy (a lock, a quota).
func badBytes(err error) bool {
	switch stowage.ErrorCodeOf(err) {
	case stowage.CodeDigestInvalid, stowage.CodeSizeInvalid, stowage.CodeBlobUploadInvalid:
		return true
	}
	return false
}

// errText is err's message without an OCI code prefix.
func errText(err error) string {
	var se *stowage.Error
	if errors.As(err, &se) && se.Message != "" {
		return se.Message
	}
	return err.Error()
}

func (h *holdBack) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	if err != nil && h.err == nil {
		h.err = err
	}
	if n > 0 && h.out != nil {
		h.out.write(h.pending)
		h.pending = append(h.pending[:0], p[:n]...)
	}
	return n, err
}

func (h *holdBack) flush() {
	if h.out != nil {
		h.out.write(h.pending)
		h.pending = nil
	}
}

func isStowageError(err error) bool {
	var se *stowage.Error
	return errors.As(err, &se)
}
