package crypt_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/storage/crypt"
)

// node is one registry process of a cluster: its own handle on the shared
// database, its own copy of the key file, the shared storage.
type node struct {
	keys *crypt.FileKeyring
	mgr  *crypt.Manager
	b    stowage.Backend
}

func newNode(t *testing.T, dbPath, keyPath string, inner stowage.Backend) *node {
	t.Helper()
	db, err := sqlite.Open(ctx, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	k, err := crypt.OpenFileKeyring(keyPath, false)
	if err != nil {
		t.Fatal(err)
	}
	m := crypt.NewManager(db, k)
	return &node{keys: k, mgr: m, b: crypt.New(inner, m)}
}

// current waits (bounded) until n's current version is want: a node
// rereads the versions kept in the database at most once a second.
func (n *node) current(t *testing.T, want stowage.KeyVersion) {
	t.Helper()
	var cur stowage.KeyVersion
	for i := 0; i < 60; i++ {
		var err error
		if cur, err = n.keys.Current(ctx); err != nil {
			t.Fatal(err)
		}
		if cur == want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("current version %s, want %s", cur, want)
}

// TestRotationReachesEveryNode: two nodes share a database (one SQLite
// file), the storage, and copies of one key file. After `keys rotate` on
// one, every node reads every object (those rewrapped onto the new version,
// and those written under it), and switches to the new version for new
// objects; a later rotation and a retirement on the other node work too.
func TestRotationReachesEveryNode(t *testing.T) {
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "stowage.db")
	inner, _ := newFS(t)
	keyA := filepath.Join(dir, "a", "keys", "service.json")
	if _, err := crypt.OpenFileKeyring(keyA, true); err != nil {
		t.Fatal(err)
	}
	keyB := filepath.Join(dir, "b", "keys", "service.json")
	raw, err := os.ReadFile(keyA)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Dir(keyB), 0o700)
	if err := os.WriteFile(keyB, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	a, b := newNode(t, dbPath, keyA, inner), newNode(t, dbPath, keyB, inner)

	objects := map[string][]byte{}
	put := func(n *node, key string) {
		t.Helper()
		objects[key] = random(crypt.SegmentSize + 100)
		if err := n.b.Put(ctx, key, bytes.NewReader(objects[key]), -1); err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
	}
	readAll := func(when string) {
		t.Helper()
		for name, n := range map[string]*node{"a": a, "b": b} {
			n.mgr.Forget() // as after encryption.cache_ttl: unwrap again
			for key, want := range objects {
				if got, err := read(n.b, key, 0); err != nil || !bytes.Equal(got, want) {
					t.Errorf("%s: node %s reads %s: %d bytes, %v", when, name, key, len(got), err)
				}
			}
		}
	}
	put(a, "blobs/before")
	readAll("before rotation")

	p, err := a.mgr.Rotate(ctx, crypt.RotateOptions{NewVersion: true})
	if err != nil || p.Rewrapped != 1 {
		t.Fatalf("rotate on node a = %+v, %v", p, err)
	}
	readAll("after rotation on node a")
	put(a, "blobs/after-on-a")
	readAll("after a push on node a")
	b.current(t, p.Current)
	put(b, "blobs/after-on-b")
	readAll("after a push on node b")
	if st, err := b.mgr.Status(ctx); err != nil || len(st.DataKeys) != 1 || st.DataKeys[0].KeyVersion != p.Current || st.Current != p.Current {
		t.Errorf("status on node b = %+v, %v; want every data key on %s", st, err, p.Current)
	}

	// Rotate again, on the other node, and retire the version in between.
	p2, err := b.mgr.Rotate(ctx, crypt.RotateOptions{NewVersion: true})
	if err != nil || p2.Rewrapped != 3 || p2.Current.Version != p.Current.Version+1 {
		t.Fatalf("rotate on node b = %+v, %v", p2, err)
	}
	a.current(t, p2.Current)
	if err := a.mgr.Retire(ctx, p.Current); err != nil {
		t.Fatalf("retire %s on node a: %v", p.Current, err)
	}
	put(a, "blobs/after-second-rotation")
	readAll("after the second rotation")
	// The retired version is gone for every node.
	_, err = b.keys.Unwrap(ctx, p.Current, make([]byte, 60))
	for i := 0; i < 60 && !errors.Is(err, crypt.ErrKeyUnavailable); i++ {
		time.Sleep(50 * time.Millisecond)
		_, err = b.keys.Unwrap(ctx, p.Current, make([]byte, 60))
	}
	if !errors.Is(err, crypt.ErrKeyUnavailable) {
		t.Errorf("retired %s on node b: %v, want unavailable", p.Current, err)
	}
}

// TestReplaceRoot follows docs/encryption.md, "Replacing the key file's
// key": a new version added to the file by hand becomes the root of the next
// rotation, and the old root and the database versions it wraps retire.
func TestReplaceRoot(t *testing.T) {
	dir := t.TempDir()
	inner, _ := newFS(t)
	keyPath := filepath.Join(dir, "keys", "service.json")
	if _, err := crypt.OpenFileKeyring(keyPath, true); err != nil {
		t.Fatal(err)
	}
	n := newNode(t, filepath.Join(dir, "stowage.db"), keyPath, inner)
	data := random(1000)
	if err := n.b.Put(ctx, "blobs/x", bytes.NewReader(data), -1); err != nil {
		t.Fatal(err)
	}
	if _, err := n.mgr.Rotate(ctx, crypt.RotateOptions{NewVersion: true}); err != nil { // version 2, in the database
		t.Fatal(err)
	}
	// The operator adds version 3 to the file and makes it current.
	var f struct {
		ID       string            `json:"id"`
		Current  uint32            `json:"current"`
		Versions map[string]string `json:"versions"`
	}
	raw, _ := os.ReadFile(keyPath)
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	f.Versions["3"], f.Current = base64.StdEncoding.EncodeToString(random(32)), 3
	raw, _ = json.Marshal(f)
	if err := os.WriteFile(keyPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(keyPath, time.Now(), time.Now().Add(time.Minute)) // a new stamp even within the clock's resolution
	n.current(t, stowage.KeyVersion{ID: f.ID, Version: 3})
	p, err := n.mgr.Rotate(ctx, crypt.RotateOptions{NewVersion: true})
	if err != nil || p.Current.Version != 4 {
		t.Fatalf("rotate after the new root = %+v, %v; want version 4", p, err)
	}
	if err := n.mgr.Retire(ctx, stowage.KeyVersion{ID: f.ID, Version: 1}); err == nil {
		t.Error("retired the old root while version 2, in the database, is wrapped by it")
	}
	for _, v := range []uint32{2, 1} {
		if err := n.mgr.Retire(ctx, stowage.KeyVersion{ID: f.ID, Version: v}); err != nil {
			t.Fatalf("retire version %d: %v", v, err)
		}
	}
	if st, _ := n.mgr.Status(ctx); len(st.Versions) != 2 || st.Versions[0].Version != 3 || st.Versions[1].Version != 4 {
		t.Errorf("versions after replacing the root: %+v, want 3 (file) and 4 (database)", st.Versions)
	}
	n.mgr.Forget()
	if got, err := read(n.b, "blobs/x", 0); err != nil || !bytes.Equal(got, data) {
		t.Errorf("read after replacing the root: %d bytes, %v", len(got), err)
	}
}

// TestSealState: a state sealed for an object opens only for it, not after
// a change, and a plain (older) state passes through.
func TestSealState(t *testing.T) {
	inner, _ := newFS(t)
	b, _ := newCrypt(t, inner)
	s := b.(stowage.StateSealer)
	for _, key := range []string{"uploads/a/data", "uploads/b/data"} {
		if _, err := b.(stowage.Appender).Append(ctx, key, 0, bytes.NewReader(random(100))); err != nil {
			t.Fatal(err)
		}
	}
	state := []byte("sha\x03 the last bytes received")
	sealed, err := s.SealState(ctx, "uploads/a/data", state)
	if err != nil || bytes.Contains(sealed, state[4:]) {
		t.Fatalf("SealState = %q, %v", sealed, err)
	}
	if got, err := s.OpenState(ctx, sealed); err != nil || !bytes.Equal(got, state) {
		t.Errorf("OpenState = %q, %v", got, err)
	}
	if got, err := s.OpenState(ctx, state); err != nil || !bytes.Equal(got, state) {
		t.Errorf("OpenState of a plain state = %q, %v; want it as it is", got, err)
	}
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	moved := bytes.Replace(sealed, []byte("uploads/a/data"), []byte("uploads/b/data"), 1)
	for name, bad := range map[string][]byte{"tampered": tampered, "moved to another object": moved, "truncated": sealed[:10]} {
		if _, err := s.OpenState(ctx, bad); !errors.Is(err, crypt.ErrIntegrity) {
			t.Errorf("OpenState of a %s state: %v, want an integrity error", name, err)
		}
	}
	if _, err := s.SealState(ctx, "uploads/missing/data", state); err == nil {
		t.Error("SealState for a missing object succeeded")
	}
	// After a Commit moved the object (with its data key) to its blob key,
	// the state still opens: a final PUT retried after a crash between the
	// move and the database commit reads it to prove the session's digest.
	if err := b.(stowage.Appender).Commit(ctx, "uploads/a/data", "blobs/sha256/aa/aa", 100); err != nil {
		t.Fatal(err)
	}
	if got, err := s.OpenState(ctx, sealed); err != nil || !bytes.Equal(got, state) {
		t.Errorf("OpenState after the object was committed = %q, %v", got, err)
	}
}
