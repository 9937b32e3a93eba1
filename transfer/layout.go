// Package transfer moves images between a Stowage registry and an OCI image
// layout (a directory, or a tar of one): `stowage export` writes one,
// `stowage import` pushes one. Both talk to the registry only through its
// OCI Distribution API (and the management API to list what to export), as
// any client would, so an import is a push: locks, quotas and immutability
// apply as they do for docker or skopeo.
//
// The layout on disk (https://github.com/opencontainers/image-spec/blob/main/image-layout.md):
//
//	oci-layout                      {"imageLayoutVersion":"1.0.0"}
//	index.json                      the images: one descriptor each (tags: ref.name)
//	blobs/sha256/<hex>              every manifest, config and layer, once
//	stowage-export.json             the export's marker (for --since), Stowage only
//	.stowage-partial/<hex>          a blob being written (dir only; never in blobs/)
//
// A blob reaches blobs/ only by a rename after its digest and size were
// verified, so a file there is complete; an interrupted export leaves its
// partial file in .stowage-partial, where the next run resumes it.
package transfer

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/stowage/stowage"
)

// Annotations the layout's index.json uses.
const (
	// AnnotationRefName is the OCI annotation that names an image in a
	// layout: a tag ("v1"), a repository and tag ("team/app:v1") or a
	// full reference ("docker.io/library/alpine:3.20").
	AnnotationRefName = "org.opencontainers.image.ref.name"
	// annotationContainerdName is containerd's (and nerdctl's, BuildKit's)
	// full image name, set beside ref.name by their exports.
	annotationContainerdName = "io.containerd.image.name"
	// AnnotationRepository names the repository of an entry without a tag
	// (an untagged manifest, a referrer) in a Stowage export.
	AnnotationRepository = "io.stowage.repository"
)

// Descriptor is a content descriptor as the layout and manifests carry it.
type Descriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       stowage.Digest    `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	URLs         []string          `json:"urls,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	Platform     json.RawMessage   `json:"platform,omitempty"`
}

