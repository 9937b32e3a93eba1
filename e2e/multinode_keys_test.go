package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// TestMultiNodeKeyRotation: two nodes on one PostgreSQL database and one
// storage, each with its own copy of the service key file. `stowage keys
// rotate` on node 1 puts the new version in the database (wrapped by the
// key file's key), so node 2 reads everything: blobs rewrapped onto the new
// version and blobs pushed under it; and node 1 reads what node 2 pushes.
func TestMultiNodeKeyRotation(t *testing.T) {
	db, storage := pgSchema(t), t.TempDir()
	env := []string{"STOWAGE_DATABASE=" + db, "STOWAGE_STORAGE_PATH=" + storage}
	dirA, dirB := t.TempDir(), t.TempDir()
	a := startServer(t, dirA, env...)
	key, err := os.ReadFile(filepath.Join(dirA, "keys", "service.json"))
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dirB, "keys"), 0o700)
	if err := os.WriteFile(filepath.Join(dirB, "keys", "service.json"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	b := startServer(t, dirB, env...)

	blobs := map[string][]byte{}
	push := func(s *server) {
		data := randomBytes(t, 150_000)
		blobs[pushBlob(t, s.URL, "rotate/multi", data)] = data
	}
	pullAll := func(when string) {
		t.Helper()
		for name, s := range map[string]*server{"1": a, "2": b} {
			for d, data := range blobs {
				r := mustDo(t, http.MethodGet, s.URL, "/v2/rotate/multi/blobs/"+d, nil, nil)
				if r.Status != http.StatusOK || sha256Digest(r.Body) != sha256Digest(data) {
					t.Errorf("%s: pull of %s through node %s: %d %.200s", when, d, name, r.Status, r.Body)
				}
			}
		}
	}
	push(a)
	if out, err := stowageCLI(t, "keys", "rotate", "--registry", a.URL); err != nil {
		t.Fatalf("keys rotate on node 1: %v\n%s", err, out)
	}
	push(a)
	push(b)
	pullAll("after a rotation on node 1")
	if st := keysStatus(t, b); fmt.Sprint(st.Status.Current.Version) != "2" {
		t.Errorf("keys status through node 2: %+v, want current version 2", st.Status)
	}
}
