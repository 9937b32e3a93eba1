package replication

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stowage/stowage"
)

// BackfillStatus is the progress of a back-fill of one peer.
type BackfillStatus struct {
	Running  bool      `json:"running"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitzero"`
	// Trigger: "requested" (the API, `stowage replication backfill`),
	// "behind-retention" (the peer's cursor fell behind the change feed's
	// retention), "new-peer" (a peer without a cursor joined a registry
	// whose feed was already trimmed) or "resumed" (an automatic back-fill
	// a restart interrupted). Missed: the events retention deleted before
	// they were shipped (automatic triggers).
	Trigger    string `json:"trigger"`
	Missed     string `json:"missed,omitempty"`
	ReposTotal int    `json:"repositoriesTotal"` // repositories here when it started
	Repos      int    `json:"repositories"`      // repositories walked so far
	Checked    int    `json:"checked"`           // tags and untagged manifests compared with the peer
	Shipped    int    `json:"shipped"`           // of which the peer lacked (or held older): shipped
	Applied    int    `json:"applied"`           // of which the peer applied (the rest: it had a later change)
	// Skipped: tags and manifests read-locked here or at the peer: never
	// shipped (docs/replication.md); the walk goes on past them.
	Skipped int `json:"skipped"`
	// Refused: tags and manifests the peer refused for good (a limit
	// there, a manifest it cannot take: see refusedForGood), the last
	// refusal; the walk goes on past them, and a later back-fill ships
	// them once the cause is gone.
	Refused     int    `json:"refused"`
	LastRefused string `json:"lastRefused,omitempty"`
	Bytes       int64  `json:"bytesShipped"`      // blob bytes uploaded to the peer
	Current     string `json:"current,omitempty"` // the repository being walked
	// Attempts: walks started (an automatic back-fill retries a failed
	// walk with backoff, from the repository that failed).
	Attempts  int    `json:"attempts"`
	LastError string `json:"lastError,omitempty"`
}

type backfill struct {
	mu    sync.Mutex
	st    *BackfillStatus // nil: never started
	again *BackfillStatus // an automatic trigger while one ran: run again after it
	auto  atomic.Int64    // automatic back-fills started (metric)
	ctx   context.Context // Run's: automatic back-fills end with it
}

func (b *backfill) update(fn func(*BackfillStatus)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	fn(b.st)
}

// ErrBackfillRunning refuses a second back-fill of a peer while one runs.
var ErrBackfillRunning = errors.New("a back-fill of this peer is running")

// BackfillStatus returns the last back-fill's progress (nil: none since
// this process started).
func (r *Replicator) BackfillStatus() *BackfillStatus {
	r.fill.mu.Lock()
	defer r.fill.mu.Unlock()
	if r.fill.st == nil {
		return nil
	}
	c := *r.fill.st
	return &c
}

// AutoBackfills is how many back-fills this process started by itself
// (cursor behind retention, new peer on a trimmed feed, resumed).
func (r *Replicator) AutoBackfills() int64 { return r.fill.auto.Load() }

// claim marks a back-fill running (false: one already runs).
func (r *Replicator) claim(trigger, missed string) bool {
	r.fill.mu.Lock()
	defer r.fill.mu.Unlock()
	if r.fill.st != nil && r.fill.st.Running {
		return false
	}
	r.fill.st = &BackfillStatus{Running: true, Started: time.Now().UTC(), Trigger: trigger, Missed: missed}
	return true
}

// Backfill walks this region's catalog online and ships to the peer what
// it lacks: each tag whose digest the peer does not hold under that tag,
// and each untagged manifest the peer does not hold, as a push (blobs the
// peer has skipped) with this region's clock reading of it (or, for content
// from before replication, one at the tag's or manifest's time). The peer's
// clocks decide: what it changed later stays. Deletions are not walked
// (the change feed carries them; a region that never had an image needs no
// tombstone of it). It is for a region that joins with data, or whose
// cursor fell behind the feed's retention; the feed's replicator runs
// meanwhile. Progress: BackfillStatus (and `replication status`).
func (r *Replicator) Backfill(ctx context.Context) error {
	if !r.claim("requested", "") {
		return ErrBackfillRunning
	}
	return r.walk(ctx, false)
}

