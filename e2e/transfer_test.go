package e2e

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// transferSource fills a registry through go-containerregistry with what
// an export must carry: a two-platform index whose images share a layer, a
// signature on the index and an SBOM on one platform (referrers, pushed
// with a subject), a plain image, and a second repository sharing a layer.
type transferSource struct {
	env              *ggcrEnv
	index            v1.Hash
	amd64            v1.Hash
	sig, sbom, plain v1.Hash
	lib              v1.Hash
}

func platformImage(t *testing.T, base v1.Layer, arch string) v1.Image {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	own := must[v1.Layer](t)(random.Layer(200_000, types.OCILayer))
	img = must[v1.Image](t)(mutate.AppendLayers(img, base, own))
	cf := must[*v1.ConfigFile](t)(img.ConfigFile())
	cf.Architecture, cf.OS = arch, "linux"
	return must[v1.Image](t)(mutate.ConfigFile(img, cf))
}

func referrer(t *testing.T, subject v1.Descriptor, artifactType string) v1.Image {
	img := mutate.ConfigMediaType(ociImage(t, 1, 300), types.MediaType(artifactType))
	return mutate.Subject(img, subject).(v1.Image)
}

func fillTransferSource(t *testing.T) *transferSource {
	e := newGGCR(t)
	s := &transferSource{env: e}
	app := e.repo("team/app")
	base := must[v1.Layer](t)(random.Layer(500_000, types.OCILayer))
	amd, arm := platformImage(t, base, "amd64"), platformImage(t, base, "arm64")
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}})
	if err := remote.WriteIndex(app.Tag("multi"), idx, e.opts...); err != nil {
		t.Fatal(err)
	}
	s.index, s.amd64 = digestOf(t, idx), digestOf(t, amd)
	idxDesc := must[*v1.Descriptor](t)(remote.Head(app.Tag("multi"), e.opts...))
	amdDesc := must[*v1.Descriptor](t)(remote.Head(app.Digest(s.amd64.String()), e.opts...))
	sig := referrer(t, *idxDesc, "application/vnd.example.signature.v1+json")
	sbom := referrer(t, *amdDesc, "application/spdx+json")
	for _, r := range []v1.Image{sig, sbom} {
		if err := remote.Write(app.Digest(digestOf(t, r).String()), r, e.with(remote.WithReferrersTagFallback(false))...); err != nil {
			t.Fatal(err)
		}
	}
	s.sig, s.sbom = digestOf(t, sig), digestOf(t, sbom)
	plain := ociImage(t, 2, 100_000)
	if err := remote.Write(app.Tag("v1"), plain, e.opts...); err != nil {
		t.Fatal(err)
	}
	s.plain = digestOf(t, plain)
	lib := must[v1.Image](t)(mutate.AppendLayers(ociImage(t, 1, 1000), base)) // shares the base layer
	if err := remote.Write(e.repo("other/lib").Tag("1"), lib, e.opts...); err != nil {
		t.Fatal(err)
	}
	s.lib = digestOf(t, lib)
	return s
}

