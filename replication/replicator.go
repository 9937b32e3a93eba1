package replication

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/feed"
)

// Replicator ships the changes that originated in this region to one peer:
// a feed.Consumer named "replication:<peer>" (cursor in the database, one
// node at a time, at least once, in order, retried with backoff, never
// skipped). Shipping is idempotent: blobs the peer has are skipped, and the
// peer's clocks turn a change it already has into a no-op.
type Replicator struct {
	Region string
	Peer   *Client
	Reg    *stowage.Registry
	// Concurrency bounds the blob uploads of one manifest (default 4).
	Concurrency int
	Log         *slog.Logger
	// Identities reads the users, tokens and scope maps shipped (nil:
	// access control off, none are).
	Identities IdentityStore

	parked parked // changes the peer refused for good (park)

	fill     backfill   // the last back-fill's progress (backfill.go)
	limit    *rateLimit // Options.Bandwidth; nil: none
	consumer *feed.Consumer
	feed     *feed.Feed
	cursors  feed.CursorStore
}

// Kinds are the events a replicator reads.
var Kinds = []stowage.EventKind{stowage.EventPush, stowage.EventUntag, stowage.EventDelete, stowage.EventLock, stowage.EventRepositoryDelete,
	stowage.EventUser, stowage.EventToken, stowage.EventScopeMap, stowage.EventRestore}

// NewReplicator returns the replicator of region to peer over f, with its
// cursor in cursors; db (if not nil) holds the job lock.
func NewReplicator(region string, peer *Client, reg *stowage.Registry, f *feed.Feed, cursors feed.CursorStore, log *slog.Logger) *Replicator {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("peer", peer.Name) // on every line of this replicator
	r := &Replicator{Region: region, Peer: peer, Reg: reg, Log: log, feed: f, cursors: cursors}
	r.consumer = &feed.Consumer{Name: ConsumerName(peer.Name), Feed: f, Cursors: cursors, DB: reg.DB(), Log: log,
		Query: feed.Query{Kinds: Kinds}, Handle: r.Handle, FromOldest: true,
		Poll: 10 * time.Second, MinBackoff: 500 * time.Millisecond, MaxBackoff: 30 * time.Second}
	r.consumer.Behind = r.behind // never skipped silently: back-filled (backfill.go)
	return r
}

// ConsumerName is the feed cursor of the replicator to peer.
func ConsumerName(peer string) string { return "replication:" + peer }

// Run ships until ctx ends.
func (r *Replicator) Run(ctx context.Context) error {
	r.prepare(ctx)
	return r.consumer.Run(ctx)
}

// Handle ships a page of events, in order; the first failure stops the
// page (the consumer retries it from its start; what was shipped is a
// no-op the second time).
func (r *Replicator) Handle(ctx context.Context, evs []stowage.Event) error {
	for _, e := range evs {
		if e.Origin != "" {
			continue // applied from a region: that region ships it
		}
		ch, ok := ChangeOf(e, r.Region)
		if !ok || isIdentity(ch.Kind) && r.Identities == nil {
			continue
		}
		if err := r.ship(ctx, ch); err != nil {
			err = fmt.Errorf("event %d (%s %s): %w", e.Seq, e.Kind, e.Repo, err)
			if refusedForGood(err) {
				r.park(err)
				continue
			}
			return err
		}
	}
	return nil
}

func (r *Replicator) ship(ctx context.Context, ch Change) error {
	if ch.Kind == stowage.EventPush || ch.Kind == stowage.EventRestore {
		// A restore ships what a push does: a peer whose recycle bin
		// lacks the image stores it as pushed (Applier.restore).
		body, mt, err := r.shipContent(ctx, ch.Repo, ch.Digest, ch.HLC, map[stowage.Digest]bool{})
		if err != nil {
			return err
		}
		if body == nil {
			// Deleted here since (by a delete from a peer, which did not
			// take this push's tags where it was made): shipped without
			// the manifest, its tags go everywhere (Applier.push).
			del, err := manifestClock(ctx, r.Reg, ch.Repo, ch.Digest)
			if err != nil || ch.Kind != stowage.EventPush || len(ch.Tags) == 0 || !del.Removed() || del.HLC.IsZero() {
				return err
			}
		}
		ch.Manifest, ch.MediaType = body, mt
	}
	if isIdentity(ch.Kind) {
		// The record as it is now (a later change of it ships again,
		// with its later clock): a delete ships none (a tombstone).
		rec, err := r.Identities.ReadIdentity(ctx, ch.Kind, ch.Identity)
		if err != nil {
			return err
		}
		ch.Record = rec
	}
	res, err := r.Peer.Apply(ctx, ch)
	if err == nil && !res.Applied && res.Reason != reasonStale {
		r.Log.Warn("replication: the peer did not apply a change", "kind", ch.Kind, "repo", ch.Repo,
			"digest", ch.Digest, "tags", ch.Tags, "reason", res.Reason)
	}
	return err
}

