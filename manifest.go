package stowage

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"strconv"
	"strings"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Media types Stowage stores as manifests.
const (
	MediaTypeOCIManifest      = v1.MediaTypeImageManifest
	MediaTypeOCIIndex         = v1.MediaTypeImageIndex
	MediaTypeDockerManifest   = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerList       = "application/vnd.docker.distribution.manifest.list.v2+json"
	MaxManifestSize           = 4 << 20
	mediaTypeDockerSchema1    = "application/vnd.docker.distribution.manifest.v1+json"
	mediaTypeDockerSchema1Sig = "application/vnd.docker.distribution.manifest.v1+prettyjws"
)

// Descriptor is an OCI content descriptor.
type Descriptor = v1.Descriptor

// IsIndex reports whether a manifest media type is a list of manifests.
func IsIndex(mediaType string) bool {
	return mediaType == MediaTypeOCIIndex || mediaType == MediaTypeDockerList
}

// Manifest is a parsed, validated manifest: what Stowage needs to know of it.
type Manifest struct {
	MediaType    string
	ArtifactType string // for the referrers API: artifactType, else the config's media type
	Config       *Descriptor
	Layers       []Descriptor
	Manifests    []Descriptor
	Subject      *Descriptor
	Annotations  map[string]string
}

// References lists what the manifest points at: its config and layers
// (blobs) or its children (manifests), the subject left out. PutManifest
// records each one the repository holds as a reference (the collector keeps
// it); only an external layer (see external) may be absent.
func (m *Manifest) References() []ManifestRef {
	descs := m.descriptors()
	refs := make([]ManifestRef, len(descs))
	for i, d := range descs {
		refs[i] = ManifestRef{Digest: d.Digest, Kind: d.Kind}
	}
	return refs
}

// manifestDescriptor is one descriptor of a manifest, with what it is.
type manifestDescriptor struct {
	Descriptor
	Role string // for messages: "config", "layer 2 (layers[1])", "manifest 1 (manifests[0])"
	Kind RefKind
}

func (m *Manifest) descriptors() []manifestDescriptor {
	var out []manifestDescriptor
	if m.Config != nil {
		out = append(out, manifestDescriptor{*m.Config, "config", RefBlob})
	}
	for i, l := range m.Layers {
		out = append(out, manifestDescriptor{l, fmt.Sprintf("layer %d (layers[%d])", i+1, i), RefBlob})
	}
	for i, c := range m.Manifests {
		out = append(out, manifestDescriptor{c, fmt.Sprintf("manifest %d (manifests[%d])", i+1, i), RefManifest})
	}
	return out
}

// Non-distributable layer media types: the OCI ones (deprecated in the image
// spec, still pushed) and Docker's foreign layers (Windows base layers).
var nondistributableTypes = map[string]bool{
	"application/vnd.oci.image.layer.nondistributable.v1.tar":      true,
	"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": true,
	"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd": true,
	"application/vnd.docker.image.rootfs.foreign.diff.tar":         true,
	"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip":    true,
}

// external reports whether a layer descriptor may be missing from the
// registry: a non-distributable layer that says where clients fetch it
// (urls). Whether it is a reference depends on whether the repository
// holds it, not on its media type: air-gapped registries push such layers
// on purpose, and then they are kept like any other.
func external(d Descriptor) bool {
	return nondistributableTypes[d.MediaType] && len(d.URLs) > 0
}

