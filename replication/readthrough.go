package replication

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/stowage/stowage"
)

// ReadThrough fetches from the peers what a request here misses: a
// manifest (by tag or digest) or a blob on a pull, the blobs of a manifest
// pushed here whose layers went to another region. It verifies digests,
// stores through the engine's normal push path (WithFetched: recorded with
// the peer as origin, never shipped) and never fetches what this region
// removed (a tombstone in its clocks). ociapi calls it on a miss, and on
// every referrers request (FetchReferrers).
type ReadThrough struct {
	Reg   *stowage.Registry
	Peers []*Client
	Log   *slog.Logger
	// ReferrersWait bounds how long a referrers request waits for the
	// peers (0: DefaultReferrersWait).
	ReferrersWait time.Duration
	// Wait bounds how long a manifest or blob miss waits for the first
	// peer that has it (0: DefaultReadThroughWait); the fetch that follows
	// is bounded by the peer client's idle timeout only.
	Wait time.Duration

	warned sync.Map // peer name -> true: its refusal of referrers was logged
}

// DefaultReferrersWait is how long a referrers request waits, at most, for
// the peers' lists and the referrers it fetches: a peer slower than that is
// skipped and the region answers with what it holds.
const DefaultReferrersWait = 3 * time.Second

// DefaultReadThroughWait is how long a manifest or blob miss waits, at
// most, for a peer to answer that it has it: a peer that accepts
// connections and never answers cannot hold a pull longer than that.
const DefaultReadThroughWait = 5 * time.Second

