package replication

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/stowage/stowage"
)

// ReadThrough fetches from the peers what a request here misses: a
// manifest (by tag or digest) or a blob on a pull, the blobs of a manifest
// pushed here whose layers went to another region. It verifies digests,
// stores through the engine's normal push path (WithFetched: recorded with
// the peer as origin, never shipped) and never fetches what this region
// removed (a tombstone in its clocks). ociapi calls it on a miss.
type ReadThrough struct {
	Reg   *stowage.Registry
	Peers []*Client
	Log   *slog.Logger
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
	var errs []error
	for _, p := range rt.Peers {
		d, err := rt.fetchManifest(ctx, p, repo, ref, 0)
		if err == nil {
			rt.Log.Info("read-through: fetched a manifest from a peer", "peer", p.Name, "repo", repo, "ref", ref.String(), "digest", d)
			return d, nil
		}
		errs = append(errs, err)
	}
	return "", errors.Join(errs...)
}

func (rt *ReadThrough) fetchManifest(ctx context.Context, p *Client, repo string, ref stowage.Reference, depth int) (stowage.Digest, error) {
	if depth > 4 {
		return "", fmt.Errorf("manifests nested too deep")
	}
	body, mt, d, err := p.GetManifest(ctx, repo, ref)
	if err != nil {
		return "", err
	}
	if gone, err := rt.removed(ctx, repo, ManifestName(d)); err != nil || gone {
		return "", errors.Join(err, fmt.Errorf("manifest %s@%s was deleted here", repo, d))
	}
	if err := rt.fetchRefs(ctx, p, repo, mt, body, depth); err != nil {
		return "", err
	}
	_, err = rt.Reg.PutManifest(WithFetched(ctx, p.Name), repo, stowage.Reference{Digest: d}, mt, body, nil)
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
	_, err = rt.Reg.PutBlob(ctx, repo, d, rc, size) // verifies digest and size
	return err
}

// FetchBlob fetches repo's blob d from the first peer that has it.
func (rt *ReadThrough) FetchBlob(ctx context.Context, repo string, d stowage.Digest) error {
	var errs []error
	for _, p := range rt.Peers {
		err := rt.fetchBlob(ctx, p, repo, d)
		if err == nil {
			rt.Log.Info("read-through: fetched a blob from a peer", "peer", p.Name, "repo", repo, "digest", d)
			return nil
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
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
		if err := rt.FetchBlob(ctx, repo, ref.Digest); err != nil {
			rt.Log.Info("read-through: no peer has a blob a pushed manifest references", "repo", repo, "digest", ref.Digest, "err", err)
		}
	}
	return nil
}
