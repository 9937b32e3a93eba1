package replication

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/feed"
)

// Service is a region's replication: its replicators (one per peer), the
// applier of its peers' changes, and read-through. The management API
// serves it (/api/v1/replication/).
type Service struct {
	Region      string
	Reg         *stowage.Registry
	Applier     *Applier
	Replicators []*Replicator
	ReadThrough *ReadThrough // nil: read_through off
	Now         func() time.Time

	mu     sync.Mutex
	runCtx context.Context // Run's: back-fills end with it
}

// Options configure a region's replication.
type Options struct {
	Region      string
	Peers       []Peer
	ReadThrough bool
	Concurrency int
	// Bandwidth bounds the bytes per second of blob uploads to each peer
	// (0: no bound).
	Bandwidth int64
	// Timeouts bound every request to a peer (zero fields: defaults), for
	// peers whose own Timeouts are zero.
	Timeouts Timeouts
	// Identities: this region's access control (auth.Authority), whose
	// users, tokens and scope maps are replicated; nil: access control
	// off, they are not.
	Identities IdentityStore
	// Restore restores from this region's recycle bin (Applier.Restore).
	Restore func(ctx context.Context, repo string, d stowage.Digest) (bool, error)
	Log     *slog.Logger
}

// New returns the replication of a region whose engine is reg (built with
// Options.Changes = Clocks{Region}) and change feed f.
func New(reg *stowage.Registry, f *feed.Feed, opts Options) (*Service, error) {
	cursors, ok := feed.CursorsOf(reg.DB())
	if !ok {
		return nil, errors.New("replication: the metadata database keeps no feed cursors")
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	s := &Service{Region: opts.Region, Reg: reg, Applier: &Applier{Reg: reg, Region: opts.Region, Identities: opts.Identities, Restore: opts.Restore}, Now: time.Now}
	var clients []*Client
	for _, p := range opts.Peers {
		if p.Timeouts == (Timeouts{}) {
			p.Timeouts = opts.Timeouts
		}
		c, err := NewClient(p)
		if err != nil {
			return nil, err
		}
		clients = append(clients, c)
		r := NewReplicator(opts.Region, c, reg, f, cursors, opts.Log)
		r.Concurrency = opts.Concurrency
		r.Identities = opts.Identities
		if opts.Bandwidth > 0 {
			r.limit = newRateLimit(opts.Bandwidth)
		}
		s.Replicators = append(s.Replicators, r)
	}
	if opts.ReadThrough && len(clients) > 0 {
		s.ReadThrough = &ReadThrough{Reg: reg, Peers: clients, Log: opts.Log}
		s.Applier.Fetch = s.ReadThrough.FetchReferences // repl-engine: apply-time fetch
	}
	return s, nil
}

// Run runs every replicator until ctx ends.
func (s *Service) Run(ctx context.Context) {
	s.mu.Lock()
	s.runCtx = ctx
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, r := range s.Replicators {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.Run(ctx); err != nil {
				r.Log.Error("replication to a peer stopped", "err", err)
			}
		}()
	}
	wg.Wait()
}

// Apply applies a change from a peer.
func (s *Service) Apply(ctx context.Context, ch Change) (Result, error) {
	return s.Applier.Apply(ctx, ch)
}

// Status is a region's replication state.
type Status struct {
	Region      string       `json:"region"`
	ReadThrough bool         `json:"readThrough"`
	Peers       []PeerStatus `json:"peers"`
}

// Status reports every peer's replicator.
func (s *Service) Status(ctx context.Context) (Status, error) {
	st := Status{Region: s.Region, ReadThrough: s.ReadThrough != nil, Peers: []PeerStatus{}}
	for _, r := range s.Replicators {
		ps, err := r.Status(ctx, s.Now())
		if err != nil {
			return st, err
		}
		st.Peers = append(st.Peers, ps)
	}
	return st, nil
}

// Location is what one region holds for an image reference.
type Location struct {
	Region string         `json:"region"`
	Digest stowage.Digest `json:"digest,omitempty"` // "" = not there
	// Complete: the region holds the manifest and everything it
	// references (blobs; an index's children and theirs).
	Complete bool   `json:"complete"`
	Clock    string `json:"clock,omitempty"` // this region's clock reading of it, when known
	Error    string `json:"error,omitempty"` // the region could not be asked
	// Locked: the locks in the way of reading it there ("readEnabled=false"
	// here; a peer's, when it refuses to read it: its digest is then
	// unknown here). A read lock does not hide where it is from status.
	Locked string `json:"locked,omitempty"`
}

