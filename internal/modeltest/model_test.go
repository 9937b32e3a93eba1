package modeltest

import (
	"context"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/meta/postgres/pgtest"
)

// Knobs (environment):
//
//	STOWAGE_MODEL_SEED=N      replay one seed (and shrink its failure)
//	STOWAGE_MODEL_SECONDS=S   time budget, fixed seeds included (default 30; 5 with -short, 10 with -race)
//	STOWAGE_MODEL_STEPS=N     steps per seed (default 120; 60 with -race)
//	STOWAGE_MODEL_STRICT=1    ignore the known-defect switches (check.go),
//	                          or only those named: STOWAGE_MODEL_STRICT=mount-read-lock,...
//	STOWAGE_MODEL_KEEPGOING=1 report every failure (shrunk once per kind and
//	                          step kind) and go on with the next seed

// fixedSeeds always run: a spread of topologies and node counts.
var fixedSeeds = []uint64{1, 2, 3, 5, 8}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("%s=%q: want a number", name, v)
	}
	return n
}

// known returns the known-defect switches in force: all of knownDefects,
// less those STOWAGE_MODEL_STRICT names (a comma-separated list of
// defect names, or 1 for all of them).
func known(t *testing.T) func(string) bool {
	strict := os.Getenv("STOWAGE_MODEL_STRICT")
	off := map[string]bool{}
	for _, name := range strings.Split(strict, ",") {
		if name == "" {
			continue
		}
		if name != "1" && !knownDefects[name] {
			t.Fatalf("STOWAGE_MODEL_STRICT: %q is not a known defect (see knownDefects in check.go)", name)
		}
		off[name] = true
	}
	return func(d string) bool { return knownDefects[d] && !off[d] && !off["1"] }
}

// runSeeds runs the fixed seeds, then random ones until the budget is
// spent (or just STOWAGE_MODEL_SEED), and reports the first failure,
// shrunk.
func runSeeds(t *testing.T, pg func() string) {
	ctx := context.Background()
	defSecs, defSteps := 30, 120
	switch {
	case raceEnabled:
		defSecs, defSteps = 10, 60
	case testing.Short():
		defSecs = 5
	}
	secs := envInt(t, "STOWAGE_MODEL_SECONDS", defSecs)
	steps := envInt(t, "STOWAGE_MODEL_STEPS", defSteps)
	seeds := fixedSeeds
	if raceEnabled || testing.Short() {
		seeds = seeds[:3]
	}
	random := true
	if v := os.Getenv("STOWAGE_MODEL_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("STOWAGE_MODEL_SEED=%q: want a number", v)
		}
		seeds, random = []uint64{s}, false
	}
	deadline := time.Now().Add(time.Duration(secs) * time.Second)
	dir := t.TempDir()
	ran, failed := 0, 0
	stats := Stats{}
	keepGoing := os.Getenv("STOWAGE_MODEL_KEEPGOING") != ""
	shrunkKinds := map[string]bool{}
	for i := 0; i < len(seeds) || random && time.Now().Before(deadline); i++ {
		var seed uint64
		if i < len(seeds) {
			seed = seeds[i]
		} else {
			seed = rand.Uint64() % 1e9
		}
		cfg, ops := generate(seed, steps)
		cfg.Postgres = pg
		f, at, err := RunStats(ctx, cfg, seed, ops, dir, known(t), stats)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		ran++
		if f != nil && keepGoing {
			failed++
			sig := f.Kind + " at " + string(ops[at].Kind)
			if ops[at].Inner != nil {
				sig += " " + string(ops[at].Inner.Kind)
			}
			if shrunkKinds[sig] {
				t.Errorf("seed %d (%s): %s (not shrunk: %s seen)\n%s", seed, cfg, f, sig, ops[at])
				continue
			}
			shrunkKinds[sig] = true
			shrunk := Shrink(ctx, cfg, seed, ops, f.Kind, dir, known(t), 300, 3*time.Minute)
			if f2, _, err := Run(ctx, cfg, seed, shrunk, dir, known(t)); err == nil && f2 != nil {
				f = f2
			}
			t.Error(Describe(seed, cfg, f, shrunk))
			continue
		}
		if f != nil {
			shrunk := Shrink(ctx, cfg, seed, ops, f.Kind, dir, known(t), 300, 3*time.Minute)
			if f2, _, err := Run(ctx, cfg, seed, shrunk, dir, known(t)); err == nil && f2 != nil {
				f = f2
			}
			t.Fatal(Describe(seed, cfg, f, shrunk))
		}
	}
	t.Logf("%d seeds of %d steps ran, %d failed; steps run: %v", ran, steps, failed, stats)
}