// StartBackfill claims the peer's back-fill now (ErrBackfillRunning when
// one runs), so its status shows it running as soon as this returns, and
// walks in the background until ctx ends.
func (r *Replicator) StartBackfill(ctx context.Context) error {
	if !r.claim("requested", "") {
		return ErrBackfillRunning
	}
	go func() {
		if err := r.walk(ctx, false); err != nil {
			r.Log.Error("replication back-fill failed", "err", err)
		}
	}()
	return nil
}

// walk runs the claimed back-fill to its end; retry (automatic
// back-fills) walks again after a failure, with backoff, from the
// repository that failed, until it succeeds or ctx ends. Then, if an
// automatic trigger came meanwhile, it walks again.
func (r *Replicator) walk(ctx context.Context, retry bool) error {
	ctx = context.WithValue(ctx, fillKey{}, &r.fill)
	for {
		from, wait := "", time.Second
		var err error
		for {
			r.fill.update(func(s *BackfillStatus) { s.Attempts++ })
			from, err = r.backfill(ctx, from)
			if err == nil || !retry || ctx.Err() != nil {
				break
			}
			r.fill.update(func(s *BackfillStatus) { s.LastError = err.Error() })
			r.Log.Warn("replication: back-fill failed; retrying", "from", from, "in", wait, "err", err)
			if !sleepCtx(ctx, wait) {
				break
			}
			wait = min(2*wait, time.Minute)
		}
		r.fill.mu.Lock()
		pending := r.fill.again != nil
		r.fill.mu.Unlock()
		if err == nil && retry && !pending {
			// Done, nothing pending: the marker goes (before the status
			// says done).
			if derr := r.cursors.DeleteCursor(context.WithoutCancel(ctx), BackfillMarker(r.Peer.Name)); derr != nil {
				r.Log.Warn("replication: could not clear the back-fill marker", "err", derr)
			}
		}
		r.fill.mu.Lock()
		s := r.fill.st
		s.Running, s.Finished, s.Current = false, time.Now().UTC(), ""
		if err != nil {
			s.LastError = err.Error()
		} else {
			s.LastError = ""
		}
		done := *s
		next := r.fill.again
		r.fill.again = nil
		if next != nil && ctx.Err() == nil {
			next.Running, next.Started = true, time.Now().UTC()
			r.fill.st = next
			retry = true
		}
		r.fill.mu.Unlock()
		if err == nil && done.Trigger != "requested" {
			r.Log.Info("replication: back-fill done", "trigger", done.Trigger,
				"checked", done.Checked, "shipped", done.Shipped, "bytes", done.Bytes)
		}
		if next == nil || ctx.Err() != nil {
			return err
		}
	}
}

// BackfillMarker is the feed cursor that records an automatic back-fill
// not finished yet (so a restart resumes it); its seq is where the
// replicator resumed, so it holds no event back that the replicator's own
// cursor would not.
func BackfillMarker(peer string) string { return "replication-backfill:" + peer }

// startAuto starts an automatic back-fill, or, when one runs, a second one
// after it (what the running walk passed already may have changed since).
func (r *Replicator) startAuto(trigger, missed string) {
	r.fill.auto.Add(1)
	r.fill.mu.Lock()
	ctx := r.fill.ctx
	r.fill.mu.Unlock()
	if ctx == nil {
		ctx = context.Background()
	}
	r.fill.mu.Lock()
	if r.fill.st != nil && r.fill.st.Running {
		// Under the lock that walk takes to look for it when it ends.
		r.fill.again = &BackfillStatus{Trigger: trigger, Missed: missed}
		r.fill.mu.Unlock()
		return
	}
	r.fill.st = &BackfillStatus{Running: true, Started: time.Now().UTC(), Trigger: trigger, Missed: missed}
	r.fill.mu.Unlock()
	go func() { _ = r.walk(ctx, true) }()
}

