package modeltest

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/recyclebin"
)

// OpKind names a step.
type OpKind string

const (
	opPushBlob    OpKind = "push-blob"    // monolithic PutBlob
	opStartUpload OpKind = "start-upload" // chunked: POST
	opPatch       OpKind = "patch"        // chunked: PATCH of the next Size bytes
	opFinish      OpKind = "finish"       // chunked: PUT ?digest= with the rest
	opCancel      OpKind = "cancel-upload"
	opMount       OpKind = "mount"
	opPutManifest OpKind = "put-manifest"
	opUntag       OpKind = "untag"
	opDelete      OpKind = "delete-image" // by tag (Tag >= 0) or by digest (Pick)
	opDeleteRepo  OpKind = "delete-repo"
	opDeleteBlob  OpKind = "delete-blob"
	opLock        OpKind = "lock"
	opSoftDelete  OpKind = "soft-delete" // set the policy (Days 0: off)
	opRestore     OpKind = "restore"
	opRetention   OpKind = "retention" // set the policy and run it
	opPurge       OpKind = "purge"
	opGC          OpKind = "gc" // advance the clock by Jump, then collect
	opAdvance     OpKind = "advance"
	opRestart     OpKind = "restart"
	opCrash       OpKind = "crash"      // run Inner with a fault armed, then restart
	opPowerLoss   OpKind = "power-loss" // unsynced writes forgotten, then restart (Config.PowerLoss)
	opPowerCut    OpKind = "power-cut"  // run Inner until leaf Leaf's FaultAt-th fs call, then power loss
	opCatalog     OpKind = "catalog"
	opQuota       OpKind = "quota" // a quota of what the repository holds plus Size (-1: none)
	// races (races.go)
	opLeftover      OpKind = "leftover"        // an object with no row, as a crash leaves
	opGCRacePush    OpKind = "gc-race-push"    // a push lands between the orphan sweep's re-check and delete
	opGCDuringPatch OpKind = "gc-during-patch" // a collection while a PATCH streams
	opPatchRace     OpKind = "patch-race"      // one PATCH through both nodes at once
)

// Op is one step. Which fields matter depends on Kind; targets are small
// indexes resolved against the model when the step runs, so a step list
// still runs after shrinking removed some of its steps.
type Op struct {
	Kind     OpKind
	Node     int
	Repo     int
	From     int // mount source repository (-1: any)
	Blob     int
	Slot     int
	Size     int64 // patch size
	Tag      int   // -1: none
	Tags     []int
	Image    ImageSpec
	ByDigest bool
	Pick     int
	Target   string // lock: repo, tag, manifest
	Bits     stowage.Locks
	Clear    bool
	Days     int
	Keep     int
	Ago      time.Duration
	Untagged bool
	Jump     time.Duration
	N        int
	Filter   int  // catalog: 0 none, else a repo subset mask
	Wrong    bool // finish: claim the digest of the same-size twin blob
	// crash, power cut
	Inner   *Op
	FaultAt int
	After   bool
	InDB    bool
	Leaf    int
}

