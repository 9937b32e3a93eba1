package stowage

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Locks are enforced by the engine on every path: pushes (write), deletes
// including retention and purge (delete), pulls (read) and listings (list).
// Messages name the lock and how to lift it.

func (l Locks) String() string {
	var on []string
	for _, x := range []struct {
		bit  Locks
		name string
	}{{LockWrite, "writeEnabled=false"}, {LockDelete, "deleteEnabled=false"}, {LockRead, "readEnabled=false"}, {LockList, "listEnabled=false"}} {
		if l&x.bit != 0 {
			on = append(on, x.name)
		}
	}
	if len(on) == 0 {
		return "no locks"
	}
	return strings.Join(on, ", ")
}

// Replicated changes and the guards of a region.
//
// Locks (write, delete) and immutability rules guard the requests of this
// region's clients. A change another region accepted and replicated here
// passes them: it was checked against that region's locks when it was made,
// and the lock attributes replicate too, each with its own clock, so every
// region ends with the same tags and the same locks (last writer by hybrid
// logical clock). Refusing it here instead would leave the regions with
// different digests for good (and retention in one region would then delete
// what another still tags). Read and list locks are not waived: they guard
// what is served, not what is stored.
//
// WithReplicatedChange is the one way in: only the replication applier
// calls it (replication.Applier, for a change that came through the apply
// endpoint, which requires the replication/apply permission). No HTTP
// header or request field reaches it.
type replicatedKey struct{}

// WithReplicatedChange returns ctx whose pushes, tag moves, untags and
// deletes pass this region's write and delete locks and immutability rules
// (see above). For the replication applier only.
func WithReplicatedChange(ctx context.Context) context.Context {
	return context.WithValue(ctx, replicatedKey{}, true)
}

// replicatedChange reports whether ctx carries a replicated change.
func replicatedChange(ctx context.Context) bool {
	b, _ := ctx.Value(replicatedKey{}).(bool)
	return b
}

func denied(what, lock, unlock string) error {
	return Errorf(CodeDenied, "%s is %s-locked (%s=false); lift it with 'stowage lock %s --%s=true'", what, lock, lock+"Enabled", unlock, lock)
}

// readable fails with DENIED if the repository, the tag or the manifest is read-locked.
func readable(repo string, ref Reference, repoLocks, tagLocks, mLocks Locks) error {
	switch {
	case repoLocks&LockRead != 0:
		return denied("repository "+repo, "read", repo)
	case tagLocks&LockRead != 0:
		return denied("tag "+repo+":"+ref.Tag, "read", repo+":"+ref.Tag)
	case mLocks&LockRead != 0:
		return denied("manifest "+repo+"@"+string(ref.Digest), "read", repo+"@<digest>")
	}
	return nil
}

// writable fails with DENIED if the repository exists and is write-locked.
func writable(tx Tx, repo string) error {
	rec, err := tx.Repositories().GetRepository(repo)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if rec.Locks&LockWrite != 0 {
		return denied("repository "+repo, "write", repo)
	}
	return nil
}

func (r *Registry) checkWritable(ctx context.Context, repo string) error {
	return r.db.View(ctx, func(tx Tx) error { return writable(tx, repo) })
}

// Locks returns the locks of a repository (ref zero), a tag or a manifest.
func (r *Registry) Locks(ctx context.Context, repo string, ref Reference) (Locks, error) {
	var l Locks
	err := r.db.View(ctx, func(tx Tx) error {
		var err error
		l, err = locksOf(tx, repo, ref)
		return err
	})
	return l, r.lockTargetError(repo, ref, err)
}

func locksOf(tx Tx, repo string, ref Reference) (Locks, error) {
	switch {
	case ref.IsDigest():
		m, err := tx.Manifests().GetManifest(repo, ref.Digest)
		return m.Locks, err
	case ref.Tag != "":
		t, err := tx.Tags().GetTagRecord(repo, ref.Tag)
		return t.Locks, err
	default:
		rec, err := tx.Repositories().GetRepository(repo)
		return rec.Locks, err
	}
}

func (r *Registry) lockTargetError(repo string, ref Reference, err error) error {
	if !errors.Is(err, ErrNotFound) {
		return err
	}
	if ref.IsDigest() || ref.Tag != "" {
		return manifestUnknown(repo, ref)
	}
	return nameUnknown(repo)
}

// SetLocks changes the locks of a repository (ref zero), a tag or a
// manifest: the bits in set are locked, those in clear unlocked. It
// appends a lock event (even when nothing changed: the request was made).
func (r *Registry) SetLocks(ctx context.Context, repo string, ref Reference, set, clear Locks) (Locks, error) {
	var l Locks
	err := r.db.Update(ctx, func(tx Tx) error {
		cur, err := locksOf(tx, repo, ref)
		if err != nil {
			return err
		}
		l = cur&^clear | set
		e := NewEvent(ctx, EventLock, repo)
		e.Time = r.now()
		target := repo
		switch {
		case ref.IsDigest():
			err = tx.Manifests().SetManifestLocks(repo, ref.Digest, l)
			e.Digest, target = ref.Digest, repo+"@"+string(ref.Digest)
		case ref.Tag != "":
			err = tx.Tags().SetTagLocks(repo, ref.Tag, l)
			e.Tag, target = ref.Tag, repo+":"+ref.Tag
		default:
			err = tx.Repositories().SetRepositoryLocks(repo, l)
		}
		if err != nil {
			return err
		}
		e.Detail = EventDetail(ctx, map[string]any{"target": target, "before": cur.attributes(), "after": l.attributes()})
		return appendChange(ctx, r.changes, tx, e)
	})
	return l, r.lockTargetError(repo, ref, err)
}

