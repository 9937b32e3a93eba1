package replication

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/stowage/stowage"
)

// BackfillStatus is the progress of a back-fill of one peer.
type BackfillStatus struct {
	Running   bool      `json:"running"`
	Started   time.Time `json:"started"`
	Finished  time.Time `json:"finished,omitzero"`
	Repos     int       `json:"repositories"`      // repositories walked so far
	Checked   int       `json:"checked"`           // tags and untagged manifests compared with the peer
	Shipped   int       `json:"shipped"`           // of which the peer lacked (or held older): shipped
	Applied   int       `json:"applied"`           // of which the peer applied (the rest: it had a later change)
	Current   string    `json:"current,omitempty"` // the repository being walked
	LastError string    `json:"lastError,omitempty"`
}

type backfill struct {
	mu sync.Mutex
	st *BackfillStatus // nil: never started
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
	r.fill.mu.Lock()
	if r.fill.st != nil && r.fill.st.Running {
		r.fill.mu.Unlock()
		return ErrBackfillRunning
	}
	r.fill.st = &BackfillStatus{Running: true, Started: time.Now().UTC()}
	r.fill.mu.Unlock()
	err := r.backfill(ctx)
	r.fill.update(func(s *BackfillStatus) {
		s.Running, s.Finished, s.Current = false, time.Now().UTC(), ""
		if err != nil {
			s.LastError = err.Error()
		}
	})
	return err
}

func (r *Replicator) backfill(ctx context.Context) error {
	after := ""
	for {
		var repos []string
		if err := r.Reg.DB().View(ctx, func(tx stowage.Tx) (err error) {
			repos, err = tx.Repositories().ListRepositories(after, 100, true)
			return err
		}); err != nil {
			return err
		}
		if len(repos) == 0 {
			return nil
		}
		for _, repo := range repos {
			r.fill.update(func(s *BackfillStatus) { s.Current = repo })
			if err := r.backfillRepo(ctx, repo); err != nil {
				return fmt.Errorf("repository %s: %w", repo, err)
			}
			r.fill.update(func(s *BackfillStatus) { s.Repos++ })
		}
		after = repos[len(repos)-1]
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
		have, err := r.Peer.HeadManifest(ctx, repo, ref)
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
		body, mt, err := r.shipContent(ctx, repo, it.Digest, it.HLC, map[stowage.Digest]bool{})
		if err != nil {
			return err
		}
		if body == nil {
			continue // deleted meanwhile
		}
		ch.Manifest, ch.MediaType = body, mt
		res, err := r.Peer.Apply(ctx, ch)
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
