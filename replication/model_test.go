package replication_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/feed"
	"github.com/stowage/stowage/replication"
)

// TestConvergenceModel is a generated test of convergence (seeded,
// bounded): three regions with skewed clocks make random changes of a few
// tags and manifests in two repositories (pushes by tag and by digest, tag
// moves, untags, manifest deletes, repository deletes, lock changes), while
// the changes of each region reach each peer in the order it made them,
// interleaved at random between links, with duplicates and re-deliveries
// after a simulated crash (a cursor rewound), as the replicator ships them
// (the manifest's bytes read when shipped; one deleted since is not
// shipped). Once everything is delivered, every region must hold the same
// tags, manifests and locks, and the last lock change of each attribute of
// a target that still exists (and was not removed after it) must hold in
// every region: no lock change is reverted.
//
// REPL_MODEL_SEED=n runs seed n alone (to replay a failure), with its
// operations logged.
//
// Locks used: list, read, write and delete of tags (a write or delete
// lock guards each region's clients; a replicated change passes it:
// docs/replication.md "Locks, quotas and convergence"), list of manifests
// and repositories. Not read locks of manifests and repositories, which
// are not shipped.
func TestConvergenceModel(t *testing.T) {
	seeds, ops := []uint64{}, 60
	if s := os.Getenv("REPL_MODEL_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, n)
	} else {
		n := 8
		if testing.Short() {
			n = 3
		}
		for i := 0; i < n; i++ {
			seeds = append(seeds, uint64(i+1))
		}
	}
	convergenceModel(t, seeds, ops)
}

func convergenceModel(t *testing.T, seeds []uint64, ops int) {
	for _, seed := range seeds {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			m := newModel(t, seed, len(seeds) == 1)
			m.run(ops)
			m.check()
		})
	}
}

var (
	modelRepos = []string{"app", "lib"}
	modelTags  = []string{"a", "b", "c"}
)

type model struct {
	t       *testing.T
	rnd     *rand.Rand
	verbose bool
	rgs     []*region
	seq     []int64                // per region: the feed seq read up to
	out     [][]replication.Change // per region: its own changes, in order
	cursor  map[[2]int]int         // per link (from, to): changes delivered
	locks   []lockChange           // every lock change made
	removed map[string][]HLC       // "repo target": the clocks of its removals
}

type lockChange struct {
	repo, target string // target: tag, "@" + digest, "" (the repository)
	bit          stowage.Locks
	locked       bool
	hlc          HLC
}

func newModel(t *testing.T, seed uint64, verbose bool) *model {
	m := &model{t: t, rnd: rand.New(rand.NewPCG(seed, seed*7919)), verbose: verbose, cursor: map[[2]int]int{}, removed: map[string][]HLC{}}
	for i, name := range []string{"east", "west", "north"} {
		skew := []time.Duration{0, -40 * time.Millisecond, 25 * time.Millisecond}[i]
		m.rgs = append(m.rgs, newRegion(t, name, skew))
		m.seq = append(m.seq, 0)
		m.out = append(m.out, nil)
	}
	return m
}

func (m *model) logf(format string, args ...any) {
	if m.verbose {
		m.t.Logf(format, args...)
	}
}

