package azure

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
)

// Chunked uploads (stowage.Appender) on block lists.
//
// The upload object is a block blob whose committed block list is the whole
// state of the upload: there is nothing in memory, so a chunk may arrive at
// another Stowage process, or after a restart. Append(key, off, r):
//
//  1. reads the committed block list (Get Block List) and its ETag; the
//     blocks' sizes give their offsets;
//  2. keeps the blocks that end at or before off; if off falls inside a
//     block, the bytes of that block before off are staged again as a new
//     block, server-side (Put Block From URL from the committed blob, with
//     a read-only SAS), so a retried or resumed append, or the encryption
//     decorator sealing its last segment again, drops exactly the bytes at
//     and after off without them passing through Stowage;
//  3. stages r's bytes as new blocks while reading them (Put Block; at most
//     Concurrency+1 blocks in memory, so a docker-style push of a whole layer
//     in one PATCH streams), then
//  4. commits kept + restaged + new blocks (Put Block List, If-Match the
//     ETag of step 1, so two writers of one upload cannot interleave).
//
// A failed append commits nothing: the object stays as it was, and its staged
// blocks are discarded by the next commit. Block IDs are the block's offset
// and 16 random bytes, so they are unique and all 32 characters long.
//
// Commit(src, dst, size) cuts src to size the same way (it is an error if it
// is shorter), then copies it server-side to dst: one Copy Blob From URL up
// to 256 MiB (synchronous), else Put Block From URL of 256 MiB ranges onto
// dst and one Put Block List, which (unlike an asynchronous Start Copy)
// leaves nothing half-copied visible at dst and needs no polling. Then src
// is deleted. So the blob's bytes cross the network from Stowage once (in
// Append); Azure copies them once more inside the storage account, since
// blobs cannot be renamed.

// block is a committed block and where it is in the blob. An empty id is a
// blob without a block list (written with one Put Blob): its bytes are
// always staged again from the blob.
type block struct {
	id          string
	start, size int64
}

// committed returns the blob's committed blocks, its size and its ETag.
func (b *Backend) committed(ctx context.Context, bb *blockblob.Client) ([]block, int64, azcore.ETag, error) {
	resp, err := bb.GetBlockList(ctx, blockblob.BlockListTypeCommitted, nil)
	if err != nil {
		return nil, 0, "", err
	}
	var blocks []block
	var off int64
	for _, x := range resp.CommittedBlocks {
		if x == nil || x.Name == nil || x.Size == nil {
			continue
		}
		blocks = append(blocks, block{id: *x.Name, start: off, size: *x.Size})
		off += *x.Size
	}
	var etag azcore.ETag
	if resp.ETag != nil {
		etag = *resp.ETag
	}
	if resp.BlobContentLength != nil && *resp.BlobContentLength != off {
		size := *resp.BlobContentLength
		return []block{{start: 0, size: size}}, size, etag, nil
	}
	return blocks, off, etag, nil
}

// prefixBlocks returns block IDs that hold the first off bytes of the blob:
// the committed blocks ending at or before off, and new blocks holding the
// rest (the start of the block that off falls into).
func (b *Backend) prefixBlocks(ctx context.Context, bb *blockblob.Client, blocks []block, off int64, etag azcore.ETag) ([]string, error) {
	var ids []string
	for _, bl := range blocks {
		if bl.start >= off {
			break
		}
		end := min(bl.start+bl.size, off)
		if bl.id != "" && end == bl.start+bl.size {
			ids = append(ids, bl.id)
			continue
		}
		more, err := b.restage(ctx, bb, bb, bl.start, end, etag)
		if err != nil {
			return nil, err
		}
		ids = append(ids, more...)
	}
	return ids, nil
}

// restage stages bytes [from, to) of the committed blob src (at version
// etag, if given) as blocks of dst, server-side, in pieces of up to
// copyBlock bytes. If the service cannot read the source by URL, the piece
// is downloaded and uploaded instead.
func (b *Backend) restage(ctx context.Context, dst, src *blockblob.Client, from, to int64, etag azcore.ETag) ([]string, error) {
	var ids []string
	var pieces [][2]int64
	for p := from; p < to; p += b.copyBlock {
		ids = append(ids, blockID(p))
		pieces = append(pieces, [2]int64{p, min(b.copyBlock, to-p)})
	}
	var cond *blob.SourceModifiedAccessConditions
	if etag != "" {
		cond = &blob.SourceModifiedAccessConditions{SourceIfMatch: &etag}
	}
	err := b.parallel(ctx, len(pieces), func(ctx context.Context, i int) error {
		rng := blob.HTTPRange{Offset: pieces[i][0], Count: pieces[i][1]}
		if !b.noFromURL {
			srcURL, err := b.sourceURL(src) // signed per piece: a long copy outlives a SAS
			if err != nil {
				return err
			}
			_, err = dst.StageBlockFromURL(ctx, ids[i], srcURL, &blockblob.StageBlockFromURLOptions{
				Range: rng, SourceModifiedAccessConditions: cond})
			var re *azcore.ResponseError
			if err == nil || !errors.As(err, &re) || rng.Count > b.block ||
				hasCode(err, bloberror.SourceConditionNotMet, bloberror.ConditionNotMet, bloberror.BlobNotFound) {
				return err
			}
			// Put Block From URL refused (a service without it, or a
			// source it cannot read): send this piece, at most a block.
		}
		var ac *blob.AccessConditions
		if etag != "" {
			ac = &blob.AccessConditions{ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfMatch: &etag}}
		}
		resp, err := src.DownloadStream(ctx, &blob.DownloadStreamOptions{Range: rng, AccessConditions: ac})
		if err != nil {
			return err
		}
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if int64(len(data)) != rng.Count {
			return fmt.Errorf("read %d bytes at %d, want %d", len(data), rng.Offset, rng.Count)
		}
		_, err = dst.StageBlock(ctx, ids[i], streaming.NopCloser(bytes.NewReader(data)), nil)
		return err
	})
	if err != nil {
		return nil, stageError{err}
	}
	return ids, nil
}

