package remote

import (
	"strings"

	"github.com/stowage/stowage"
)

// Image names an image on another registry.
type Image struct {
	Registry string // host[:port]; Docker Hub is registry-1.docker.io
	Repo     string
	Ref      stowage.Reference
}

func (i Image) String() string {
	sep := ":"
	if i.Ref.IsDigest() {
		sep = "@"
	}
	return i.Registry + "/" + i.Repo + sep + i.Ref.String()
}

// ParseImage parses "REGISTRY/REPO:TAG", "REGISTRY/REPO@DIGEST" (a tag
// before the digest is allowed and ignored) or "REGISTRY/REPO" (tag
// latest). The first path element is the registry when it has a '.' or a
// ':' or is "localhost", as for docker pull; otherwise the image is on
// Docker Hub (docker.io/alpine is registry-1.docker.io/library/alpine).
func ParseImage(s string) (Image, error) {
	bad := func(why string) (Image, error) {
		return Image{}, stowage.Errorf(stowage.CodeNameInvalid, "%q: %s; want REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@sha256:…, e.g. ghcr.io/org/app:v1", s, why)
	}
	s = strings.TrimPrefix(strings.TrimPrefix(s, "https://"), "http://")
	var img Image
	name := s
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		d, err := stowage.ParseDigest(s[i+1:])
		if err != nil {
			return bad("the digest is not valid")
		}
		img.Ref, name = stowage.Reference{Digest: d}, s[:i]
	}
	slash := strings.LastIndexByte(name, '/')
	if i := strings.LastIndexByte(name, ':'); i > slash {
		if !img.Ref.IsDigest() {
			img.Ref.Tag = name[i+1:]
			if err := stowage.ValidateTag(img.Ref.Tag); err != nil {
				return bad("the tag is not valid")
			}
		}
		name = name[:i]
	}
	if img.Ref == (stowage.Reference{}) {
		img.Ref.Tag = "latest"
	}
	host, repo, ok := strings.Cut(name, "/")
	if !ok || !(strings.ContainsAny(host, ".:") || host == "localhost") {
		host, repo = "docker.io", name
	}
	if host == "docker.io" || host == "index.docker.io" {
		host = "registry-1.docker.io"
		if !strings.Contains(repo, "/") {
			repo = "library/" + repo
		}
	}
	if host == "" || repo == "" {
		return bad("the registry or the repository is missing")
	}
	if err := stowage.ValidateName(repo); err != nil {
		return bad("the repository name is not valid")
	}
	img.Registry, img.Repo = host, repo
	return img, nil
}