// wireManifest is the union of the manifest formats Stowage accepts.
type wireManifest struct {
	SchemaVersion *int              `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	ArtifactType  string            `json:"artifactType"`
	Config        *Descriptor       `json:"config"`
	Layers        []Descriptor      `json:"layers"`
	Manifests     []Descriptor      `json:"manifests"`
	Subject       *Descriptor       `json:"subject"`
	Annotations   map[string]string `json:"annotations"`
}

// ParseManifest validates a manifest body sent with the given Content-Type
// and returns what it holds. Every failure is a MANIFEST_INVALID error that
// says what is wrong.
func ParseManifest(contentType string, body []byte) (*Manifest, error) {
	if len(body) > MaxManifestSize {
		return nil, Errorf(CodeManifestInvalid, "manifest is %d bytes; the limit is %d (4 MiB)", len(body), MaxManifestSize)
	}
	if err := checkKeys(body); err != nil {
		return nil, err
	}
	var w wireManifest
	// json.Unmarshal, unlike a Decoder, rejects anything after the object.
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, &Error{Code: CodeManifestInvalid, Message: "manifest is not valid JSON: " + err.Error(), Err: err}
	}
	if w.SchemaVersion == nil {
		return nil, Errorf(CodeManifestInvalid, "manifest has no schemaVersion")
	}
	if *w.SchemaVersion != 2 {
		return nil, Errorf(CodeManifestInvalid, "manifest schemaVersion %d is not supported: push an OCI or Docker schema 2 manifest", *w.SchemaVersion)
	}
	ct := ""
	if contentType != "" {
		if t, _, err := mime.ParseMediaType(contentType); err == nil {
			ct = t
		}
	}
	mt := w.MediaType
	switch {
	case mt != "" && ct != "" && ct != mt && !genericContentType(ct):
		return nil, Errorf(CodeManifestInvalid, "manifest mediaType %q does not match the Content-Type %q it was sent with", mt, ct)
	case mt == "" && ct != "" && !genericContentType(ct):
		mt = ct
	case mt == "":
		if w.Manifests != nil {
			mt = MediaTypeOCIIndex
		} else {
			mt = MediaTypeOCIManifest
		}
	}
	m := &Manifest{MediaType: mt, ArtifactType: w.ArtifactType, Config: w.Config, Layers: w.Layers,
		Manifests: w.Manifests, Subject: w.Subject, Annotations: w.Annotations}
	switch mt {
	case MediaTypeOCIManifest, MediaTypeDockerManifest:
		if w.Config == nil {
			return nil, Errorf(CodeManifestInvalid, "image manifest has no config descriptor")
		}
		if w.Manifests != nil {
			return nil, Errorf(CodeManifestInvalid, "image manifest must not have a manifests list (is it an index?)")
		}
		if err := checkDescriptor("config", *w.Config); err != nil {
			return nil, err
		}
		for i, l := range w.Layers {
			if err := checkDescriptor("layers["+itoa(i)+"]", l); err != nil {
				return nil, err
			}
		}
		if m.ArtifactType == "" {
			m.ArtifactType = w.Config.MediaType
		}
	case MediaTypeOCIIndex, MediaTypeDockerList:
		if w.Manifests == nil {
			return nil, Errorf(CodeManifestInvalid, "index has no manifests list")
		}
		if w.Config != nil || w.Layers != nil {
			return nil, Errorf(CodeManifestInvalid, "index must not have config or layers (is it an image manifest?)")
		}
		for i, c := range w.Manifests {
			if err := checkDescriptor("manifests["+itoa(i)+"]", c); err != nil {
				return nil, err
			}
		}
	case mediaTypeDockerSchema1, mediaTypeDockerSchema1Sig:
		return nil, Errorf(CodeManifestInvalid, "Docker schema 1 manifests are deprecated and not supported: push schema 2 or OCI")
	default:
		return nil, Errorf(CodeManifestInvalid, "manifest media type %q is not supported: use %s, %s, %s or %s",
			mt, MediaTypeOCIManifest, MediaTypeOCIIndex, MediaTypeDockerManifest, MediaTypeDockerList)
	}
	if w.Subject != nil {
		if err := checkDescriptor("subject", *w.Subject); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// checkKeys rejects objects with duplicate keys, or keys equal but for case
// ("layers" and "LAYERS"). Go's decoder matches keys case-insensitively and
// keeps the last duplicate, while other clients may read the first: a
// manifest must not mean one thing to Stowage and another to a client.
func checkKeys(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	type frame struct {
		object bool
		keys   map[string]bool
		key    bool   // the next string token in this object is a key
		last   string // the last key read in this object
		exact  bool   // keys compared exactly: a map (annotations), not a struct
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return nil // malformed JSON is reported by the decoder proper
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.object && top.key {
			if k, ok := tok.(string); ok {
				lk := k
				if !top.exact {
					lk = strings.ToLower(k)
				}
				if top.keys[lk] {
					return Errorf(CodeManifestInvalid, "manifest has the key %q twice (field names are compared ignoring case)", trunc(k))
				}
				top.keys[lk], top.key, top.last = true, false, k
				continue
			}
		}
		switch tok {
		case json.Delim('{'):
			exact := top != nil && top.object && top.last == "annotations"
			stack = append(stack, &frame{object: true, keys: map[string]bool{}, key: true, exact: exact})
			continue
		case json.Delim('['):
			stack = append(stack, &frame{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		// A value ended: in an object, a key comes next.
		if len(stack) > 0 && stack[len(stack)-1].object {
			stack[len(stack)-1].key = true
		}
	}
}

// genericContentType is what some clients send when they do not set one.
func genericContentType(ct string) bool {
	return ct == "application/json" || ct == "application/octet-stream" || ct == "text/plain"
}

func checkDescriptor(where string, d Descriptor) error {
	if err := d.Digest.Validate(); err != nil {
		return &Error{Code: CodeManifestInvalid, Message: where + ": invalid digest " + quote(string(d.Digest)), Err: err}
	}
	if d.Size < 0 {
		return Errorf(CodeManifestInvalid, "%s: negative size %d", where, d.Size)
	}
	if d.MediaType == "" {
		return Errorf(CodeManifestInvalid, "%s: descriptor has no mediaType", where)
	}
	if d.Data != nil {
		if int64(len(d.Data)) != d.Size {
			return Errorf(CodeManifestInvalid, "%s: embedded data has %d bytes, the descriptor says %d", where, len(d.Data), d.Size)
		}
		if d.Digest.Algorithm().FromBytes(d.Data) != d.Digest {
			return Errorf(CodeManifestInvalid, "%s: embedded data does not match digest %s", where, d.Digest)
		}
	}
	return nil
}

// Index builds an OCI image index of descriptors (the referrers response).
func Index(descs []Descriptor) ([]byte, error) {
	if descs == nil {
		descs = []Descriptor{}
	}
	return json.Marshal(struct {
		SchemaVersion int          `json:"schemaVersion"`
		MediaType     string       `json:"mediaType"`
		Manifests     []Descriptor `json:"manifests"`
	}{2, MediaTypeOCIIndex, descs})
}

func itoa(i int) string { return strconv.Itoa(i) }
