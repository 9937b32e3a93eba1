package gc

import (
	"testing"

	"github.com/stowage/stowage"
)

// TestDigestOfKey: the orphan sweep takes for a blob only a key that
// stowage.BlobKey would give; anything else under blobs/ is left alone.
func TestDigestOfKey(t *testing.T) {
	d := stowage.Digest("sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae")
	for _, tc := range []struct {
		key string
		ok  bool
	}{
		{stowage.BlobKey(d), true},
		{"blobs/sha256/2c/2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae", true},
		{"blobs/sha256/ff/2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae", false}, // wrong fan-out directory
		{"blobs/sha256/2c/2C26B46B68FFC68FF99B453C1D30413413422D706483BFA0F98A5E886266E7AE", false},
		{"blobs/sha256/2c/2c26b46b", false},
		{"blobs/sha256/2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae", false},
		{"blobs/sha256/2c/2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae/x", false},
		{"uploads/sha256/2c/2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae", false},
	} {
		got, ok := digestOfKey(tc.key)
		if ok != tc.ok || ok && got != d {
			t.Errorf("digestOfKey(%q) = %q, %v; want ok=%v", tc.key, got, ok, tc.ok)
		}
	}
}
