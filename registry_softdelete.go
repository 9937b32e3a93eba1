package stowage

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// SoftDeletePolicy keeps deleted manifests in a recycle bin for Days (1 to
// 90), restorable, before their space can be reclaimed. Off by default.
type SoftDeletePolicy struct {
	Enabled bool `json:"enabled"`
	Days    int  `json:"days"`
}

const settingSoftDelete = "softdelete.policy"

// SoftDelete returns the policy.
func (r *Registry) SoftDelete(ctx context.Context) (SoftDeletePolicy, error) {
	var p SoftDeletePolicy
	err := r.db.View(ctx, func(tx Tx) error { return GetSetting(tx, settingSoftDelete, &p) })
	return p, err
}

// SetSoftDelete stores the policy.
func (r *Registry) SetSoftDelete(ctx context.Context, p SoftDeletePolicy) error {
	if p.Enabled && (p.Days < 1 || p.Days > 90) {
		return Errorf(CodeInvalidParameter, "soft delete keeps deleted manifests 1 to 90 days, not %d", p.Days)
	}
	return r.db.Update(ctx, func(tx Tx) error { return PutSetting(tx, settingSoftDelete, p, r.now()) })
}

// recycleUntil returns when manifests deleted now leave the recycle bin, or
// the zero time if soft delete is off.
func recycleUntil(tx Tx, now time.Time) (time.Time, error) {
	var p SoftDeletePolicy
	if err := GetSetting(tx, settingSoftDelete, &p); err != nil || !p.Enabled {
		return time.Time{}, err
	}
	return now.Add(time.Duration(p.Days) * 24 * time.Hour), nil
}

// RecycleBin lists soft-deleted manifests of repo ("" = all), newest first.
func (r *Registry) RecycleBin(ctx context.Context, repo string) ([]RecycledManifest, error) {
	var out []RecycledManifest
	err := r.db.View(ctx, func(tx Tx) (err error) {
		out, err = tx.Recycle().ListRecycled(repo)
		return err
	})
	if out == nil {
		out = []RecycledManifest{}
	}
	return out, err
}

// RestoreReport says what a restore brought back.
type RestoreReport struct {
	Repository  string   `json:"repository"`
	Digest      Digest   `json:"digest"`
	Tags        []string `json:"tags"`        // tags restored
	TagsSkipped []string `json:"tagsSkipped"` // tags that now point elsewhere, left alone
}

// Restore brings a soft-deleted manifest back, with its locks, and with
// its tags (and theirs) unless they have been reused meanwhile. An index's children must be restored first.
// What the repository would hold again counts against its quota (DENIED
// when it does not fit).
func (r *Registry) Restore(ctx context.Context, id int64) (RestoreReport, error) {
	var rep RestoreReport
	now := r.now()
	err := r.db.Update(ctx, func(tx Tx) error {
		e, err := tx.Recycle().GetRecycled(id)
		if errors.Is(err, ErrNotFound) {
			return Errorf(CodeManifestUnknown, "recycle bin entry %d does not exist (it was restored, or it expired); list them with 'stowage recycle-bin'", id)
		}
		if err != nil {
			return err
		}
		m := e.Manifest
		rep = RestoreReport{Repository: m.Repo, Digest: m.Digest, Tags: []string{}, TagsSkipped: []string{}}
		if _, err := tx.Manifests().GetManifest(m.Repo, m.Digest); err == nil {
			return Errorf(CodeDenied, "manifest %s@%s exists again (pushed after the delete); nothing to restore", m.Repo, m.Digest)
		}
		if err := writable(tx, m.Repo); err != nil {
			return err
		}
		if err := r.checkRestore(tx, e); err != nil {
			return err
		}
		if err := tx.Repositories().CreateRepository(m.Repo, now); err != nil {
			return err
		}
		for _, ref := range e.Refs {
			if ref.Kind == RefManifest {
				if _, err := tx.Manifests().GetManifest(m.Repo, ref.Digest); err != nil {
					return Errorf(CodeManifestBlobUnknown, "index %s needs its child %s: restore that first", m.Digest, ref.Digest)
				}
				continue
			}
			if err := tx.Blobs().LinkBlob(m.Repo, ref.Digest, now); err != nil {
				return err
			}
		}
		if err := tx.Manifests().PutManifest(m, e.Refs); err != nil {
			return err
		}
		for _, t := range e.Tags {
			if _, err := tx.Tags().GetTag(m.Repo, t); err == nil {
				rep.TagsSkipped = append(rep.TagsSkipped, t)
				continue
			}
			if err := tx.Tags().PutTag(m.Repo, t, m.Digest, now); err != nil {
				return err
			}
			if l := e.TagLocks[t]; l != 0 {
				if err := tx.Tags().SetTagLocks(m.Repo, t, l); err != nil {
					return err
				}
			}
			rep.Tags = append(rep.Tags, t)
		}
		return tx.Recycle().DeleteRecycled(id)
	})
	return rep, err
}

// checkRestore refuses, in the restoring transaction, to bring back a
// manifest whose bytes, or a blob of which, are no longer stored, or one
// that would pass the repository's quota: the manifest and the blobs it
// references that the repository does not hold now (a deleted repository
// lost every link) count, each once. The registry's storage limit needs no
// check: what the recycle bin keeps is still stored and counted as held, so
// a restore adds nothing to it.
func (r *Registry) checkRestore(tx Tx, e RecycledManifest) error {
	m := e.Manifest
	ds := []Digest{m.Digest}
	seen := map[Digest]bool{m.Digest: true}
	for _, ref := range e.Refs {
		if ref.Kind == RefBlob && !seen[ref.Digest] {
			seen[ref.Digest] = true
			ds = append(ds, ref.Digest)
		}
	}
	var added int64
	for _, d := range ds {
		b, err := tx.Blobs().GetBlob(d)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if err != nil || b.State != BlobLive {
			return &Error{Code: CodeManifestBlobUnknown,
				Message: fmt.Sprintf("manifest %s@%s cannot be restored: its blob %s is no longer stored", m.Repo, m.Digest, d),
				Detail:  map[string]string{"digest": string(d)}}
		}
		if _, err := tx.Blobs().RepositoryBlob(m.Repo, d); err == nil {
			continue
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		if _, err := tx.Manifests().GetManifest(m.Repo, d); err == nil {
			continue
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		added += b.Size
	}
	return r.checkRepoQuotaFor(tx, fmt.Sprintf("restore of %s@%s", m.Repo, m.Digest), m.Repo, "", added)
}

// ExpireRecycled removes recycle bin entries past their time; their space
// then follows the usual grace period and lease. Garbage collection runs it
// first (package gc).
func (r *Registry) ExpireRecycled(ctx context.Context, now time.Time) (int, error) {
	n := 0
	for {
		var batch []RecycledManifest
		err := r.db.Update(ctx, func(tx Tx) (err error) {
			if batch, err = tx.Recycle().ExpiredRecycled(now, gcBatch); err != nil {
				return err
			}
			for _, e := range batch {
				if err := tx.Recycle().DeleteRecycled(e.ID); err != nil {
					return err
				}
				held := []Digest{e.Manifest.Digest}
				for _, ref := range e.Refs {
					held = append(held, ref.Digest)
				}
				if err := tx.Blobs().MarkUnreferenced(held, now); err != nil {
					return err
				}
			}
			return nil
		})
		n += len(batch)
		if err != nil || len(batch) < gcBatch {
			return n, err
		}
	}
}
