package s3

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/stowage/stowage"
)

// Chunked uploads (stowage.Appender).
//
// An upload object in progress is a chain of ordinary objects:
//
//	<key>.Parts/<offset>   parts: bytes [offset, offset+size), each at least 5 MiB,
//	                       named by their offset (20 decimal digits)
//	<key>                  the tail: the last bytes, less than PartSize+128 KiB,
//	                       with metadata stowage-base (the offset of its first
//	                       byte) and stowage-parts (the number of parts before it)
//
// The parts tile [0, base) starting from offset 0; part objects outside that
// chain are leftovers of failed appends, ignored, and deleted by Commit and
// Delete. An upload with no parts is a plain object at <key>.
//
// Append(key, off, r) reads the tail (one GET), keeps its bytes before off,
// and streams r after them: whenever the buffer holds a part plus 128 KiB it
// sends the part as a new part object (a docker-style push, one PATCH with a
// whole layer, streams straight into parts, Concurrency at a time); at EOF
// the buffer beyond 128 KiB becomes a last part if that reaches 5 MiB, and
// the rest is written as the new tail. Writing the tail is the atomic step
// that makes the append visible: a failed or killed Append leaves the
// previous tail, whose chain never includes the parts written after it, so
// bytes at or after off are discarded. Keeping at least 128 KiB in the tail
// means that storage/crypt's reseal of its last 64 KiB segment, and any retry
// of a chunk, find their bytes in the tail; an off further back, inside the
// parts, works too (the part holding off is read back and becomes the tail).
// Small chunks cost a rewrite of the tail, which stays under 5 MiB+128 KiB.
// Everything lives in the bucket, so an upload survives a restart of
// Stowage between chunks.
//
// Commit(src, dst, size) creates a multipart upload at dst whose parts are
// UploadPartCopy from the part objects and a byte range of the tail, cut at
// size, completes it, then deletes src. The copy happens inside S3: a blob's
// bytes pass through Stowage once on the way in and are never sent again.
//
// Why not one S3 multipart upload per upload object: the parts of an
// incomplete multipart upload cannot be read, but Open must read an upload in
// progress from any offset (the registry reads it back for digests other than
// sha256, storage/crypt reads its last segment back); incomplete multipart
// uploads are invisible to List, so the registry's cleanup of uploads/<id>/
// and the garbage collector's orphan sweep could not find what an abandoned
// upload left (S3 bills it until it is aborted); and an Append could not
// restart inside a part. The server-side copy at Commit is the same one the
// multipart design needs (CompleteMultipartUpload at the upload key, then
// CopyObject to dst), and UploadPartCopy also works past CopyObject's 5 GiB.

const (
	minTail      = 128 << 10
	metaBase     = "stowage-base"
	metaParts    = "stowage-parts"
	partsSuffix  = ".Parts/" // capitals: no storage key can collide with it
	copyParallel = 8         // UploadPartCopy requests at once in Commit
)

func partsPrefix(key string) string { return key + partsSuffix }

func partKey(key string, off int64) string { return fmt.Sprintf("%s%020d", partsPrefix(key), off) }

// head is what the object at a key says about itself.
type head struct {
	base    int64 // offset of its first byte in the upload (0 for plain objects)
	parts   int   // parts before it
	length  int64 // bytes stored in it
	etag    *string
	modTime time.Time
}

func (h head) size() int64 { return h.base + h.length }

func headOf(meta map[string]string, length int64, etag *string, mod *time.Time) head {
	h := head{length: length, etag: etag, modTime: aws.ToTime(mod)}
	for k, v := range meta {
		switch strings.ToLower(k) {
		case metaBase:
			h.base, _ = parseInt(v)
		case metaParts:
			n, _ := parseInt(v)
			h.parts = int(n)
		}
	}
	return h
}

func (b *Backend) head(ctx context.Context, key string) (head, error) {
	out, err := b.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &b.bucket, Key: aws.String(b.full(key))})
	if err != nil {
		return head{}, b.wrap("stat", key, err)
	}
	return headOf(out.Metadata, aws.ToInt64(out.ContentLength), out.ETag, out.LastModified), nil
}

// piece is a stored range of an upload object.
type piece struct {
	key   string // storage key of the object holding it
	start int64  // offset in the upload
	size  int64
	etag  *string // set for the tail
}

