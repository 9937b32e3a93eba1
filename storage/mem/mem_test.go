package mem_test

import (
	"testing"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/storage/mem"
	"github.com/stowage/stowage/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) stowage.Backend { return mem.New() })
}
