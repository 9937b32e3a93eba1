package stowage_test

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/storage/mem"
)

// orderDB records, for every write transaction, the order in which it
// touched a repository's row (CreateRepository) and a blob's row
// (PutBlob, whose change of state or size updates a held_bytes shard).
type orderDB struct {
	stowage.DB
	mu  sync.Mutex
	bad []string
}

type orderTx struct {
	stowage.Tx
	steps *[]string
}

type orderBlobs struct {
	stowage.BlobTx
	steps *[]string
}

type orderRepos struct {
	stowage.RepositoryTx
	steps *[]string
}

func (t orderTx) Blobs() stowage.BlobTx { return orderBlobs{t.Tx.Blobs(), t.steps} }
func (t orderTx) Repositories() stowage.RepositoryTx {
	return orderRepos{t.Tx.Repositories(), t.steps}
}

func (b orderBlobs) PutBlob(r stowage.BlobRecord) error {
	*b.steps = append(*b.steps, "blob")
	return b.BlobTx.PutBlob(r)
}

func (r orderRepos) CreateRepository(name string, now time.Time) error {
	*r.steps = append(*r.steps, "repository")
	return r.RepositoryTx.CreateRepository(name, now)
}

func (o *orderDB) Update(ctx context.Context, fn func(stowage.Tx) error) error {
	return o.DB.Update(ctx, func(tx stowage.Tx) error {
		var steps []string
		err := fn(orderTx{tx, &steps})
		if s := strings.Join(steps, " "); strings.Contains(s, "blob repository") || strings.Contains(s, "blob blob repository") {
			o.mu.Lock()
			o.bad = append(o.bad, s)
			o.mu.Unlock()
		}
		return err
	})
}

// TestWritersLockRepositoryBeforeBlob: every write transaction of a push
// (monolithic and chunked blob uploads, mounts, manifest pushes by tag and
// digest) touches the repository's row before a blob's row, the one lock
// order of PostgreSQL's writers (migration 0015). A blob upload marked its
// blob live before touching the repository, and deadlocked with a manifest
// push of the same repository on PostgreSQL (an outside review reproduced
// it; each deadlock costs a writer deadlock_timeout, 1 s).
func TestWritersLockRepositoryBeforeBlob(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	odb := &orderDB{DB: db}
	reg := stowage.NewRegistry(odb, mem.New(), stowage.Options{})
	blob := func(s string) (stowage.Digest, []byte) { b := []byte(s); return stowage.Digest("sha256:" + sha(b)), b }
	cd, config := blob(`{"architecture":"amd64","os":"linux"}`)
	ld, layer := blob("layer bytes")
	if _, err := reg.PutBlob(ctx, "a/r", cd, bytes.NewReader(config), int64(len(config))); err != nil {
		t.Fatal(err)
	}
	u, err := reg.StartUpload(ctx, "a/r")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.WriteUpload(ctx, "a/r", u.ID, 0, 5, bytes.NewReader(layer[:5])); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.FinishUpload(ctx, "a/r", u.ID, ld, 5, int64(len(layer)-5), bytes.NewReader(layer[5:])); err != nil {
		t.Fatal(err)
	}
	if _, _, err := reg.MountBlob(ctx, "b/r", "a/r", ld); err != nil {
		t.Fatal(err)
	}
	m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`,
		cd, len(config), ld, len(layer)))
	if _, err := reg.PutManifest(ctx, "a/r", stowage.Reference{Tag: "v1"}, "application/vnd.oci.image.manifest.v1+json", m, nil); err != nil {
		t.Fatal(err)
	}
	md := stowage.Digest("sha256:" + sha(m))
	if _, err := reg.PutManifest(ctx, "a/r", stowage.Reference{Digest: md}, "application/vnd.oci.image.manifest.v1+json", m, nil); err != nil {
		t.Fatal(err)
	}
	if len(odb.bad) > 0 {
		t.Errorf("write transactions that touched a blob's row before the repository's: %q", odb.bad)
	}
}
