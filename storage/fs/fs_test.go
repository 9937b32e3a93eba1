package fs_test

import (
	"testing"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/storage/fs"
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