// behind is the feed consumer's Behind: events after the cursor were
// deleted by retention before they were shipped (or the peer is new, its
// cursor at 0, and the feed no longer starts at event 1). What they
// changed is shipped by a back-fill, started now (its pending state kept in
// the marker cursor, for a restart), and the replicator goes on from the
// oldest retained event meanwhile.
func (r *Replicator) behind(ctx context.Context, err error, oldest int64) (int64, error) {
	var after, first, last int64
	var se *stowage.Error
	if errors.As(err, &se) {
		if d, ok := se.Detail.(map[string]int64); ok {
			after, first, last = d["after"], d["firstMissed"], d["lastMissed"]
		}
	}
	trigger := "behind-retention"
	if after == 0 {
		trigger = "new-peer"
	}
	missed := fmt.Sprintf("events %d to %d", first, last)
	r.Log.Warn("replication: events were deleted by the change feed's retention before they were shipped to the peer; back-filling it",
		"trigger", trigger, "firstMissed", first, "lastMissed", last, "oldest", oldest)
	if err := r.cursors.SaveCursor(ctx, BackfillMarker(r.Peer.Name), oldest-1, time.Now()); err != nil {
		return 0, err // the consumer stops: Run's caller logs it
	}
	r.startAuto(trigger, missed)
	return oldest - 1, nil
}

// prepare runs before the consumer: it remembers ctx for automatic
// back-fills, gives a new peer a cursor at 0 (so a feed already trimmed is
// reported to behind, not silently started from its oldest event), and
// resumes an automatic back-fill a restart interrupted.
func (r *Replicator) prepare(ctx context.Context) {
	r.fill.mu.Lock()
	r.fill.ctx = ctx
	r.fill.mu.Unlock()
	name := ConsumerName(r.Peer.Name)
	if _, ok, err := r.cursors.Cursor(ctx, name); err == nil && !ok {
		if err := r.cursors.SaveCursor(ctx, name, 0, time.Now()); err != nil {
			r.Log.Warn("replication: could not create the peer's cursor", "err", err)
		}
	}
	if m, ok, err := r.cursors.Cursor(ctx, BackfillMarker(r.Peer.Name)); err == nil && ok {
		r.Log.Warn("replication: resuming an automatic back-fill a restart interrupted", "since", m.Updated)
		r.startAuto("resumed", fmt.Sprintf("events before %d", m.Seq+1))
	}
}

type fillKey struct{}

