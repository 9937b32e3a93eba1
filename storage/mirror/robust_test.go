package mirror_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/storage/crypt"
	"github.com/stowage/stowage/storage/mem"
	"github.com/stowage/stowage/storage/mirror"
)

type repairer interface {
	Repair(context.Context) (int, error)
	Status() mirror.Status
}

// TestRepairQueueSurvivesRestart: a copy misses a write; the process
// restarts (a new mirror over the same database); the repair still happens,
// on whichever node works the queue.
func TestRepairQueueSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stowage.db")
	open := func() *sqlite.DB {
		db, err := sqlite.Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		return db
	}
	a, b := &faulty{Backend: mem.New()}, &faulty{Backend: mem.New()}
	mk := func(db *sqlite.DB) repairer {
		return newMirror(t, mirror.Options{WriteQuorum: 1, Queue: db, Name: "storage"}, a, b).(repairer)
	}
	db := open()
	m := mk(db)
	b.down.Store(true)
	data := random(50_000)
	if err := m.(stowage.Backend).Put(ctx, "blobs/k", bytes.NewReader(data), -1); err != nil {
		t.Fatal(err)
	}
	if st := m.Status(); st.PendingRepairs != 1 {
		t.Fatalf("pending repairs after a missed write: %d, want 1", st.PendingRepairs)
	}
	db.Close() // the process stops before its repair ran

	db = open()
	defer db.Close()
	b.down.Store(false)
	m = mk(db)
	if st := m.Status(); st.PendingRepairs != 1 {
		t.Errorf("pending repairs after the restart: %d, want 1", st.PendingRepairs)
	}
	if n, err := m.Repair(ctx); err != nil || n != 1 {
		t.Fatalf("Repair after the restart = %d, %v; want 1 object fixed", n, err)
	}
	if got, err := read(b.Backend, "blobs/k"); err != nil || !bytes.Equal(got, data) {
		t.Errorf("the copy that missed the write, after the repair: %d bytes, %v", len(got), err)
	}
	if st := m.Status(); st.PendingRepairs != 0 {
		t.Errorf("pending repairs after the repair: %d", st.PendingRepairs)
	}

	// Two nodes on one database: the write misses a copy on one node; the
	// other node's repair job fixes it.
	node1, node2 := mk(db), mk(db)
	b.down.Store(true)
	if err := node1.(stowage.Backend).Put(ctx, "blobs/k2", bytes.NewReader(data), -1); err != nil {
		t.Fatal(err)
	}
	b.down.Store(false)
	if n, err := node2.Repair(ctx); err != nil || n != 1 {
		t.Fatalf("Repair on the other node = %d, %v; want 1", n, err)
	}
	if _, err := b.Backend.Stat(ctx, "blobs/k2"); err != nil {
		t.Errorf("after the other node's repair: %v", err)
	}

	// A delete that missed a copy is finished by the repair; a blob pushed
	// again since (on every copy) is left alone.
	b.down.Store(true)
	if err := node1.(stowage.Backend).Delete(ctx, "blobs/k"); err != nil {
		t.Fatal(err)
	}
	if err := node1.(stowage.Backend).Delete(ctx, "blobs/k2"); err != nil {
		t.Fatal(err)
	}
	b.down.Store(false)
	if err := node1.(stowage.Backend).Put(ctx, "blobs/k2", bytes.NewReader(data), -1); err != nil {
		t.Fatal(err)
	}
	if n, err := node2.Repair(ctx); err != nil || n != 1 {
		t.Errorf("Repair of a missed delete = %d, %v; want 1", n, err)
	}
	if _, err := b.Backend.Stat(ctx, "blobs/k"); !stowage.IsNotExist(err) {
		t.Errorf("after repairing a missed delete, the copy still holds it: %v", err)
	}
	for _, c := range []*faulty{a, b} {
		if _, err := c.Backend.Stat(ctx, "blobs/k2"); err != nil {
			t.Errorf("a blob written again after a missed delete was deleted by the repair: %v", err)
		}
	}
}

