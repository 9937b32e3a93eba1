package fs_test

import (
	"testing"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/storage/fs"
	"github.com/stowage/stowage/storage/fs/faultfs"
	"github.com/stowage/stowage/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) stowage.Backend {
		b, err := fs.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
}

// TestConformanceFaultFS runs the suite on the in-memory file system the
// power-loss tests use, so that it behaves as a file system does.
func TestConformanceFaultFS(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) stowage.Backend {
		b, err := fs.NewWithFS("/data", faultfs.New())
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
}