// parallel runs fn(0..n-1), Concurrency at a time, and returns the first
// error (cancelling the others).
func (b *Backend) parallel(parent context.Context, n int, fn func(context.Context, int) error) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	slots := make(chan struct{}, b.conc)
	for i := 0; i < n && ctx.Err() == nil; i++ {
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			if err := fn(ctx, i); err != nil {
				once.Do(func() { first = err; cancel() })
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return parent.Err()
}

// Append writes r at offset off of the upload blob key (see above) and
// returns its new size.
func (b *Backend) Append(ctx context.Context, key string, off int64, r io.Reader) (int64, error) {
	bb, err := b.blockBlob(key)
	if err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, fmt.Errorf("azure: append to %s: negative offset %d", key, off)
	}
	var keep []string
	var etag azcore.ETag
	if off > 0 {
		var blocks []block
		var size int64
		blocks, size, etag, err = b.committed(ctx, bb)
		if err != nil {
			return 0, b.fail("append to", key, err)
		}
		if size < off {
			return 0, fmt.Errorf("azure: append to %s at %d: the upload object has only %d bytes", key, off, size)
		}
		if keep, err = b.prefixBlocks(ctx, bb, blocks, off, etag); err != nil {
			return 0, b.failStage("append to", key, err)
		}
	}
	ids, n, err := b.stage(ctx, bb, off, nil, nil, r)
	if err != nil {
		return off, b.failStage("append to", key, err)
	}
	list := append(keep, ids...)
	if len(list) > maxCommitted {
		return off, fmt.Errorf("azure: append to %s: the upload would have %d blocks, more than the 50,000 Azure allows; send larger chunks or raise the block size", key, len(list))
	}
	var opts *blockblob.CommitBlockListOptions
	if etag != "" {
		opts = &blockblob.CommitBlockListOptions{AccessConditions: &blob.AccessConditions{
			ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfMatch: &etag}}}
	}
	if _, err := bb.CommitBlockList(ctx, list, opts); err != nil {
		if hasCode(err, bloberror.ConditionNotMet) {
			return off, fmt.Errorf("azure: append to %s: the upload object was changed by another request at the same time", key)
		}
		return off, b.fail("append to", key, err)
	}
	return off + n, nil
}

// Commit cuts the upload blob src to size, copies it server-side to dst and
// deletes src (see above).
func (b *Backend) Commit(ctx context.Context, src, dst string, size int64) error {
	sbb, err := b.blockBlob(src)
	if err != nil {
		return err
	}
	dbb, err := b.blockBlob(dst)
	if err != nil {
		return err
	}
	blocks, total, etag, err := b.committed(ctx, sbb)
	if err != nil {
		return b.fail("commit", src, err)
	}
	if total < size {
		return fmt.Errorf("azure: commit %s: the upload object has %d bytes, expected %d", src, total, size)
	}
	if total > size {
		keep, err := b.prefixBlocks(ctx, sbb, blocks, size, etag)
		if err != nil {
			return b.failStage("commit: cut", src, err)
		}
		resp, err := sbb.CommitBlockList(ctx, keep, &blockblob.CommitBlockListOptions{AccessConditions: &blob.AccessConditions{
			ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfMatch: &etag}}})
		if err != nil {
			return b.fail("commit: cut", src, err)
		}
		if resp.ETag != nil {
			etag = *resp.ETag
		}
	}
	if err := b.copy(ctx, sbb, dbb, dst, size, etag); err != nil {
		return err
	}
	// The copy's size, checked: cheap, and it catches any surprise before
	// the upload is gone.
	if fi, err := b.Stat(ctx, dst); err != nil {
		return err
	} else if fi.Size != size {
		return fmt.Errorf("azure: commit %s: the copy at %s has %d bytes, expected %d", src, dst, fi.Size, size)
	}
	return b.Delete(ctx, src)
}

// copy copies the committed blob src (at version etag) to dst, server-side.
func (b *Backend) copy(ctx context.Context, src, dst *blockblob.Client, key string, size int64, etag azcore.ETag) error {
	if size <= b.copyLimit {
		srcURL, err := b.sourceURL(src)
		if err != nil {
			return fmt.Errorf("azure: cannot sign a URL to copy %s: %v", stripQuery(src.URL()), err)
		}
		resp, err := dst.CopyFromURL(ctx, srcURL, &blob.CopyFromURLOptions{
			SourceModifiedAccessConditions: &blob.SourceModifiedAccessConditions{SourceIfMatch: &etag}})
		if err != nil {
			return b.fail("commit: copy to", key, err)
		}
		if resp.CopyStatus != nil && *resp.CopyStatus != string(blob.CopyStatusTypeSuccess) {
			return fmt.Errorf("azure: commit: copy to %s ended with status %s", key, *resp.CopyStatus)
		}
		return nil
	}
	before, err := b.etag(ctx, dst)
	if err != nil {
		return b.fail("commit: copy to", key, err)
	}
	ids, err := b.restage(ctx, dst, src, 0, size, etag)
	if err != nil {
		return b.failStage("commit: copy to", key, err)
	}
	return b.commitList(ctx, dst, "commit: copy to", key, ids, before)
}