// cliOK runs the stowage CLI and fails the test unless it exits 0.
func cliOK(t *testing.T, args ...string) string {
	t.Helper()
	out, err := stowageCLI(t, args...)
	if err != nil {
		t.Fatalf("stowage %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// layoutFiles returns a layout directory's files and their bytes.
func layoutFiles(t *testing.T, dir string) map[string][]byte {
	files := map[string][]byte{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		files[filepath.ToSlash(rel)] = must[[]byte](t)(os.ReadFile(p))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func tarFiles(t *testing.T, path string) map[string][]byte {
	f := must[*os.File](t)(os.Open(path))
	defer f.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, dup := files[h.Name]; dup {
			t.Errorf("tar holds %s twice", h.Name)
		}
		files[h.Name] = must[[]byte](t)(io.ReadAll(tr))
	}
}

func blobNames(files map[string][]byte) []string {
	var out []string
	for n := range files {
		if strings.HasPrefix(n, "blobs/") {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

type layoutIndex struct {
	Manifests []struct {
		Digest      string
		Annotations map[string]string
	}
}

func readLayoutIndex(t *testing.T, b []byte) layoutIndex {
	var idx layoutIndex
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatalf("index.json: %v\n%s", err, b)
	}
	return idx
}

// checkCopy checks that the registry at dst holds the source's images with
// the same digests, every platform, and the referrers.
func checkCopy(t *testing.T, s *transferSource, dst *ggcrEnv) {
	t.Helper()
	app := dst.repo("team/app")
	for tag, want := range map[string]v1.Hash{"multi": s.index, "v1": s.plain} {
		d, err := remote.Head(app.Tag(tag), dst.opts...)
		if err != nil || d.Digest != want {
			t.Fatalf("team/app:%s in the copy: %v %v, want %s", tag, d, err, want)
		}
	}
	if d, err := remote.Head(dst.repo("other/lib").Tag("1"), dst.opts...); err != nil || d.Digest != s.lib {
		t.Fatalf("other/lib:1 in the copy: %v %v", d, err)
	}
	idx := must[v1.ImageIndex](t)(remote.Index(app.Tag("multi"), dst.opts...))
	im := must[*v1.IndexManifest](t)(idx.IndexManifest())
	if len(im.Manifests) != 2 {
		t.Fatalf("index in the copy has %d platforms", len(im.Manifests))
	}
	for _, m := range im.Manifests {
		img := must[v1.Image](t)(remote.Image(app.Digest(m.Digest.String()), dst.opts...))
		for _, l := range must[[]v1.Layer](t)(img.Layers()) { // pulls and verifies every layer
			rc := must[io.ReadCloser](t)(l.Compressed())
			if _, err := io.Copy(io.Discard, rc); err != nil {
				t.Fatalf("layer of %s: %v", m.Digest, err)
			}
			rc.Close()
		}
	}
	for subject, want := range map[v1.Hash]v1.Hash{s.index: s.sig, s.amd64: s.sbom} {
		refs := must[v1.ImageIndex](t)(remote.Referrers(app.Digest(subject.String()), dst.with(remote.WithReferrersTagFallback(false))...))
		rm := must[*v1.IndexManifest](t)(refs.IndexManifest())
		if len(rm.Manifests) != 1 || rm.Manifests[0].Digest != want {
			t.Errorf("referrers of %s in the copy: %+v, want %s", subject, rm.Manifests, want)
		}
	}
}

// Export -> import into a fresh registry: same digests for a two-platform
// index with referrers; each blob written once; a tar holds the same files
// as a directory and imports the same way; --filter chooses as purge does.
func TestTransferExportImport(t *testing.T) {
	s := fillTransferSource(t)
	work := t.TempDir()
	dir, tarPath := filepath.Join(work, "layout"), filepath.Join(work, "registry.tar")
	out := cliOK(t, "export", "--registry", s.env.srv.URL, "-o", dir)
	if !strings.Contains(out, "exported 3 images (2 referrers") {
		t.Errorf("export report: %s", out)
	}
	files := layoutFiles(t, dir)
	idx := readLayoutIndex(t, files["index.json"])
	var names []string
	for _, m := range idx.Manifests {
		names = append(names, m.Annotations["org.opencontainers.image.ref.name"])
	}
	if want := []string{"other/lib:1", "team/app:multi", "", "", "team/app:v1"}; !slices.Equal(names, want) {
		t.Errorf("index.json ref names %q, want %q (referrers after their subjects)", names, want)
	}
	if _, err := os.Stat(filepath.Join(dir, ".stowage-partial")); !os.IsNotExist(err) {
		t.Errorf("a finished export left its partial directory: %v", err)
	}
	// Blobs once: 7 manifests (index, 2 platforms, 2 referrers, v1, lib),
	// 6 configs, 8 layers (the shared base once, 2 platform layers, 2 of
	// v1, 1 per referrer, 1 of lib's own).
	if n := len(blobNames(files)); n != 21 {
		t.Errorf("layout has %d blobs, want 21 (each once): %q", n, blobNames(files))
	}

	cliOK(t, "export", "--registry", s.env.srv.URL, "-o", tarPath)
	tf := tarFiles(t, tarPath)
	if !slices.Equal(blobNames(tf), blobNames(files)) {
		t.Errorf("tar blobs differ from the directory's:\n%q\n%q", blobNames(tf), blobNames(files))
	}
	for _, n := range blobNames(files) {
		if !bytes.Equal(tf[n], files[n]) {
			t.Errorf("%s differs between tar and directory", n)
		}
	}
	if !bytes.Equal(tf["index.json"], files["index.json"]) {
		t.Errorf("index.json differs:\n%s\n%s", tf["index.json"], files["index.json"])
	}
	if _, err := os.Stat(tarPath + ".partial"); !os.IsNotExist(err) {
		t.Error("the tar's partial file is still there")
	}

	for _, src := range []string{dir, tarPath} {
		dst := newGGCR(t)
		out := cliOK(t, "import", "--registry", dst.srv.URL, src)
		if !strings.Contains(out, "imported 3 images and 2 referrers (7 manifests pushed") || !strings.Contains(out, "14 uploaded") || !strings.Contains(out, "1 found in the registry") {
			t.Errorf("import %s: %s", src, out)
		}
		checkCopy(t, s, dst)
		// A rerun pushes nothing new.
		// A rerun pushes nothing: no blob, no manifest, not even the tags again.
		if out := cliOK(t, "import", "--registry", dst.srv.URL, src); !strings.Contains(out, "0 manifests pushed") || !strings.Contains(out, "0 uploaded") {
			t.Errorf("import rerun: %s", out)
		}
	}

	// --filter as purge: only other/lib.
	fdir := filepath.Join(work, "filtered")
	cliOK(t, "export", "--registry", s.env.srv.URL, "-o", fdir, "--filter", "other/.*:.*")
	fidx := readLayoutIndex(t, layoutFiles(t, fdir)["index.json"])
	if len(fidx.Manifests) != 1 || fidx.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "other/lib:1" {
		t.Errorf("--filter other/.*:.* exported %+v", fidx.Manifests)
	}
}

// A second export --since the first's marker writes only the image pushed
// in between (and only its new blobs); importing it after the first gives
// the new tag.
func TestTransferSince(t *testing.T) {
	s := fillTransferSource(t)
	work := t.TempDir()
	full, inc := filepath.Join(work, "full"), filepath.Join(work, "inc")
	cliOK(t, "export", "--registry", s.env.srv.URL, "-o", full)
	app := s.env.repo("team/app")
	// v2 = v1 plus one layer: its other layers were exported before.
	plain := must[v1.Image](t)(remote.Image(app.Tag("v1"), s.env.opts...))
	v2 := must[v1.Image](t)(mutate.AppendLayers(plain, must[v1.Layer](t)(random.Layer(4000, types.OCILayer))))
	if err := remote.Write(app.Tag("v2"), v2, s.env.opts...); err != nil {
		t.Fatal(err)
	}
	out := cliOK(t, "export", "--registry", s.env.srv.URL, "-o", inc, "--since", filepath.Join(full, "stowage-export.json"))
	// other/lib had no push since: the change feed says so, it is not read.
	if !strings.Contains(out, "exported 1 images") || !strings.Contains(out, "2 unchanged since the marker, 1 repositories without changes") {
		t.Errorf("incremental export: %s", out)
	}
	// Another selection (--untagged) than the marker's: the feed cannot
	// say what it chose before, so every repository is read.
	if out := cliOK(t, "export", "--registry", s.env.srv.URL, "-o", inc+"-untagged", "--untagged", "--since", filepath.Join(full, "stowage-export.json")); !strings.Contains(out, ", 0 repositories without changes") {
		t.Errorf("incremental export with another selection: %s", out)
	}
	files := layoutFiles(t, inc)
	idx := readLayoutIndex(t, files["index.json"])
	if len(idx.Manifests) != 1 || idx.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "team/app:v2" || idx.Manifests[0].Digest != digestOf(t, v2).String() {
		t.Fatalf("incremental index.json: %s", files["index.json"])
	}
	// The new manifest, its new config and its new layer; not v1's layers.
	if n := len(blobNames(files)); n != 3 {
		t.Errorf("incremental layout has %d blobs, want 3: %q", n, blobNames(files))
	}

	dst := newGGCR(t)
	cliOK(t, "import", "--registry", dst.srv.URL, full)
	cliOK(t, "import", "--registry", dst.srv.URL, inc)
	if d, err := remote.Head(dst.repo("team/app").Tag("v2"), dst.opts...); err != nil || d.Digest != digestOf(t, v2) {
		t.Fatalf("team/app:v2 after the incremental import: %v %v", d, err)
	}
	// Imported alone, into a registry without the first, it says what to do.
	lone := newGGCR(t)
	out, err := stowageCLI(t, "import", "--registry", lone.srv.URL, inc)
	if err == nil || !strings.Contains(out, "import the export this one continues") {
		t.Errorf("incremental import into an empty registry: %v\n%s", err, out)
	}
}

// An export interrupted while writing a layer (the process killed) leaves
// no index.json and nothing incomplete in blobs/; the rerun completes it,
// fetching less than the whole, and the layout matches a clean export.
func TestTransferResume(t *testing.T) {
	e := newGGCR(t)
	big := ociImage(t, 1, 64<<20)
	if err := remote.Write(e.repo("big/one").Tag("1"), big, e.opts...); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "layout")
	layer := must[[]v1.Layer](t)(big.Layers())[0]
	hex := must[v1.Hash](t)(layer.Digest()).Hex
	partial := filepath.Join(dir, ".stowage-partial", hex)
	// The export reads through a proxy that stops a layer's body after
	// 1 MiB until the test ends: the kill always lands mid-layer.
	stall := make(chan struct{})
	target, _ := url.Parse(e.srv.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.FlushInterval = -1
	px := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:"+hex) {
			w = &stallWriter{ResponseWriter: w, after: 1 << 20, stall: stall}
		}
		rp.ServeHTTP(w, r)
	}))
	defer func() { close(stall); px.Close() }()
	cmd := exec.Command(binPath, "export", "--registry", px.URL, "-o", dir, "--parallel", "1")
	cmd.Env = serverEnv()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	killed := false
poll:
	for i := 0; i < 60000; i++ { // until the layer is partly written (bounded: 60 s)
		if fi, err := os.Stat(partial); err == nil && fi.Size() > 0 {
			cmd.Process.Kill()
			killed = true
			break
		}
		select {
		case <-exited:
			break poll
		case <-time.After(time.Millisecond):
		}
	}
	<-exited
	if !killed {
		t.Fatal("the export ended before its layer was partly written")
	}
	if _, err := os.Stat(filepath.Join(dir, "index.json")); !os.IsNotExist(err) {
		t.Error("an interrupted export wrote index.json")
	}
	if _, err := os.Stat(filepath.Join(dir, "blobs", "sha256", hex)); !os.IsNotExist(err) {
		t.Error("the interrupted layer is in blobs/")
	}
	out := cliOK(t, "export", "--registry", e.srv.URL, "-o", dir, "--output", "json")
	var rep struct{ Bytes, Fetched int64 }
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Fetched >= rep.Bytes || rep.Fetched == 0 {
		t.Errorf("resumed export: fetched %d of %d (%v): %s", rep.Fetched, rep.Bytes, err, out)
	}
	clean := filepath.Join(t.TempDir(), "clean")
	cliOK(t, "export", "--registry", e.srv.URL, "-o", clean)
	a, b := layoutFiles(t, dir), layoutFiles(t, clean)
	delete(a, "stowage-export.json")
	delete(b, "stowage-export.json")
	if len(a) != len(b) {
		t.Fatalf("resumed layout has %d files, a clean one %d", len(a), len(b))
	}
	for n := range b {
		if !bytes.Equal(a[n], b[n]) {
			t.Errorf("%s differs between the resumed and a clean export", n)
		}
	}
}

// A layout written by go-containerregistry's layout package (what crane
// writes), with a full reference as ref.name, Docker media types and a
// nested index, imports with the same digests.
func TestTransferImportGGCRLayout(t *testing.T) {
	dir := t.TempDir()
	img := mutate.MediaType(ociImage(t, 2, 5000), types.DockerManifestSchema2)
	img = mutate.ConfigMediaType(img, types.DockerConfigJSON)
	p := must[layout.Path](t)(layout.Write(dir, empty.Index))
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "registry.example:5000/crane/made:7"})); err != nil {
		t.Fatal(err)
	}
	// A nested index: an OCI index whose child is a Docker manifest list.
	list := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.DockerManifestList),
		mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}})
	outer := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), mutate.IndexAddendum{Add: list})
	if err := p.AppendIndex(outer, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "nested"})); err != nil {
		t.Fatal(err)
	}
	dst := newGGCR(t)
	cliOK(t, "import", "--registry", dst.srv.URL, "--repository", "crane/made", dir)
	d, err := remote.Head(dst.repo("crane/made").Tag("7"), dst.opts...)
	if err != nil || d.Digest != digestOf(t, img) || d.MediaType != types.DockerManifestSchema2 {
		t.Fatalf("crane/made:7: %+v %v, want %s", d, err, digestOf(t, img))
	}
	d, err = remote.Head(dst.repo("crane/made").Tag("nested"), dst.opts...)
	if err != nil || d.Digest != digestOf(t, outer) {
		t.Fatalf("crane/made:nested: %+v %v, want %s", d, err, digestOf(t, outer))
	}
	if d, err := remote.Head(dst.repo("crane/made").Digest(digestOf(t, list).String()), dst.opts...); err != nil || d.MediaType != types.DockerManifestList {
		t.Fatalf("the nested manifest list: %+v %v", d, err)
	}
}