// TestModel drives the engine (SQLite file, fs storage in one of the
// topologies, encryption on, one or two nodes with skewed clocks) with
// random steps and compares it with the model after each one.
func TestModel(t *testing.T) {
	runSeeds(t, nil)
}

// TestModelPostgres is TestModel on PostgreSQL (scripts/postgres-test.sh
// provides the server; without one it skips).
func TestModelPostgres(t *testing.T) {
	pgtest.Server(t)
	if os.Getenv("STOWAGE_MODEL_SECONDS") == "" {
		t.Setenv("STOWAGE_MODEL_SECONDS", "15")
	}
	runSeeds(t, func() string { return pgtest.Schema(t, "modeltest") })
}

// reproduction is the shortest step list found for a defect.
type reproduction struct {
	defect string
	steps  []Op
	skews  []time.Duration // nodes (default: one)
}

// reproductions are the step lists of TestKnownDefects: for the defects
// still listed in knownDefects (check.go), and, kept as fixed seeds, for
// those fixed since (their names no longer switch anything).
func reproductions(p *pool) []reproduction {
	img := ImageSpec{Config: 1, Layers: []int{1}, Foreign: []bool{false}}
	child := ImageSpec{Config: 1, Layers: []int{2}, Foreign: []bool{false}}
	index := ImageSpec{Children: []ImageSpec{child}}
	// pick selects the child among the repository's two manifests
	// (ordered by digest).
	pick := 0
	if digestOf(child.body(p)) > digestOf(index.body(p)) {
		pick = 1
	}
	put := func(repo int, s ImageSpec, tags ...int) Op {
		return Op{Kind: opPutManifest, Repo: repo, Image: s, Tags: tags, ByDigest: len(tags) == 0, Tag: -1}
	}
	push := func(repo, blob int) Op { return Op{Kind: opPushBlob, Repo: repo, Blob: blob} }
	return []reproduction{
		// Still known.
		{defectRestoreDropsLocks, []Op{{Kind: opSoftDelete, Days: 1}, push(0, 1), put(0, img, 0),
			{Kind: opLock, Target: "manifest", Repo: 0, Bits: stowage.LockRead}, {Kind: opDelete, Repo: 0, Tag: 0}, {Kind: opRestore}}, nil},
		{defectDeleteRepoLockedChild, []Op{push(0, 1), push(0, 2), put(0, child), put(0, index, 0),
			{Kind: opLock, Target: "manifest", Repo: 0, Pick: pick, Bits: stowage.LockDelete}, {Kind: opDeleteRepo, Repo: 0}}, nil},
		{defectCryptOverwriteKey, []Op{{Kind: opCrash, InDB: true, FaultAt: 3, Inner: &Op{Kind: opPushBlob, Repo: 0, Blob: 5}},
			push(0, 5), put(0, ImageSpec{Config: 5, Layers: []int{5}, Foreign: []bool{false}}, 0), {Kind: opGC, Jump: fullJump}}, nil},
		{defectFinishNotAtomic, []Op{{Kind: opStartUpload, Repo: 0, Slot: 0, Blob: 2},
			{Kind: opCrash, InDB: true, FaultAt: 3, After: true, Inner: &Op{Kind: opFinish, Slot: 0}}}, nil},
		{defectCancelIgnoresDBError, []Op{{Kind: opStartUpload, Repo: 0, Slot: 1, Blob: 6},
			{Kind: opCrash, InDB: true, FaultAt: 2, Inner: &Op{Kind: opCancel, Slot: 1}}}, nil},
		// Two nodes; the checks read through node 0 after even steps, node 1
		// after odd ones. Node 1 caches t0 at tags version 1 (after step
		// 1); node 0 deletes the repository; node 1 does not read it again
		// until the new repository's first tag brings its version to 1
		// again, and then t0 answers the deleted image.
		{defectRepoCacheRecreated, []Op{push(0, 1), put(0, img, 0), {Kind: opDeleteRepo, Repo: 0}, {Kind: opCatalog},
			push(0, 5), put(0, ImageSpec{Config: 5, Layers: []int{5}, Foreign: []bool{false}}, 2)}, []time.Duration{0, 0}},

		// Fixed: a manifest whose descriptor size differs from the blob's
		// was accepted.
		{"descriptor-size", []Op{push(0, 1), put(0, ImageSpec{Config: 1, Layers: []int{1}, Foreign: []bool{false}, BadSize: true}, 0)}, nil},
		// Fixed: DELETE of a blob that an image of the repository uses
		// succeeded.
		{"delete-used-blob", []Op{push(0, 1), put(0, img, 0), {Kind: opDeleteBlob, Repo: 0, Blob: 1}}, nil},
		// Fixed: a filtered catalog with no n was empty.
		{"catalog-filter-no-n", []Op{push(0, 1), {Kind: opCatalog, Filter: 1, N: 0}}, nil},
		// Fixed: a mount from a read-locked repository succeeded.
		{"mount-read-lock", []Op{push(1, 4), {Kind: opLock, Target: "repo", Repo: 1, Bits: stowage.LockRead}, {Kind: opMount, Repo: 0, From: 1, Blob: 4}}, nil},
		// Fixed: GC collected a pushed non-distributable layer an image lists.
		{"foreign-layer-gc", []Op{push(0, 1), push(0, 2),
			put(0, ImageSpec{Config: 1, Layers: []int{2}, Foreign: []bool{true}}, 0), {Kind: opGC, Jump: fullJump}}, nil},
		// Fixed: pushing again a manifest the repository has (to tag it) was
		// refused near the quota, though it adds no bytes.
		{"retag-near-quota", []Op{push(0, 1), put(0, img, 0), {Kind: opQuota, Repo: 0, Size: 0}, put(0, img, 1)}, nil},
		// Fixed: the orphan sweep deleted an object a push recorded after the
		// sweep's re-check (no fence between them).
		{"orphan-sweep-fence", []Op{{Kind: opLeftover, Blob: 1}, {Kind: opGCRacePush, Repo: 0, Blob: 1, Jump: 2 * time.Hour}}, nil},
		// Fixed: a collection expired an upload session whose writer was
		// streaming.
		{"gc-expires-live-upload", []Op{{Kind: opStartUpload, Repo: 0, Slot: 0, Blob: 2},
			{Kind: opGCDuringPatch, Slot: 0, Size: 1000, Jump: fullJump}}, nil},
		// Fixed: a finish retried after a crash between the commit and its
		// record, naming the sha512 digest of another stored blob of the
		// same size, recorded that blob.
		{"committed-earlier-other-blob", []Op{push(1, 19), {Kind: opStartUpload, Repo: 0, Slot: 0, Blob: 18},
			{Kind: opPatch, Slot: 0, Size: 200000}, {Kind: opCrash, FaultAt: 1, After: true, Inner: &Op{Kind: opFinish, Slot: 0}},
			{Kind: opFinish, Slot: 0, Wrong: true}}, nil},
		// Fixed: deleting a manifest that an index of the repository lists
		// succeeded, and the index failed to pull at that child; now DENIED.
		{"delete-index-child", []Op{push(0, 1), push(0, 2), put(0, child), put(0, index, 0),
			{Kind: opDelete, Repo: 0, Tag: -1, Pick: pick}}, nil},
		// Fixed: a collection whose database writes fail spun for ever in
		// expireUploads.
		{"gc-upload-expiry-loop", []Op{{Kind: opStartUpload, Repo: 0, Slot: 0, Blob: 2},
			{Kind: opCrash, InDB: true, FaultAt: 2, Inner: &Op{Kind: opGC, Jump: fullJump}}}, nil},
		// Fixed: two nodes whose clocks differ by more than the upload lease
		// both wrote one session at once.
		{"upload-lease-skew", []Op{{Kind: opStartUpload, Repo: 0, Slot: 0, Blob: 8},
			{Kind: opPatchRace, Slot: 0, Size: 140000}, {Kind: opFinish, Slot: 0}}, []time.Duration{0, 10 * time.Minute}},
	}
}

