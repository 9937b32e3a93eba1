package stowage_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stowage/stowage"
)

// gatedStore stops the first Stat or List of upload data after it is armed
// (once the inner call returned) until gate is closed: a node that stalls
// in the middle of a final PUT, after reading its session's data.
type gatedStore struct {
	stowage.Backend
	armed         atomic.Bool
	entered, gate chan struct{}
}

func (g *gatedStore) wait(key string) {
	if strings.HasPrefix(key, "uploads/") && g.armed.CompareAndSwap(true, false) {
		close(g.entered)
		<-g.gate
	}
}

func (g *gatedStore) Stat(ctx context.Context, key string) (stowage.ObjectInfo, error) {
	oi, err := g.Backend.Stat(ctx, key)
	g.wait(key)
	return oi, err
}

func (g *gatedStore) List(ctx context.Context, prefix string, fn func(stowage.ObjectInfo) error) error {
	err := g.Backend.List(ctx, prefix, fn)
	g.wait(prefix)
	return err
}

// The node must seal hash states as the other nodes do.
func (g *gatedStore) SealState(ctx context.Context, key string, state []byte) ([]byte, error) {
	if s, ok := g.Backend.(stowage.StateSealer); ok {
		return s.SealState(ctx, key, state)
	}
	return state, nil
}

func (g *gatedStore) OpenState(ctx context.Context, sealed []byte) ([]byte, error) {
	if s, ok := g.Backend.(stowage.StateSealer); ok {
		return s.OpenState(ctx, sealed)
	}
	return sealed, nil
}

type gatedAppendStore struct {
	*gatedStore
	app stowage.Appender
}

func (g gatedAppendStore) Append(ctx context.Context, key string, off int64, r io.Reader) (int64, error) {
	return g.app.Append(ctx, key, off, r)
}

func (g gatedAppendStore) Commit(ctx context.Context, src, dst string, size int64) error {
	return g.app.Commit(ctx, src, dst, size)
}

// gatedNode is another node over the same database and storage as reg,
// whose store stalls as gatedStore says.
func gatedNode(reg *stowage.Registry) (*stowage.Registry, *gatedStore) {
	g := &gatedStore{Backend: reg.Backend(), entered: make(chan struct{}), gate: make(chan struct{})}
	var store stowage.Backend = g
	if app, ok := reg.Backend().(stowage.Appender); ok {
		store = gatedAppendStore{g, app}
	}
	return stowage.NewRegistry(reg.DB(), store, stowage.Options{}), g
}