// An import is a push: an immutable tag that points elsewhere in the
// target refuses it, with the registry's own message, and the rest of the
// import does not hide that.
func TestTransferImportIsAPush(t *testing.T) {
	src := newGGCR(t)
	img := ociImage(t, 1, 2000)
	if err := remote.Write(src.repo("team/app").Tag("v1"), img, src.opts...); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "layout")
	cliOK(t, "export", "--registry", src.srv.URL, "-o", dir)

	dst := newGGCR(t)
	if err := remote.Write(dst.repo("team/app").Tag("v1"), ociImage(t, 1, 1000), dst.opts...); err != nil {
		t.Fatal(err)
	}
	cliOK(t, "immutability", "set", "--registry", dst.srv.URL, "team/.*:v.*")
	out, err := stowageCLI(t, "import", "--registry", dst.srv.URL, dir)
	if err == nil || !strings.Contains(strings.ToLower(out), "immutable") {
		t.Fatalf("import over an immutable tag: %v\n%s", err, out)
	}
	if d, err := remote.Head(dst.repo("team/app").Tag("v1"), dst.opts...); err != nil || d.Digest == digestOf(t, img) {
		t.Fatalf("the immutable tag moved: %v %v", d, err)
	}
	// Into another repository (--repository) it goes.
	cliOK(t, "import", "--registry", dst.srv.URL, "--repository", "copies/app", dir)
	if d, err := remote.Head(dst.repo("copies/app").Tag("v1"), dst.opts...); err != nil || d.Digest != digestOf(t, img) {
		t.Fatalf("copies/app:v1: %v %v", d, err)
	}
}

// stallWriter passes the first after bytes of a response, flushed, then
// blocks until stall is closed.
type stallWriter struct {
	http.ResponseWriter
	after int
	stall chan struct{}
}

func (w *stallWriter) Write(p []byte) (int, error) {
	if w.after <= 0 {
		<-w.stall
		return 0, io.ErrClosedPipe
	}
	n, err := w.ResponseWriter.Write(p[:min(len(p), w.after)])
	w.after -= n
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
	if err == nil && n < len(p) {
		<-w.stall
		err = io.ErrClosedPipe
	}
	return n, err
}
