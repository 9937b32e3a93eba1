package modeltest

import (
	"math/rand/v2"
	"time"

	"github.com/stowage/stowage"
)

// generate makes a run's configuration and step list from its seed. The
// generator keeps a rough picture of what exists (it ignores failures), so
// most steps act on real things: manifests mostly reference blobs pushed
// to their repository, deletes name tags that were pushed. Steps name
// their targets by small indexes, resolved when they run.
func generate(seed uint64, steps int) (Config, []Op) {
	rng := rand.New(rand.NewPCG(seed, 0x0ddba11))
	cfg := Config{Topology: []Topology{TopoFS, TopoFS, TopoMirror, TopoShard}[rng.IntN(4)], Skews: []time.Duration{0}}
	if rng.IntN(3) == 0 {
		// A second node, its clock off by up to maxSkew either way.
		cfg.Skews = append(cfg.Skews, time.Duration(rng.Int64N(int64(2*maxSkew)))-maxSkew)
	}
	// Half the runs keep their storage on faultfs, with power losses.
	cfg.PowerLoss = rng.IntN(2) == 0
	g := &gen{rng: rng, nodes: len(cfg.Skews), power: cfg.PowerLoss}
	for i := range numRepos {
		g.pushed[i] = map[int]bool{}
	}
	var ops []Op
	for len(ops) < steps {
		op := g.op(0)
		if op.Kind == opPutManifest && len(op.Image.Children) == 0 && g.chance(60) {
			// Push an image as a client does: its blobs, then the manifest.
			for _, b := range append([]int{op.Image.Config}, op.Image.Layers...) {
				ops = append(ops, Op{Kind: opPushBlob, Node: op.Node, Repo: op.Repo, Blob: b, Tag: -1, From: -1})
			}
		}
		ops = append(ops, op)
	}
	return cfg, ops[:steps]
}

type gen struct {
	rng    *rand.Rand
	nodes  int
	power  bool                   // Config.PowerLoss: power-loss and power-cut steps
	pushed [numRepos]map[int]bool // blobs (sha256 ones) pushed per repository
	images [numRepos][]ImageSpec
	salt   int
}

func (g *gen) intn(n int) int { return g.rng.IntN(n) }
func (g *gen) chance(pct int) bool {
	return g.rng.IntN(100) < pct
}

// blob picks a blob: mostly sha256, some sha512.
func (g *gen) blob() int {
	b := g.intn(numBlobs)
	if g.chance(8) {
		b += numBlobs
	}
	return b
}

// weights of the step kinds.
var weights = []struct {
	kind OpKind
	w    int
}{
	{opPushBlob, 14}, {opStartUpload, 5}, {opPatch, 6}, {opFinish, 5}, {opCancel, 1},
	{opMount, 5}, {opPutManifest, 16}, {opUntag, 4}, {opDelete, 5}, {opDeleteRepo, 1},
	{opDeleteBlob, 2}, {opLock, 5}, {opSoftDelete, 2}, {opRestore, 3}, {opRetention, 2},
	{opPurge, 2}, {opGC, 5}, {opAdvance, 2}, {opRestart, 2}, {opCrash, 5}, {opPowerLoss, 3}, {opPowerCut, 6}, {opCatalog, 1}, {opQuota, 2},
	{opLeftover, 2}, {opGCRacePush, 2}, {opGCDuringPatch, 1}, {opPatchRace, 2},
}

