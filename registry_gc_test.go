package stowage_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/gc"
	"github.com/stowage/stowage/jobs"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/storage/mem"
	"github.com/stowage/stowage/usage"
)

// clock is a test clock; Advance moves it.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type env struct {
	reg   *stowage.Registry
	store *mem.Backend
	clock *clock
	ctx   context.Context
}

func newEnv(t testing.TB, now func() time.Time) *env {
	t.Helper()
	db, err := sqlite.Open(context.Background(), ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	if now == nil {
		now = c.Now
	}
	store := mem.New()
	return &env{reg: stowage.NewRegistry(db, store, stowage.Options{Now: now}), store: store, clock: c, ctx: context.Background()}
}

type blob struct {
	d    stowage.Digest
	data []byte
}

func newBlob(n int) blob {
	b := make([]byte, n)
	rand.Read(b)
	return blob{stowage.Digest("sha256:" + sha(b)), b}
}

func (e *env) push(t testing.TB, repo string, b blob) {
	t.Helper()
	if _, err := e.reg.PutBlob(e.ctx, repo, b.d, bytes.NewReader(b.data), int64(len(b.data))); err != nil {
		t.Fatalf("push blob to %s: %v", repo, err)
	}
}

func manifestOf(config blob, layers ...blob) []byte {
	var ls []string
	for _, l := range layers {
		ls = append(ls, fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}`, l.d, len(l.data)))
	}
	return []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[%s]}`,
		config.d, len(config.data), strings.Join(ls, ",")))
}

// image pushes config and layers and a manifest tagged tag; it returns the
// manifest as a blob.
func (e *env) image(t testing.TB, repo, tag string, config blob, layers ...blob) blob {
	t.Helper()
	for _, b := range append([]blob{config}, layers...) {
		e.push(t, repo, b)
	}
	body := manifestOf(config, layers...)
	res, err := e.reg.PutManifest(e.ctx, repo, stowage.Reference{Tag: tag}, stowage.MediaTypeOCIManifest, body, nil)
	if err != nil {
		t.Fatalf("push manifest %s:%s: %v", repo, tag, err)
	}
	return blob{res.Digest, body}
}

func size(bs ...blob) int64 {
	var n int64
	for _, b := range bs {
		n += int64(len(b.data))
	}
	return n
}

// storedDigests lists the digests whose objects are in storage.
func (e *env) storedDigests(t testing.TB) []string {
	var out []string
	e.store.List(e.ctx, "blobs/", func(oi stowage.ObjectInfo) error {
		parts := strings.Split(oi.Key, "/")
		out = append(out, parts[1]+":"+parts[3])
		return nil
	})
	sort.Strings(out)
	return out
}

func digests(bs ...blob) []string {
	var out []string
	for _, b := range bs {
		out = append(out, string(b.d))
	}
	sort.Strings(out)
	return out
}

func zero() *time.Duration { d := time.Duration(0); return &d }

// gcOptions spares the tests that name a report gc the package's name.
type gcOptions = gc.Options

// collect runs a garbage collection of reg (package gc).
func collect(ctx context.Context, reg *stowage.Registry, opts gc.Options) (gc.Report, error) {
	return gc.New(reg).Collect(ctx, opts)
}