// Locate asks this region and every peer which digest they hold for repo's
// ref (a tag, or a digest: present or not).
func (s *Service) Locate(ctx context.Context, repo string, ref stowage.Reference) ([]Location, error) {
	here := Location{Region: s.Region}
	m, err := s.Reg.ResolveManifest(ctx, repo, ref)
	if stowage.ErrorCodeOf(err) == stowage.CodeDenied {
		// Read-locked: status still says where it is (the caller may
		// read status; the lock is reported).
		m, err = s.lockedHere(ctx, repo, ref, &here)
	}
	if err == nil {
		here.Digest = m.Digest
		here.Complete = s.completeHere(ctx, repo, m.Digest, 0)
	} else if c := stowage.ErrorCodeOf(err); c != stowage.CodeManifestUnknown && c != stowage.CodeNameUnknown {
		return nil, err
	}
	name := ref.Tag
	if ref.IsDigest() {
		name = ManifestName(ref.Digest)
	}
	_ = s.Reg.DB().View(ctx, func(tx stowage.Tx) error {
		if ct, ok := tx.(ClockTx); ok {
			if c, err := ct.ReplicationClocks().GetClock(repo, name); err == nil {
				here.Clock = c.HLC.String()
			}
		}
		return nil
	})
	out := []Location{here}
	for _, r := range s.Replicators {
		l := Location{Region: r.Peer.Name}
		if err := skipDown(r.Peer); err != nil {
			l.Error = err.Error()
			out = append(out, l)
			continue
		}
		d, err := r.Peer.HeadManifest(ctx, repo, ref)
		if ReadLocked(err) {
			var pe *PeerError
			errors.As(err, &pe)
			l.Locked = "read-locked there (" + pe.Reason() + ")"
		} else if err != nil {
			l.Error = err.Error()
		}
		l.Digest = d
		if d != "" {
			l.Complete = completeAt(ctx, r.Peer, repo, d, 0)
		}
		out = append(out, l)
	}
	return out, nil
}

// lockedHere resolves a read-locked ref from the records (no content is
// read) and notes its locks in l.
func (s *Service) lockedHere(ctx context.Context, repo string, ref stowage.Reference, l *Location) (stowage.ManifestRecord, error) {
	var m stowage.ManifestRecord
	var locks stowage.Locks
	err := s.Reg.DB().View(ctx, func(tx stowage.Tx) error {
		rec, err := tx.Repositories().GetRepository(repo)
		if err != nil {
			return err
		}
		locks = rec.Locks
		d := ref.Digest
		if !ref.IsDigest() {
			t, err := tx.Tags().GetTagRecord(repo, ref.Tag)
			if err != nil {
				return err
			}
			d, locks = t.Digest, locks|t.Locks
		}
		m, err = tx.Manifests().GetManifest(repo, d)
		if err == nil {
			locks |= m.Locks
		}
		return err
	})
	if errors.Is(err, stowage.ErrNotFound) {
		return m, stowage.Errorf(stowage.CodeManifestUnknown, "%s: %s not here", repo, ref)
	}
	if err != nil {
		return m, err
	}
	l.Locked = (locks & stowage.LockRead).String()
	return m, nil
}

// completeHere reports whether this region holds manifest d of repo and
// everything it references.
func (s *Service) completeHere(ctx context.Context, repo string, d stowage.Digest, depth int) bool {
	rec, body, err := s.Reg.GetManifest(ctx, repo, stowage.Reference{Digest: d})
	if err != nil || depth > 4 {
		return false
	}
	m, err := stowage.ParseManifest(rec.MediaType, body)
	if err != nil {
		return false
	}
	for _, ref := range m.References() {
		if ref.Kind == stowage.RefManifest {
			if !s.completeHere(ctx, repo, ref.Digest, depth+1) {
				return false
			}
		} else if _, err := s.Reg.StatBlob(ctx, repo, ref.Digest); err != nil {
			return false
		}
	}
	return true
}

// completeAt is completeHere at a peer (its OCI API, without read-through).
func completeAt(ctx context.Context, p *Client, repo string, d stowage.Digest, depth int) bool {
	body, mt, _, err := p.GetManifest(ctx, repo, stowage.Reference{Digest: d})
	if err != nil || depth > 4 {
		return false
	}
	m, err := stowage.ParseManifest(mt, body)
	if err != nil {
		return false
	}
	for _, ref := range m.References() {
		if ref.Kind == stowage.RefManifest {
			if !completeAt(ctx, p, repo, ref.Digest, depth+1) {
				return false
			}
		} else if ok, err := p.HasBlob(ctx, repo, ref.Digest); err != nil || !ok {
			return false
		}
	}
	return true
}

// StartBackfill starts a back-fill of peer (Replicator.Backfill) in the
// background, for as long as Run runs (or, before Run, without end); its
// progress is in Status.
func (s *Service) StartBackfill(ctx context.Context, peer string) error {
	s.mu.Lock()
	if s.runCtx != nil {
		ctx = s.runCtx
	} else {
		ctx = context.WithoutCancel(ctx)
	}
	s.mu.Unlock()
	for _, r := range s.Replicators {
		if r.Peer.Name != peer {
			continue
		}
		if err := r.StartBackfill(ctx); err != nil {
			return stowage.Errorf(stowage.CodeDenied, "a back-fill of %s is running: follow it with `stowage replication status` (or `stowage replication backfill %s`)", peer, peer)
		}
		return nil
	}
	return stowage.Errorf(stowage.CodeNameUnknown, "no peer named %q in this region's replication configuration", peer)
}