// TestKnownDefects replays, for each known defect, the shortest step list
// the generator found for it: with the switch off it must fail, with it on
// pass. When a fix is merged the first half fails: remove the defect from
// knownDefects (check.go) and keep its row as a fixed one. A fixed row must
// pass with the switches in force (its own name switches nothing now).
func TestKnownDefects(t *testing.T) {
	const seed = 7
	for _, tc := range reproductions(newPool(seed)) {
		t.Run(tc.defect, func(t *testing.T) {
			ctx := context.Background()
			cfg := Config{Topology: TopoFS, Skews: []time.Duration{0}}
			if tc.skews != nil {
				cfg.Skews = tc.skews
			}
			on := func(d string) bool { return knownDefects[d] }
			if !knownDefects[tc.defect] {
				// Fixed: a regression row.
				if f, _, err := Run(ctx, cfg, seed, tc.steps, t.TempDir(), on); err != nil || f != nil {
					t.Errorf("fixed defect %s shows again: %v %v", tc.defect, f, err)
				}
				return
			}
			without := func(d string) bool { return knownDefects[d] && d != tc.defect }
			f, _, err := Run(ctx, cfg, seed, tc.steps, t.TempDir(), without)
			if err != nil {
				t.Fatal(err)
			}
			if f == nil {
				t.Errorf("defect %s no longer shows: if it was fixed, remove it from knownDefects (check.go) and keep its row as a fixed one", tc.defect)
			} else {
				t.Logf("as expected while the defect is known: %v", f)
			}
			if f, _, err := Run(ctx, cfg, seed, tc.steps, t.TempDir(), on); err != nil || f != nil {
				t.Errorf("with the switch on, the steps should pass: %v %v", f, err)
			}
		})
	}
}