// TestSpaceAccounting pushes images that share layers across repositories,
// checks every usage figure against values computed here, then runs each
// kind of delete as a dry run, for real, and through GC, and compares the
// bytes freed (and the bytes left in storage) with the prediction.
func TestSpaceAccounting(t *testing.T) {
	e := newEnv(t, nil)
	shared := newBlob(40_000)
	l2, l3, l4 := newBlob(20_000), newBlob(30_000), newBlob(50_000)
	c1, c2, c3 := newBlob(101), newBlob(102), newBlob(103)
	m1 := e.image(t, "team/a", "v1", c1, shared, l2)
	m2 := e.image(t, "team/a", "v2", c2, shared, l3)
	m3 := e.image(t, "team/b", "v1", c3, shared, l4)

	u, err := usage.New(e.reg).Usage(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	all := []blob{shared, l2, l3, l4, c1, c2, c3, m1, m2, m3}
	refA := size(shared, l2, l3, c1, c2, m1, m2)
	refB := size(shared, l4, c3, m3)
	if u.PhysicalBytes != size(all...) || u.Blobs != int64(len(all)) {
		t.Errorf("physical = %d bytes in %d blobs, want %d in %d", u.PhysicalBytes, u.Blobs, size(all...), len(all))
	}
	if u.LogicalBytes != refA+refB {
		t.Errorf("logical = %d, want %d", u.LogicalBytes, refA+refB)
	}
	if u.Repositories != 2 || u.Manifests != 3 || u.Tags != 3 || u.Untagged != 0 {
		t.Errorf("counts = %+v", u)
	}
	want := map[string]usage.RepositorySpace{
		"team/a": {Name: "team/a", ReferencedBytes: refA, UniqueBytes: refA - size(shared), SharedBytes: size(shared), Manifests: 2, Tags: 2},
		"team/b": {Name: "team/b", ReferencedBytes: refB, UniqueBytes: refB - size(shared), SharedBytes: size(shared), Manifests: 1, Tags: 1},
	}
	for _, ru := range u.PerRepository {
		if ru != want[ru.Name] {
			t.Errorf("usage of %s = %+v, want %+v", ru.Name, ru, want[ru.Name])
		}
	}
	detail, err := usage.New(e.reg).Repository(e.ctx, "team/a")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range detail.PerManifest {
		var wantSize, wantUnique int64
		switch m.Digest {
		case m1.d:
			wantSize, wantUnique = size(m1, c1, shared, l2), size(m1, c1, l2)
		case m2.d:
			wantSize, wantUnique = size(m2, c2, shared, l3), size(m2, c2, l3)
		default:
			t.Errorf("unexpected manifest %s", m.Digest)
		}
		if m.Size != wantSize || m.UniqueBytes != wantUnique {
			t.Errorf("manifest %s: size %d unique %d, want %d and %d", m.Digest, m.Size, m.UniqueBytes, wantSize, wantUnique)
		}
	}

	// Each kind of delete: dry run, real, GC; freed bytes must match.
	steps := []struct {
		name      string
		do        func(dry bool) (stowage.DeleteReport, error)
		wantFreed int64
		left      []blob // what storage holds after GC
	}{
		{"untag team/a:v2", func(dry bool) (stowage.DeleteReport, error) { return e.reg.Untag(e.ctx, "team/a", "v2", dry) },
			0, all},
		{"delete by tag team/a:v1", func(dry bool) (stowage.DeleteReport, error) {
			return e.reg.DeleteImage(e.ctx, "team/a", stowage.Reference{Tag: "v1"}, dry)
		}, size(m1, c1, l2), []blob{shared, l3, l4, c2, c3, m2, m3}},
		{"delete by digest team/a@m2 (untagged)", func(dry bool) (stowage.DeleteReport, error) {
			return e.reg.DeleteImage(e.ctx, "team/a", stowage.Reference{Digest: m2.d}, dry)
		}, size(m2, c2, l3), []blob{shared, l4, c3, m3}},
		{"delete repository team/b", func(dry bool) (stowage.DeleteReport, error) { return e.reg.DeleteRepository(e.ctx, "team/b", dry) },
			size(m3, c3, l4, shared), nil},
	}
	for _, s := range steps {
		dry, err := s.do(true)
		if err != nil {
			t.Fatalf("%s (dry run): %v", s.name, err)
		}
		if dry.BytesFreed != s.wantFreed {
			t.Errorf("%s: dry run predicts %d bytes freed, want %d", s.name, dry.BytesFreed, s.wantFreed)
		}
		real, err := s.do(false)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if real.BytesFreed != dry.BytesFreed || len(real.Manifests) != len(dry.Manifests) {
			t.Errorf("%s: real delete reports %d bytes / %d manifests, dry run %d / %d", s.name, real.BytesFreed, len(real.Manifests), dry.BytesFreed, len(dry.Manifests))
		}
		gcDry, err := collect(e.ctx, e.reg, gcOptions{MinAge: zero(), DryRun: true})
		if err != nil {
			t.Fatal(err)
		}
		gc, err := collect(e.ctx, e.reg, gcOptions{MinAge: zero()})
		if err != nil {
			t.Fatal(err)
		}
		if gc.BytesFreed != dry.BytesFreed || gcDry.BytesFreed != gc.BytesFreed {
			t.Errorf("%s: GC freed %d bytes (its dry run said %d); the delete predicted %d", s.name, gc.BytesFreed, gcDry.BytesFreed, dry.BytesFreed)
		}
		if got, want := e.storedDigests(t), digests(s.left...); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s: storage holds %d objects, want exactly the %d referenced", s.name, len(got), len(want))
		}
	}
	u, _ = usage.New(e.reg).Usage(e.ctx)
	if u.PhysicalBytes != 0 || u.Blobs != 0 {
		t.Errorf("after deleting everything: %+v", u)
	}
}