// Index is an OCI image index: a layout's index.json, or an index manifest.
type Index struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType,omitempty"`
	Manifests     []Descriptor      `json:"manifests"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

// maxIndexSize bounds index.json: a layout of a million images is ~300 MB
// of descriptors; beyond that the file is not a layout.
const maxIndexSize = 1 << 30

// ParseIndex parses and checks a layout's index.json: schemaVersion 2, each
// descriptor with a valid digest and a size >= 0.
func ParseIndex(b []byte) (*Index, error) {
	var idx Index
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, stowage.Errorf(stowage.CodeManifestInvalid, "index.json is not valid JSON: %v", err)
	}
	if idx.SchemaVersion != 2 {
		return nil, stowage.Errorf(stowage.CodeManifestInvalid, "index.json has schemaVersion %d, want 2", idx.SchemaVersion)
	}
	for i, d := range idx.Manifests {
		if err := checkDescriptor(d); err != nil {
			return nil, stowage.Errorf(stowage.CodeManifestInvalid, "index.json manifests[%d]: %v", i, err)
		}
	}
	return &idx, nil
}

func checkDescriptor(d Descriptor) error {
	if _, err := stowage.ParseDigest(string(d.Digest)); err != nil {
		return fmt.Errorf("digest %q: %v", d.Digest, err)
	}
	if d.Size < 0 {
		return fmt.Errorf("size %d is negative", d.Size)
	}
	return nil
}

// Node is what a manifest points at, as the walk needs it.
type Node struct {
	MediaType string
	Blobs     []Descriptor // config and layers (or an artifact's blobs)
	Children  []Descriptor // an index's manifests
	Subject   *Descriptor
}

// ParseNode reads the references out of a manifest or index body (OCI or
// Docker schema 2). mediaType is the descriptor's, used when the body has
// none. Non-distributable layers with URLs are left out of Blobs (they are
// not in the registry nor in the layout).
func ParseNode(mediaType string, body []byte) (*Node, error) {
	var w struct {
		SchemaVersion int          `json:"schemaVersion"`
		MediaType     string       `json:"mediaType"`
		Config        *Descriptor  `json:"config"`
		Layers        []Descriptor `json:"layers"`
		Blobs         []Descriptor `json:"blobs"`
		Manifests     []Descriptor `json:"manifests"`
		Subject       *Descriptor  `json:"subject"`
	}
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, stowage.Errorf(stowage.CodeManifestInvalid, "manifest is not valid JSON: %v", err)
	}
	if w.SchemaVersion != 2 {
		return nil, stowage.Errorf(stowage.CodeManifestInvalid, "manifest has schemaVersion %d; only schema 2 (OCI, Docker v2) can be moved", w.SchemaVersion)
	}
	n := &Node{MediaType: w.MediaType, Subject: w.Subject}
	if n.MediaType == "" {
		n.MediaType = mediaType
	}
	if n.MediaType == "" {
		if w.Manifests != nil {
			n.MediaType = stowage.MediaTypeOCIIndex
		} else {
			n.MediaType = stowage.MediaTypeOCIManifest
		}
	}
	if w.Config != nil {
		n.Blobs = append(n.Blobs, *w.Config)
	}
	for _, l := range append(w.Layers, w.Blobs...) {
		if len(l.URLs) > 0 && (strings.Contains(l.MediaType, "nondistributable") || strings.Contains(l.MediaType, "foreign")) {
			continue
		}
		n.Blobs = append(n.Blobs, l)
	}
	n.Children = w.Manifests
	for _, d := range append(append([]Descriptor(nil), n.Blobs...), n.Children...) {
		if err := checkDescriptor(d); err != nil {
			return nil, stowage.Errorf(stowage.CodeManifestInvalid, "manifest: %v", err)
		}
	}
	if n.Subject != nil {
		if err := checkDescriptor(*n.Subject); err != nil {
			return nil, stowage.Errorf(stowage.CodeManifestInvalid, "manifest subject: %v", err)
		}
	}
	return n, nil
}

// IsIndex reports whether a media type is a list of manifests.
func IsIndex(mediaType string) bool { return stowage.IsIndex(mediaType) }

// RefName splits the name an index.json entry gives its image into a
// repository ("" if the entry names only a tag) and a tag ("" if none).
// It reads, in order, ref.name and containerd's image name, in the forms
// tools write: "v1" (skopeo, oras), "team/app:v1" (Stowage),
// "registry.example:5000/team/app:v1" (crane, containerd; the registry
// host is dropped), "team/app@sha256:…" (by digest: repository only).
func RefName(d Descriptor) (repo, tag string, err error) {
	ref := d.Annotations[AnnotationRefName]
	if full := d.Annotations[annotationContainerdName]; full != "" && (ref == "" || !strings.ContainsAny(ref, "/:@")) {
		ref = full
	}
	if ref == "" {
		return d.Annotations[AnnotationRepository], "", nil
	}
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
		if ref == "" {
			return "", "", fmt.Errorf("ref.name %q has no repository before '@'", d.Annotations[AnnotationRefName])
		}
		return trimHost(ref)
	}
	slash := strings.LastIndex(ref, "/")
	colon := strings.LastIndex(ref, ":")
	if colon > slash {
		repo, tag = ref[:colon], ref[colon+1:]
	} else if slash < 0 {
		// A bare word: a tag (skopeo's oci:DIR:TAG, oras).
		tag = ref
	} else {
		repo = ref // a repository without a tag: "latest", as docker does
		tag = "latest"
	}
	if repo != "" {
		if repo, _, err = trimHost(repo); err != nil {
			return "", "", err
		}
	}
	if tag != "" {
		if err := stowage.ValidateTag(tag); err != nil {
			return "", "", fmt.Errorf("ref.name %q: %v", d.Annotations[AnnotationRefName], err)
		}
	}
	return repo, tag, nil
}

// trimHost drops a registry host ("docker.io/", "localhost:5000/") from a
// repository name and checks what is left.
func trimHost(repo string) (string, string, error) {
	if i := strings.Index(repo, "/"); i > 0 {
		first := repo[:i]
		if strings.ContainsAny(first, ".:") || first == "localhost" {
			repo = repo[i+1:]
		}
	}
	if err := stowage.ValidateName(repo); err != nil {
		return "", "", fmt.Errorf("repository %q: %v", repo, err)
	}
	return repo, "", nil
}
