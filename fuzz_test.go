package stowage_test

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/stowage/stowage"
)

// Oracles: the grammars of the OCI distribution spec, as regular expressions.
var (
	nameRE   = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$`)
	tagRE    = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
	digestRE = regexp.MustCompile(`^(sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128})$`)
)

// digestOracle reports whether s is a digest of a supported algorithm.
func digestOracle(s string) (bool, string) { return digestRE.MatchString(s), "" }

func FuzzValidateName(f *testing.F) {
	for _, s := range []string{
		"a", "library/ubuntu", "a.b", "a_b", "a__b", "a___b", "a-b", "a---b", "a-_b", "a._b",
		"a/", "/a", "a//b", "A", "a..b", "-a", "a-", "_a", "a_", ".a", "a.", "foo/blobs/uploads",
		strings.Repeat("a", 255), strings.Repeat("a", 256), strings.Repeat("ab/", 85), "é", "a\x00b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := stowage.ValidateName(name)
		want := len(name) <= stowage.MaxNameLength && nameRE.MatchString(name)
		if (err == nil) != want {
			t.Fatalf("ValidateName(%q) = %v, grammar says valid=%v", name, err, want)
		}
		if err != nil && stowage.ErrorCodeOf(err) != stowage.CodeNameInvalid {
			t.Fatalf("ValidateName(%q): code %s, want NAME_INVALID", name, stowage.ErrorCodeOf(err))
		}
	})
}

func FuzzValidateTag(f *testing.F) {
	for _, s := range []string{
		"latest", "v1.0.0", "_", ".a", "-a", "a:b", "a/b", "", "A-Z_a.z",
		strings.Repeat("a", 128), strings.Repeat("a", 129), "é", "a\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tag string) {
		err := stowage.ValidateTag(tag)
		want := tagRE.MatchString(tag)
		if (err == nil) != want {
			t.Fatalf("ValidateTag(%q) = %v, grammar says valid=%v", tag, err, want)
		}
		if err != nil && stowage.ErrorCodeOf(err) != stowage.CodeTagInvalid {
			t.Fatalf("ValidateTag(%q): code %s, want TAG_INVALID", tag, stowage.ErrorCodeOf(err))
		}
	})
}

func FuzzParseDigest(f *testing.F) {
	for _, s := range []string{
		dig256, dig384, dig512, "sha256:", "sha256:" + strings.ToUpper(hex64), "md5:" + strings.Repeat("a", 32),
		"sha256+b64:abc", ":", "", "a:b", dig256 + "\n", "sha512:" + hex64,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := stowage.ParseDigest(s)
		want, _ := digestOracle(s)
		if (err == nil) != want {
			t.Fatalf("ParseDigest(%q) = %q, %v; oracle says valid=%v", s, d, err, want)
		}
		if err != nil {
			if stowage.ErrorCodeOf(err) != stowage.CodeDigestInvalid {
				t.Fatalf("ParseDigest(%q): code %s", s, stowage.ErrorCodeOf(err))
			}
			return
		}
		if string(d) != s {
			t.Fatalf("ParseDigest(%q) = %q", s, d)
		}
		// A parsed digest is usable without panics.
		_ = stowage.BlobKey(d)
		_ = d.Algorithm().FromString(s)
	})
}

func FuzzParseReference(f *testing.F) {
	for _, s := range []string{"latest", dig256, dig512, "sha256:abc", ".x", "", "a:b", "v1.0", strings.Repeat("a", 129)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ref, err := stowage.ParseReference(s)
		var want bool
		if strings.Contains(s, ":") {
			want, _ = digestOracle(s)
		} else {
			want = tagRE.MatchString(s)
		}
		if (err == nil) != want {
			t.Fatalf("ParseReference(%q) = %+v, %v; oracle says valid=%v", s, ref, err, want)
		}
		if err != nil {
			if c := stowage.ErrorCodeOf(err); c != stowage.CodeDigestInvalid && c != stowage.CodeTagInvalid {
				t.Fatalf("ParseReference(%q): code %s", s, c)
			}
			return
		}
		if ref.String() != s {
			t.Fatalf("ParseReference(%q).String() = %q", s, ref.String())
		}
		if ref.IsDigest() == (ref.Tag != "") {
			t.Fatalf("ParseReference(%q) = %+v: exactly one of tag and digest must be set", s, ref)
		}
	})
}

// wireOf re-encodes a parsed manifest in the wire format.
func wireOf(m *stowage.Manifest) []byte {
	b, err := json.Marshal(struct {
		SchemaVersion int                  `json:"schemaVersion"`
		MediaType     string               `json:"mediaType"`
		ArtifactType  string               `json:"artifactType,omitempty"`
		Config        *stowage.Descriptor  `json:"config"`
		Layers        []stowage.Descriptor `json:"layers"`
		Manifests     []stowage.Descriptor `json:"manifests"`
		Subject       *stowage.Descriptor  `json:"subject,omitempty"`
		Annotations   map[string]string    `json:"annotations,omitempty"`
	}{2, m.MediaType, m.ArtifactType, m.Config, m.Layers, m.Manifests, m.Subject, m.Annotations})
	if err != nil {
		panic(err)
	}
	return b
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func FuzzParseManifest(f *testing.F) {
	for _, c := range manifestCases() {
		if len(c.body) < 64<<10 {
			f.Add(c.ct, []byte(c.body))
		}
	}
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		m, err := stowage.ParseManifest(ct, body)
		if err != nil {
			if m != nil {
				t.Fatalf("manifest returned with error %v", err)
			}
			if c := stowage.ErrorCodeOf(err); c != stowage.CodeManifestInvalid {
				t.Fatalf("error code %s (%v), want MANIFEST_INVALID", c, err)
			}
			return
		}
		switch m.MediaType {
		case stowage.MediaTypeOCIManifest, stowage.MediaTypeDockerManifest:
			if m.Config == nil || m.Manifests != nil {
				t.Fatalf("image manifest accepted without config or with manifests: %+v", m)
			}
		case stowage.MediaTypeOCIIndex, stowage.MediaTypeDockerList:
			if m.Manifests == nil || m.Config != nil || m.Layers != nil {
				t.Fatalf("index accepted with config/layers or without manifests: %+v", m)
			}
		default:
			t.Fatalf("accepted unsupported media type %q", m.MediaType)
		}
		// An accepted body must be one JSON value, as every client parses it.
		if !json.Valid(body) {
			t.Fatalf("accepted a manifest that is not valid JSON: %q", body)
		}
		// Every reference is a valid digest.
		for _, r := range m.References() {
			if err := r.Digest.Validate(); err != nil {
				t.Fatalf("accepted reference with invalid digest %q", r.Digest)
			}
		}
		want := mustJSON(t, m)
		// Parsing again, with the same Content-Type or with the media type it
		// resolved to, gives the same manifest.
		for _, ct2 := range []string{ct, m.MediaType} {
			m2, err := stowage.ParseManifest(ct2, body)
			if err != nil {
				t.Fatalf("re-parse with Content-Type %q failed: %v", ct2, err)
			}
			if got := mustJSON(t, m2); got != want {
				t.Fatalf("re-parse with Content-Type %q differs:\n got %s\nwant %s", ct2, got, want)
			}
		}
		// Re-encoding what was parsed gives a manifest that parses the same.
		wire := wireOf(m)
		m3, err := stowage.ParseManifest(m.MediaType, wire)
		if err != nil {
			t.Fatalf("re-encoded manifest rejected: %v\n%s", err, wire)
		}
		if got := mustJSON(t, m3); got != want {
			t.Fatalf("re-encoded manifest parses differently:\n got %s\nwant %s", got, want)
		}
		if !bytes.Equal(wireOf(m3), wire) {
			t.Fatalf("re-encoding is not stable")
		}
	})
}
