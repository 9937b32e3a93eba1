package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stowage/stowage"
)

// putBlob pushes b to repo (monolithic POST).
func putBlob(t *testing.T, base, repo string, b []byte) {
	t.Helper()
	resp, err := http.Post(base+"/v2/"+repo+"/blobs/uploads/?digest="+digestOf(b), "application/octet-stream", bytes.NewReader(b))
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("push blob: %v %v", resp, err)
	}
	resp.Body.Close()
}

// putManifest pushes an OCI image manifest to repo under ref.
func putManifest(t *testing.T, base, repo, ref, body string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, base+"/v2/"+repo+"/manifests/"+ref, strings.NewReader(body))
	req.Header.Set("Content-Type", stowage.MediaTypeOCIManifest)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("push manifest: %v %v", resp, err)
	}
	resp.Body.Close()
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v: %s", url, err, b)
	}
}

// filesContaining lists the files under dir whose bytes contain one of the
// markers.
func filesContaining(t *testing.T, dir string, markers ...string) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range markers {
			if bytes.Contains(b, []byte(m)) {
				hits = append(hits, fmt.Sprintf("%s holds %q", p, m))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}

// TestImageContentNotInMetadata: with encryption at rest (the default),
// nothing of an image's content is readable anywhere in the data directory:
// not in the objects (encrypted), and not in the metadata database, its WAL
// or shared memory (which is not encrypted), while the referrers API and the
// ACR listing still show annotations, artifact type and platform, and a
// chunked upload resumes from its (sealed) hash state.
func TestImageContentNotInMetadata(t *testing.T) {
	dir := t.TempDir()
	m := startMain(t, dir)
	base := "http://" + m.Addr
	mark := func(what string) string {
		b := make([]byte, 8)
		rand.Read(b)
		return "marker-" + what + "-" + hex.EncodeToString(b)
	}
	annotation, refAnnotation, artifactType, arch := mark("annotation"), mark("referrer"), "application/vnd."+mark("type"), mark("arch")

	config := []byte(fmt.Sprintf(`{"architecture":%q,"os":"linux"}`, arch))
	layer := []byte("a layer")
	empty := []byte("{}")
	for _, b := range [][]byte{config, layer, empty} {
		putBlob(t, base, "app", b)
	}
	image := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},`+
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}],`+
		`"annotations":{"org.example.secret":%q}}`, digestOf(config), len(config), digestOf(layer), len(layer), annotation)
	putManifest(t, base, "app", "v1", image)
	imageDigest := digestOf([]byte(image))
	referrer := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":%q,`+
		`"config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":%q,"size":2},"layers":[],`+
		`"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":%d},`+
		`"annotations":{"org.example.note":%q}}`, artifactType, digestOf(empty), imageDigest, len(image), refAnnotation)
	putManifest(t, base, "app", digestOf([]byte(referrer)), referrer)

	// The APIs still show what the manifests say.
	var idx struct {
		Manifests []stowage.Descriptor `json:"manifests"`
	}
	getJSON(t, base+"/v2/app/referrers/"+imageDigest, &idx)
	if len(idx.Manifests) != 1 || idx.Manifests[0].ArtifactType != artifactType || idx.Manifests[0].Annotations["org.example.note"] != refAnnotation {
		t.Errorf("referrers = %+v, want the referrer with its artifact type and annotation", idx.Manifests)
	}
	getJSON(t, base+"/v2/app/referrers/"+imageDigest+"?artifactType=other", &idx)
	if len(idx.Manifests) != 0 {
		t.Errorf("referrers filtered by another artifact type = %+v, want none", idx.Manifests)
	}
	var acr struct {
		Manifests []struct{ Digest, Architecture, OS string } `json:"manifests"`
	}
	getJSON(t, base+"/acr/v1/app/_manifests", &acr)
	found := false
	for _, mf := range acr.Manifests {
		found = found || (mf.Digest == imageDigest && mf.Architecture == arch && mf.OS == "linux")
	}
	if !found {
		t.Errorf("ACR manifests = %+v, want %s with architecture %s", acr.Manifests, imageDigest, arch)
	}

	// A chunked upload in progress: its hash state, in the database, holds
	// the last bytes received (those not hashed yet: here all 50 of them).
	uploadMark := (mark("upload") + mark("tail"))[:50]
	resp, err := http.Post(base+"/v2/app/blobs/uploads/", "", nil)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("start upload: %v %v", resp, err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, "http") {
		loc = base + loc
	}
	patch := func(loc string, b []byte, start int) string {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPatch, loc, bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("Content-Range", fmt.Sprintf("%d-%d", start, start+len(b)-1))
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusAccepted {
			t.Fatalf("patch: %v %v", resp, err)
		}
		resp.Body.Close()
		if l := resp.Header.Get("Location"); l != "" {
			if !strings.HasPrefix(l, "http") {
				l = base + l
			}
			return l
		}
		return loc
	}
	loc = patch(loc, []byte(uploadMark), 0)
	if hits := filesContaining(t, dir, uploadMark); len(hits) > 0 {
		t.Errorf("upload data in the clear in the data directory while the upload is in progress:\n%s", strings.Join(hits, "\n"))
	}
	// The upload resumes from the sealed state and completes.
	rest := bytes.Repeat([]byte("0123456789"), 20)
	loc = patch(loc, rest, len(uploadMark))
	last := []byte("and the last chunk, with the final PUT")
	whole := append(append([]byte(uploadMark), rest...), last...)
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	req, _ := http.NewRequest(http.MethodPut, loc+sep+"digest="+digestOf(whole), bytes.NewReader(last))
	req.Header.Set("Content-Type", "application/octet-stream")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("finish upload: %v %v", resp, err)
	}
	if resp, err := http.Get(base + "/v2/app/blobs/" + digestOf(whole)); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("pull the uploaded blob: %v %v", resp, err)
	} else if b, _ := io.ReadAll(resp.Body); !bytes.Equal(b, whole) {
		t.Errorf("pulled %q, want %q", b, whole)
	}

	markers := []string{annotation, refAnnotation, artifactType, arch, uploadMark}
	// While serving (the WAL holds the latest writes) and after a clean stop.
	if hits := filesContaining(t, dir, markers...); len(hits) > 0 {
		t.Errorf("image content in the clear in the data directory while serving:\n%s", strings.Join(hits, "\n"))
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if hits := filesContaining(t, dir, markers...); len(hits) > 0 {
		t.Errorf("image content in the clear in the data directory after stopping:\n%s", strings.Join(hits, "\n"))
	}
}