func (o Op) String() string {
	s := fmt.Sprintf("%s node=%d", o.Kind, o.Node)
	switch o.Kind {
	case opPushBlob:
		s += fmt.Sprintf(" repo=%d blob=%d", o.Repo, o.Blob)
	case opStartUpload:
		s += fmt.Sprintf(" repo=%d slot=%d blob=%d", o.Repo, o.Slot, o.Blob)
	case opPatch:
		s += fmt.Sprintf(" slot=%d size=%d", o.Slot, o.Size)
	case opFinish:
		s += fmt.Sprintf(" slot=%d wrong=%v", o.Slot, o.Wrong)
	case opCancel:
		s += fmt.Sprintf(" slot=%d", o.Slot)
	case opMount:
		s += fmt.Sprintf(" repo=%d from=%d blob=%d", o.Repo, o.From, o.Blob)
	case opPutManifest:
		s += fmt.Sprintf(" repo=%d tags=%v bydigest=%v %s", o.Repo, o.Tags, o.ByDigest, o.Image)
	case opUntag:
		s += fmt.Sprintf(" repo=%d tag=%d", o.Repo, o.Tag)
	case opDelete:
		s += fmt.Sprintf(" repo=%d tag=%d pick=%d", o.Repo, o.Tag, o.Pick)
	case opDeleteRepo:
		s += fmt.Sprintf(" repo=%d", o.Repo)
	case opDeleteBlob:
		s += fmt.Sprintf(" repo=%d blob=%d", o.Repo, o.Blob)
	case opLock:
		s += fmt.Sprintf(" %s repo=%d tag=%d pick=%d bits=%v clear=%v", o.Target, o.Repo, o.Tag, o.Pick, o.Bits, o.Clear)
	case opSoftDelete, opRetention:
		s += fmt.Sprintf(" days=%d", o.Days)
	case opRestore:
		s += fmt.Sprintf(" pick=%d", o.Pick)
	case opPurge:
		s += fmt.Sprintf(" repo=%d tag=%d ago=%v keep=%d untagged=%v", o.Repo, o.Tag, o.Ago, o.Keep, o.Untagged)
	case opGC, opAdvance:
		s += fmt.Sprintf(" jump=%v", o.Jump)
	case opCrash:
		where := "store"
		if o.InDB {
			where = "db"
		}
		s = fmt.Sprintf("crash at %s write %d after=%v during [%s]", where, o.FaultAt, o.After, o.Inner)
	case opPowerCut:
		s = fmt.Sprintf("power cut after %d fs calls of leaf %d during [%s]", o.FaultAt, o.Leaf, o.Inner)
	case opCatalog:
		s += fmt.Sprintf(" filter=%b n=%d", o.Filter, o.N)
	case opQuota:
		s += fmt.Sprintf(" repo=%d margin=%d", o.Repo, o.Size)
	case opLeftover:
		s += fmt.Sprintf(" blob=%d", o.Blob)
	case opGCRacePush:
		s += fmt.Sprintf(" repo=%d blob=%d jump=%v", o.Repo, o.Blob, o.Jump)
	case opGCDuringPatch:
		s += fmt.Sprintf(" slot=%d size=%d jump=%v", o.Slot, o.Size, o.Jump)
	case opPatchRace:
		s += fmt.Sprintf(" slot=%d size=%d", o.Slot, o.Size)
	}
	return s
}

// expect is what the model says a step returns: success, or an error with
// one of the codes.
type expect struct {
	ok    bool
	codes []stowage.ErrorCode
	// onFail moves the model when the step fails as expected (a refused
	// chunk ends its session, for one).
	onFail func()
}

var okay = expect{ok: true}

func fails(codes ...stowage.ErrorCode) expect { return expect{codes: codes} }

// matches reports whether err is what was expected.
func (e expect) matches(err error) bool {
	if err == nil {
		return e.ok
	}
	if e.ok {
		return false
	}
	return len(e.codes) == 0 || slices.Contains(e.codes, stowage.ErrorCodeOf(err))
}

func (e expect) String() string {
	if e.ok {
		return "success"
	}
	return fmt.Sprintf("an error %v", e.codes)
}

// skipped marks a step not run because it would hit a known defect.
type skipped struct{ defect string }

// step runs one op against the engine and the model: it computes what
// the model expects, runs the engine, compares, and moves the model on.
// It returns a failure (nil if the engine did what the model says).
func (h *harness) step(ctx context.Context, op Op) error {
	h.eng.clock.advance(time.Second) // every step at its own instant
	if op.Node >= len(h.eng.nodes) {
		op.Node = 0
	}
	n := h.eng.nodes[op.Node]
	now := h.eng.clock.now().Add(n.skew)
	switch op.Kind {
	case opRestart, opPowerLoss, opAdvance, opCrash, opPowerCut, opGC, opLeftover, opGCRacePush, opGCDuringPatch, opPatchRace:
		h.count(op.Kind, okay)
	}
	switch op.Kind {
	case opRestart:
		return h.eng.reopen(ctx)
	case opAdvance:
		h.eng.clock.advance(op.Jump)
		return nil
	case opPowerLoss:
		return h.eng.powerLoss(ctx)
	case opCrash, opPowerCut:
		return h.crash(ctx, op)
	case opGC:
		h.eng.clock.advance(op.Jump)
		return h.gc(ctx, n, op.Jump >= fullJump)
	case opLeftover:
		return h.leftover(ctx, op, n)
	case opGCRacePush:
		return h.gcRacePush(ctx, op, n)
	case opGCDuringPatch:
		return h.gcDuringPatch(ctx, op, n)
	case opPatchRace:
		return h.patchRace(ctx, op)
	}
	want, apply, run := h.plan(ctx, op, n, now)
	if want == nil {
		return nil // nothing to do (or skipped: a known defect)
	}
	h.count(op.Kind, *want)
	err := run()
	if !want.matches(err) {
		return failf("outcome", "%s: engine returned %v, the model expects %s", op, errString(err), want)
	}
	switch {
	case err == nil && apply != nil:
		apply()
	case err != nil && want.onFail != nil:
		want.onFail()
	}
	if f := h.fail; f != nil {
		h.fail = nil
		return f
	}
	return nil
}

