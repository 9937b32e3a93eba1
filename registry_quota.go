package stowage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
)

// Storage limits: the registry's (Options.StorageLimit, from the tier or
// the configuration) and per-repository quotas (kept in the settings, so
// every node sharing the database enforces the same ones).
//
// What counts is deduplicated and exact:
//   - the registry holds each digest once: a blob already stored costs
//     nothing again, and pending writes (reserved before their bytes are
//     written) count, so concurrent pushes cannot overshoot together;
//   - a repository holds the blobs linked into it and its manifests, each
//     once: a layer it already has costs nothing, a layer mounted or pushed
//     from elsewhere costs its size.
//
// Checks run inside the transaction that reserves or records the blob (the
// database serializes them, on SQLite and on PostgreSQL alike), before the
// blob's bytes are written to their place; a chunked upload is stopped at
// the first chunk that would not fit, and its data dropped.

// settingQuotas keeps the per-repository quotas: {"repo": bytes}.
const settingQuotas = "quotas"

// Quota is a limit in bytes and what is used against it.
type Quota struct {
	Repository string `json:"repository,omitempty"` // "" for the whole registry
	LimitBytes int64  `json:"limitBytes"`           // 0: no limit
	UsedBytes  int64  `json:"usedBytes"`
	// UsageHidden: UsedBytes is not told (0), as to a caller limited to
	// some repositories: the registry's usage tells of every repository.
	UsageHidden bool `json:"usageHidden,omitempty"`
}

// QuotaReport is the registry's limit and every repository quota, with
// usage.
type QuotaReport struct {
	Registry     Quota   `json:"registry"`
	Repositories []Quota `json:"repositories"`
}

// StorageLimit returns the registry's storage limit (0: none).
func (r *Registry) StorageLimit() int64 { return r.storageLimit }

func readQuotas(tx Tx) (map[string]int64, error) {
	v, err := tx.Settings().GetSetting(settingQuotas)
	if errors.Is(err, ErrNotFound) {
		return map[string]int64{}, nil
	}
	if err != nil {
		return nil, err
	}
	q := map[string]int64{}
	if err := json.Unmarshal([]byte(v), &q); err != nil {
		return nil, fmt.Errorf("the repository quotas setting is not valid JSON: %w", err)
	}
	return q, nil
}

// SetQuota sets repo's quota in bytes; 0 removes it. A quota below what
// the repository already holds is accepted: it stops further growth. It
// appends a quota event (Size: the new limit; Detail: before, after).
func (r *Registry) SetQuota(ctx context.Context, repo string, limit int64) error {
	if limit < 0 {
		return Errorf(CodeInvalidParameter, "a quota must be 0 (none) or a positive number of bytes")
	}
	return r.db.Update(ctx, func(tx Tx) error {
		q, err := readQuotas(tx)
		if err != nil {
			return err
		}
		now := r.now()
		e := NewEvent(ctx, EventQuota, repo)
		e.Time, e.Size = now, limit
		e.Detail = EventDetail(ctx, map[string]any{"before": q[repo], "after": limit})
		if limit == 0 {
			if _, ok := q[repo]; !ok {
				return Errorf(CodeNameUnknown, "repository %s has no quota", repo)
			}
			delete(q, repo)
		} else {
			q[repo] = limit
		}
		b, _ := json.Marshal(q)
		if err := tx.Settings().PutSetting(settingQuotas, string(b), now); err != nil {
			return err
		}
		return tx.Events().Append(e)
	})
}

// Quotas reports the registry's limit and the repository quotas, with what
// each holds now.
func (r *Registry) Quotas(ctx context.Context) (QuotaReport, error) {
	rep := QuotaReport{Registry: Quota{LimitBytes: r.storageLimit}, Repositories: []Quota{}}
	err := r.db.View(ctx, func(tx Tx) error {
		var err error
		if rep.Registry.UsedBytes, err = tx.Usage().HeldBytes(); err != nil {
			return err
		}
		q, err := readQuotas(tx)
		if err != nil {
			return err
		}
		for _, name := range slices.Sorted(maps.Keys(q)) {
			used, err := tx.Usage().RepositoryHeldBytes(name)
			if err != nil {
				return err
			}
			rep.Repositories = append(rep.Repositories, Quota{Repository: name, LimitBytes: q[name], UsedBytes: used})
		}
		return nil
	})
	return rep, err
}