// chain returns the pieces of the upload object whose tail is h: its parts
// (listed) and the tail.
func (b *Backend) chain(ctx context.Context, key string, h head) ([]piece, error) {
	tail := piece{key: key, start: h.base, size: h.length, etag: h.etag}
	if h.base == 0 {
		return []piece{tail}, nil
	}
	sizes := map[int64]int64{}
	pp := partsPrefix(key)
	err := b.list(ctx, pp, func(o types.Object) error {
		name := strings.TrimPrefix(aws.ToString(o.Key), b.full(pp))
		if off, err := strconv.ParseInt(name, 10, 64); err == nil {
			sizes[off] = aws.ToInt64(o.Size)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var pieces []piece
	for off := int64(0); off < h.base; {
		n, ok := sizes[off]
		if !ok || n <= 0 || off+n > h.base {
			return nil, restart(fmt.Sprintf("the stored parts of upload object %s do not reach byte %d", key, h.base), nil)
		}
		pieces = append(pieces, piece{key: partKey(key, off), start: off, size: n})
		off += n
	}
	return append(pieces, tail), nil
}

// restart is the error of an upload that cannot go on: the client must
// start it again.
func restart(msg string, err error) error {
	return &stowage.Error{Code: stowage.CodeBlobUploadInvalid, Message: msg + "; restart the upload", Err: err}
}

// minFlushAt is the smallest part a chunk's end is sent as (5 MiB, doubling
// like partSizeAt so that the parts of small chunks fit 10,000 parts too).
func minFlushAt(n int) int64 { return min(int64(MinPartSize)<<(n/partGrowth), maxS3Part) }

// Append writes r at offset off of the upload object key (see above).
func (b *Backend) Append(ctx context.Context, key string, off int64, r io.Reader) (int64, error) {
	if off < 0 {
		return 0, fmt.Errorf("s3 append %s: negative offset %d", b.where(key), off)
	}
	base, parts := int64(0), 0
	var buf []byte
	// truncate is set when the parts this Append sends would overwrite parts
	// of the current chain: the tail is then cut to off before the first of
	// them, so that a failure in the middle leaves a consistent upload that
	// ends at off.
	truncate := off == 0
	if off > 0 {
		out, err := b.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &b.bucket, Key: aws.String(b.full(key))})
		if err != nil {
			if isNotFound(err) {
				return 0, restart(fmt.Sprintf("upload object %s does not exist, so no bytes can be added at offset %d", b.where(key), off), b.wrap("append", key, err))
			}
			return 0, b.wrap("append (read tail)", key, err)
		}
		h := headOf(out.Metadata, aws.ToInt64(out.ContentLength), out.ETag, out.LastModified)
		if off > h.size() {
			out.Body.Close()
			return 0, restart(fmt.Sprintf("upload object %s has %d bytes, expected at least %d", b.where(key), h.size(), off), nil)
		}
		var src io.ReadCloser = out.Body
		keep := off - h.base
		base, parts = h.base, h.parts
		if off < h.base {
			// Back into the parts: the part holding off becomes the tail.
			out.Body.Close()
			pieces, err := b.chain(ctx, key, h)
			if err != nil {
				return 0, err
			}
			i := sort.Search(len(pieces), func(i int) bool { return pieces[i].start+pieces[i].size > off })
			p := pieces[i]
			base, parts, keep, truncate = p.start, i, off-p.start, true
			if src, err = b.openPiece(ctx, p, 0, keep); err != nil {
				return 0, err
			}
		}
		buf = make([]byte, keep, max(keep, b.partSizeAt(parts)+minTail))
		_, err = io.ReadFull(src, buf)
		src.Close()
		if err != nil {
			return 0, b.wrap("append (read tail)", key, err)
		}
	} else {
		buf = make([]byte, 0, b.partSizeAt(0)+minTail)
	}
	var kept []byte
	if truncate {
		kept = bytes.Clone(buf)
	}
	keptBase, keptParts := base, parts

	// Stream r after the kept bytes, sending parts as they fill up.
	p := newPipeline(ctx, b.concurrency)
	send := func(n int64) {
		if parts+1 >= maxParts {
			p.fail(restart(fmt.Sprintf("upload object %s would need more than %d parts", b.where(key), maxParts), nil))
			return
		}
		if truncate {
			truncate = false
			if err := b.putTail(ctx, key, kept, keptBase, keptParts); err != nil {
				p.fail(err)
				return
			}
		}
		data, at := buf[:n], base
		p.Go(func(ctx context.Context) error {
			return b.putSmall(ctx, partKey(key, at), data, nil)
		})
		next := make([]byte, len(buf)-int(n), max(int64(len(buf))-n, b.partSizeAt(parts+1)+minTail))
		copy(next, buf[n:])
		buf, base, parts = next, base+n, parts+1
	}
	r = ctxReader{ctx, r}
	var rerr error
	for {
		n, err := io.ReadFull(r, buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			rerr = err
			break
		}
		if p.Failed() != nil {
			break
		}
		send(b.partSizeAt(parts))
	}
	if rerr == nil && p.Failed() == nil && int64(len(buf)) >= minFlushAt(parts)+minTail {
		send(int64(len(buf)) - minTail)
	}
	perr := p.Wait()
	if rerr != nil {
		return 0, fmt.Errorf("s3 append %s: %w", b.where(key), rerr)
	}
	if perr != nil {
		return 0, perr
	}
	if err := b.putTail(ctx, key, buf, base, parts); err != nil {
		return 0, err
	}
	return base + int64(len(buf)), nil
}

// putTail writes the tail of an upload object: the step that makes an
// Append visible.
func (b *Backend) putTail(ctx context.Context, key string, data []byte, base int64, parts int) error {
	var meta map[string]string
	if base > 0 {
		meta = map[string]string{metaBase: strconv.FormatInt(base, 10), metaParts: strconv.Itoa(parts)}
	}
	return b.putSmall(ctx, key, data, meta)
}

// Commit copies the first size bytes of the upload object src to dst inside
// S3 (see above), then deletes src.
func (b *Backend) Commit(ctx context.Context, src, dst string, size int64) error {
	h, err := b.head(ctx, src)
	if err != nil {
		return err
	}
	if h.size() < size {
		return restart(fmt.Sprintf("upload object %s has %d bytes, expected %d", b.where(src), h.size(), size), nil)
	}
	var pieces, keep []piece
	if size > 0 {
		if pieces, err = b.chain(ctx, src, h); err != nil {
			return err
		}
	}
	// Cut at size.
	for _, p := range pieces {
		if p.start >= size {
			break
		}
		p.size = min(p.size, size-p.start)
		keep = append(keep, p)
	}
	switch {
	case size == 0:
		err = b.putSmall(ctx, dst, nil, nil)
	case len(keep) == 1 && h.base == 0 && size == h.length:
		_, err = b.client.CopyObject(ctx, &s3.CopyObjectInput{
			Bucket: &b.bucket, Key: aws.String(b.full(dst)), CopySource: b.copySource(src),
			CopySourceIfMatch: h.etag, MetadataDirective: types.MetadataDirectiveReplace,
		})
		err = b.wrap("commit (copy "+b.where(src)+")", dst, err)
	default:
		err = b.copyParts(ctx, dst, keep)
	}
	if err != nil {
		return err
	}
	// dst is complete. Deleting the tail ends the upload object; its parts
	// go next, and any a failure leaves are under the upload's prefix, where
	// the registry's cleanup and orphan sweep find them.
	if _, err := b.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &b.bucket, Key: aws.String(b.full(src))}); err != nil && !isNotFound(err) {
		return b.wrap("commit (delete upload object)", src, err)
	}
	if h.base > 0 {
		b.deleteParts(ctx, src, -1)
	}
	return nil
}