func errString(err error) string {
	if err == nil {
		return "success"
	}
	return fmt.Sprintf("%s (%v)", stowage.ErrorCodeOf(err), err)
}

// plan computes the expectation, the model change on success, and the
// engine call for op. A nil expectation means the step does nothing.
func (h *harness) plan(ctx context.Context, op Op, n *node, now time.Time) (*expect, func(), func() error) {
	m, p, reg := h.m, h.pool, n.reg
	repo := repoName(op.Repo)
	e := func(x expect) *expect { return &x }
	switch op.Kind {
	case opPushBlob:
		d := p.dig[op.Blob]
		if m.deleting[d] {
			return nil, nil, nil // would wait 10 s for a collection (see report)
		}
		want := okay
		if !m.writable(repo) || m.overQuota(repo, d, int64(len(p.bytes(op.Blob)))) {
			want = fails(stowage.CodeDenied)
		}
		return e(want), func() { m.ensureRepo(repo).links[d] = true; m.live[d] = int64(len(p.bytes(op.Blob))) },
			func() error {
				_, err := reg.PutBlob(ctx, repo, d, bytes.NewReader(p.bytes(op.Blob)), int64(len(p.bytes(op.Blob))))
				return err
			}

	case opStartUpload:
		if m.uploads[op.Slot] != nil {
			return nil, nil, nil
		}
		want := okay
		if !m.writable(repo) {
			want = fails(stowage.CodeDenied)
		}
		var id string
		return e(want), func() { m.uploads[op.Slot] = &mUpload{id: id, repo: op.Repo, blob: op.Blob, updated: now} },
			func() error {
				u, err := reg.StartUpload(ctx, repo)
				id = u.ID
				return err
			}

	case opPatch:
		u := m.uploads[op.Slot]
		if u == nil {
			return nil, nil, nil
		}
		data := p.bytes(u.blob)
		end := min(u.sent+op.Size, int64(len(data)))
		if end == u.sent {
			return nil, nil, nil
		}
		chunk := data[u.sent:end]
		if m.overQuota(repoName(u.repo), "", end) {
			// The session is stopped at the first chunk that does not fit.
			want := fails(stowage.CodeDenied)
			want.onFail = func() { m.uploads[op.Slot] = nil }
			return &want, nil, func() error {
				_, err := reg.WriteUpload(ctx, repoName(u.repo), u.id, u.sent, int64(len(chunk)), bytes.NewReader(chunk))
				return err
			}
		}
		return e(okay), func() { u.sent, u.updated = end, now },
			func() error {
				_, err := reg.WriteUpload(ctx, repoName(u.repo), u.id, u.sent, int64(len(chunk)), bytes.NewReader(chunk))
				return err
			}

	case opFinish:
		u := m.uploads[op.Slot]
		if u == nil {
			return nil, nil, nil
		}
		urepo := repoName(u.repo)
		data := p.bytes(u.blob)
		d := p.dig[u.blob]
		if op.Wrong {
			d = p.dig[u.blob^1] // the same-size twin
		}
		if m.deleting[d] {
			return nil, nil, nil
		}
		rest := data[u.sent:]
		want := okay
		apply := func() {
			m.uploads[op.Slot] = nil
			m.ensureRepo(urepo).links[d] = true
			m.live[d] = int64(len(data))
		}
		switch {
		case op.Wrong:
			want = fails(stowage.CodeDigestInvalid, stowage.CodeDenied)
			// The session ends unless the whole body went the monolithic way.
			want.onFail = func() {
				if u.sent > 0 {
					m.uploads[op.Slot] = nil
				}
			}
		case u.sent > 0 && len(rest) > 0 && m.overQuota(urepo, "", int64(len(data))):
			want = fails(stowage.CodeDenied)
			want.onFail = func() { m.uploads[op.Slot] = nil }
		case m.overQuota(urepo, d, int64(len(data))):
			want = fails(stowage.CodeDenied)
			want.onFail = func() {
				if u.sent > 0 {
					u.sent, u.updated = int64(len(data)), now
				}
			}
		case !m.writable(urepo):
			want = fails(stowage.CodeDenied)
			want.onFail = func() {
				if u.sent > 0 {
					u.sent, u.updated = int64(len(data)), now // the rest was appended
				}
			}
		}
		return e(want), apply, func() error {
			_, err := reg.FinishUpload(ctx, urepo, u.id, d, u.sent, int64(len(rest)), bytes.NewReader(rest))
			return err
		}

	case opCancel:
		u := m.uploads[op.Slot]
		if u == nil {
			return nil, nil, nil
		}
		return e(okay), func() { m.uploads[op.Slot] = nil }, func() error { return reg.CancelUpload(ctx, repoName(u.repo), u.id) }

	case opMount:
		d := p.dig[op.Blob]
		from := ""
		var avail bool
		if op.From >= 0 {
			from = repoName(op.From)
			r := m.repo(from)
			avail = r != nil && r.links[d]
			if avail && r.locks&stowage.LockRead != 0 {
				avail = false // a read-locked repository lends nothing
			}
		} else {
			// Automatic content discovery: a live blob some repository
			// that is not read-locked holds.
			for _, r := range m.repos {
				avail = avail || r.links[d] && r.locks&stowage.LockRead == 0
			}
		}
		want := okay
		if !m.writable(repo) {
			want = fails(stowage.CodeDenied)
		} else if avail && m.overQuota(repo, d, m.live[d]) {
			want = fails(stowage.CodeDenied)
		}
		var mounted, answered bool
		return e(want), func() {
				if !answered {
					// A crash hid the answer: after the step, the mount
					// the model expects happened.
					mounted = avail
				}
				if avail != mounted {
					h.fail = failf("outcome", "%s: engine mounted=%v, the model expects %v", op, mounted, avail)
				}
				if mounted {
					m.ensureRepo(repo).links[d] = true
				}
			}, func() error {
				var err error
				_, mounted, err = reg.MountBlob(ctx, repo, from, d)
				answered = err == nil
				if err != nil && stowage.ErrorCodeOf(err) == stowage.CodeDenied && !avail && want.ok {
					return nil // refusing what is not lendable is fine
				}
				return err
			}

	case opPutManifest:
		return h.planPutManifest(ctx, op, n, now)

	case opUntag:
		r := m.repo(repo)
		tag := tagName(op.Tag)
		c := m.clone()
		want := okay
		switch {
		case r == nil:
			want = fails(stowage.CodeManifestUnknown, stowage.CodeNameUnknown)
		case r.locks&stowage.LockDelete != 0:
			want = fails(stowage.CodeDenied)
		case r.tags[tag] == nil:
			want = fails(stowage.CodeManifestUnknown)
		default:
			del := c.newDeletion(repo, now, false)
			del.untag(tag)
			if del.denied {
				want = fails(stowage.CodeDenied)
			}
		}
		return e(want), func() { h.m = c }, func() error { _, err := reg.Untag(ctx, repo, tag, false); return err }

	case opDelete:
		r := m.repo(repo)
		var ref stowage.Reference
		var d stowage.Digest
		if op.Tag >= 0 {
			ref = stowage.Reference{Tag: tagName(op.Tag)}
			if r != nil && r.tags[ref.Tag] != nil {
				d = r.tags[ref.Tag].d
			}
		} else {
			d = h.pickManifest(repo, op.Pick)
			if d == "" {
				return nil, nil, nil
			}
			ref = stowage.Reference{Digest: d}
		}
		c := m.clone()
		want := okay
		switch {
		case r == nil:
			want = fails(stowage.CodeManifestUnknown, stowage.CodeNameUnknown)
		case r.locks&stowage.LockDelete != 0:
			want = fails(stowage.CodeDenied)
		case d == "" || r.manifests[d] == nil:
			want = fails(stowage.CodeManifestUnknown)
		case len(r.parents(d)) > 0:
			// An index of the repository lists it: refused, naming the
			// index (registry_delete.go); the index stays pullable.
			want = fails(stowage.CodeDenied)
		default:
			del := c.newDeletion(repo, now, false)
			del.manifest(d, true)
			if del.denied {
				want = fails(stowage.CodeDenied)
			}
		}
		return e(want), func() { h.m = c }, func() error { _, err := reg.DeleteImage(ctx, repo, ref, false); return err }

	case opDeleteRepo:
		r := m.repo(repo)
		c := m.clone()
		want := okay
		switch {
		case r == nil:
			want = fails(stowage.CodeNameUnknown)
		case r.locks&stowage.LockDelete != 0:
			want = fails(stowage.CodeDenied)
		default:
			del := c.newDeletion(repo, now, false)
			// Every manifest is asked for: one that is locked refuses the
			// whole delete, wherever it is in the order.
			anyLocked := false
			for d := range r.manifests {
				anyLocked = anyLocked || del.locked(d)
			}
			for _, d := range c.manifestsNewestFirst(repo) {
				del.manifest(d, true)
			}
			if anyLocked && !del.denied && h.known(defectDeleteRepoLockedChild) {
				return nil, nil, nil
			}
			if anyLocked || del.denied {
				want = fails(stowage.CodeDenied)
			}
			delete(c.repos, repo)
			c.deletedRepos[repo] = true
			for i, u := range c.uploads {
				if u != nil && u.repo == op.Repo {
					c.uploads[i] = nil
				}
			}
		}
		return e(want), func() { h.m = c }, func() error { _, err := reg.DeleteRepository(ctx, repo, false); return err }

	case opDeleteBlob:
		r := m.repo(repo)
		d := p.dig[op.Blob]
		if m.deleting[d] {
			return nil, nil, nil // its links are invisible but still there
		}
		want := okay
		switch {
		case r != nil && r.locks&stowage.LockDelete != 0:
			want = fails(stowage.CodeDenied)
		case r == nil || !r.links[d]:
			want = fails(stowage.CodeBlobUnknown)
		case h.usedIn(r, d):
			want = fails(stowage.CodeDenied) // a layer an image of the repository uses stays
		}
		return e(want), func() { delete(r.links, d) }, func() error { return reg.DeleteBlob(ctx, repo, d) }

	case opLock:
		return h.planLock(ctx, op, n)

	case opSoftDelete:
		pol := stowage.SoftDeletePolicy{Enabled: op.Days > 0, Days: op.Days}
		return e(okay), func() { m.softDays = op.Days }, func() error { return recyclebin.New(reg).SetSoftDelete(ctx, pol) }

	case opRestore:
		return h.planRestore(ctx, op, n, now)

	case opRetention:
		pol := policy.Retention{Enabled: true, Days: op.Days}
		c := m.clone()
		cutoff := now.Add(-time.Duration(op.Days) * 24 * time.Hour)
		for _, name := range c.sortedRepos() {
			r := c.repos[name]
			if r.locks&stowage.LockDelete != 0 {
				continue
			}
			del := c.newDeletion(name, now, true)
			for _, d := range r.untaggedManifests(cutoff) {
				del.manifest(d, false)
			}
		}
		c.retention = pol
		return e(okay), func() { h.m = c }, func() error {
			if err := policy.New(reg).SetRetention(ctx, pol); err != nil {
				return err
			}
			_, err := policy.New(reg).ApplyRetention(ctx, false)
			return err
		}

	case opPurge:
		return h.planPurge(ctx, op, n, now)

	case opQuota:
		limit := m.held(repo) + op.Size
		if op.Size < 0 {
			limit = 0
		}
		want := okay
		if _, ok := m.quotas[repo]; !ok && limit == 0 {
			want = fails(stowage.CodeNameUnknown)
		}
		return e(want), func() {
			if limit == 0 {
				delete(m.quotas, repo)
			} else {
				m.quotas[repo] = limit
			}
		}, func() error { return reg.SetQuota(ctx, repo, limit) }

	case opCatalog:
		keep := func(string) bool { return true }
		if op.Filter != 0 {
			keep = func(name string) bool {
				for i := range numRepos {
					if op.Filter&(1<<i) != 0 && name == repoName(i) {
						return true
					}
				}
				return false
			}
		}
		var want []string
		for _, name := range m.sortedRepos() {
			if m.repos[name].locks&stowage.LockList == 0 && keep(name) {
				want = append(want, name)
			}
		}
		if op.N > 0 && len(want) > op.N {
			want = want[:op.N]
		}
		return e(okay), nil, func() error {
			c := ctx
			if op.Filter != 0 {
				c = stowage.WithListFilter(ctx, keep)
			}
			got, err := reg.Catalog(c, "", op.N)
			if err == nil && !slices.Equal(got, want) {
				return failf("catalog", "%s: catalog %q, the model expects %q", op, got, want)
			}
			return err
		}
	}
	return nil, nil, nil
}
