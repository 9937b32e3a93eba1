package azure

import (
	"context"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
)

// Knobs for tests: small limits make the large-object paths run on small
// objects.

// SetCopyLimits sets the largest object Commit copies with one Copy Blob From
// URL, and the piece size of larger copies.
func SetCopyLimits(b *Backend, limit, piece int64) { b.copyLimit, b.copyBlock = limit, piece }

// SetListPageSize sets List's page size.
func SetListPageSize(b *Backend, n int32) { b.pageSize = n }

// SetNoFromURL makes restaging download and upload instead of Put Block From URL.
func SetNoFromURL(b *Backend) { b.noFromURL = true }

// Blocks returns the sizes of the blob's committed blocks and the number of
// its uncommitted blocks.
func Blocks(ctx context.Context, b *Backend, key string) (committed []int64, uncommitted int, err error) {
	bb, err := b.blockBlob(key)
	if err != nil {
		return nil, 0, err
	}
	resp, err := bb.GetBlockList(ctx, blockblob.BlockListTypeAll, nil)
	if err != nil {
		return nil, 0, b.fail("block list", key, err)
	}
	for _, x := range resp.CommittedBlocks {
		committed = append(committed, *x.Size)
	}
	return committed, len(resp.UncommittedBlocks), nil
}