// copyParts assembles dst from pieces with a multipart upload of
// UploadPartCopy parts.
func (b *Backend) copyParts(ctx context.Context, dst string, pieces []piece) error {
	created, err := b.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket: &b.bucket, Key: aws.String(b.full(dst))})
	if err != nil {
		return b.wrap("commit (create multipart upload)", dst, err)
	}
	id := created.UploadId
	completed := make([]types.CompletedPart, len(pieces))
	p := newPipeline(ctx, copyParallel)
	for i, pc := range pieces {
		num := int32(i + 1)
		p.Go(func(ctx context.Context) error {
			out, err := b.client.UploadPartCopy(ctx, &s3.UploadPartCopyInput{
				Bucket: &b.bucket, Key: aws.String(b.full(dst)), UploadId: id, PartNumber: aws.Int32(num),
				CopySource: b.copySource(pc.key), CopySourceIfMatch: pc.etag,
				CopySourceRange: aws.String(fmt.Sprintf("bytes=0-%d", pc.size-1)),
			})
			if err != nil {
				return b.wrap(fmt.Sprintf("commit (copy part %d from %s)", num, b.where(pc.key)), dst, err)
			}
			if out.CopyPartResult == nil {
				return fmt.Errorf("s3 commit %s: no result for part %d", b.where(dst), num)
			}
			res := out.CopyPartResult
			completed[num-1] = types.CompletedPart{ETag: res.ETag, PartNumber: aws.Int32(num),
				ChecksumCRC32: res.ChecksumCRC32, ChecksumCRC32C: res.ChecksumCRC32C,
				ChecksumCRC64NVME: res.ChecksumCRC64NVME, ChecksumSHA1: res.ChecksumSHA1, ChecksumSHA256: res.ChecksumSHA256}
			return nil
		})
	}
	if err := p.Wait(); err != nil {
		b.abort(ctx, dst, id)
		return err
	}
	_, err = b.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &b.bucket, Key: aws.String(b.full(dst)), UploadId: id,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: completed},
	})
	if err != nil {
		b.abort(ctx, dst, id)
		return b.wrap("commit (complete multipart upload)", dst, err)
	}
	return nil
}

