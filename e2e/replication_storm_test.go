package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ---- geo-replication: everything at once in all three regions ----

// geoState is what must be identical in every region once they converged:
// the catalog, every tag's digest in the given repositories, and the
// changeable attributes (locks) of the given targets.
type geoState struct {
	Catalog []string
	Tags    map[string]string
	Locks   map[string]map[string]bool
}

func (s geoState) String() string {
	return fmt.Sprintf("catalog %v\ntags %v\nlocks %v", s.Catalog, s.Tags, s.Locks)
}

// stateOf reads g's state (without read-through).
func stateOf(t *testing.T, g *geoRegion, repos, lockTargets []string) geoState {
	st := geoState{Tags: tagMap(t, g, repos), Locks: map[string]map[string]bool{}}
	r := geoMustDo(t, http.MethodGet, g.URL(), "/v2/_catalog", map[string]string{"Stowage-Replication": "1"}, nil)
	var c struct{ Repositories []string }
	if err := json.Unmarshal(r.Body, &c); err != nil || r.Status != http.StatusOK {
		t.Fatalf("%s: catalog: %s", g.name, r)
	}
	st.Catalog = c.Repositories
	for _, target := range lockTargets {
		r := geoMustDo(t, http.MethodGet, g.URL(), "/api/v1/locks/"+target, nil, nil)
		var l struct {
			Attributes map[string]bool `json:"changeableAttributes"`
		}
		if err := json.Unmarshal(r.Body, &l); err != nil || r.Status != http.StatusOK {
			t.Fatalf("%s: locks of %s: %s", g.name, target, r)
		}
		st.Locks[target] = l.Attributes
	}
	return st
}

// convergeState waits until every region's state is the same (and returns
// it), or fails after timeout.
func convergeState(t *testing.T, rs []*geoRegion, repos, lockTargets []string, timeout time.Duration) geoState {
	t.Helper()
	st, all, ok := sameState(t, rs, repos, lockTargets, timeout)
	if !ok {
		for i, g := range rs {
			t.Errorf("%s:\n%s", g.name, all[i])
		}
		t.Fatalf("regions did not converge within %v", timeout)
	}
	return st
}

