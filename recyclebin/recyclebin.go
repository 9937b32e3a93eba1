// Package recyclebin is the registry's recycle bin: with soft delete on,
// every delete keeps the manifests it removes here for some days,
// restorable, before their space can be reclaimed.
//
// The core's delete path puts manifests in the bin (it reads the soft
// delete policy, stowage.SoftDeletePolicy), and garbage collection expires
// entries (Registry.ExpireRecycled); this package sets the policy, lists the
// bin and restores from it. Each change appends its event to the change
// feed in the transaction that makes it.
package recyclebin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/stowage/stowage"
)

// Bin is the recycle bin of a registry.
type Bin struct {
	reg *stowage.Registry
	db  stowage.DB
	now func() time.Time
}

// New returns reg's recycle bin.
func New(reg *stowage.Registry) *Bin {
	p := reg.Parts()
	return &Bin{reg: reg, db: p.DB, now: p.Now}
}

// SoftDelete returns the policy.
func (b *Bin) SoftDelete(ctx context.Context) (stowage.SoftDeletePolicy, error) {
	var p stowage.SoftDeletePolicy
	err := b.db.View(ctx, func(tx stowage.Tx) error { return stowage.GetSetting(tx, stowage.SettingSoftDelete, &p) })
	return p, err
}

// SetSoftDelete stores the policy, and records the change in the feed.
func (b *Bin) SetSoftDelete(ctx context.Context, p stowage.SoftDeletePolicy) error {
	if p.Enabled && (p.Days < 1 || p.Days > 90) {
		return stowage.Errorf(stowage.CodeInvalidParameter, "soft delete keeps deleted manifests 1 to 90 days, not %d", p.Days)
	}
	now := b.now()
	return b.db.Update(ctx, func(tx stowage.Tx) error {
		var before stowage.SoftDeletePolicy
		if err := stowage.GetSetting(tx, stowage.SettingSoftDelete, &before); err != nil {
			return err
		}
		if err := stowage.PutSetting(tx, stowage.SettingSoftDelete, p, now); err != nil {
			return err
		}
		e := stowage.NewEvent(ctx, stowage.EventPolicy, "")
		e.Time = now
		e.Detail = detail(e.Detail, map[string]any{"name": "softDelete", "before": before, "after": p})
		return tx.Events().Append(e)
	})
}

// List lists the soft-deleted manifests of repo ("" = all), newest first.
func (b *Bin) List(ctx context.Context, repo string) ([]stowage.RecycledManifest, error) {
	var out []stowage.RecycledManifest
	err := b.db.View(ctx, func(tx stowage.Tx) (err error) {
		out, err = tx.Recycle().ListRecycled(repo)
		return err
	})
	if out == nil {
		out = []stowage.RecycledManifest{}
	}
	return out, err
}

// RestoreReport says what a restore brought back.
type RestoreReport struct {
	Repository  string         `json:"repository"`
	Digest      stowage.Digest `json:"digest"`
	Tags        []string       `json:"tags"`        // tags restored
	TagsSkipped []string       `json:"tagsSkipped"` // tags that now point elsewhere, left alone
}