// TestGCFence: the race every peer has. A client HEADs a layer that nothing
// references yet, skips uploading it, and pushes its manifest later; a
// collection in between must not take the layer. Without the HEAD (lease
// expired) the layer is collected, and the manifest push fails cleanly.
func TestGCFence(t *testing.T) {
	for _, headFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("head=%v", headFirst), func(t *testing.T) {
			e := newEnv(t, nil)
			layer, config := newBlob(1000), newBlob(10)
			e.push(t, "r", layer)
			e.push(t, "r", config)
			e.clock.Advance(3 * time.Hour) // grace and lease (1h) long over
			if headFirst {
				if _, err := e.reg.StatBlob(e.ctx, "r", layer.d); err != nil { // the client's HEAD
					t.Fatal(err)
				}
				if _, err := e.reg.StatBlob(e.ctx, "r", config.d); err != nil {
					t.Fatal(err)
				}
			}
			e.clock.Advance(10 * time.Minute)
			gc, err := collect(e.ctx, e.reg, gcOptions{})
			if err != nil {
				t.Fatal(err)
			}
			_, err = e.reg.PutManifest(e.ctx, "r", stowage.Reference{Tag: "t"}, stowage.MediaTypeOCIManifest, manifestOf(config, layer), nil)
			if headFirst {
				if gc.BlobsDeleted != 0 || err != nil {
					t.Errorf("after a HEAD, GC deleted %d blobs and the manifest push got %v; want 0 and success", gc.BlobsDeleted, err)
				}
			} else {
				if gc.BlobsDeleted != 2 || stowage.ErrorCodeOf(err) != stowage.CodeManifestBlobUnknown {
					t.Errorf("without a HEAD, GC deleted %d blobs and the push got %v; want 2 and MANIFEST_BLOB_UNKNOWN", gc.BlobsDeleted, err)
				}
			}
		})
	}
}