// manifest returns a small image's manifest (seed picks which of a few),
// its config blob pushed into repo in rg.
func (m *model) manifest(rg *region, repo string, seed int) []byte {
	cfg := []byte(`{"model":` + strconv.Itoa(seed) + `}`)
	cd := digest.FromBytes(cfg)
	if _, err := rg.reg.PutBlob(ctx, repo, cd, bytes.NewReader(cfg), int64(len(cfg))); err != nil {
		m.t.Fatal(err)
	}
	return []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[]}`, cd, len(cfg)))
}

const ociManifest = "application/vnd.oci.image.manifest.v1+json"

// expected: what a random operation may be refused with (the target is
// not there, or a rule of the region refuses it).
func (m *model) expected(err error) {
	if err == nil {
		return
	}
	switch stowage.ErrorCodeOf(err) {
	case stowage.CodeManifestUnknown, stowage.CodeNameUnknown, stowage.CodeDenied:
		m.logf("  refused: %v", err)
		return
	}
	m.t.Fatalf("unexpected error: %v", err)
}

func (m *model) manifests(rg *region, repo string) []stowage.Digest {
	var out []stowage.Digest
	if err := rg.db.View(ctx, func(tx stowage.Tx) error {
		ms, err := tx.Manifests().ListManifests(repo)
		for _, x := range ms {
			out = append(out, x.Digest)
		}
		return err
	}); err != nil && !errors.Is(err, stowage.ErrNotFound) {
		m.t.Fatal(err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// op makes one random change in a random region.
func (m *model) op() {
	i := m.rnd.IntN(len(m.rgs))
	rg := m.rgs[i]
	repo := modelRepos[m.rnd.IntN(len(modelRepos))]
	tag := modelTags[m.rnd.IntN(len(modelTags))]
	switch p := m.rnd.IntN(100); {
	case p < 40: // push, by tag or by digest
		body := m.manifest(rg, repo, m.rnd.IntN(4))
		ref := stowage.Reference{Tag: tag}
		if m.rnd.IntN(5) == 0 {
			ref = stowage.Reference{Digest: digest.FromBytes(body)}
		}
		m.logf("%s: push %s %v", rg.name, repo, ref)
		_, err := rg.reg.PutManifest(ctx, repo, ref, ociManifest, body, nil)
		m.expected(err)
	case p < 55:
		m.logf("%s: untag %s:%s", rg.name, repo, tag)
		_, err := rg.reg.Untag(ctx, repo, tag, false)
		m.expected(err)
	case p < 67:
		ds := m.manifests(rg, repo)
		if len(ds) == 0 {
			return
		}
		d := ds[m.rnd.IntN(len(ds))]
		m.logf("%s: delete %s@%s", rg.name, repo, d)
		_, err := rg.reg.DeleteImage(ctx, repo, stowage.Reference{Digest: d}, false)
		m.expected(err)
	case p < 70:
		m.logf("%s: delete repository %s", rg.name, repo)
		_, err := rg.reg.DeleteRepository(ctx, repo, false)
		m.expected(err)
	default: // a lock change
		ref, bit := stowage.Reference{Tag: tag}, stowage.LockList
		switch q := m.rnd.IntN(10); {
		case q < 3:
			bit = stowage.LockRead
		case q < 6: // a tag: list, write or delete lock
			bit = []stowage.Locks{stowage.LockList, stowage.LockWrite, stowage.LockDelete}[m.rnd.IntN(3)]
		case q < 8:
			ds := m.manifests(rg, repo)
			if len(ds) == 0 {
				return
			}
			ref = stowage.Reference{Digest: ds[m.rnd.IntN(len(ds))]}
		default:
			ref = stowage.Reference{}
		}
		set, clear := bit, stowage.Locks(0)
		if m.rnd.IntN(2) == 0 {
			set, clear = 0, bit
		}
		m.logf("%s: lock %s %v set %v clear %v", rg.name, repo, ref, set, clear)
		_, err := rg.reg.SetLocks(ctx, repo, ref, set, clear)
		m.expected(err)
	}
	m.collect(i)
}

// collect appends the changes region i made since last time to its
// outbox, and notes lock changes and removals (for the no-revert check).
func (m *model) collect(i int) {
	rg := m.rgs[i]
	chs := rg.rawChanges(m.t, m.seq[i])
	m.seq[i] = rg.newest(m.t)
	for _, ch := range chs {
		m.logf("  %s made: %s %s %v@%.19s %s", rg.name, ch.Kind, ch.Repo, ch.Tags, ch.Digest, ch.HLC)
		m.out[i] = append(m.out[i], ch)
		switch ch.Kind {
		case stowage.EventLock:
			target := ""
			if ch.Digest != "" {
				target = replication.ManifestName(ch.Digest)
			} else if len(ch.Tags) == 1 {
				target = ch.Tags[0]
			}
			for _, b := range []stowage.Locks{stowage.LockWrite, stowage.LockDelete, stowage.LockRead, stowage.LockList} {
				if *ch.LockMask&b != 0 {
					m.locks = append(m.locks, lockChange{ch.Repo, target, b, *ch.Locks&b != 0, ch.HLC})
				}
			}
		case stowage.EventUntag:
			m.removal(ch.Repo, ch.Tags[0], ch.HLC)
		case stowage.EventDelete:
			m.removal(ch.Repo, replication.ManifestName(ch.Digest), ch.HLC)
			for _, tg := range ch.Tags {
				m.removal(ch.Repo, tg, ch.HLC)
			}
		case stowage.EventRepositoryDelete:
			m.removal(ch.Repo, "*", ch.HLC)
		}
	}
}

func (m *model) removal(repo, target string, h HLC) {
	k := repo + " " + target
	m.removed[k] = append(m.removed[k], h)
}

// deliver ships the next change on a random link with changes to ship;
// now and then the link "crashes" (its cursor goes back a few changes:
// they are shipped again) or ships one change twice. It reports false when
// nothing was left to ship.
func (m *model) deliver() bool {
	var links [][2]int
	for from := range m.rgs {
		for to := range m.rgs {
			if from != to && m.cursor[[2]int{from, to}] < len(m.out[from]) {
				links = append(links, [2]int{from, to})
			}
		}
	}
	if len(links) == 0 {
		return false
	}
	l := links[m.rnd.IntN(len(links))]
	n := m.cursor[l]
	m.ship(l[0], l[1], m.out[l[0]][n])
	if m.rnd.IntN(12) == 0 {
		m.ship(l[0], l[1], m.out[l[0]][n]) // a duplicate
	}
	m.cursor[l] = n + 1
	if m.rnd.IntN(15) == 0 { // crash before the cursor was saved
		back := m.rnd.IntN(4)
		m.cursor[l] = max(0, n+1-back)
		m.logf("crash: link %s->%s back %d", m.rgs[l[0]].name, m.rgs[l[1]].name, back)
	}
	return true
}

// ship applies ch (made in region from) in region to, as the replicator
// ships it: a push's manifest read now (not shipped if it is gone), its
// blobs first.
func (m *model) ship(from, to int, ch replication.Change) {
	src, dst := m.rgs[from], m.rgs[to]
	if ch.Kind == stowage.EventPush {
		_, body, err := src.reg.GetManifest(ctx, ch.Repo, stowage.Reference{Digest: ch.Digest})
		if c := stowage.ErrorCodeOf(err); c == stowage.CodeManifestUnknown || c == stowage.CodeNameUnknown {
			// As Replicator.ship: without the manifest, its tags go.
			var del replication.Clock
			src.db.View(ctx, func(tx stowage.Tx) error {
				del, _ = tx.(replication.ClockTx).ReplicationClocks().GetClock(ch.Repo, replication.ManifestName(ch.Digest))
				return nil
			})
			if len(ch.Tags) == 0 || !del.Removed() || del.HLC.IsZero() {
				m.logf("ship %s->%s: push %s@%s: gone, not shipped", src.name, dst.name, ch.Repo, ch.Digest)
				return
			}
			body = nil
		} else if err != nil {
			m.t.Fatal(err)
		}
		if body != nil {
			ch.Manifest = body
			copyBlobs(m.t, src, dst, ch.Repo, body)
		}
	}
	res, err := dst.app.Apply(ctx, ch)
	if err != nil {
		m.t.Fatalf("%s applying %s's %s %s %v@%s (%s): %v (a change that cannot be applied stalls the link)", dst.name, src.name, ch.Kind, ch.Repo, ch.Tags, ch.Digest, ch.HLC, err)
	}
	m.logf("ship %s->%s: %s %s %v@%.19s %s: %+v", src.name, dst.name, ch.Kind, ch.Repo, ch.Tags, ch.Digest, ch.HLC, res)
}

func (m *model) run(ops int) {
	for i := 0; i < ops; i++ {
		m.op()
		for n := m.rnd.IntN(4); n > 0; n-- {
			m.deliver()
		}
		if m.rnd.IntN(3) == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	for m.deliver() {
	}
}

// state is what a region holds: per repository, its locks, its manifests
// with their locks, its tags with their digests and locks.
func (m *model) state(rg *region) string {
	var b strings.Builder
	for _, repo := range modelRepos {
		err := rg.db.View(ctx, func(tx stowage.Tx) error {
			r, err := tx.Repositories().GetRepository(repo)
			if errors.Is(err, stowage.ErrNotFound) {
				fmt.Fprintf(&b, "%s: none\n", repo)
				return nil
			} else if err != nil {
				return err
			}
			ms, err := tx.Manifests().ListManifests(repo)
			if err != nil {
				return err
			}
			if len(ms) == 0 && r.Locks == 0 {
				// Empty: a shipped push refused as stale leaves the blobs
				// uploaded before it (and so the repository) behind.
				fmt.Fprintf(&b, "%s: none\n", repo)
				return nil
			}
			fmt.Fprintf(&b, "%s: locks %v\n", repo, r.Locks)
			sort.Slice(ms, func(i, j int) bool { return ms[i].Digest < ms[j].Digest })
			for _, x := range ms {
				fmt.Fprintf(&b, "  @%.19s locks %v\n", x.Digest, x.Locks)
			}
			for _, tg := range modelTags {
				tr, err := tx.Tags().GetTagRecord(repo, tg)
				if errors.Is(err, stowage.ErrNotFound) {
					continue
				} else if err != nil {
					return err
				}
				fmt.Fprintf(&b, "  %s -> %.19s locks %v\n", tg, tr.Digest, tr.Locks)
			}
			return nil
		})
		if err != nil {
			m.t.Fatal(err)
		}
	}
	return b.String()
}

func (m *model) check() {
	want := m.state(m.rgs[0])
	for _, rg := range m.rgs[1:] {
		if got := m.state(rg); got != want {
			m.t.Errorf("regions differ after every change was delivered:\n%s:\n%s\n%s:\n%s", m.rgs[0].name, want, rg.name, got)
		}
	}
	// No lock change reverted: the last change of each attribute of a
	// target holds wherever the target exists, unless the target (or its
	// repository) was removed after it.
	last := map[string]lockChange{}
	for _, lc := range m.locks {
		k := fmt.Sprintf("%s %s %d", lc.repo, lc.target, lc.bit)
		if cur, ok := last[k]; !ok || lc.hlc.After(cur.hlc) {
			last[k] = lc
		}
	}
	for _, lc := range last {
		later := false
		for _, h := range append(m.removed[lc.repo+" "+lc.target], m.removed[lc.repo+" *"]...) {
			later = later || h.After(lc.hlc)
		}
		if later {
			continue
		}
		for _, rg := range m.rgs {
			ref := stowage.Reference{}
			if strings.HasPrefix(lc.target, "@") {
				ref.Digest = stowage.Digest(lc.target[1:])
			} else {
				ref.Tag = lc.target
			}
			l, err := rg.reg.Locks(ctx, lc.repo, ref)
			if c := stowage.ErrorCodeOf(err); c == stowage.CodeManifestUnknown || c == stowage.CodeNameUnknown {
				continue
			} else if err != nil {
				m.t.Fatal(err)
			}
			if (l&lc.bit != 0) != lc.locked {
				m.t.Errorf("%s: %s %q: lock %v is %v, but the last change of it (%s) made it %v: reverted",
					rg.name, lc.repo, lc.target, lc.bit, l&lc.bit != 0, lc.hlc, lc.locked)
			}
		}
	}
}

// rawChanges returns the replicable changes made here after seq, without
// the manifests' bytes (read when shipped).
func (rg *region) rawChanges(t *testing.T, after int64) []replication.Change {
	t.Helper()
	p, err := rg.f.Read(ctx, feed.Query{After: after, Resume: true, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var out []replication.Change
	for _, e := range p.Events {
		if e.Origin != "" {
			continue
		}
		if ch, ok := replication.ChangeOf(e, rg.name); ok {
			out = append(out, ch)
		}
	}
	return out
}