// TestPowerLoss runs fixed step lists on faultfs leaves: a power cut at
// each of the first file system calls of a monolithic push, a chunked
// finish, a manifest push and a full collection (on one directory; some
// of them on a mirror and on shards), and power losses between them.
// Every cut must leave the state before or after its step, with
// everything acknowledged pullable.
func TestPowerLoss(t *testing.T) {
	const seed = 11
	ctx := context.Background()
	img := ImageSpec{Config: 1, Layers: []int{3}, Foreign: []bool{false}}
	cut := func(n int, inner Op) Op { return Op{Kind: opPowerCut, FaultAt: n, Inner: &inner} }
	type cuts struct {
		topo Topology
		cuts []int
	}
	tcs := []cuts{{TopoFS, []int{0, 1, 2, 3, 5, 7}}, {TopoMirror, []int{1, 4, 7}}, {TopoShard, []int{2, 5, 8}}}
	if raceEnabled || testing.Short() {
		tcs = []cuts{{TopoFS, []int{1, 3, 5}}}
	}
	for _, tc := range tcs {
		t.Run(string(tc.topo), func(t *testing.T) {
			cfg := Config{Topology: tc.topo, Skews: []time.Duration{0}, PowerLoss: true}
			stats := Stats{}
			for _, n := range tc.cuts {
				steps := []Op{
					{Kind: opPushBlob, Repo: 0, Blob: 1},
					cut(n, Op{Kind: opPushBlob, Repo: 0, Blob: 3}),
					{Kind: opPushBlob, Repo: 0, Blob: 3},
					{Kind: opStartUpload, Repo: 0, Slot: 0, Blob: 4},
					{Kind: opPatch, Slot: 0, Size: 40000},
					{Kind: opPowerLoss},
					cut(n, Op{Kind: opFinish, Slot: 0}),
					cut(n, Op{Kind: opPutManifest, Repo: 0, Image: img, Tags: []int{0}, Tag: -1}),
					{Kind: opPutManifest, Repo: 0, Image: img, Tags: []int{0}, Tag: -1},
					{Kind: opDeleteBlob, Repo: 0, Blob: 4},
					cut(n, Op{Kind: opGC, Jump: fullJump}),
					{Kind: opPowerLoss},
					{Kind: opGC, Jump: fullJump},
				}
				f, at, err := RunStats(ctx, cfg, seed, steps, t.TempDir(), func(d string) bool { return knownDefects[d] }, stats)
				if err != nil {
					t.Fatal(err)
				}
				if f != nil {
					t.Fatalf("cut after %d calls: step %d (%s): %v", n, at, steps[at], f)
				}
			}
			if stats["power-cut fired"] == 0 {
				t.Errorf("no power cut reached its crash point: %v", stats)
			}
			t.Logf("%v", stats)
		})
	}
}