// TestGCStress runs concurrent pushes of images sharing layers, deletes and
// continuous collection for a bounded time, with a clock that runs an hour
// per second so that grace periods and leases really expire: zero failed
// pushes, zero failed pulls of live images, and storage equal to the
// referenced set at the end.
func TestGCStress(t *testing.T) {
	start := time.Now()
	now := func() time.Time { return start.Add(time.Since(start) * 3600) }
	e := newEnv(t, now)
	pool := make([]blob, 12)
	for i := range pool {
		pool[i] = newBlob(2000 + i*100)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	var pushes, pulls, deletes, gcs, failures atomic.Int64
	var live sync.Map // repo:tag -> manifest digest
	var wg sync.WaitGroup
	fail := func(format string, args ...any) {
		failures.Add(1)
		t.Errorf(format, args...)
	}
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := mrand.New(mrand.NewPCG(uint64(w), 7))
			for i := 0; ctx.Err() == nil && i < 10_000; i++ {
				repo := fmt.Sprintf("stress/r%d", rng.IntN(3))
				tag := fmt.Sprintf("w%d-%d", w, i)
				config := newBlob(64)
				layers := []blob{pool[rng.IntN(len(pool))], pool[rng.IntN(len(pool))]}
				// A client: HEAD each blob, upload only the missing ones.
				for _, b := range append([]blob{config}, layers...) {
					if _, err := e.reg.StatBlob(e.ctx, repo, b.d); err == nil {
						continue
					}
					if _, err := e.reg.PutBlob(e.ctx, repo, b.d, bytes.NewReader(b.data), int64(len(b.data))); err != nil {
						fail("push blob: %v", err)
						return
					}
				}
				res, err := e.reg.PutManifest(e.ctx, repo, stowage.Reference{Tag: tag}, stowage.MediaTypeOCIManifest, manifestOf(config, layers...), nil)
				if err != nil {
					fail("push manifest %s:%s: %v", repo, tag, err)
					return
				}
				pushes.Add(1)
				live.Store(repo+":"+tag, res.Digest)
				// Pull a random live image in full.
				var pick [2]string
				live.Range(func(k, v any) bool { pick = [2]string{k.(string), string(v.(stowage.Digest))}; return rng.IntN(4) != 0 })
				if pick[0] != "" {
					r, tg, _ := strings.Cut(pick[0], ":")
					_, body, err := e.reg.GetManifest(e.ctx, r, stowage.Reference{Tag: tg})
					if errors.Is(err, nil) {
						m, _ := stowage.ParseManifest("", body)
						for _, ref := range m.References() {
							rc, _, err := e.reg.OpenBlob(e.ctx, r, ref.Digest, 0)
							if err != nil {
								if _, still := live.Load(pick[0]); still {
									fail("pull %s: blob %s: %v", pick[0], ref.Digest, err)
								}
								break
							}
							rc.Close()
						}
						pulls.Add(1)
					} else if _, still := live.Load(pick[0]); still && stowage.ErrorCodeOf(err) != stowage.CodeManifestUnknown {
						fail("pull %s: %v", pick[0], err)
					}
				}
				// Delete an image now and then.
				if rng.IntN(3) == 0 {
					live.Delete(repo + ":" + tag)
					if _, err := e.reg.DeleteImage(e.ctx, repo, stowage.Reference{Tag: tag}, false); err != nil {
						fail("delete %s:%s: %v", repo, tag, err)
					}
					deletes.Add(1)
				}
			}
		}(w)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			if _, err := collect(e.ctx, e.reg, gcOptions{}); err != nil {
				fail("gc: %v", err)
				return
			}
			gcs.Add(1)
		}
	}()
	wg.Wait()
	t.Logf("%d pushes, %d pulls, %d deletes, %d collections in %v; %d failures",
		pushes.Load(), pulls.Load(), deletes.Load(), gcs.Load(), time.Since(start).Round(time.Millisecond), failures.Load())
	if pushes.Load() == 0 || gcs.Load() == 0 {
		t.Fatal("the stress test did no work")
	}
	// Every live image is complete.
	live.Range(func(k, v any) bool {
		r, tg, _ := strings.Cut(k.(string), ":")
		if _, _, err := e.reg.GetManifest(e.ctx, r, stowage.Reference{Tag: tg}); err != nil {
			t.Errorf("live image %s: %v", k, err)
		}
		return true
	})
	// A final collection leaves exactly the referenced set.
	if _, err := collect(e.ctx, e.reg, gcOptions{MinAge: zero()}); err != nil {
		t.Fatal(err)
	}
	referenced := map[string]bool{}
	live.Range(func(k, v any) bool {
		r, tg, _ := strings.Cut(k.(string), ":")
		m, body, err := e.reg.GetManifest(e.ctx, r, stowage.Reference{Tag: tg})
		if err != nil {
			return true
		}
		referenced[string(m.Digest)] = true
		pm, _ := stowage.ParseManifest("", body)
		for _, ref := range pm.References() {
			referenced[string(ref.Digest)] = true
		}
		return true
	})
	stored := e.storedDigests(t)
	if len(stored) != len(referenced) {
		t.Errorf("storage holds %d objects, %d are referenced", len(stored), len(referenced))
	}
	for _, d := range stored {
		if !referenced[d] {
			t.Errorf("storage holds unreferenced %s", d)
		}
	}
}

// TestCollectWaitsForTheJobLock: a collection asked for while the job
// lock "gc" is held (by another node, in production) waits, says so through
// Progress, and runs once the lock is free.
func TestCollectWaitsForTheJobLock(t *testing.T) {
	e := newEnv(t, nil)
	locker := e.reg.DB().(stowage.Locker)
	_, release, err := locker.TryLock(e.ctx, "gc")
	if err != nil {
		t.Fatal(err)
	}
	waiting := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		var once sync.Once
		_, err := collect(e.ctx, e.reg, gcOptions{Progress: func(phase string, _, _ int64) {
			if strings.HasPrefix(phase, "waiting") {
				once.Do(func() { close(waiting) })
			}
		}})
		done <- err
	}()
	select {
	case <-waiting:
	case err := <-done:
		t.Fatalf("the collection ran while the lock was held (err %v)", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the collection did not report waiting")
	}
	release()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the collection did not run after the lock was released")
	}
	// A dry run never waits.
	_, release, _ = locker.TryLock(e.ctx, "gc")
	defer release()
	if _, err := collect(e.ctx, e.reg, gcOptions{DryRun: true}); err != nil {
		t.Fatal(err)
	}
}