// deleteParts deletes the part objects of key from offset from on (all of
// them when from < 0).
func (b *Backend) deleteParts(ctx context.Context, key string, from int64) error {
	pp := partsPrefix(key)
	var batch []types.ObjectIdentifier
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		out, err := b.client.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: &b.bucket,
			Delete: &types.Delete{Objects: batch, Quiet: aws.Bool(true)}})
		batch = batch[:0]
		if err != nil {
			return b.wrap("delete parts", pp+"*", err)
		}
		for _, e := range out.Errors {
			if aws.ToString(e.Code) != "NoSuchKey" {
				return fmt.Errorf("s3 delete s3://%s/%s: %s: %s", b.bucket, aws.ToString(e.Key), aws.ToString(e.Code), aws.ToString(e.Message))
			}
		}
		return nil
	}
	err := b.list(ctx, pp, func(o types.Object) error {
		name := strings.TrimPrefix(aws.ToString(o.Key), b.full(pp))
		if off, err := strconv.ParseInt(name, 10, 64); from >= 0 && err == nil && off < from {
			return nil
		}
		batch = append(batch, types.ObjectIdentifier{Key: o.Key})
		if len(batch) == 1000 {
			return flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	return flush()
}

// openPiece opens bytes [from, to) of a piece.
func (b *Backend) openPiece(ctx context.Context, p piece, from, to int64) (io.ReadCloser, error) {
	if from >= to {
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	out, err := b.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: &b.bucket, Key: aws.String(b.full(p.key)), IfMatch: p.etag,
		Range: aws.String(fmt.Sprintf("bytes=%d-%d", from, to-1)),
	})
	if err != nil {
		if isNotFound(err) || errorCode(err) == "PreconditionFailed" {
			return nil, restart(fmt.Sprintf("upload object %s changed or lost a part while it was read", b.where(p.key)), err)
		}
		return nil, b.wrap("open", p.key, err)
	}
	return out.Body, nil
}

// openAppended reads an upload object with parts from offset on, one piece
// after the other.
func (b *Backend) openAppended(ctx context.Context, key string, h head, offset int64) (io.ReadCloser, error) {
	pieces, err := b.chain(ctx, key, h)
	if err != nil {
		return nil, err
	}
	for len(pieces) > 0 && pieces[0].start+pieces[0].size <= offset && len(pieces) > 1 {
		pieces = pieces[1:]
	}
	return &pieceReader{ctx: ctx, b: b, pieces: pieces, off: offset}, nil
}

// pieceReader reads pieces in order, opening each when it is reached.
type pieceReader struct {
	ctx    context.Context
	b      *Backend
	pieces []piece
	off    int64 // offset in the upload of the next byte
	cur    io.ReadCloser
}

func (r *pieceReader) Read(p []byte) (int, error) {
	for {
		if r.cur == nil {
			if len(r.pieces) == 0 {
				return 0, io.EOF
			}
			pc := r.pieces[0]
			rc, err := r.b.openPiece(r.ctx, pc, max(0, r.off-pc.start), pc.size)
			if err != nil {
				return 0, err
			}
			r.cur = rc
		}
		n, err := r.cur.Read(p)
		r.off += int64(n)
		if err == io.EOF {
			pc := r.pieces[0]
			if r.off != pc.start+pc.size {
				return n, fmt.Errorf("s3 read %s: it ended at byte %d, expected %d", r.b.where(pc.key), r.off, pc.start+pc.size)
			}
			r.cur.Close()
			r.cur = nil
			r.pieces = r.pieces[1:]
			err = nil
		}
		if n > 0 || err != nil {
			return n, err
		}
	}
}

func (r *pieceReader) Close() error {
	if r.cur != nil {
		err := r.cur.Close()
		r.cur = nil
		return err
	}
	return nil
}
