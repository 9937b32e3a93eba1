package transfer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRefName(t *testing.T) {
	for _, tc := range []struct {
		ann            map[string]string
		repo, tag, bad string
	}{
		{ann: map[string]string{AnnotationRefName: "v1"}, tag: "v1"},                                                      // skopeo oci:DIR:v1, oras
		{ann: map[string]string{AnnotationRefName: "team/app:v1"}, repo: "team/app", tag: "v1"},                           // stowage export
		{ann: map[string]string{AnnotationRefName: "docker.io/library/alpine:3.20"}, repo: "library/alpine", tag: "3.20"}, // crane, full reference
		{ann: map[string]string{AnnotationRefName: "localhost:5000/a/b:latest"}, repo: "a/b", tag: "latest"},
		{ann: map[string]string{AnnotationRefName: "127.0.0.1:5000/a:x"}, repo: "a", tag: "x"},
		{ann: map[string]string{AnnotationRefName: "team/app"}, repo: "team/app", tag: "latest"},
		{ann: map[string]string{AnnotationRefName: "team/app@sha256:" + strings.Repeat("a", 64)}, repo: "team/app"},
		{ann: map[string]string{AnnotationRefName: "3.20", annotationContainerdName: "docker.io/library/alpine:3.20"}, repo: "library/alpine", tag: "3.20"}, // containerd
		{ann: map[string]string{AnnotationRepository: "team/sig"}, repo: "team/sig"},                                                                        // a stowage referrer
		{ann: nil},
		{ann: map[string]string{AnnotationRefName: "UPPER/x:1"}, bad: "repository"},
		{ann: map[string]string{AnnotationRefName: "a:bad tag"}, bad: "tag"},
		{ann: map[string]string{AnnotationRefName: "@sha256:x"}, bad: "no repository"},
	} {
		repo, tag, err := RefName(Descriptor{Annotations: tc.ann})
		if tc.bad != "" {
			if err == nil || !strings.Contains(err.Error(), tc.bad) {
				t.Errorf("RefName(%v) = %q %q %v, want an error about %s", tc.ann, repo, tag, err, tc.bad)
			}
			continue
		}
		if err != nil || repo != tc.repo || tag != tc.tag {
			t.Errorf("RefName(%v) = %q %q %v, want %q %q", tc.ann, repo, tag, err, tc.repo, tc.tag)
		}
	}
}

const (
	d1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	d2 = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

func TestParseIndexAndNode(t *testing.T) {
	for _, tc := range []struct{ in, bad string }{
		{in: `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + d1 + `","size":3}]}`},
		{in: `{"schemaVersion":2,"manifests":[]}`},
		{in: `{"schemaVersion":1,"manifests":[]}`, bad: "schemaVersion"},
		{in: `{"schemaVersion":2,"manifests":[{"digest":"sha256:zz","size":3}]}`, bad: "digest"},
		{in: `{"schemaVersion":2,"manifests":[{"digest":"` + d1 + `","size":-1}]}`, bad: "negative"},
		{in: `[`, bad: "JSON"},
	} {
		_, err := ParseIndex([]byte(tc.in))
		if (err != nil) != (tc.bad != "") || err != nil && !strings.Contains(err.Error(), tc.bad) {
			t.Errorf("ParseIndex(%s) = %v, want error %q", tc.in, err, tc.bad)
		}
	}
	// A Docker schema 2 image: config and layers; a foreign layer with URLs is left out.
	n, err := ParseNode("", []byte(`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
		"config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"`+d1+`","size":2},
		"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"`+d2+`","size":5},
		{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"`+d2+`","size":5,"urls":["https://x"]}]}`))
	if err != nil || len(n.Blobs) != 2 || n.MediaType != "application/vnd.docker.distribution.manifest.v2+json" {
		t.Fatalf("docker manifest: %+v %v", n, err)
	}
	// An index without mediaType in the body: the descriptor's, else by shape.
	n, err = ParseNode("", []byte(`{"schemaVersion":2,"manifests":[{"digest":"`+d1+`","size":2}],"subject":{"digest":"`+d2+`","size":1}}`))
	if err != nil || len(n.Children) != 1 || n.Subject == nil || !IsIndex(n.MediaType) {
		t.Fatalf("index: %+v %v", n, err)
	}
	if _, err := ParseNode("", []byte(`{"schemaVersion":1}`)); err == nil {
		t.Error("schema 1 accepted")
	}
}

// FuzzLayoutIndex feeds index.json and manifest parsing arbitrary bytes:
// no panic, and whatever parses names valid digests and sane names.
func FuzzLayoutIndex(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"` + d1 + `","size":3,"annotations":{"org.opencontainers.image.ref.name":"team/app:v1"}}]}`))
	f.Add([]byte(`{"schemaVersion":2,"manifests":[{"digest":"` + d2 + `","size":0,"annotations":{"org.opencontainers.image.ref.name":"docker.io/library/alpine@sha256:aa","io.containerd.image.name":"x"}}]}`))
	f.Add([]byte(`{"schemaVersion":2,"config":{"digest":"` + d1 + `","size":1},"layers":[{"digest":"` + d2 + `","size":2,"urls":["u"]}],"blobs":[]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if idx, err := ParseIndex(b); err == nil {
			for _, d := range idx.Manifests {
				if checkDescriptor(d) != nil {
					t.Fatalf("accepted bad descriptor %+v", d)
				}
				repo, tag, err := RefName(d)
				if err == nil && strings.ContainsAny(repo+tag, "@ \n") {
					t.Fatalf("RefName(%v) = %q %q", d.Annotations, repo, tag)
				}
			}
			if _, err := json.Marshal(idx); err != nil {
				t.Fatal(err)
			}
		}
		if n, err := ParseNode("", b); err == nil {
			for _, d := range append(n.Blobs, n.Children...) {
				if checkDescriptor(d) != nil {
					t.Fatalf("node with bad descriptor %+v", d)
				}
			}
		}
	})
}

// With --repository, two repositories' images under one tag are refused
// before anything is pushed.
func TestReadImagesCollision(t *testing.T) {
	dir := t.TempDir()
	idx := `{"schemaVersion":2,"manifests":[
		{"digest":"` + d1 + `","size":1,"annotations":{"org.opencontainers.image.ref.name":"a/x:1"}},
		{"digest":"` + d2 + `","size":1,"annotations":{"org.opencontainers.image.ref.name":"b/y:1"}},
		{"digest":"` + d2 + `","size":1,"annotations":{"org.opencontainers.image.ref.name":"1"}}]}`
	if err := os.WriteFile(filepath.Join(dir, "index.json"), []byte(idx), 0o644); err != nil {
		t.Fatal(err)
	}
	if imgs, err := ReadImages(DirSource{dir}, ""); err == nil {
		t.Fatalf("an entry without a repository and no --repository: %+v", imgs)
	}
	if _, err := ReadImages(DirSource{dir}, "one/repo"); err == nil || !strings.Contains(err.Error(), "one/repo:1") {
		t.Fatalf("collision under --repository: %v", err)
	}
}