// TestRunScheduled: of the nodes whose timers fire, one runs a scheduled job
// per interval; none runs it while it is running elsewhere.
func TestRunScheduled(t *testing.T) {
	e := newEnv(t, nil)
	locker := e.reg.DB().(stowage.Locker)
	const interval = time.Hour
	runs := 0
	job := func(context.Context) error { runs++; return nil }
	for _, step := range []struct {
		name    string
		advance time.Duration
		locked  bool // the job is running on another node
		wantRan bool
	}{
		{"first run", 0, false, true},
		{"another node's timer, just after", time.Minute, false, false},
		{"half an interval later", interval / 2, false, false},
		{"an interval later, running elsewhere", interval, true, false},
		{"an interval later", 0, false, true},
		{"a failed run counts too", interval, false, true},
	} {
		e.clock.Advance(step.advance)
		var release func()
		if step.locked {
			var err error
			if _, release, err = locker.TryLock(e.ctx, "schedule:test"); err != nil {
				t.Fatal(err)
			}
		}
		fn := job
		if step.name == "a failed run counts too" {
			fn = func(context.Context) error { runs++; return errors.New("boom") }
		}
		ran, err := jobs.RunScheduled(e.ctx, e.reg.Parts().DB, e.reg.Parts().Now, "test", interval, fn)
		if release != nil {
			release()
		}
		if ran != step.wantRan {
			t.Errorf("%s: ran = %v, want %v", step.name, ran, step.wantRan)
		}
		if (err != nil) != (step.name == "a failed run counts too") {
			t.Errorf("%s: err = %v", step.name, err)
		}
	}
	if runs != 3 {
		t.Errorf("job ran %d times, want 3", runs)
	}
	if ran, _ := jobs.RunScheduled(e.ctx, e.reg.Parts().DB, e.reg.Parts().Now, "test", interval, job); ran {
		t.Error("ran again right after a failed run")
	}
}

// failingDeletes fails the next Delete of any object (a collection that
// stops after marking its batch 'deleting', as a crash would).
type failingDeletes struct {
	stowage.Backend
	fail atomic.Bool
}

func (f *failingDeletes) Delete(ctx context.Context, key string) error {
	if f.fail.CompareAndSwap(true, false) {
		return errors.New("injected: storage unreachable")
	}
	return f.Backend.Delete(ctx, key)
}