func (g *gen) op(depth int) Op {
	total := 0
	for _, w := range weights {
		total += w.w
	}
	x := g.intn(total)
	var kind OpKind
	for _, w := range weights {
		if x < w.w {
			kind = w.kind
			break
		}
		x -= w.w
	}
	if !g.power {
		// On the OS's file system a power loss is a restart.
		switch kind {
		case opPowerLoss:
			kind = opRestart
		case opPowerCut:
			kind = opCrash
		}
	}
	op := Op{Kind: kind, Node: g.intn(g.nodes), Repo: g.intn(numRepos), Tag: -1, From: -1}
	switch kind {
	case opPushBlob:
		op.Blob = g.blob()
		if op.Blob < numBlobs {
			g.pushed[op.Repo][op.Blob] = true
		}
	case opStartUpload:
		op.Slot, op.Blob = g.intn(numSlots), g.blob()
		if op.Blob < numBlobs {
			g.pushed[op.Repo][op.Blob] = true
		}
	case opPatch:
		op.Slot = g.intn(numSlots)
		op.Size = []int64{1, 1000, 40000, 65536, 80000}[g.intn(5)]
	case opFinish:
		op.Slot = g.intn(numSlots)
		op.Wrong = g.chance(5)
	case opCancel:
		op.Slot = g.intn(numSlots)
	case opMount:
		op.Blob = g.intn(numBlobs)
		if g.chance(80) {
			op.From = g.intn(numRepos)
		}
		g.pushed[op.Repo][op.Blob] = true
	case opPutManifest:
		op.Image = g.image(op.Repo)
		op.ByDigest = g.chance(25)
		for t := range numTags {
			if g.chance(30) {
				op.Tags = append(op.Tags, t)
			}
		}
		g.images[op.Repo] = append(g.images[op.Repo], op.Image)
	case opUntag:
		op.Tag = g.intn(numTags)
	case opDelete:
		if g.chance(50) {
			op.Tag = g.intn(numTags)
		}
		op.Pick = g.intn(8)
	case opDeleteRepo:
		g.pushed[op.Repo] = map[int]bool{}
		g.images[op.Repo] = nil
	case opDeleteBlob:
		op.Blob = g.intn(numBlobs)
	case opLock:
		op.Target = []string{"repo", "tag", "manifest"}[g.intn(3)]
		op.Tag, op.Pick = g.intn(numTags), g.intn(8)
		op.Bits = []stowage.Locks{stowage.LockWrite, stowage.LockDelete, stowage.LockRead, stowage.LockList}[g.intn(4)]
		op.Clear = g.chance(45)
	case opSoftDelete:
		if g.chance(60) {
			op.Days = 1 + g.intn(3)
		}
	case opRestore:
		op.Pick = g.intn(8)
	case opRetention:
		op.Days = g.intn(2)
	case opPurge:
		if g.chance(30) {
			op.Repo = -1
		}
		if g.chance(50) {
			op.Tag = g.intn(numTags)
		}
		op.Ago = []time.Duration{0, time.Minute, time.Hour}[g.intn(3)]
		op.Keep = g.intn(2)
		op.Untagged = g.chance(50)
	case opGC:
		op.Jump = g.jump()
		if op.Jump > lease {
			// Unreferenced blobs are gone: the next images push theirs again.
			for i := range numRepos {
				g.pushed[i] = map[int]bool{}
			}
		}
	case opAdvance:
		op.Jump = []time.Duration{time.Minute, 20 * time.Minute, 2 * time.Hour, 30 * time.Hour}[g.intn(4)]
	case opCrash, opPowerCut:
		if depth > 0 {
			return Op{Kind: opRestart}
		}
		// Not these: several transactions by design (partial progress is
		// fine), or no single step. A power cut mostly cuts a step that
		// writes to storage (one more draw for others).
		bad := func(k OpKind) bool {
			return k == opCrash || k == opPowerCut || k == opRestart || k == opPowerLoss || k == opAdvance || k == opCatalog ||
				k == opLeftover || k == opGCRacePush || k == opGCDuringPatch || k == opPatchRace || k == opRetention || k == opPurge
		}
		inner := g.op(1)
		for redraw := kind == opPowerCut; bad(inner.Kind) || redraw && !writesStorage[inner.Kind]; redraw = false {
			inner = g.op(1)
		}
		if kind == opPowerCut {
			// Most steps make 5-10 file system calls on a leaf.
			op = Op{Kind: opPowerCut, Inner: &inner, FaultAt: g.intn(10), Leaf: g.intn(3)}
			break
		}
		op = Op{Kind: opCrash, Inner: &inner, FaultAt: 1 + g.intn(4), After: g.chance(50), InDB: g.chance(40)}
	case opLeftover:
		op.Blob = g.intn(numBlobs)
	case opGCRacePush:
		op.Blob, op.Jump = g.intn(numBlobs), []time.Duration{2 * time.Hour, fullJump}[g.intn(2)]
		g.pushed[op.Repo][op.Blob] = true
	case opGCDuringPatch:
		op.Slot, op.Size, op.Jump = g.intn(numSlots), []int64{1000, 80000}[g.intn(2)], fullJump
	case opPatchRace:
		op.Slot, op.Size = g.intn(numSlots), []int64{1000, 70000, 140000}[g.intn(3)]
	case opQuota:
		op.Size = []int64{-1, -1, 0, 100, 2000, 70000}[g.intn(6)]
	case opCatalog:
		op.Filter = g.intn(1 << numRepos)
		op.N = []int{0, 0, 1, 2, -1}[g.intn(5)]
	}
	return op
}

// writesStorage are the step kinds that write to storage.
var writesStorage = map[OpKind]bool{opPushBlob: true, opPatch: true, opFinish: true, opPutManifest: true,
	opGC: true, opCancel: true, opDeleteRepo: true}

// jump is a clock jump before a collection: none, within the lease, past
// grace and lease, or past everything (a full collection).
func (g *gen) jump() time.Duration {
	return []time.Duration{0, 30 * time.Minute, 2 * time.Hour, fullJump, 4 * 24 * time.Hour}[g.intn(5)]
}

// image makes a manifest for repo: mostly of blobs pushed there.
func (g *gen) image(repo int) ImageSpec {
	g.salt++
	if len(g.images[repo]) > 0 && g.chance(20) {
		// An index of one or two images pushed to this repository.
		var s ImageSpec
		s.Salt = g.salt % 4
		for range 1 + g.intn(2) {
			s.Children = append(s.Children, g.images[repo][g.intn(len(g.images[repo]))])
		}
		return s
	}
	var pushed []int
	for b := range numBlobs {
		if g.pushed[repo][b] {
			pushed = append(pushed, b)
		}
	}
	pick := func() int {
		if len(pushed) > 0 && g.chance(90) {
			return pushed[g.intn(len(pushed))]
		}
		return g.intn(numBlobs)
	}
	s := ImageSpec{Config: pick(), Salt: g.salt % 4, BadSize: g.chance(4)}
	for range 1 + g.intn(3) {
		s.Layers = append(s.Layers, pick())
		s.Foreign = append(s.Foreign, g.chance(8))
	}
	return s
}
