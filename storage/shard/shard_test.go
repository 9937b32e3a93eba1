package shard_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"sync"
	"testing"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/storage/fs"
	"github.com/stowage/stowage/storage/mem"
	"github.com/stowage/stowage/storage/mirror"
	"github.com/stowage/stowage/storage/shard"
	"github.com/stowage/stowage/storage/storagetest"
)

var ctx = context.Background()

func memShards(n int) []shard.Shard {
	var s []shard.Shard
	for i := range n {
		s = append(s, shard.Shard{Name: fmt.Sprintf("account-%d", i+1), Backend: mem.New()})
	}
	return s
}

func TestConformanceMem(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) stowage.Backend {
		b, _ := shard.New(memShards(4), shard.Options{})
		return b
	})
}

func TestConformanceFS(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) stowage.Backend {
		var s []shard.Shard
		for i := range 3 {
			f, err := fs.New(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			s = append(s, shard.Shard{Name: fmt.Sprint("disk", i), Backend: f})
		}
		b, _ := shard.New(s, shard.Options{})
		if _, ok := b.(stowage.Appender); !ok {
			t.Fatal("shards of fs backends are not an Appender")
		}
		return b
	})
}

// Shards of mirrors compose.
func TestConformanceShardsOfMirrors(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) stowage.Backend {
		var s []shard.Shard
		for i := range 2 {
			m, err := mirror.New([]mirror.Copy{{Name: "a", Backend: mem.New()}, {Name: "b", Backend: mem.New()}}, mirror.Options{})
			if err != nil {
				t.Fatal(err)
			}
			s = append(s, shard.Shard{Name: fmt.Sprint("region", i), Backend: m})
		}
		b, _ := shard.New(s, shard.Options{})
		return b
	})
}

func blobKey(i int) string {
	h := fmt.Sprintf("%064x", uint64(i)*0x9e3779b97f4a7c15)
	return "blobs/sha256/" + h[:2] + "/" + h
}

func count(t *testing.T, shards []shard.Shard) []int {
	var n []int
	for _, s := range shards {
		c := 0
		s.Backend.List(ctx, "", func(stowage.ObjectInfo) error { c++; return nil })
		n = append(n, c)
	}
	return n
}

// TestSpreadAndRebalance: 10,000 objects on 4 shards: each holds 25% ± 3%.
// A 5th shard: about 20% ± 3% must move, reads work before and after the
// rebalance, and afterwards every object is on its owner.
func TestSpreadAndRebalance(t *testing.T) {
	const n = 10_000
	shards := memShards(4)
	b, _ := shard.New(shards, shard.Options{})
	for i := range n {
		if err := b.Put(ctx, blobKey(i), bytes.NewReader([]byte(fmt.Sprint(i))), -1); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range count(t, shards) {
		share := float64(c) / n
		t.Logf("shard %s: %d objects (%.1f%%)", shards[i].Name, c, 100*share)
		if math.Abs(share-0.25) > 0.03 {
			t.Errorf("shard %s holds %.1f%%, want 25%% ± 3%%", shards[i].Name, 100*share)
		}
	}
	shards5 := append(shards, shard.Shard{Name: "account-5", Backend: mem.New()})
	b5i, _ := shard.New(shards5, shard.Options{})
	b5 := b5i.(interface {
		stowage.Backend
		shard.Rebalancer
	})
	read := func(what string) {
		for i := range n {
			rc, err := b5.Open(ctx, blobKey(i), 0)
			if err != nil {
				t.Fatalf("%s: object %d: %v", what, i, err)
			}
			got, _ := io.ReadAll(rc)
			rc.Close()
			if string(got) != fmt.Sprint(i) {
				t.Fatalf("%s: object %d reads %q", what, i, got)
			}
		}
	}
	read("after adding a shard, before the rebalance")
	dry, err := b5.Rebalance(ctx, true, nil)
	if err != nil || dry.Moved != 0 {
		t.Fatalf("dry run: %+v, %v", dry, err)
	}
	share := float64(dry.Misplaced) / n
	t.Logf("adding a 5th shard: %d of %d objects (%.1f%%) must move", dry.Misplaced, n, 100*share)
	if math.Abs(share-0.20) > 0.03 {
		t.Errorf("adding a 5th shard moves %.1f%%, want 20%% ± 3%%", 100*share)
	}
	// Reads run during the rebalance.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < n; i += 7 {
			rc, err := b5.Open(ctx, blobKey(i), 0)
			if err != nil {
				t.Errorf("read during the rebalance: object %d: %v", i, err)
				return
			}
			rc.Close()
		}
	}()
	var last shard.RebalanceProgress
	p, err := b5.Rebalance(ctx, false, func(p shard.RebalanceProgress) { last = p })
	wg.Wait()
	if err != nil || p.Moved != dry.Misplaced || last.Moved != p.Moved {
		t.Fatalf("rebalance: %+v (last progress %+v), %v; want %d moved", p, last, err, dry.Misplaced)
	}
	c := count(t, shards5)
	if c[4] != int(dry.Misplaced) {
		t.Errorf("the new shard holds %d objects, want %d", c[4], dry.Misplaced)
	}
	total := 0
	for _, x := range c {
		total += x
	}
	if total != n {
		t.Errorf("after the rebalance the shards hold %d objects, want %d", total, n)
	}
	read("after the rebalance")
	again, _ := b5.Rebalance(ctx, true, nil)
	if again.Misplaced != 0 {
		t.Errorf("a second rebalance finds %d misplaced objects", again.Misplaced)
	}
}

