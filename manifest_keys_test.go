package stowage_test

import (
	"testing"

	"github.com/stowage/stowage"
)

func TestParseManifestRejectsAmbiguousKeys(t *testing.T) {
	const d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	cfg := `{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + d + `","size":0}`
	for _, tc := range []struct {
		name, body string
		ok         bool
	}{
		{"plain", `{"schemaVersion":2,"config":` + cfg + `,"layers":[]}`, true},
		{"nested objects ok", `{"schemaVersion":2,"config":` + cfg + `,"layers":[` + cfg + `,` + cfg + `],"annotations":{"a":"1","b":"2"}}`, true},
		{"duplicate top-level", `{"schemaVersion":2,"config":` + cfg + `,"layers":[],"layers":[]}`, false},
		{"case variant", `{"schemaVersion":2,"config":` + cfg + `,"layers":[` + cfg + `],"LAYERS":[]}`, false},
		{"duplicate in descriptor", `{"schemaVersion":2,"config":{"mediaType":"x","digest":"` + d + `","Digest":"` + d + `","size":0},"layers":[]}`, false},
		{"duplicate annotation", `{"schemaVersion":2,"config":` + cfg + `,"layers":[],"annotations":{"a":"1","a":"2"}}`, false},
		{"annotations are case-sensitive", `{"schemaVersion":2,"config":` + cfg + `,"layers":[],"annotations":{"a":"1","A":"2"}}`, true},
	} {
		_, err := stowage.ParseManifest(stowage.MediaTypeOCIManifest, []byte(tc.body))
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && stowage.ErrorCodeOf(err) != stowage.CodeManifestInvalid {
			t.Errorf("%s: code %s, want MANIFEST_INVALID", tc.name, stowage.ErrorCodeOf(err))
		}
	}
}