// TestChunkedUploadAfterFailedChunk: a chunk that missed the write quorum
// changes nothing: once the copy is back, the retried chunk and the commit
// succeed. With a lower quorum, a copy that missed a chunk stays healthy,
// and gets the blob by repair.
func TestChunkedUploadAfterFailedChunk(t *testing.T) {
	chunks := [][]byte{random(100_000), random(70_000), random(30_000)}
	all := bytes.Join(chunks, nil)
	for _, quorum := range []int{0, 1} {
		t.Run(fmt.Sprint("quorum ", quorum), func(t *testing.T) {
			a, b := newFaultyFS(t), newFaultyFS(t)
			m := newMirror(t, mirror.Options{WriteQuorum: quorum}, a, b)
			app := m.(stowage.Appender)
			key := "uploads/u1/data"
			off, err := app.Append(ctx, key, 0, bytes.NewReader(chunks[0]))
			if err != nil {
				t.Fatal(err)
			}
			b.down.Store(true)
			n, err := app.Append(ctx, key, off, bytes.NewReader(chunks[1]))
			if quorum == 0 {
				if stowage.ErrorCodeOf(err) != stowage.CodeUnavailable {
					t.Fatalf("append with a copy down and quorum all: %d, %v; want UNAVAILABLE", n, err)
				}
				b.down.Store(false)
				// The client retries the chunk that was not acknowledged.
				if n, err = app.Append(ctx, key, off, bytes.NewReader(chunks[1])); err != nil {
					t.Fatalf("the retried chunk with every copy back: %v", err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			b.down.Store(false)
			off = n
			if off, err = app.Append(ctx, key, off, bytes.NewReader(chunks[2])); err != nil || off != int64(len(all)) {
				t.Fatalf("next chunk: %d, %v", off, err)
			}
			if st := m.(repairer).Status(); st.Copies[1].State != mirror.Healthy {
				t.Errorf("a copy that missed a chunk is %s, want healthy: %+v", st.Copies[1].State, st.Copies[1])
			}
			sum := sha256.Sum256(all)
			dst := fmt.Sprintf("blobs/sha256/%x", sum)
			if err := app.Commit(ctx, key, dst, off); err != nil {
				t.Fatalf("commit: %v", err)
			}
			if _, err := m.(repairer).Repair(ctx); err != nil {
				t.Fatal(err)
			}
			for i, c := range []faultyApp{a, b} {
				if got, err := read(c.Backend, dst); err != nil || !bytes.Equal(got, all) {
					t.Errorf("copy %d after commit and repair: %d bytes, %v", i, len(got), err)
				}
				if _, err := c.Backend.Stat(ctx, key); !stowage.IsNotExist(err) {
					t.Errorf("copy %d still holds the upload: %v", i, err)
				}
			}
		})
	}
}

// TestCommitRetry: a commit that reached some copies but not the quorum can
// be retried, and then succeeds.
func TestCommitRetry(t *testing.T) {
	a, b := newFaultyFS(t), newFaultyFS(t)
	m := newMirror(t, mirror.Options{}, a, b)
	app := m.(stowage.Appender)
	data := random(10_000)
	n, err := app.Append(ctx, "uploads/u/data", 0, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	b.down.Store(true)
	if err := app.Commit(ctx, "uploads/u/data", "blobs/x", n); stowage.ErrorCodeOf(err) != stowage.CodeUnavailable {
		t.Fatalf("commit with a copy down: %v", err)
	}
	b.down.Store(false)
	if err := app.Commit(ctx, "uploads/u/data", "blobs/x", n); err != nil {
		t.Fatalf("retried commit: %v", err)
	}
	for i, c := range []faultyApp{a, b} {
		if got, err := read(c.Backend, "blobs/x"); err != nil || !bytes.Equal(got, data) {
			t.Errorf("copy %d: %d bytes, %v", i, len(got), err)
		}
	}
}

// TestStalledCopyIsBounded: with one copy that never answers, Stat, Delete,
// List and Open each take about the timeout, not the caller's deadline (nor
// forever without one), answer from the healthy copy, and mark the stalled
// one failed.
func TestStalledCopyIsBounded(t *testing.T) {
	a, b := &faulty{Backend: mem.New()}, &faulty{Backend: mem.New()}
	data := random(1000)
	for _, k := range []string{"blobs/1", "blobs/2", "blobs/3"} {
		a.Backend.Put(ctx, k, bytes.NewReader(data), -1)
		b.Backend.Put(ctx, k, bytes.NewReader(data), -1)
	}
	a.hang.Store(true) // the first copy, where reads start
	for _, tc := range []struct {
		name string
		op   func(ctx context.Context, m stowage.Backend) error
	}{
		{"stat", func(ctx context.Context, m stowage.Backend) error { _, err := m.Stat(ctx, "blobs/1"); return err }},
		{"open", func(ctx context.Context, m stowage.Backend) error { _, err := read(m, "blobs/1"); return err }},
		{"list", func(ctx context.Context, m stowage.Backend) error {
			var keys []string
			err := m.List(ctx, "blobs/", func(oi stowage.ObjectInfo) error { keys = append(keys, oi.Key); return nil })
			if err == nil && len(keys) != 3 {
				return fmt.Errorf("listed %v", keys)
			}
			return err
		}},
		{"delete", func(ctx context.Context, m stowage.Backend) error { return m.Delete(ctx, "blobs/2") }},
		{"stat without a deadline", func(_ context.Context, m stowage.Backend) error {
			_, err := m.Stat(context.Background(), "blobs/3")
			return err
		}},
		{"delete without a deadline", func(_ context.Context, m stowage.Backend) error {
			return m.Delete(context.Background(), "blobs/3")
		}},
	} {
		m := newMirror(t, mirror.Options{WriteQuorum: 1, Timeout: 100 * time.Millisecond}, a, b)
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		start := time.Now()
		done := make(chan error, 1)
		go func() { done <- tc.op(cctx, m) }()
		var err error
		select {
		case err = <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s with a stalled copy did not return", tc.name)
		}
		cancel()
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s with a stalled copy took %v (timeout 100ms)", tc.name, d)
		}
		if err != nil {
			t.Errorf("%s with a stalled copy: %v", tc.name, err)
		}
		if st := m.(repairer).Status(); st.Copies[0].State == mirror.Healthy {
			t.Errorf("after %s, the stalled copy is still healthy", tc.name)
		}
	}
	if _, err := b.Backend.Stat(ctx, "blobs/2"); !stowage.IsNotExist(err) {
		t.Errorf("delete did not reach the healthy copy: %v", err)
	}
	// An error from the caller's fn ends the listing, and is the caller's.
	errStop := errors.New("stop")
	a.hang.Store(false)
	m := newMirror(t, mirror.Options{}, a, b)
	if err := m.List(ctx, "", func(stowage.ObjectInfo) error { return errStop }); !errors.Is(err, errStop) {
		t.Errorf("List with a failing fn: %v", err)
	}
	if st := m.(repairer).Status(); st.Copies[0].State != mirror.Healthy {
		t.Errorf("an error from fn counted against the copy: %+v", st.Copies[0])
	}
}

// switchableKeys is a keyring whose provider can become unreachable.
type switchableKeys struct {
	crypt.Keys
	off atomic.Bool
}

func (k *switchableKeys) Unwrap(ctx context.Context, kv stowage.KeyVersion, wrapped []byte) ([]byte, error) {
	if k.off.Load() {
		return nil, fmt.Errorf("%w: KMS unreachable (test)", crypt.ErrKeyUnavailable)
	}
	return k.Keys.Unwrap(ctx, kv, wrapped)
}

// TestScrubOutageIsNotCorruption: scrub through encryption over a mirror,
// during a key outage or while a copy fails in the middle of a read, counts
// the copies as not checked, never as corrupt, and rewrites nothing.
func TestScrubOutageIsNotCorruption(t *testing.T) {
	db, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	fk, err := crypt.OpenFileKeyring(filepath.Join(t.TempDir(), "k.json"), true)
	if err != nil {
		t.Fatal(err)
	}
	keys := &switchableKeys{Keys: fk}
	mgr := crypt.NewManager(db, keys)
	mgr.CacheTTL = -1
	a, b := &faulty{Backend: mem.New()}, &faulty{Backend: mem.New()}
	c := crypt.New(newMirror(t, mirror.Options{}, a, b), mgr)
	data := random(300_000)
	sum := sha256.Sum256(data)
	if err := c.Put(ctx, "blobs/x", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	check := func(r io.Reader) error {
		h := sha256.New()
		if _, err := io.Copy(h, r); err != nil {
			return err
		}
		if !bytes.Equal(h.Sum(nil), sum[:]) {
			return errors.New("digest mismatch")
		}
		return nil
	}
	scrub := func() stowage.ScrubResult {
		t.Helper()
		res, err := c.(stowage.Scrubber).ScrubObject(ctx, "blobs/x", check)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	keys.off.Store(true)
	if res := scrub(); res.Good != 0 || len(res.Corrupt) != 0 || len(res.Repaired) != 0 || len(res.Errors) != 2 {
		t.Errorf("scrub during a key outage: %+v; want 2 copies not checked, none corrupt", res)
	}
	keys.off.Store(false)
	a.failAfter.Store(100_000)
	if res := scrub(); res.Good != 1 || len(res.Corrupt) != 0 || len(res.Repaired) != 0 || len(res.Errors) != 1 {
		t.Errorf("scrub with a copy failing mid-read: %+v; want 1 good, 1 not checked", res)
	}
	a.failAfter.Store(0)
	if res := scrub(); res.Good != 2 {
		t.Errorf("scrub after the outage: %+v", res)
	}
}

// TestRepairStopsWhenACopyStalls: a copy that stops answering during a
// repair run ends the run (the rest waits for the next one), rather than
// each queued repair waiting for the timeout.
func TestRepairStopsWhenACopyStalls(t *testing.T) {
	a, b := &faulty{Backend: mem.New()}, &faulty{Backend: mem.New()}
	m := newMirror(t, mirror.Options{WriteQuorum: 1, Timeout: 100 * time.Millisecond}, a, b)
	b.down.Store(true)
	for i := range 30 {
		if err := m.Put(ctx, fmt.Sprint("blobs/", i), bytes.NewReader(random(100)), -1); err != nil {
			t.Fatal(err)
		}
	}
	b.down.Store(false)
	if err := m.Delete(ctx, "blobs/none"); err != nil { // b answers again: healthy
		t.Fatal(err)
	}
	b.hang.Store(true)
	start := time.Now()
	n, err := m.(repairer).Repair(ctx)
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("Repair with a stalled copy took %v (timeout 100ms, 30 repairs queued)", d)
	}
	if n != 0 || err == nil {
		t.Errorf("Repair with a stalled copy = %d, %v; want 0 and an error", n, err)
	}
	if st := m.(repairer).Status(); st.PendingRepairs != 30 {
		t.Errorf("pending repairs: %d, want 30", st.PendingRepairs)
	}
}