// lockAttributes are locks as ACR's changeable attributes (what is
// enabled), as lock events record them.
type lockAttributes struct {
	DeleteEnabled bool `json:"deleteEnabled"`
	WriteEnabled  bool `json:"writeEnabled"`
	ReadEnabled   bool `json:"readEnabled"`
	ListEnabled   bool `json:"listEnabled"`
}

func (l Locks) attributes() lockAttributes {
	return lockAttributes{l&LockDelete == 0, l&LockWrite == 0, l&LockRead == 0, l&LockList == 0}
}

// ---- tag immutability ----

const settingImmutability = "immutability.rules"

// ImmutabilityRules returns the registry-wide tag immutability rules
// ("REPO_REGEX:TAG_REGEX"): a tag matching one cannot be moved to another
// manifest once pushed.
func (r *Registry) ImmutabilityRules(ctx context.Context) ([]string, error) {
	var rules []string
	err := r.db.View(ctx, func(tx Tx) error { return GetSetting(tx, settingImmutability, &rules) })
	if rules == nil {
		rules = []string{}
	}
	return rules, err
}

// SetImmutabilityRules replaces the rules.
func (r *Registry) SetImmutabilityRules(ctx context.Context, rules []string) error {
	for _, s := range rules {
		if _, err := ParsePurgeFilter(s); err != nil {
			return err
		}
	}
	return r.db.Update(ctx, func(tx Tx) error {
		before := []string{}
		if rules == nil {
			rules = []string{}
		}
		if err := GetSetting(tx, settingImmutability, &before); err != nil {
			return err
		}
		now := r.now()
		if err := PutSetting(tx, settingImmutability, rules, now); err != nil {
			return err
		}
		return tx.Events().Append(policyEvent(ctx, now, "immutability", before, rules))
	})
}

// policyEvent is the change feed's record of a registry-wide setting
// changed from before to after (Detail: name, before, after).
func policyEvent(ctx context.Context, now time.Time, name string, before, after any) Event {
	e := NewEvent(ctx, EventPolicy, "")
	e.Time = now
	e.Detail = EventDetail(ctx, map[string]any{"name": name, "before": before, "after": after})
	return e
}

// immutableRules caches the compiled rules for the settings value they came from.
var immutableRules struct {
	sync.Mutex
	raw   string
	rules []PurgeFilter
}

// immutableRule returns the rule that makes repo:tag immutable, or "".
func immutableRule(tx Tx, repo, tag string) (string, error) {
	raw, err := tx.Settings().GetSetting(settingImmutability)
	if errors.Is(err, ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	immutableRules.Lock()
	defer immutableRules.Unlock()
	if raw != immutableRules.raw {
		var strs []string
		if err := GetSetting(tx, settingImmutability, &strs); err != nil {
			return "", err
		}
		immutableRules.rules = nil
		for _, s := range strs {
			if f, err := ParsePurgeFilter(s); err == nil {
				immutableRules.rules = append(immutableRules.rules, f)
			}
		}
		immutableRules.raw = raw
	}
	for _, f := range immutableRules.rules {
		if f.Repo.MatchString(repo) && f.Tag.MatchString(tag) {
			return fmt.Sprintf("%s:%s", strings.TrimSuffix(strings.TrimPrefix(f.Repo.String(), "^(?:"), ")$"),
				strings.TrimSuffix(strings.TrimPrefix(f.Tag.String(), "^(?:"), ")$")), nil
		}
	}
	return "", nil
}

// retaggable fails with DENIED if moving repo:tag to d is forbidden.
// A replicated change (waive) passes the tag's write lock and the rules.
func retaggable(tx Tx, repo, tag string, d Digest, waive bool) (old Digest, err error) {
	t, err := tx.Tags().GetTagRecord(repo, tag)
	if errors.Is(err, ErrNotFound) {
		return "", nil
	}
	if err != nil || t.Digest == d || waive {
		return t.Digest, err
	}
	if t.Locks&LockWrite != 0 {
		return t.Digest, denied("tag "+repo+":"+tag, "write", repo+":"+tag)
	}
	rule, err := immutableRule(tx, repo, tag)
	if err != nil {
		return t.Digest, err
	}
	if rule != "" {
		return t.Digest, Errorf(CodeDenied, "tag %s:%s is immutable (policy rule %q): push a new tag instead of overwriting it", repo, tag, rule)
	}
	return t.Digest, nil
}