// Restore brings a soft-deleted manifest back, with its locks, and with
// its tags (and theirs) unless they have been reused meanwhile. An index's
// children must be restored first. What the repository would hold again
// counts against its quota (DENIED when it does not fit). The restore
// appends one restore event, in its transaction.
func (b *Bin) Restore(ctx context.Context, id int64) (RestoreReport, error) {
	var rep RestoreReport
	now := b.now()
	err := b.db.Update(ctx, func(tx stowage.Tx) error {
		e, err := tx.Recycle().GetRecycled(id)
		if errors.Is(err, stowage.ErrNotFound) {
			return stowage.Errorf(stowage.CodeManifestUnknown, "recycle bin entry %d does not exist (it was restored, or it expired); list them with 'stowage recycle-bin'", id)
		}
		if err != nil {
			return err
		}
		m := e.Manifest
		rep = RestoreReport{Repository: m.Repo, Digest: m.Digest, Tags: []string{}, TagsSkipped: []string{}}
		if _, err := tx.Manifests().GetManifest(m.Repo, m.Digest); err == nil {
			return stowage.Errorf(stowage.CodeDenied, "manifest %s@%s exists again (pushed after the delete); nothing to restore", m.Repo, m.Digest)
		}
		if err := stowage.Writable(tx, m.Repo); err != nil {
			return err
		}
		if err := b.checkRestore(tx, e); err != nil {
			return err
		}
		if err := tx.Repositories().CreateRepository(m.Repo, now); err != nil {
			return err
		}
		for _, ref := range e.Refs {
			if ref.Kind == stowage.RefManifest {
				if _, err := tx.Manifests().GetManifest(m.Repo, ref.Digest); err != nil {
					return stowage.Errorf(stowage.CodeManifestBlobUnknown, "index %s needs its child %s: restore that first", m.Digest, ref.Digest)
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
		if err := tx.Recycle().DeleteRecycled(id); err != nil {
			return err
		}
		return b.reg.AppendChange(ctx, tx, restoreEvent(ctx, now, e, rep)) // the change hook sees it (geo-replication)
	})
	return rep, err
}

// restoreEvent records a restore: the manifest, the first tag it got back
// (Tag), and in Detail every tag restored and skipped and the entry's ID.
func restoreEvent(ctx context.Context, now time.Time, e stowage.RecycledManifest, rep RestoreReport) stowage.Event {
	m := e.Manifest
	ev := stowage.NewEvent(ctx, stowage.EventRestore, m.Repo)
	ev.Time, ev.Digest, ev.MediaType, ev.Size = now, m.Digest, m.MediaType, m.Size
	if len(rep.Tags) > 0 {
		ev.Tag = rep.Tags[0]
	}
	fields := map[string]any{"recycleId": e.ID, "tags": rep.Tags}
	if len(rep.TagsSkipped) > 0 {
		fields["tagsSkipped"] = rep.TagsSkipped
	}
	ev.Detail = detail(ev.Detail, fields)
	return ev
}

// checkRestore refuses, in the restoring transaction, to bring back a
// manifest whose bytes, or a blob of which, are no longer stored, or one
// that would pass the repository's quota: the manifest and the blobs it
// references that the repository does not hold now (a deleted repository
// lost every link) count, each once. The registry's storage limit needs no
// check: what the recycle bin keeps is still stored and counted as held, so
// a restore adds nothing to it.
func (b *Bin) checkRestore(tx stowage.Tx, e stowage.RecycledManifest) error {
	m := e.Manifest
	ds := []stowage.Digest{m.Digest}
	seen := map[stowage.Digest]bool{m.Digest: true}
	for _, ref := range e.Refs {
		if ref.Kind == stowage.RefBlob && !seen[ref.Digest] {
			seen[ref.Digest] = true
			ds = append(ds, ref.Digest)
		}
	}
	var added int64
	for _, d := range ds {
		bl, err := tx.Blobs().GetBlob(d)
		if err != nil && !errors.Is(err, stowage.ErrNotFound) {
			return err
		}
		if err != nil || bl.State != stowage.BlobLive {
			return &stowage.Error{Code: stowage.CodeManifestBlobUnknown,
				Message: fmt.Sprintf("manifest %s@%s cannot be restored: its blob %s is no longer stored", m.Repo, m.Digest, d),
				Detail:  map[string]string{"digest": string(d)}}
		}
		if _, err := tx.Blobs().RepositoryBlob(m.Repo, d); err == nil {
			continue
		} else if !errors.Is(err, stowage.ErrNotFound) {
			return err
		}
		if _, err := tx.Manifests().GetManifest(m.Repo, d); err == nil {
			continue
		} else if !errors.Is(err, stowage.ErrNotFound) {
			return err
		}
		added += bl.Size
	}
	return b.reg.CheckRepoQuota(tx, fmt.Sprintf("restore of %s@%s", m.Repo, m.Digest), m.Repo, added)
}

// detail adds fields to the JSON object base (what NewEvent put there, if
// anything: the request's facts).
func detail(base string, fields map[string]any) string {
	m := map[string]any{}
	if base != "" {
		_ = json.Unmarshal([]byte(base), &m)
	}
	for k, v := range fields {
		m[k] = v
	}
	b, _ := json.Marshal(m) // plain values: cannot fail
	return string(b)
}