// sameState waits until every region's state is the same: it returns that
// state and true, or after timeout each region's and false.
func sameState(t *testing.T, rs []*geoRegion, repos, lockTargets []string, timeout time.Duration) (geoState, []geoState, bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		sts := make([]geoState, len(rs))
		same := true
		for i, g := range rs {
			sts[i] = stateOf(t, g, repos, lockTargets)
			if i > 0 && sts[i].String() != sts[0].String() {
				same = false
			}
		}
		if same {
			return sts[0], sts, true
		}
		if time.Now().After(deadline) {
			return geoState{}, sts, false
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// geoManifest is the image geoImage pushes for seed: its config, layer and
// manifest.
func geoManifest(seed string) (cfg, layer, m []byte) {
	cfg = []byte(fmt.Sprintf(`{"seed":%q}`, seed))
	layer = []byte(strings.Repeat("layer "+seed+" ", 300))
	m = []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}`,
		sha256Digest(cfg), len(cfg), sha256Digest(layer), len(layer)))
	return cfg, layer, m
}

// chaos is what the storm's coordinator did to the regions: which is down,
// which is cut off, and each one's restarts (a generation). Pull checks
// hold its read lock, so a region is not killed or cut off under one.
type chaos struct {
	sync.RWMutex
	down map[*geoRegion]bool
	cut  *geoRegion
	gen  map[*geoRegion]int
}

// reachable reports whether a and b are up and can reach each other (the
// read lock held).
func (c *chaos) reachable(a, b *geoRegion) bool {
	return !c.down[a] && !c.down[b] && c.cut != a && c.cut != b
}

// stormLog is every operation the storm issued, by repo:tag.
type stormLog struct {
	mu        sync.Mutex
	attempted map[string]map[string]bool // repo:tag → digests some region was asked to put there
	unique    map[string]string          // repo:tag → digest of an acknowledged push no other operation touched
	lockSet   map[string]map[string]bool // target/attribute → values some region was asked to set
	counts    map[string]int             // kind/outcome → how many
}

func (l *stormLog) count(k string) {
	l.mu.Lock()
	l.counts[k]++
	l.mu.Unlock()
}

func testEverythingAtOnce(t *testing.T, top *testing.T, rs []*geoRegion) {
	east, west, north := rs[0], rs[1], rs[2]
	ctx := context.Background()
	repos := []string{"storm/a", "storm/b"}
	const lockRepo = "storm/locks"
	// What the lock changes act on: a repository whose images are there
	// everywhere before the storm, its tags and its manifests.
	lockTargets := []string{lockRepo}
	for i := 0; i < 2; i++ {
		tag := fmt.Sprintf("l%d", i)
		d, err := geoImage(east.URL(), east.URL(), lockRepo, tag, "storm-lock-"+tag)
		if err != nil {
			t.Fatal(err)
		}
		lockTargets = append(lockTargets, lockRepo+":"+tag, lockRepo+"@"+d)
	}
	converge(t, rs, []string{lockRepo}, 20*time.Second)
	attrs := []string{"writeEnabled", "deleteEnabled", "readEnabled", "listEnabled"}

	log := &stormLog{attempted: map[string]map[string]bool{}, unique: map[string]string{}, lockSet: map[string]map[string]bool{}, counts: map[string]int{}}
	ch := &chaos{down: map[*geoRegion]bool{}, gen: map[*geoRegion]int{}}
	var pulls, pullFails, pullSkipped atomic.Int32
	var done atomic.Int32
	const workers, opsPerWorker = 3, 20 // 60 operations in each region
	total := int32(len(rs) * workers * opsPerWorker)
	seed := time.Now().UnixNano()
	t.Logf("storm: %d regions × %d workers × %d operations, seed %d", len(rs), workers, opsPerWorker, seed)

	// pullCheck pulls repo at ref (a tag or the digest d) from a region
	// other than src, right after src acknowledged its push: a region
	// that src can reach and that is up (else the pull is skipped: a
	// region cut off or down cannot serve what it never saw).
	pullCheck := func(rnd *rand.Rand, src *geoRegion, gen int, repo, ref, d string, layer []byte) {
		ch.RLock()
		defer ch.RUnlock()
		var dsts []*geoRegion
		for _, g := range rs {
			if g != src && ch.gen[src] == gen && ch.reachable(src, g) {
				dsts = append(dsts, g)
			}
		}
		if len(dsts) == 0 {
			pullSkipped.Add(1)
			return
		}
		dst := dsts[rnd.Intn(len(dsts))]
		pulls.Add(1)
		r, err := geoDo(ctx, http.MethodGet, dst.URL(), "/v2/"+repo+"/manifests/"+ref, map[string]string{"Accept": acceptOCI}, nil)
		if err != nil || r.Status != http.StatusOK || r.Header.Get("Docker-Content-Digest") != d {
			pullFails.Add(1)
			t.Errorf("pull %s:%s from %s right after the push to %s: %v %v, want %s", repo, ref, dst.name, src.name, r, err, d)
			return
		}
		b, err := geoDo(ctx, http.MethodGet, dst.URL(), "/v2/"+repo+"/blobs/"+sha256Digest(layer), nil, nil)
		if err != nil || b.Status != http.StatusOK || sha256Digest(b.Body) != sha256Digest(layer) {
			pullFails.Add(1)
			t.Errorf("layer of %s:%s from %s right after the push to %s: %v %v", repo, ref, dst.name, src.name, b, err)
		}
	}

	worker := func(gi, w int) {
		g := rs[gi]
		rnd := rand.New(rand.NewSource(seed + int64(gi*workers+w)))
		type pushed struct {
			repo, tag, digest string
			m                 []byte
		}
		// This worker's acknowledged pushes: to contested tags and to
		// kept ones (moves use them), and to deletable ones (manifest
		// deletes use them: never an image a contested tag may point
		// at, see testConflictProbes).
		var mine, deletable []pushed
		for i := 0; i < opsPerWorker; {
			ch.RLock()
			down, gen := ch.down[g], ch.gen[g]
			ch.RUnlock()
			if down {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			i++
			done.Add(1)
			repo := repos[rnd.Intn(len(repos))]
			contested := fmt.Sprintf("c%d", rnd.Intn(4))
			// status: the answer, 0 when the request did not get one
			// (the region was killed under it).
			send := func(method, path string, hdr map[string]string, body any) int {
				r, err := geoDo(ctx, method, g.URL(), path, hdr, body)
				if err != nil {
					return 0
				}
				return r.Status
			}
			switch p := rnd.Intn(100); {
			case p < 55: // a push: to a tag of its own (kept, or deleted later), or to a contested one
				kind, tag := "contested", contested
				switch {
				case p < 20:
					kind, tag = "kept", fmt.Sprintf("u-%s-%d-%d", g.name, w, i)
				case p < 30:
					kind, tag = "deletable", fmt.Sprintf("d-%s-%d-%d", g.name, w, i)
				}
				s := fmt.Sprintf("storm-%s-%d-%d", g.name, w, i)
				cfg, layer, m := geoManifest(s)
				d := sha256Digest(m)
				log.mu.Lock()
				if log.attempted[repo+":"+tag] == nil {
					log.attempted[repo+":"+tag] = map[string]bool{}
				}
				log.attempted[repo+":"+tag][d] = true
				log.mu.Unlock()
				ok := true
				for _, b := range [][]byte{cfg, layer} {
					if st := send(http.MethodPost, "/v2/"+repo+"/blobs/uploads/?digest="+sha256Digest(b), nil, b); st != http.StatusCreated {
						ok = false
						log.count(fmt.Sprintf("push/blob %d", st))
						break
					}
				}
				if !ok {
					continue
				}
				st := send(http.MethodPut, "/v2/"+repo+"/manifests/"+tag, map[string]string{"Content-Type": acceptOCI}, m)
				log.count(fmt.Sprintf("push %d", st))
				if st != http.StatusCreated {
					continue
				}
				switch kind {
				case "contested":
					mine = append(mine, pushed{repo, tag, d, m})
					pullCheck(rnd, g, gen, repo, d, d, layer) // by digest: the tag may move meanwhile
				case "kept":
					mine = append(mine, pushed{repo, tag, d, m})
					log.mu.Lock()
					log.unique[repo+":"+tag] = d
					log.mu.Unlock()
					pullCheck(rnd, g, gen, repo, tag, d, layer)
				case "deletable":
					deletable = append(deletable, pushed{repo, tag, d, m})
					pullCheck(rnd, g, gen, repo, tag, d, layer)
				}
			case p < 70 && len(mine) > 0: // a tag move: a contested tag to an image pushed before
				im := mine[rnd.Intn(len(mine))]
				log.mu.Lock()
				if log.attempted[im.repo+":"+contested] == nil {
					log.attempted[im.repo+":"+contested] = map[string]bool{}
				}
				log.attempted[im.repo+":"+contested][im.digest] = true
				log.mu.Unlock()
				log.count(fmt.Sprintf("move %d", send(http.MethodPut, "/v2/"+im.repo+"/manifests/"+contested, map[string]string{"Content-Type": acceptOCI}, im.m)))
			case p < 80: // a tag delete
				log.count(fmt.Sprintf("untag %d", send(http.MethodDelete, "/v2/"+repo+"/manifests/"+contested, nil, nil)))
			case p < 88 && len(deletable) > 0: // a manifest delete (with its tags)
				k := rnd.Intn(len(deletable))
				im := deletable[k]
				deletable = append(deletable[:k], deletable[k+1:]...)
				log.count(fmt.Sprintf("delete %d", send(http.MethodDelete, "/v2/"+im.repo+"/manifests/"+im.digest, nil, nil)))
			default: // a lock change
				target, attr, v := lockTargets[rnd.Intn(len(lockTargets))], attrs[rnd.Intn(len(attrs))], rnd.Intn(2) == 0
				if rnd.Intn(2) == 0 {
					// A write or delete lock toggle on a contested tag,
					// racing the moves, untags and pushes of it in the
					// other regions: the locks guard each region's
					// clients, a replicated change passes them, so the
					// tags still converge (docs/replication.md "Locks,
					// quotas and convergence"). Its locks are not
					// compared (the tag may be gone at the end).
					target, attr = repo+":"+contested, attrs[rnd.Intn(2)]
				}
				log.mu.Lock()
				if log.lockSet[target+"/"+attr] == nil {
					log.lockSet[target+"/"+attr] = map[string]bool{}
				}
				log.lockSet[target+"/"+attr][fmt.Sprint(v)] = true
				log.mu.Unlock()
				log.count(fmt.Sprintf("lock %d", send(http.MethodPatch, "/api/v1/locks/"+target, jsonHdr, jsonOf(map[string]bool{attr: v}))))
			}
		}
		// What was not deleted was never touched again: kept.
		log.mu.Lock()
		for _, im := range deletable {
			log.unique[im.repo+":"+im.tag] = im.digest
		}
		log.mu.Unlock()
	}

	start := time.Now()
	var wg sync.WaitGroup
	for gi := range rs {
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() { defer wg.Done(); worker(gi, w) }()
		}
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	waitDone := func(n int32) {
		for done.Load() < n {
			select {
			case <-finished:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	// A quarter in: west killed (-9) while everything flows, then started
	// again; half-way: north cut off from both others, both ways, for a
	// while, then healed.
	waitDone(total / 4)
	ch.Lock()
	west.srv.Kill9()
	ch.down[west] = true
	ch.gen[west]++
	ch.Unlock()
	t.Logf("storm: west killed after %d operations (%v)", done.Load(), time.Since(start).Round(time.Millisecond))
	time.Sleep(300 * time.Millisecond)
	west.start(top)
	ch.Lock()
	ch.down[west] = false
	ch.Unlock()
	t.Logf("storm: west up again at %d operations (%v)", done.Load(), time.Since(start).Round(time.Millisecond))
	waitDone(total / 2)
	ch.Lock()
	partition(rs, north, true)
	ch.cut = north
	ch.Unlock()
	t.Logf("storm: north cut off at %d operations (%v)", done.Load(), time.Since(start).Round(time.Millisecond))
	select {
	case <-finished:
	case <-time.After(1500 * time.Millisecond):
	}
	ch.Lock()
	partition(rs, north, false)
	ch.cut = nil
	ch.Unlock()
	t.Logf("storm: north healed at %d operations (%v)", done.Load(), time.Since(start).Round(time.Millisecond))
	<-finished
	stormTime := time.Since(start)
	t.Logf("storm: %d operations in %v: %v", done.Load(), stormTime.Round(time.Millisecond), log.counts)

	got := convergeState(t, rs, append(repos, lockRepo), lockTargets, 90*time.Second)
	t.Logf("storm: converged %v after the last operation: %d tags, %d repositories; locks %v",
		(time.Since(start) - stormTime).Round(time.Millisecond), len(got.Tags), len(got.Catalog), got.Locks)

	// Zero acknowledged pushes lost: every push to a tag of its own is
	// there, at its digest, in every region.
	for tag, d := range log.unique {
		if got.Tags[tag] != d {
			t.Errorf("acknowledged push %s@%s lost: %q everywhere", tag, d, got.Tags[tag])
		}
	}
	// Every tag points at a digest some region was asked to put there.
	for tag, d := range got.Tags {
		if strings.HasPrefix(tag, lockRepo+":") {
			continue
		}
		if !log.attempted[tag][d] {
			t.Errorf("%s is %s everywhere, which no region was asked to put there", tag, d)
		}
	}
	// Every attribute is the default (true) or a value some region set.
	for target, as := range got.Locks {
		for _, a := range attrs {
			if v := as[a]; !v && !log.lockSet[target+"/"+a]["false"] {
				t.Errorf("%s %s=%t everywhere, which no region set", target, a, v)
			}
		}
	}
	var contested []string
	for tag := range got.Tags {
		if strings.Contains(tag, ":c") {
			contested = append(contested, tag+"="+got.Tags[tag][7:19])
		}
	}
	sort.Strings(contested)
	t.Logf("storm: %d acknowledged pushes to tags of their own (not deleted later) all there; contested tags at the end: %v", len(log.unique), contested)
	t.Logf("storm: pull right after an acknowledged push in another region: %d/%d succeeded (%d skipped: no other region up and reachable)",
		pulls.Load()-pullFails.Load(), pulls.Load(), pullSkipped.Load())
	if pullFails.Load() != 0 {
		t.Errorf("%d pulls right after a push failed", pullFails.Load())
	}
	// Unlocked again (in one region, replicated), for what follows: a
	// back-fill stops at a read-locked manifest of the peer (a 403).
	all := map[string]bool{}
	for _, a := range attrs {
		all[a] = true
	}
	for _, target := range lockTargets {
		r := geoMustDo(t, http.MethodPatch, north.URL(), "/api/v1/locks/"+target, jsonHdr, jsonOf(all))
		expect(t, "unlock "+target, r, http.StatusOK, "")
	}
	got = convergeState(t, rs, []string{lockRepo}, lockTargets, 20*time.Second)
	for target, as := range got.Locks {
		for _, a := range attrs {
			if !as[a] {
				t.Errorf("%s %s is false after the unlock", target, a)
			}
		}
	}
}