// TestPushAfterInterruptedGC: a collection that stopped partway (crash,
// storage failure) leaves blob rows 'deleting', with or without their
// objects. Until a collection runs again the blob is unknown to HEAD and to
// DELETE alike, and a push of the same digest, with no collection running,
// finishes that deletion itself and succeeds at once with the right bytes,
// whichever way it comes (one request, chunks, a manifest). While a
// collection does run, the push waits for it instead.
func TestPushAfterInterruptedGC(t *testing.T) {
	type how func(t *testing.T, e *env, ctx context.Context, b blob) error
	putBlob := func(t *testing.T, e *env, ctx context.Context, b blob) error {
		_, err := e.reg.PutBlob(ctx, "app", b.d, bytes.NewReader(b.data), int64(len(b.data)))
		return err
	}
	chunked := func(t *testing.T, e *env, ctx context.Context, b blob) error {
		u, err := e.reg.StartUpload(ctx, "app")
		if err != nil {
			return err
		}
		half := int64(len(b.data) / 2)
		if _, err := e.reg.WriteUpload(ctx, "app", u.ID, 0, half, bytes.NewReader(b.data[:half])); err != nil {
			return err
		}
		_, err = e.reg.FinishUpload(ctx, "app", u.ID, b.d, half, int64(len(b.data))-half, bytes.NewReader(b.data[half:]))
		return err
	}
	crashes := []struct {
		name string
		// crash leaves b (pushed to "app") in state 'deleting'.
		crash func(t *testing.T, e *env, fd *failingDeletes, b blob)
	}{
		{"marked, object present", func(t *testing.T, e *env, fd *failingDeletes, b blob) {
			if err := e.reg.DB().Update(e.ctx, func(tx stowage.Tx) error { return tx.Blobs().SetBlobState(b.d, stowage.BlobDeleting) }); err != nil {
				t.Fatal(err)
			}
		}},
		{"object deleted, row left", func(t *testing.T, e *env, fd *failingDeletes, b blob) {
			if err := e.reg.DB().Update(e.ctx, func(tx stowage.Tx) error { return tx.Blobs().SetBlobState(b.d, stowage.BlobDeleting) }); err != nil {
				t.Fatal(err)
			}
			if err := e.store.Delete(e.ctx, stowage.BlobKey(b.d)); err != nil {
				t.Fatal(err)
			}
		}},
		{"collection failed deleting the object", func(t *testing.T, e *env, fd *failingDeletes, b blob) {
			fd.fail.Store(true)
			if _, err := collect(e.ctx, e.reg, gcOptions{MinAge: zero()}); err == nil {
				t.Fatal("the collection did not fail")
			}
		}},
	}
	for _, c := range crashes {
		for _, p := range []struct {
			name string
			push how
		}{{"monolithic", putBlob}, {"chunked", chunked}} {
			t.Run(c.name+"/"+p.name, func(t *testing.T) {
				e := newEnv(t, nil)
				fd := &failingDeletes{Backend: e.store}
				e.reg = stowage.NewRegistry(e.reg.DB(), fd, stowage.Options{Now: e.clock.Now})
				b := newBlob(3000)
				e.push(t, "app", b)
				c.crash(t, e, fd, b)
				if st, err := e.blobState(b.d); err != nil || st != stowage.BlobDeleting {
					t.Fatalf("after the crash the blob is %q (%v), want deleting", st, err)
				}
				_, err := e.reg.StatBlob(e.ctx, "app", b.d)
				wantError(t, "HEAD of a blob being deleted", err, stowage.CodeBlobUnknown)
				err = e.reg.DeleteBlob(e.ctx, "app", b.d)
				wantError(t, "DELETE of a blob being deleted", err, stowage.CodeBlobUnknown)

				ctx, cancel := context.WithTimeout(e.ctx, 3*time.Second)
				defer cancel()
				start := time.Now()
				if err := p.push(t, e, ctx, b); err != nil {
					t.Fatalf("push after the interrupted collection: %v (after %v)", err, time.Since(start))
				}
				if took := time.Since(start); took > time.Second {
					t.Errorf("the push took %v", took)
				}
				e.pullableBlob(t, "app", b)
				if st, _ := e.blobState(b.d); st != stowage.BlobLive {
					t.Errorf("after the push the blob is %q, want live", st)
				}
			})
		}
	}

	// A collection running (holding the job lock "gc"): the push waits
	// for it rather than delete under it, and goes on once it is over.
	t.Run("collection running", func(t *testing.T) {
		e := newEnv(t, nil)
		b := newBlob(3000)
		e.push(t, "app", b)
		if err := e.reg.DB().Update(e.ctx, func(tx stowage.Tx) error { return tx.Blobs().SetBlobState(b.d, stowage.BlobDeleting) }); err != nil {
			t.Fatal(err)
		}
		_, release, err := e.reg.DB().(stowage.Locker).TryLock(e.ctx, "gc")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- putBlob(t, e, e.ctx, b) }()
		select {
		case err := <-done:
			t.Fatalf("the push did not wait for the running collection: %v", err)
		case <-time.After(300 * time.Millisecond):
		}
		if st, _ := e.blobState(b.d); st != stowage.BlobDeleting {
			t.Errorf("the push changed the collector's row to %q", st)
		}
		release()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("push after the collection: %v", err)
			}
		case <-time.After(3 * time.Second):
			t.Fatal("the push still waits after the collection ended")
		}
		e.pullableBlob(t, "app", b)
	})
}

// blobState is d's state in the database ("" if it has no row).
func (e *env) blobState(d stowage.Digest) (stowage.BlobState, error) {
	var st stowage.BlobState
	err := e.reg.DB().View(e.ctx, func(tx stowage.Tx) error {
		b, err := tx.Blobs().GetBlob(d)
		st = b.State
		if errors.Is(err, stowage.ErrNotFound) {
			return nil
		}
		return err
	})
	return st, err
}
