package stowage

import (
	"context"
	"encoding/json"
	"time"
)

// The recycle bin's part in the core. Package recyclebin owns the bin (its
// setting, listing and restores); what stays here is what the core's own
// paths need: every delete reads the soft delete policy to send what it
// deletes to the bin (recycleUntil), garbage collection expires entries
// (Registry.ExpireRecycled), and a restore checks the repository's locks and quota
// as a push would (Writable, CheckRepoQuota).

// SoftDeletePolicy keeps deleted manifests in a recycle bin for Days (1 to
// 90), restorable, before their space can be reclaimed. Off by default.
type SoftDeletePolicy struct {
	Enabled bool `json:"enabled"`
	Days    int  `json:"days"`
}

// SettingSoftDelete is the setting that holds the SoftDeletePolicy.
const SettingSoftDelete = "softdelete.policy"

// recycleUntil returns when manifests deleted now leave the recycle bin, or
// the zero time if soft delete is off.
func recycleUntil(tx Tx, now time.Time) (time.Time, error) {
	var p SoftDeletePolicy
	if err := GetSetting(tx, SettingSoftDelete, &p); err != nil || !p.Enabled {
		return time.Time{}, err
	}
	return now.Add(time.Duration(p.Days) * 24 * time.Hour), nil
}

// Writable fails with DENIED if the repository exists and is write-locked.
func Writable(tx Tx, repo string) error { return writable(tx, repo) }

// CheckRepoQuota refuses, in tx, adding size bytes to repo when that would
// pass the repository's quota (DENIED; action names what is refused, e.g.
// "restore of repo@digest").
func (r *Registry) CheckRepoQuota(tx Tx, action, repo string, size int64) error {
	return r.checkRepoQuotaFor(tx, action, repo, "", size)
}

// ExpireRecycled removes the recycle bin entries past their time (at now);
// their space then follows the usual grace period and lease. Garbage
// collection runs it first (package gc). Each entry removed appends a delete event
// (ReasonExpiry) in the transaction that removes it: from then on the
// manifest cannot come back.
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
				if err := tx.Events().Append(expiryEvent(ctx, e, now)); err != nil {
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

// expiryEvent records that recycle bin entry e expired: its manifest is
// gone for good (Detail: the entry's ID and the tags it had).
func expiryEvent(ctx context.Context, e RecycledManifest, now time.Time) Event {
	m := e.Manifest
	ev := NewEvent(ctx, EventDelete, m.Repo)
	ev.Time, ev.Digest, ev.MediaType, ev.Size, ev.Reason = now, m.Digest, m.MediaType, m.Size, ReasonExpiry
	fields := map[string]any{"recycleId": e.ID}
	if len(e.Tags) > 0 {
		fields["tags"] = e.Tags
	}
	if ev.Detail != "" { // the actor's request facts, if NewEvent put them there
		_ = json.Unmarshal([]byte(ev.Detail), &fields)
	}
	b, _ := json.Marshal(fields) // plain values: cannot fail
	ev.Detail = string(b)
	return ev
}
