package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMigrateMetadataThenScaleOut: a registry starts on the embedded
// default (SQLite, service key in its data directory) and takes pushes;
// it is stopped, `stowage migrate-metadata` copies its metadata into
// PostgreSQL, and two nodes on PostgreSQL over the same storage, each given
// the first node's key, serve everything that was pushed.
func TestMigrateMetadataThenScaleOut(t *testing.T) {
	db := pgSchema(t)
	dir := t.TempDir()
	s := startServer(t, dir)
	type pushed struct{ repo, tag, manifest string }
	var images []pushed
	var blobs []string
	for i, repo := range []string{"apps/web", "apps/api", "base/alpine"} {
		cfg := pushBlob(t, s.URL, repo, []byte(`{"architecture":"amd64","os":"linux","n":`+string(rune('0'+i))+`}`))
		layer := pushChunked(t, s.URL, repo, randomBytes(t, 150_000), 50_000)
		blobs = append(blobs, repo+"@"+cfg, repo+"@"+layer)
		m := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
			`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + cfg + `","size":` + itoa(len(`{"architecture":"amd64","os":"linux","n":0}`)) + `},` +
			`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"` + layer + `","size":150000}]}`)
		r := mustDo(t, http.MethodPut, s.URL, "/v2/"+repo+"/manifests/v1", map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, m)
		if r.Status != http.StatusCreated {
			t.Fatalf("push manifest %s:v1: %s", repo, r)
		}
		images = append(images, pushed{repo, "v1", sha256Digest(m)})
	}

	// While the registry runs, the copy is refused (it needs a write pause).
	if out, err := stowageCLI(t, "migrate-metadata", "--data-dir", dir, "--to", db); err == nil || !strings.Contains(out, "stop the registry first") {
		t.Errorf("migrate-metadata with the registry running: %v\n%s", err, out)
	}
	s.Stop()
	out, err := stowageCLI(t, "migrate-metadata", "--data-dir", dir, "--to", db)
	if err != nil || !strings.Contains(out, "verified: every table matches") {
		t.Fatalf("migrate-metadata: %v\n%s", err, out)
	}
	t.Logf("migrate-metadata:\n%s", out)

	key, err := os.ReadFile(filepath.Join(dir, "keys", "service.json"))
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"STOWAGE_DATABASE=" + db, "STOWAGE_STORAGE_PATH=" + filepath.Join(dir, "storage")}
	for n := 0; n < 2; n++ {
		nd := t.TempDir()
		os.MkdirAll(filepath.Join(nd, "keys"), 0o700)
		if err := os.WriteFile(filepath.Join(nd, "keys", "service.json"), key, 0o600); err != nil {
			t.Fatal(err)
		}
		node := startServer(t, nd, env...)
		for _, img := range images {
			r := mustDo(t, http.MethodGet, node.URL, "/v2/"+img.repo+"/manifests/"+img.tag, map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"}, nil)
			if r.Status != http.StatusOK || sha256Digest(r.Body) != img.manifest {
				t.Errorf("node %d: %s:%s: %s", n, img.repo, img.tag, r)
			}
		}
		for _, rb := range blobs {
			repo, d, _ := strings.Cut(rb, "@")
			r := mustDo(t, http.MethodGet, node.URL, "/v2/"+repo+"/blobs/"+d, nil, nil)
			if r.Status != http.StatusOK || sha256Digest(r.Body) != d {
				t.Errorf("node %d: blob %s in %s: %d", n, d, repo, r.Status)
			}
		}
		r := mustDo(t, http.MethodGet, node.URL, "/v2/apps/web/tags/list", nil, nil)
		if r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"v1"`) {
			t.Errorf("node %d: tags list: %s", n, r)
		}
	}
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}