// countShipped adds n blob bytes to the back-fill ctx belongs to, if any.
func countShipped(ctx context.Context, n int64) {
	if b, ok := ctx.Value(fillKey{}).(*backfill); ok {
		b.update(func(s *BackfillStatus) { s.Bytes += n })
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// countRepos counts the repositories here (the back-fill's total).
func (r *Replicator) countRepos(ctx context.Context) (int, error) {
	n, after := 0, ""
	for {
		var repos []string
		if err := r.Reg.DB().View(ctx, func(tx stowage.Tx) (err error) {
			repos, err = tx.Repositories().ListRepositories(after, 1000, true)
			return err
		}); err != nil {
			return n, err
		}
		if len(repos) == 0 {
			return n, nil
		}
		n += len(repos)
		after = repos[len(repos)-1]
	}
}

// backfill walks the repositories after from ("": all) and returns the
// one it failed at (to resume from: from is exclusive, so the one before).
func (r *Replicator) backfill(ctx context.Context, from string) (string, error) {
	if total, err := r.countRepos(ctx); err != nil {
		return from, err
	} else {
		r.fill.update(func(s *BackfillStatus) { s.ReposTotal = total })
	}
	after := from
	for {
		var repos []string
		if err := r.Reg.DB().View(ctx, func(tx stowage.Tx) (err error) {
			repos, err = tx.Repositories().ListRepositories(after, 100, true)
			return err
		}); err != nil {
			return after, err
		}
		if len(repos) == 0 {
			return after, nil
		}
		for _, repo := range repos {
			r.fill.update(func(s *BackfillStatus) { s.Current = repo })
			if err := r.backfillRepo(ctx, repo); err != nil {
				return after, fmt.Errorf("repository %s: %w", repo, err)
			}
			r.fill.update(func(s *BackfillStatus) { s.Repos++ })
			after = repo
		}
	}
}

// fillItem is one tag, or one untagged manifest (Tag ""), to compare.
type fillItem struct {
	Tag    string
	Digest stowage.Digest
	HLC    HLC
}

func (r *Replicator) backfillRepo(ctx context.Context, repo string) error {
	var items []fillItem
	err := r.Reg.DB().View(ctx, func(tx stowage.Tx) error {
		items = items[:0]
		ct, _ := tx.(ClockTx)
		clock := func(name string, at time.Time) HLC {
			if ct != nil {
				if c, err := ct.ReplicationClocks().GetClock(repo, name); err == nil && !c.Removed() && !fetchedCopy(c) {
					return c.HLC
				}
			}
			return HLC{Wall: at.UnixMilli(), Region: r.Region} // from before replication
		}
		tags, err := tx.Tags().TagRecords(repo)
		if err != nil {
			return err
		}
		tagged := map[stowage.Digest]bool{}
		for _, t := range tags {
			tagged[t.Digest] = true
			items = append(items, fillItem{Tag: t.Name, Digest: t.Digest, HLC: clock(t.Name, t.Updated)})
		}
		ms, err := tx.Manifests().ListManifests(repo)
		if err != nil {
			return err
		}
		for _, m := range ms {
			if !tagged[m.Digest] {
				items = append(items, fillItem{Digest: m.Digest, HLC: clock(ManifestName(m.Digest), m.Created)})
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, it := range items {
		if err := ctx.Err(); err != nil {
			return err
		}
		ref := stowage.Reference{Tag: it.Tag}
		if it.Tag == "" {
			ref = stowage.Reference{Digest: it.Digest}
		}
		skip := func() { r.fill.update(func(s *BackfillStatus) { s.Checked++; s.Skipped++ }) }
		if r.readLocked(ctx, repo, it) {
			skip()
			continue
		}
		have, err := r.Peer.HeadManifest(ctx, repo, ref)
		if ReadLocked(err) {
			skip() // read-locked at the peer (a lock not yet replicated here)
			continue
		}
		if err != nil {
			return err
		}
		r.fill.update(func(s *BackfillStatus) { s.Checked++ })
		if have == it.Digest {
			continue
		}
		ch := Change{Kind: stowage.EventPush, Origin: r.Region, Repo: repo, Digest: it.Digest, HLC: it.HLC}
		if it.Tag != "" {
			ch.Tags = []string{it.Tag}
		}
		// A refusal for good of one image (a limit at the peer, a
		// manifest it cannot take) is counted and passed over: the walk
		// goes on to the rest (outside review: one such image stopped
		// every back-fill, and an automatic one retried it for ever).
		refused := func(err error) bool {
			if !refusedForGood(err) {
				return false
			}
			r.fill.update(func(s *BackfillStatus) {
				s.Refused++
				s.LastRefused = fmt.Sprintf("%s:%s: %v", repo, ref, err)
			})
			r.Log.Warn("replication: back-fill: the peer refused an image for good; passed over", "repo", repo, "ref", ref.String(), "err", err)
			return true
		}
		body, mt, err := r.shipContent(ctx, repo, it.Digest, it.HLC, map[stowage.Digest]bool{})
		if refused(err) {
			continue
		}
		if err != nil {
			return err
		}
		if body == nil {
			continue // deleted meanwhile
		}
		ch.Manifest, ch.MediaType = body, mt
		res, err := r.Peer.Apply(ctx, ch)
		if refused(err) {
			continue
		}
		if err != nil {
			return err
		}
		r.fill.update(func(s *BackfillStatus) {
			s.Shipped++
			if res.Applied {
				s.Applied++
			}
		})
	}
	return nil
}

// readLocked reports whether the repository, the item's tag or its
// manifest is read-locked here (what is read-locked is not shipped).
func (r *Replicator) readLocked(ctx context.Context, repo string, it fillItem) bool {
	refs := []stowage.Reference{{}, {Digest: it.Digest}}
	if it.Tag != "" {
		refs = append(refs, stowage.Reference{Tag: it.Tag})
	}
	for _, ref := range refs {
		if l, err := r.Reg.Locks(ctx, repo, ref); err == nil && l&stowage.LockRead != 0 {
			return true
		}
	}
	return false
}