// shipContent makes the peer hold what manifest d references (blobs, then
// child manifests, each applied by digest) and returns its bytes and media
// type. A manifest no longer here (deleted since: its delete follows)
// returns nil.
func (r *Replicator) shipContent(ctx context.Context, repo string, d stowage.Digest, h HLC, seen map[stowage.Digest]bool) ([]byte, string, error) {
	rec, body, err := r.Reg.GetManifest(ctx, repo, stowage.Reference{Digest: d})
	if code := stowage.ErrorCodeOf(err); code == stowage.CodeManifestUnknown || code == stowage.CodeNameUnknown {
		return nil, "", nil
	} else if code == stowage.CodeDenied {
		// Read-locked here: not shipped (docs/replication.md).
		r.Log.Warn("replication: a read-locked manifest is not shipped", "repo", repo, "digest", d)
		return nil, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	m, err := stowage.ParseManifest(rec.MediaType, body)
	if err != nil {
		return nil, "", err
	}
	var blobs []stowage.Digest
	for _, ref := range m.References() {
		if seen[ref.Digest] {
			continue
		}
		seen[ref.Digest] = true
		if ref.Kind == stowage.RefManifest {
			cb, mt, err := r.shipContent(ctx, repo, ref.Digest, h, seen)
			if err != nil {
				return nil, "", err
			}
			if cb == nil {
				continue
			}
			child := Change{Kind: stowage.EventPush, Origin: r.Region, Repo: repo, Digest: ref.Digest, HLC: h, Manifest: cb, MediaType: mt}
			if _, err := r.Peer.Apply(ctx, child); err != nil {
				return nil, "", err
			}
			continue
		}
		blobs = append(blobs, ref.Digest)
	}
	if err := r.shipBlobs(ctx, repo, blobs); err != nil {
		return nil, "", err
	}
	return body, rec.MediaType, nil
}

// shipBlobs uploads the blobs the peer's repo lacks, at most Concurrency
// at a time.
func (r *Replicator) shipBlobs(ctx context.Context, repo string, ds []stowage.Digest) error {
	n := r.Concurrency
	if n <= 0 {
		n = 4
	}
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for _, d := range ds {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := r.shipBlob(ctx, repo, d); err != nil {
				mu.Lock()
				if first == nil { // one is enough to say why; the rest retry with it
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first
}

func (r *Replicator) shipBlob(ctx context.Context, repo string, d stowage.Digest) error {
	has, err := r.Peer.HasBlob(ctx, repo, d)
	if err != nil || has {
		return err
	}
	rc, b, err := r.Reg.OpenBlob(ctx, repo, d, 0)
	if code := stowage.ErrorCodeOf(err); code == stowage.CodeBlobUnknown {
		return nil // an external layer, or gone: the manifest's apply says
	}
	if err != nil {
		return err
	}
	defer rc.Close()
	var body io.Reader = rc
	if r.limit != nil {
		body = &limitedReader{ctx: ctx, r: rc, l: r.limit}
	}
	if err := r.Peer.UploadBlob(ctx, repo, d, b.Size, body); err != nil {
		if refusedForGood(err) {
			// The peer's quota (or limit) refuses the upload: its
			// applier fetches the blob itself, admitted as part of
			// the replicated change (Applier.Fetch); if it cannot,
			// the apply refuses the change and it is parked.
			r.Log.Info("replication: the peer refused a blob upload; its apply fetches it", "repo", repo, "digest", d, "err", err)
			return nil
		}
		return err
	}
	countShipped(ctx, b.Size)
	return nil
}

// parked counts the changes a peer refused for good (refusedForGood),
// which the replicator records and passes over rather than retry forever:
// one such change must not stop every later one (deletes included) from
// reaching the peer. A back-fill (backfill.go) ships again what a parked
// push left out, once the cause is gone (docs/replication.md "Locks,
// quotas and convergence").
type parked struct {
	mu   sync.Mutex
	n    int64
	last string
	at   time.Time
}

// Parked returns how many changes the peer refused for good since this
// process started, the last refusal and when it was.
func (r *Replicator) Parked() (n int64, last string, at time.Time) {
	r.parked.mu.Lock()
	defer r.parked.mu.Unlock()
	return r.parked.n, r.parked.last, r.parked.at
}

func (r *Replicator) park(err error) {
	r.parked.mu.Lock()
	r.parked.n++
	r.parked.last, r.parked.at = err.Error(), time.Now()
	r.parked.mu.Unlock()
	r.Log.Warn("replication: the peer refused a change for good; passed over (a back-fill ships it again once the cause is gone)",
		"err", err)
}

// refusedForGood reports whether err is a peer's refusal that retrying the
// same change cannot overcome: a 4xx about the change itself (its
// manifest refused, MANIFEST_BLOB_UNKNOWN, a storage limit or quota there,
// too large). Not: authentication and permission refusals (the peer's
// credentials, fixed by an operator), 404 (what it needs may arrive from
// another region), 408, 429 and every connection error or 5xx: those are
// retried.
func refusedForGood(err error) bool {
	var pe *PeerError
	if !errors.As(err, &pe) {
		return false
	}
	switch pe.Status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity,
		http.StatusRequestedRangeNotSatisfiable, http.StatusUnsupportedMediaType:
		return true
	case http.StatusForbidden:
		// A limit's refusal names its numbers (stowage.limitError); a
		// permission refusal does not.
		return strings.Contains(pe.Body, `"limitBytes"`)
	}
	return false
}
