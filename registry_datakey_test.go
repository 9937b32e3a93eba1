package stowage_test

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/storage/crypt"
	"github.com/stowage/stowage/storage/fs"
)

// countingKeys counts the data-key rows recorded in commits of their own.
type countingKeys struct {
	*sqlite.DB
	puts atomic.Int64
}

func (c *countingKeys) PutDataKey(ctx context.Context, k stowage.DataKey) error {
	c.puts.Add(1)
	return c.DB.PutDataKey(ctx, k)
}

// TestPushRecordsDataKeyInReserve: with encryption at rest, a blob or
// manifest push records its object's data key in the engine's reserve
// transaction (no commit of its own, issue 18), the object reads back with
// the key from the database alone, and a push that fails leaves no row.
func TestPushRecordsDataKeyInReserve(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := sqlite.Open(ctx, filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	disk, err := fs.New(filepath.Join(dir, "storage"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := crypt.OpenFileKeyring(filepath.Join(dir, "keys", "service.json"), true)
	if err != nil {
		t.Fatal(err)
	}
	ks := &countingKeys{DB: db}
	mgr := crypt.NewManager(ks, keys)
	reg := stowage.NewRegistry(db, crypt.New(disk, mgr), stowage.Options{})

	rows := func() int64 {
		cs, err := db.CountDataKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, c := range cs {
			n += c.Count
		}
		return n
	}

	// A push whose bytes do not match its digest stores nothing and keeps
	// no data-key row.
	bad := []byte("not what the digest says")
	if _, err := reg.PutBlob(ctx, "enc/app", stowage.Digest("sha256:"+sha([]byte("other"))), bytes.NewReader(bad), int64(len(bad))); err == nil {
		t.Fatal("a blob with the wrong digest was accepted")
	}
	if n := rows(); n != 0 {
		t.Fatalf("a failed push left %d data-key rows", n)
	}

	d := pushImage(t, reg, "enc/app", "v1")
	if got := ks.puts.Load(); got != 0 {
		t.Errorf("the push recorded %d data keys in commits of their own, want 0 (in reserve's transaction)", got)
	}
	if n := rows(); n != 3 { // config, layer, manifest
		t.Errorf("%d data-key rows after pushing 3 objects, want 3", n)
	}
	mgr.Forget() // read with the keys from the database
	_, body, err := reg.GetManifest(ctx, "enc/app", stowage.Reference{Digest: d})
	if err != nil || len(body) == 0 {
		t.Fatalf("manifest read back: %v", err)
	}
	layer := []byte("layer-enc/app")
	rc, _, err := reg.OpenBlob(ctx, "enc/app", stowage.Digest("sha256:"+sha(layer)), 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, layer) {
		t.Fatalf("layer read back %q, %v", got, err)
	}
	// The same manifest under another tag writes nothing new.
	pushImage(t, reg, "enc/app", "v2")
	if n := rows(); n != 3 {
		t.Errorf("%d data-key rows after a tag push of stored content, want 3", n)
	}
}