// TestUploadAcrossAddedShard: an upload started before a shard was added
// goes on where it is: its next chunks and its commit find it, although its
// key now belongs to the new shard.
func TestUploadAcrossAddedShard(t *testing.T) {
	var disks []shard.Shard
	for i := range 3 {
		f, err := fs.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		disks = append(disks, shard.Shard{Name: fmt.Sprint("disk", i), Backend: f})
	}
	before, _ := shard.New(disks[:2], shard.Options{})
	afterB, _ := shard.New(disks, shard.Options{})
	after := afterB.(interface {
		stowage.Backend
		stowage.Appender
		shard.Rebalancer
		Owner(string) string
	})
	for _, moves := range []bool{true, false} {
		// An upload whose owner is the new shard (or not) once it is added.
		var key string
		for i := 0; ; i++ {
			key = fmt.Sprintf("uploads/u%d/data", i)
			if (after.Owner(key) == "disk2") == moves {
				break
			}
		}
		c1, c2 := bytes.Repeat([]byte("a"), 1000), bytes.Repeat([]byte("b"), 500)
		n, err := before.(stowage.Appender).Append(ctx, key, 0, bytes.NewReader(c1))
		if err != nil {
			t.Fatal(err)
		}
		// The shard is added (a restart with the new configuration), and
		// a rebalance runs: uploads in progress stay where they are.
		if _, err := after.Rebalance(ctx, false, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := disks[2].Backend.Stat(ctx, key); !stowage.IsNotExist(err) {
			t.Errorf("owner moved %v: the rebalance moved an upload in progress: %v", moves, err)
		}
		if n, err = after.Append(ctx, key, n, bytes.NewReader(c2)); err != nil {
			t.Fatalf("owner moved %v: append after adding a shard: %v", moves, err)
		}
		dst := blobKey(len(key) + int(n))
		if err := after.Commit(ctx, key, dst, n); err != nil {
			t.Fatalf("owner moved %v: commit after adding a shard: %v", moves, err)
		}
		rc, err := after.Open(ctx, dst, 0)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if !bytes.Equal(got, append(c1, c2...)) {
			t.Errorf("owner moved %v: the committed blob has %d bytes, differing", moves, len(got))
		}
		for _, d := range disks {
			if _, err := d.Backend.Stat(ctx, key); !stowage.IsNotExist(err) {
				t.Errorf("owner moved %v: shard %s still holds the upload: %v", moves, d.Name, err)
			}
		}
	}
}

// gcDuringPut runs gc just before a Put of key reaches the backend: the
// collector deleting the object while the rebalance copies it.
type gcDuringPut struct {
	stowage.Backend
	key string
	gc  func()
}

func (g *gcDuringPut) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if key == g.key && g.gc != nil {
		g.gc()
		g.gc = nil
	}
	return g.Backend.Put(ctx, key, r, size)
}

// TestRebalanceRacingGC: an object the collector deletes while the
// rebalance copies it leaves no orphan on its new shard; an object already
// collected is not moved; the others move.
func TestRebalanceRacingGC(t *testing.T) {
	shards := memShards(2)
	b2, _ := shard.New(shards, shard.Options{})
	const n = 200
	for i := range n {
		if err := b2.Put(ctx, blobKey(i), bytes.NewReader([]byte(fmt.Sprint(i))), -1); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	live := map[string]bool{}
	for i := range n {
		live[blobKey(i)] = true
	}
	keep := func(_ context.Context, key string) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		return live[key], nil
	}
	newShard := &gcDuringPut{Backend: mem.New()}
	shards3 := append(shards, shard.Shard{Name: "account-3", Backend: newShard})
	b3i, _ := shard.New(shards3, shard.Options{Keep: keep})
	b3 := b3i.(interface {
		stowage.Backend
		shard.Rebalancer
		Owner(string) string
	})
	var moving []string
	for i := range n {
		if b3.Owner(blobKey(i)) == "account-3" {
			moving = append(moving, blobKey(i))
		}
	}
	if len(moving) < 2 {
		t.Fatalf("only %d objects move to the new shard", len(moving))
	}
	racing, gone := moving[0], moving[1]
	newShard.key = racing
	newShard.gc = func() { // the collector: the row goes, then the object on every shard
		mu.Lock()
		live[racing] = false
		mu.Unlock()
		if err := b3.Delete(ctx, racing); err != nil {
			t.Error(err)
		}
	}
	mu.Lock()
	live[gone] = false // collected before the rebalance; its object not yet deleted
	mu.Unlock()
	p, err := b3.Rebalance(ctx, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b3.Stat(ctx, racing); !stowage.IsNotExist(err) {
		t.Errorf("an object the collector deleted during the rebalance is still stored (an orphan): %v", err)
	}
	if _, err := newShard.Stat(ctx, gone); !stowage.IsNotExist(err) {
		t.Errorf("an object no longer live was moved: %v", err)
	}
	if p.Moved != int64(len(moving)-2) || p.Skipped != 2 {
		t.Errorf("rebalance: %+v; want %d moved, 2 skipped", p, len(moving)-2)
	}
	for _, k := range moving[2:] {
		if _, err := newShard.Stat(ctx, k); err != nil {
			t.Errorf("%s was not moved: %v", k, err)
		}
	}
}