// checkRegistryLimit refuses adding size new bytes when the registry's
// held bytes (with already, this blob's own reservation, taken out) would
// pass the limit.
func (r *Registry) checkRegistryLimit(tx Tx, size, already int64) error {
	if r.storageLimit <= 0 || size <= 0 {
		return nil
	}
	held, err := tx.Usage().HeldBytes()
	if err != nil {
		return err
	}
	held -= already
	if held+size > r.storageLimit {
		return limitError("push", "the registry's storage limit", r.storageLimit, held, size,
			"delete images you no longer need and run 'stowage gc', or raise limits.storage (or the tier)")
	}
	return nil
}

// checkRepoQuota refuses linking d (size bytes) into repo when the
// repository's quota would be passed. A blob already linked, or a manifest
// repo already holds, costs nothing (RepositoryHeldBytes counts both).
//
// A replicated change (WithReplicatedChange: content another region
// accepted) is admitted past the quota and counted, so this region's own
// clients are refused afterwards: refusing it would leave the regions
// different (docs/replication.md "Locks, quotas and convergence"). The
// registry's storage limit (the disk) still applies to it.
func (r *Registry) checkRepoQuota(ctx context.Context, tx Tx, repo string, d Digest, size int64) error {
	if replicatedChange(ctx) {
		return nil
	}
	return r.checkRepoQuotaFor(tx, "push", repo, d, size)
}

// checkRepoQuotaFor is checkRepoQuota for action (what the refusal names:
// "push", "restore of repo@digest").
func (r *Registry) checkRepoQuotaFor(tx Tx, action, repo string, d Digest, size int64) error {
	if size <= 0 {
		return nil
	}
	q, err := readQuotas(tx)
	if err != nil || len(q) == 0 {
		return err
	}
	limit, ok := q[repo]
	if !ok {
		return nil
	}
	if d != "" {
		if _, err := tx.Blobs().RepositoryBlob(repo, d); err == nil {
			return nil
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		// A manifest of repo (pushed again, re-tagged) is held already.
		if _, err := tx.Manifests().GetManifest(repo, d); err == nil {
			return nil
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	held, err := tx.Usage().RepositoryHeldBytes(repo)
	if err != nil {
		return err
	}
	if held+size > limit {
		return limitError(action, "the quota of repository "+repo, limit, held, size,
			"delete images from it and run 'stowage gc', or raise the quota with 'stowage quota set'")
	}
	return nil
}

// limitError is the DENIED error of action (a push, a restore) that needs
// size more bytes than what (a limit) leaves free.
func limitError(action, what string, limit, held, size int64, advice string) error {
	return &Error{Code: CodeDenied,
		Message: fmt.Sprintf("%s refused: it needs %s more, and %s is %s with %s used (%s free); %s",
			action, HumanBytes(size), what, HumanBytes(limit), HumanBytes(held), HumanBytes(max(limit-held, 0)), advice),
		Detail: map[string]int64{"limitBytes": limit, "usedBytes": held, "neededBytes": size}}
}

// checkUploadLimits stops a chunked upload whose bytes so far (total) would
// not fit: the registry's free space and repo's quota. The digest is not
// known yet, so a copy of a blob the registry already holds counts too;
// clients look before they upload (HEAD), so they do not send those.
func (r *Registry) checkUploadLimits(ctx context.Context, repo string, total int64) error {
	if total <= 0 {
		return nil
	}
	return r.db.View(ctx, func(tx Tx) error {
		if err := r.checkRegistryLimit(tx, total, 0); err != nil {
			return err
		}
		return r.checkRepoQuota(ctx, tx, repo, "", total)
	})
}

// HumanBytes writes n in binary units: 512 B, 1.5 MiB, 10 GiB.
func HumanBytes(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	v, i := float64(n), 0
	for v >= 1024 && i < len(units)-1 {
		v, i = v/1024, i+1
	}
	if i == 0 {
		return strconv.FormatInt(n, 10) + " B"
	}
	return strconv.FormatFloat(float64(int64(v*100+0.5))/100, 'f', -1, 64) + " " + units[i]
}

// checkLimitsAtRecord is the exact check, in the transaction that makes a
// written blob live and links it: the registry's limit with the blob's
// real size (a push of unknown length reserved 0 bytes), and repo's quota
// (concurrent pushes into one repository each passed reserve alone). A
// refused blob's object is left to the garbage collector.
func (r *Registry) checkLimitsAtRecord(ctx context.Context, tx Tx, repo string, d Digest, size int64) error {
	if r.storageLimit > 0 {
		b, err := tx.Blobs().GetBlob(d)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if err == nil && b.State == BlobPending && size > b.Size {
			if err := r.checkRegistryLimit(tx, size, b.Size); err != nil {
				return err
			}
		}
	}
	return r.checkRepoQuota(ctx, tx, repo, d, size)
}