// race asks every peer not down at once with open (each with its own
// context) and returns the first that succeeds, with its value and the
// cancel of its context (the caller calls it when done with the value).
// The others are cancelled, and drop releases what a late success opened.
// With no success, it returns every peer's error once all answered, or
// once wait has passed (the peers still asked are then cancelled).
func race[T any](ctx context.Context, peers []*Client, wait time.Duration, what string,
	open func(context.Context, *Client) (T, error), drop func(T)) (*Client, T, context.CancelFunc, error) {
	type result struct {
		p   *Client
		v   T
		err error
	}
	var (
		zero    T
		errs    []error
		cancels = map[*Client]context.CancelFunc{}
		results = make(chan result, len(peers)) // buffered: no sender blocks after we return
	)
	for _, p := range peers {
		if err := skipDown(p); err != nil {
			errs = append(errs, err)
			continue
		}
		pctx, cancel := context.WithCancel(ctx)
		cancels[p] = cancel
		go func() {
			v, err := open(pctx, p)
			results <- result{p, v, err}
		}()
	}
	// Late answers after we returned: release what they opened.
	drain := func(n int) {
		go func() {
			for ; n > 0; n-- {
				if r := <-results; r.err == nil && drop != nil {
					drop(r.v)
				}
			}
		}()
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for pending := len(cancels); pending > 0; {
		select {
		case r := <-results:
			pending--
			if r.err == nil {
				for p, cancel := range cancels {
					if p != r.p {
						cancel()
					}
				}
				drain(pending)
				return r.p, r.v, cancels[r.p], nil
			}
			cancels[r.p]()
			errs = append(errs, r.err)
		case <-timer.C:
			for _, cancel := range cancels {
				cancel()
			}
			drain(pending)
			errs = append(errs, fmt.Errorf("read-through of %s: %d peer(s) did not answer within %s", what, pending, wait))
			return nil, zero, nil, errors.Join(errs...)
		case <-ctx.Done():
			for _, cancel := range cancels {
				cancel()
			}
			drain(pending)
			return nil, zero, nil, errors.Join(append(errs, ctx.Err())...)
		}
	}
	return nil, zero, nil, errors.Join(errs...)
}

func (rt *ReadThrough) wait() time.Duration {
	if rt.Wait > 0 {
		return rt.Wait
	}
	return DefaultReadThroughWait
}

// removed reports whether repo's tag or manifest name has a tombstone here.
func (rt *ReadThrough) removed(ctx context.Context, repo, name string) (bool, error) {
	var gone bool
	err := rt.Reg.DB().View(ctx, func(tx stowage.Tx) error {
		ct, ok := tx.(ClockTx)
		if !ok {
			return nil
		}
		c, err := ct.ReplicationClocks().GetClock(repo, name)
		if errors.Is(err, stowage.ErrNotFound) {
			return nil
		}
		gone = err == nil && c.Removed()
		return err
	})
	return gone, err
}

// skipDown is the error of a peer that failed to answer a moment ago
// (Client.Down): read-through skips it rather than wait for it again.
func skipDown(p *Client) error {
	if down, until := p.Down(); down {
		return fmt.Errorf("peer %s did not answer a moment ago: skipped until %s", p.Name, until.UTC().Format(time.RFC3339))
	}
	return nil
}

// FetchManifest fetches repo's manifest ref from the first peer that has
// it, with everything it references, stores it here by digest and returns
// the digest. A tag is not recorded here: replication brings it, with its
// clock. Errors: the peers' (none has it), or a tombstone here.
func (rt *ReadThrough) FetchManifest(ctx context.Context, repo string, ref stowage.Reference) (stowage.Digest, error) {
	name := ref.Tag
	if ref.IsDigest() {
		name = ManifestName(ref.Digest)
	}
	if gone, err := rt.removed(ctx, repo, name); err != nil || gone {
		return "", errors.Join(err, fmt.Errorf("%s:%s was removed here", repo, name))
	}
	// Every peer is asked at once; the first whose manifest has the right
	// digest wins, and only its manifest (with what it references) is
	// fetched and stored.
	type got struct {
		body []byte
		mt   string
		d    stowage.Digest
	}
	p, m, cancel, err := race(ctx, rt.Peers, rt.wait(), repo+":"+ref.String(), func(ctx context.Context, p *Client) (got, error) {
		body, mt, d, err := p.GetManifest(ctx, repo, ref)
		return got{body, mt, d}, err
	}, nil)
	if err != nil {
		return "", err
	}
	cancel() // the body is read: the rest is fetched with the caller's context
	d, err := rt.storeManifest(ctx, p, repo, m.body, m.mt, m.d, 0)
	if err != nil {
		return "", err
	}
	rt.Log.Info("read-through: fetched a manifest from a peer", "peer", p.Name, "repo", repo, "ref", ref.String(), "digest", d)
	return d, nil
}

func (rt *ReadThrough) fetchManifest(ctx context.Context, p *Client, repo string, ref stowage.Reference, depth int) (stowage.Digest, error) {
	if depth > 4 {
		return "", fmt.Errorf("manifests nested too deep")
	}
	body, mt, d, err := p.GetManifest(ctx, repo, ref)
	if err != nil {
		return "", err
	}
	return rt.storeManifest(ctx, p, repo, body, mt, d, depth)
}

// storeManifest stores here manifest d (body, of media type mt) fetched
// from p, after what it references, unless it was deleted here.
func (rt *ReadThrough) storeManifest(ctx context.Context, p *Client, repo string, body []byte, mt string, d stowage.Digest, depth int) (stowage.Digest, error) {
	if gone, err := rt.removed(ctx, repo, ManifestName(d)); err != nil || gone {
		return "", errors.Join(err, fmt.Errorf("manifest %s@%s was deleted here", repo, d))
	}
	if err := rt.fetchRefs(ctx, p, repo, mt, body, depth); err != nil {
		return "", err
	}
	// Content another region accepted: admitted past this region's quota
	// and write locks, as replication admits it (a pull right after a
	// push elsewhere must not answer "unknown" where replication would
	// deliver the same bytes anyway).
	_, err := rt.Reg.PutManifest(stowage.WithReplicatedChange(WithFetched(ctx, p.Name)), repo, stowage.Reference{Digest: d}, mt, body, nil)
	return d, err
}

// fetchRefs fetches from p the blobs and child manifests of a manifest
// that repo lacks here.
func (rt *ReadThrough) fetchRefs(ctx context.Context, p *Client, repo, mediaType string, body []byte, depth int) error {
	m, err := stowage.ParseManifest(mediaType, body)
	if err != nil {
		return err
	}
	for _, ref := range m.References() {
		if ref.Kind == stowage.RefManifest {
			if _, err := rt.Reg.ResolveManifest(ctx, repo, stowage.Reference{Digest: ref.Digest}); err == nil {
				continue
			}
			if _, err := rt.fetchManifest(ctx, p, repo, stowage.Reference{Digest: ref.Digest}, depth+1); err != nil {
				return err
			}
			continue
		}
		if _, err := rt.Reg.StatBlob(ctx, repo, ref.Digest); err == nil {
			continue
		}
		// The manifest comes here with it: wanted again, if deleted here.
		if err := rt.clearBlobTombstone(ctx, repo, ref.Digest); err != nil {
			return err
		}
		if err := rt.fetchBlob(ctx, p, repo, ref.Digest); err != nil && !IsNotFound(err) {
			return err // a layer no peer has: the manifest's own check decides
		}
	}
	return nil
}

func (rt *ReadThrough) fetchBlob(ctx context.Context, p *Client, repo string, d stowage.Digest) error {
	rc, size, err := p.OpenBlob(ctx, repo, d)
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = rt.Reg.PutBlob(stowage.WithReplicatedChange(ctx), repo, d, rc, size) // verifies digest and size; past the quota, as above
	return err
}

// FetchBlob fetches repo's blob d from the first peer that has it,
// unless a client deleted it here (a tombstone, BlobName).
func (rt *ReadThrough) FetchBlob(ctx context.Context, repo string, d stowage.Digest) error {
	if gone, err := rt.removed(ctx, repo, BlobName(d)); err != nil || gone {
		return errors.Join(err, fmt.Errorf("blob %s@%s was deleted here", repo, d))
	}
	return rt.fetchBlobAny(ctx, repo, d)
}

func (rt *ReadThrough) fetchBlobAny(ctx context.Context, repo string, d stowage.Digest) error {
	// Every peer is asked at once; the first to answer with the blob is
	// read (digest and size verified), the others are cancelled.
	type open struct {
		rc   io.ReadCloser
		size int64
	}
	p, b, cancel, err := race(ctx, rt.Peers, rt.wait(), repo+"@"+string(d), func(ctx context.Context, p *Client) (open, error) {
		rc, size, err := p.OpenBlob(ctx, repo, d)
		return open{rc, size}, err
	}, func(o open) { o.rc.Close() })
	if err != nil {
		return err
	}
	defer cancel()
	defer b.rc.Close()
	if _, err := rt.Reg.PutBlob(stowage.WithReplicatedChange(ctx), repo, d, b.rc, b.size); err != nil { // verifies digest and size; past the quota, as a manifest
		return err
	}
	rt.Log.Info("read-through: fetched a blob from a peer", "peer", p.Name, "repo", repo, "digest", d)
	return nil
}

// FetchReferences fetches what a manifest pushed here references and repo
// lacks, from the peers (a push whose blobs went to another region).
func (rt *ReadThrough) FetchReferences(ctx context.Context, repo, mediaType string, body []byte) error {
	m, err := stowage.ParseManifest(mediaType, body)
	if err != nil {
		return err
	}
	for _, ref := range m.References() {
		if ref.Kind == stowage.RefManifest {
			if _, err := rt.Reg.ResolveManifest(ctx, repo, stowage.Reference{Digest: ref.Digest}); err == nil {
				continue
			}
			if _, err := rt.FetchManifest(ctx, repo, stowage.Reference{Digest: ref.Digest}); err != nil {
				return err
			}
			continue
		}
		if _, err := rt.Reg.StatBlob(ctx, repo, ref.Digest); err == nil {
			continue
		}
		// Pushed here with this manifest: wanted again, if deleted here.
		if err := rt.clearBlobTombstone(ctx, repo, ref.Digest); err != nil {
			return err
		}
		if err := rt.fetchBlobAny(ctx, repo, ref.Digest); err != nil {
			rt.Log.Info("read-through: no peer has a blob a pushed manifest references", "repo", repo, "digest", ref.Digest, "err", err)
		}
	}
	return nil
}

// FetchReferrers brings here the referrers of repo's manifest subject
// (of artifactType, unless "") that a peer lists and this region lacks: it
// asks every peer at once for its list and fetches each missing referrer
// manifest as FetchManifest does (digest verified, blobs with it, kept as a
// read-through copy). A referrer or subject deleted here is not fetched
// (tombstone), nor one of a repository deleted here after it was made. It
// returns within the ReferrersWait: a peer that has not answered by then
// is skipped. The caller then lists what the region holds, which is the
// union, each referrer once. Errors are only reported: the caller's answer
// is still the region's own list.
func (rt *ReadThrough) FetchReferrers(ctx context.Context, repo string, subject stowage.Digest, artifactType string) error {
	if gone, err := rt.removed(ctx, repo, ManifestName(subject)); err != nil || gone {
		return errors.Join(err, fmt.Errorf("manifest %s@%s was deleted here", repo, subject))
	}
	wait := rt.ReferrersWait
	if wait <= 0 {
		wait = DefaultReferrersWait
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	// Each peer lists and fetches on its own, so a slow one does not use
	// up the time of the others; a referrer two peers list is fetched once
	// (from the other if the first fails).
	var (
		mu      sync.Mutex
		claimed = map[stowage.Digest]bool{}
		errs    []error
		wg      sync.WaitGroup
	)
	report := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	claim := func(d stowage.Digest, take bool) bool {
		mu.Lock()
		defer mu.Unlock()
		if take && claimed[d] {
			return false
		}
		claimed[d] = take
		return true
	}
	for _, p := range rt.Peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := skipDown(p); err != nil {
				report(err)
				return
			}
			list, err := p.Referrers(ctx, repo, subject, artifactType)
			if err != nil {
				rt.refused(p, repo, err)
				report(err)
				return
			}
			for _, d := range list {
				if d.Digest.Validate() != nil || !claim(d.Digest, true) || rt.holds(ctx, repo, d.Digest) {
					continue
				}
				if gone, err := rt.removed(ctx, repo, ManifestName(d.Digest)); err != nil || gone {
					report(errors.Join(err, fmt.Errorf("referrer %s@%s was deleted here", repo, d.Digest)))
					continue
				}
				if _, err := rt.fetchManifest(ctx, p, repo, stowage.Reference{Digest: d.Digest}, 0); err != nil {
					report(err)
					claim(d.Digest, false) // another peer may have it
					continue
				}
				rt.Log.Info("read-through: fetched a referrer from a peer", "peer", p.Name, "repo", repo, "subject", subject, "digest", d.Digest)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// refused logs, once per peer, that p refuses its referrers lists to this
// region's credentials.
func (rt *ReadThrough) refused(p *Client, repo string, err error) {
	var pe *PeerError
	if !errors.As(err, &pe) || pe.Status != http.StatusUnauthorized && pe.Status != http.StatusForbidden {
		return
	}
	if _, done := rt.warned.LoadOrStore(p.Name, true); !done {
		rt.Log.Warn("read-through: a peer refuses its referrers lists to this region (its user needs metadata/read); referrers made there show here only once replicated",
			"peer", p.Name, "repo", repo, "err", err)
	}
}

// holds reports whether repo has manifest d here (a read-locked one too).
func (rt *ReadThrough) holds(ctx context.Context, repo string, d stowage.Digest) bool {
	_, err := rt.Reg.ResolveManifest(ctx, repo, stowage.Reference{Digest: d})
	code := stowage.ErrorCodeOf(err)
	return err == nil || code != stowage.CodeManifestUnknown && code != stowage.CodeNameUnknown
}

// maxReferrersList bounds the size of a peer's referrers list (some 50,000
// descriptors).
const maxReferrersList = 16 << 20

// Referrers returns the descriptors the peer lists as repo's referrers of
// subject (of artifactType, unless "").
func (c *Client) Referrers(ctx context.Context, repo string, subject stowage.Digest, artifactType string) ([]stowage.Descriptor, error) {
	path := "/v2/" + repo + "/referrers/" + string(subject)
	if artifactType != "" {
		path += "?" + url.Values{"artifactType": {artifactType}}.Encode()
	}
	resp, err := c.do(ctx, http.MethodGet, path, http.Header{"Accept": {stowage.MediaTypeOCIIndex}}, nil, nil, 0)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, c.fail(resp)
	}
	defer resp.Body.Close()
	var idx struct {
		Manifests []stowage.Descriptor `json:"manifests"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxReferrersList)).Decode(&idx); err != nil {
		return nil, fmt.Errorf("peer %s: referrers of %s@%s: %w", c.Name, repo, subject, err)
	}
	return idx.Manifests, nil
}