// uploadObjects lists the stored objects under prefix.
func uploadObjects(t *testing.T, reg *stowage.Registry, prefix string) []string {
	t.Helper()
	var keys []string
	if err := reg.Backend().List(context.Background(), prefix, func(oi stowage.ObjectInfo) error {
		keys = append(keys, oi.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestStaleFinisherFenced: a final PUT that stalls after checking the
// session's data, while another node takes the session over (the stalled
// one's lease ran out) and goes on with it, must not end the session when
// it wakes up: only the lease holder's generation may finish. The blob is
// already stored elsewhere, so the stalled PUT would go straight to
// recording it.
func TestStaleFinisherFenced(t *testing.T) {
	ctx := context.Background()
	for _, kind := range uploadStores {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			b := uploadNode(t, dir, kind, stowage.Options{})
			a, gate := gatedNode(b)
			stowage.SetUploadLease(a, 300*time.Millisecond, time.Hour) // a never renews
			stowage.SetUploadLease(b, 300*time.Millisecond, 50*time.Millisecond)
			head, more := noise(t, 70000), noise(t, 5000)
			if _, err := b.PutBlob(ctx, "other", sha256Digest(head), bytes.NewReader(head), int64(len(head))); err != nil {
				t.Fatal(err)
			}
			u, err := a.StartUpload(ctx, "r")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := a.WriteUpload(ctx, "r", u.ID, 0, int64(len(head)), bytes.NewReader(head)); err != nil {
				t.Fatal(err)
			}
			gate.armed.Store(true)
			done := make(chan error, 1)
			go func() {
				_, err := a.FinishUpload(ctx, "r", u.ID, sha256Digest(head), -1, 0, nil)
				done <- err
			}()
			<-gate.entered // a stalls in its final PUT
			var errB error
			for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				_, errB = b.WriteUpload(ctx, "r", u.ID, int64(len(head)), int64(len(more)), bytes.NewReader(more))
				if errB == nil || !strings.Contains(errB.Error(), "being written by another request") {
					break
				}
			}
			if errB != nil {
				t.Fatalf("node b after node a's lease ran out: %v", errB)
			}
			close(gate.gate) // a wakes up
			if err := <-done; err == nil {
				t.Errorf("node a's final PUT succeeded after node b took the session over")
			}
			if _, err := b.StatBlob(ctx, "r", sha256Digest(head)); stowage.ErrorCodeOf(err) != stowage.CodeBlobUnknown {
				t.Errorf("the stalled PUT's blob is in r (%v)", err)
			}
			whole := append(append([]byte{}, head...), more...)
			if _, err := b.FinishUpload(ctx, "r", u.ID, sha256Digest(whole), -1, 0, nil); err != nil {
				t.Fatalf("node b finishes the session it holds: %v", err)
			}
			wantBlob(t, b, "r", sha256Digest(whole), whole)
			if left := uploadObjects(t, b, stowage.UploadPrefix(u.ID)); len(left) > 0 {
				t.Errorf("upload data left after the session finished: %v", left)
			}
		})
	}
}

// TestDeleteRepositoryDuringUploads: deleting a repository ends its upload
// sessions, also those a writer is in the middle of. A writer streaming a
// chunk fails with BLOB_UPLOAD_UNKNOWN and leaves no data behind; a final
// PUT streaming its body, or stalled in the middle (on another node), fails
// the same way and does not bring the repository back; an idle session is unknown from then on, and its data
// goes with the next collection.
func TestDeleteRepositoryDuringUploads(t *testing.T) {
	ctx := context.Background()
	for _, kind := range uploadStores {
		t.Run(kind, func(t *testing.T) {
			reg := uploadNode(t, t.TempDir(), kind, stowage.Options{})
			stowage.SetUploadLease(reg, 10*time.Second, 20*time.Millisecond)
			seed := []byte("a blob the repository holds")
			if _, err := reg.PutBlob(ctx, "r", sha256Digest(seed), bytes.NewReader(seed), int64(len(seed))); err != nil {
				t.Fatal(err)
			}
			start := func() stowage.UploadRecord {
				u, err := reg.StartUpload(ctx, "r")
				if err != nil {
					t.Fatal(err)
				}
				return u
			}
			head := noise(t, 70000)
			idle, busy, finishing, stalled := start(), start(), start(), start()
			for _, u := range []stowage.UploadRecord{idle, busy, stalled} {
				if _, err := reg.WriteUpload(ctx, "r", u.ID, 0, int64(len(head)), bytes.NewReader(head)); err != nil {
					t.Fatal(err)
				}
			}
			chunk, body := noise(t, 300000), noise(t, 300000)
			type result struct {
				what string
				err  error
			}
			results := make(chan result, 3)
			// Another node's final PUT of a chunked upload stalls after
			// it checked the stored data.
			g, gate := gatedNode(reg)
			stowage.SetUploadLease(g, 10*time.Second, 20*time.Millisecond)
			gate.armed.Store(true)
			go func() {
				_, err := g.FinishUpload(ctx, "r", stalled.ID, sha256Digest(head), -1, 0, nil)
				results <- result{"the stalled final PUT", err}
			}()
			<-gate.entered
			chunkR, chunkW := io.Pipe()
			go func() {
				_, err := reg.WriteUpload(ctx, "r", busy.ID, int64(len(head)), int64(len(chunk)), chunkR)
				results <- result{"the chunk streaming in", err}
			}()
			bodyR, bodyW := io.Pipe()
			go func() {
				_, err := reg.FinishUpload(ctx, "r", finishing.ID, sha256Digest(body), 0, int64(len(body)), bodyR)
				results <- result{"the final PUT streaming in", err}
			}()
			chunkW.Write(chunk[:1000])
			bodyW.Write(body[:1000])
			if _, err := reg.DeleteRepository(ctx, "r", false); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond) // the chunk writer's lease renewal finds the session gone
			go func() { chunkW.Write(chunk[1000:]); chunkW.Close() }()
			go func() { bodyW.Write(body[1000:]); bodyW.Close() }()
			close(gate.gate)
			for range 3 {
				select {
				case r := <-results:
					if stowage.ErrorCodeOf(r.err) != stowage.CodeBlobUploadUnknown {
						t.Errorf("%s when its repository was deleted: %v, want BLOB_UPLOAD_UNKNOWN", r.what, r.err)
					}
				case <-time.After(20 * time.Second):
					t.Fatal("a writer did not return")
				}
			}
			chunkR.Close()
			bodyR.Close()
			err := reg.DB().View(ctx, func(tx stowage.Tx) error { _, err := tx.Repositories().GetRepository("r"); return err })
			if !errors.Is(err, stowage.ErrNotFound) {
				t.Errorf("the deleted repository is back after the writers returned (%v)", err)
			}
			if _, err := reg.WriteUpload(ctx, "r", idle.ID, int64(len(head)), 3, bytes.NewReader([]byte("abc"))); stowage.ErrorCodeOf(err) != stowage.CodeBlobUploadUnknown {
				t.Errorf("a chunk for an idle session of the deleted repository: %v, want BLOB_UPLOAD_UNKNOWN", err)
			}
			for _, u := range []stowage.UploadRecord{busy, finishing, stalled} {
				if left := uploadObjects(t, reg, stowage.UploadPrefix(u.ID)); len(left) > 0 {
					t.Errorf("data of an ended session left behind by its writer: %v", left)
				}
			}
			zero := time.Duration(0)
			if _, err := collect(ctx, reg, gcOptions{MinAge: &zero}); err != nil {
				t.Fatal(err)
			}
			if left := uploadObjects(t, reg, "uploads/"); len(left) > 0 {
				t.Errorf("upload data left after a collection: %v", left)
			}
		})
	}
}
