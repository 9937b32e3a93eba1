// Package azure implements stowage.Backend (and stowage.Appender) on Azure
// Blob Storage, with block blobs.
//
// Every object is a block blob named <Prefix><key> in one container. Writes
// stage blocks and then commit a block list: a blob becomes visible only at
// the commit, in full, and replaces the previous blob atomically. Staged
// blocks that are never committed (a reader error, a crash) are not visible
// as a blob; Azure discards them at the blob's next commit, or after a week.
//
// Chunked uploads (stowage.Appender) keep their state in the upload blob's
// committed block list, not in memory; see Append and Commit in append.go.
package azure

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"

	"github.com/stowage/stowage"
)

// Defaults and Azure limits.
const (
	DefaultBlockSize   = 8 << 20
	DefaultConcurrency = 2
	maxBlockSize       = 4000 << 20 // Put Block (service version 2019-12-12 and later)
	maxCommitted       = 50_000     // committed blocks per blob
	// syncCopyLimit is the largest source Copy Blob From URL copies.
	syncCopyLimit = 256 << 20
)

// Config configures a Backend. Credentials come either from ConnectionString
// or from AccountName and AccountKey (with ServiceURL for an emulator or a
// sovereign cloud), or from a ServiceURL that carries a SAS token.
type Config struct {
	// AccountName and AccountKey: a shared key (the account's key, base64).
	AccountName string
	AccountKey  string
	// ConnectionString as shown in the portal ("DefaultEndpointsProtocol=
	// https;AccountName=...;AccountKey=...", or with BlobEndpoint= for an
	// emulator, or with SharedAccessSignature=). Exclusive with the fields
	// above and ServiceURL.
	ConnectionString string
	// ServiceURL is the blob service endpoint, e.g.
	// http://127.0.0.1:10000/devstoreaccount1 for Azurite. Default:
	// https://<AccountName>.blob.core.windows.net/. Without AccountKey it
	// must carry a SAS token (read, write, delete, list, create permissions).
	ServiceURL string
	// Container holds the objects. It must exist, unless CreateContainer.
	Container string
	// CreateContainer creates Container when it is missing.
	CreateContainer bool
	// Prefix is prepended to every key (e.g. "registry1/"), so several
	// registries can share a container. Optional.
	Prefix string
	// BlockSize is the size of the blocks writes stage (default 8 MiB, at
	// most 4000 MiB). A write holds at most Concurrency+1 blocks in memory.
	BlockSize int64
	// Concurrency is how many blocks one write uploads at the same time
	// (default 2).
	Concurrency int
}

// Backend stores objects as block blobs in one container.
type Backend struct {
	cc       *container.Client
	prefix   string
	where    string // container URL without query, for messages
	shared   bool   // the client signs with a shared key, so it can make SAS URLs
	block    int64
	conc     int
	bufs     sync.Pool
	pageSize int32 // List page size; 0 = the service's default (5000)
	// copyLimit is the largest object Commit copies with one Copy Blob From
	// URL; larger ones are copied as blocks of copyBlock bytes.
	copyLimit, copyBlock int64
	// noFromURL stages pieces of a blob again by downloading and uploading
	// them instead of with Put Block From URL (tests of the fallback).
	noFromURL bool
}

var (
	_ stowage.Backend  = (*Backend)(nil)
	_ stowage.Appender = (*Backend)(nil)
)

// New connects to the container and checks that it is reachable with the
// credentials given (creating it if it is missing and cfg.CreateContainer).
func New(ctx context.Context, cfg Config) (*Backend, error) {
	if cfg.Container == "" {
		return nil, errors.New("azure: no container configured")
	}
	if cfg.BlockSize == 0 {
		cfg.BlockSize = DefaultBlockSize
	}
	if cfg.BlockSize < 0 || cfg.BlockSize > maxBlockSize {
		return nil, fmt.Errorf("azure: block size %d is out of range (1 byte to 4000 MiB)", cfg.BlockSize)
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	opts := &container.ClientOptions{}
	var cc *container.Client
	var err error
	shared := false
	switch {
	case cfg.ConnectionString != "":
		if cfg.AccountName != "" || cfg.AccountKey != "" || cfg.ServiceURL != "" {
			return nil, errors.New("azure: set either a connection string or account name/key/service URL, not both")
		}
		// The string holds the key: never put it in a message.
		cs := strings.TrimSpace(cfg.ConnectionString)
		if cc, err = container.NewClientFromConnectionString(cs, cfg.Container, opts); err != nil {
			return nil, fmt.Errorf("azure: the connection string is not valid: %v", redact(err))
		}
		shared = strings.Contains(cs, "AccountKey=") && strings.Contains(cs, "AccountName=")
	case cfg.AccountKey != "":
		if cfg.AccountName == "" {
			return nil, errors.New("azure: an account key needs the account name")
		}
		cred, err := azblob.NewSharedKeyCredential(cfg.AccountName, cfg.AccountKey)
		if err != nil {
			return nil, fmt.Errorf("azure: the account key of %q is not valid: it must be the base64 key shown in the portal (%v)", cfg.AccountName, redact(err))
		}
		svc := cfg.ServiceURL
		if svc == "" {
			svc = "https://" + cfg.AccountName + ".blob.core.windows.net/"
		}
		if cc, err = container.NewClientWithSharedKeyCredential(runtime.JoinPaths(svc, cfg.Container), cred, opts); err != nil {
			return nil, fmt.Errorf("azure: %v", redact(err))
		}
		shared = true
	case cfg.ServiceURL != "":
		if u, err := url.Parse(cfg.ServiceURL); err != nil || !u.Query().Has("sig") {
			return nil, errors.New("azure: no credentials: set an account key, a connection string, or a service URL with a SAS token")
		}
		if cc, err = container.NewClientWithNoCredential(runtime.JoinPaths(cfg.ServiceURL, cfg.Container), opts); err != nil {
			return nil, fmt.Errorf("azure: %v", redact(err))
		}
	default:
		return nil, errors.New("azure: no credentials: set account_name and account_key, or a connection string")
	}
	prefix := strings.Trim(cfg.Prefix, "/")
	if prefix != "" {
		prefix += "/"
	}
	b := &Backend{
		cc:        cc,
		prefix:    prefix,
		where:     stripQuery(cc.URL()),
		shared:    shared,
		block:     cfg.BlockSize,
		conc:      cfg.Concurrency,
		copyLimit: syncCopyLimit,
		copyBlock: syncCopyLimit,
	}
	b.bufs.New = func() any { p := make([]byte, b.block); return &p }
	if err := b.check(ctx, cfg.CreateContainer); err != nil {
		return nil, err
	}
	return b, nil
}

// check makes sure the container is reachable, saying what is wrong if not.
func (b *Backend) check(ctx context.Context, create bool) error {
	_, err := b.cc.GetProperties(ctx, nil)
	if err == nil {
		return nil
	}
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		return fmt.Errorf("azure: cannot reach %s: %v", b.where, redact(err))
	}
	switch {
	case bloberror.HasCode(err, bloberror.ContainerNotFound) || re.StatusCode == 404:
		if !create {
			return fmt.Errorf("azure: container %s does not exist: create it (az storage container create), or let Stowage create it (CreateContainer)", b.where)
		}
		if _, err := b.cc.Create(ctx, nil); err != nil && !bloberror.HasCode(err, bloberror.ContainerAlreadyExists) {
			return b.fail("create container", "", err)
		}
		return nil
	default:
		return b.fail("check container", "", err)
	}
}

// opError is an operation's error, with a short message (the SDK's own
// are many lines long) and the SDK's error to unwrap.
type opError struct {
	msg      string
	err      error
	notExist bool
}

func (e *opError) Error() string { return e.msg }
func (e *opError) Unwrap() []error {
	if e.notExist {
		return []error{iofs.ErrNotExist, e.err}
	}
	return []error{e.err}
}

// fail wraps an SDK error with the operation and the key; a missing blob
// wraps fs.ErrNotExist.
func (b *Backend) fail(op, key string, err error) error {
	if err == nil {
		return nil
	}
	what := "azure: " + op
	if key != "" {
		what += " " + key
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return &opError{msg: what + ": " + err.Error(), err: err}
	}
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		return &opError{msg: fmt.Sprintf("%s: cannot reach %s: %v", what, b.where, redact(err)), err: err}
	}
	switch {
	case re.ErrorCode == string(bloberror.BlobNotFound) || re.StatusCode == 404 && re.ErrorCode == "":
		return &opError{msg: what + ": no such object (BlobNotFound)", err: err, notExist: true}
	case re.ErrorCode == string(bloberror.ContainerNotFound):
		return &opError{msg: fmt.Sprintf("%s: container %s does not exist (ContainerNotFound)", what, b.where), err: err}
	case re.StatusCode == 403:
		return &opError{msg: fmt.Sprintf("%s: %s refused the credentials (HTTP 403 %s): check the account name and key or SAS token, its permissions and expiry, and the clock", what, b.where, re.ErrorCode), err: err}
	}
	return &opError{msg: fmt.Sprintf("%s: HTTP %d %s", what, re.StatusCode, re.ErrorCode), err: err}
}

// redact drops URLs (which may carry a SAS signature) from transport errors.
func redact(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Op + " " + stripQuery(ue.URL) + ": " + ue.Err.Error()
	}
	s := err.Error()
	if i := strings.Index(s, "sig="); i >= 0 {
		return s[:i] + "sig=REDACTED"
	}
	return s
}

func stripQuery(u string) string {
	if i := strings.IndexByte(u, '?'); i >= 0 {
		return u[:i]
	}
	return u
}

func hasCode(err error, codes ...bloberror.Code) bool { return bloberror.HasCode(err, codes...) }

func (b *Backend) name(key string) (string, error) {
	if key == "" || strings.HasPrefix(key, "/") || strings.Contains(key, "..") {
		return "", fmt.Errorf("invalid storage key %q", key)
	}
	return b.prefix + key, nil
}

func (b *Backend) blockBlob(key string) (*blockblob.Client, error) {
	name, err := b.name(key)
	if err != nil {
		return nil, err
	}
	return b.cc.NewBlockBlobClient(name), nil
}

// Open downloads the blob from offset (a ranged GET). The body is read
// through the SDK's retry reader, which resumes a broken download at the
// same version of the blob (If-Match on its ETag).
func (b *Backend) Open(ctx context.Context, key string, offset int64) (io.ReadCloser, error) {
	bb, err := b.blockBlob(key)
	if err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, fmt.Errorf("azure: open %s: negative offset %d", key, offset)
	}
	resp, err := bb.DownloadStream(ctx, &blob.DownloadStreamOptions{Range: blob.HTTPRange{Offset: offset}})
	if err != nil {
		if offset > 0 && hasCode(err, bloberror.InvalidRange) {
			// At or past the end: an empty read, as from a file.
			if _, err := b.Stat(ctx, key); err != nil {
				return nil, err
			}
			return io.NopCloser(bytes.NewReader(nil)), nil
		}
		return nil, b.fail("open", key, err)
	}
	return resp.NewRetryReader(ctx, &blob.RetryReaderOptions{MaxRetries: 3}), nil
}

// Stat returns the blob's size and modification time.
func (b *Backend) Stat(ctx context.Context, key string) (stowage.ObjectInfo, error) {
	bb, err := b.blockBlob(key)
	if err != nil {
		return stowage.ObjectInfo{}, err
	}
	p, err := bb.GetProperties(ctx, nil)
	if err != nil {
		return stowage.ObjectInfo{}, b.fail("stat", key, err)
	}
	oi := stowage.ObjectInfo{Key: key}
	if p.ContentLength != nil {
		oi.Size = *p.ContentLength
	}
	if p.LastModified != nil {
		oi.ModTime = *p.LastModified
	}
	return oi, nil
}

// Delete removes the blob; a missing blob is not an error.
func (b *Backend) Delete(ctx context.Context, key string) error {
	bb, err := b.blockBlob(key)
	if err != nil {
		return err
	}
	if _, err := bb.Delete(ctx, nil); err != nil && !hasCode(err, bloberror.BlobNotFound) {
		return b.fail("delete", key, err)
	}
	return nil
}

// List walks the (committed) blobs whose keys start with prefix, a page of
// up to 5000 at a time.
func (b *Backend) List(ctx context.Context, prefix string, fn func(stowage.ObjectInfo) error) error {
	p := b.prefix + prefix
	opts := &container.ListBlobsFlatOptions{Prefix: &p}
	if b.pageSize > 0 {
		opts.MaxResults = &b.pageSize
	}
	pager := b.cc.NewListBlobsFlatPager(opts)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return b.fail("list", prefix, err)
		}
		if page.Segment == nil {
			continue
		}
		for _, it := range page.Segment.BlobItems {
			if it.Name == nil || !strings.HasPrefix(*it.Name, p) {
				continue
			}
			oi := stowage.ObjectInfo{Key: strings.TrimPrefix(*it.Name, b.prefix)}
			if it.Properties != nil {
				if it.Properties.ContentLength != nil {
					oi.Size = *it.Properties.ContentLength
				}
				if it.Properties.LastModified != nil {
					oi.ModTime = *it.Properties.LastModified
				}
			}
			if err := fn(oi); err != nil {
				return err
			}
		}
	}
	return nil
}

// Put stores r under key. Up to one block it is a single Put Blob; beyond
// that, blocks are staged as they are read (at most Concurrency+1 blocks in
// memory) and committed at the end, so nothing is visible before the last
// byte is in, and an error from r commits nothing.
//
// Two Puts of one key at the same time: committing a block list discards
// the blob's other uncommitted blocks, so the Put that commits second finds
// its blocks gone. It then checks that the blob changed while it staged
// (another write committed); if so it returns nil, as a write that the
// other replaced (last writer wins; keys are content-addressed, so both held
// the same content).
func (b *Backend) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	bb, err := b.blockBlob(key)
	if err != nil {
		return err
	}
	var first []byte
	var pooled *[]byte
	if size >= 0 && size < min(b.block, 1<<20) {
		first = make([]byte, size+1) // one more, to see the end
	} else {
		pooled = b.bufs.Get().(*[]byte)
		first = *pooled
	}
	n, rerr := io.ReadFull(r, first)
	switch rerr {
	case io.EOF, io.ErrUnexpectedEOF:
		_, err := bb.Upload(ctx, streaming.NopCloser(bytes.NewReader(first[:n])), nil)
		if err == nil && pooled != nil { // (see stage)
			b.bufs.Put(pooled)
		}
		return b.fail("put", key, err)
	case nil:
	default:
		if pooled != nil {
			b.bufs.Put(pooled)
		}
		return rerr // nothing was sent
	}
	before, err := b.etag(ctx, bb)
	if err != nil {
		if pooled != nil {
			b.bufs.Put(pooled)
		}
		return b.fail("put", key, err)
	}
	ids, _, err := b.stage(ctx, bb, 0, first[:n], pooled, r)
	if err != nil {
		return b.failStage("put", key, err)
	}
	return b.commitList(ctx, bb, "put", key, ids, before)
}

// etag returns the blob's ETag, "" if it does not exist.
func (b *Backend) etag(ctx context.Context, bb *blockblob.Client) (azcore.ETag, error) {
	p, err := bb.GetProperties(ctx, nil)
	if hasCode(err, bloberror.BlobNotFound) {
		return "", nil
	}
	if err != nil || p.ETag == nil {
		return "", err
	}
	return *p.ETag, nil
}

// commitList commits ids as the blob's content. When the blocks were
// discarded by a concurrent commit of the same blob (before is the blob's
// ETag from before staging), the other write stands: see Put.
func (b *Backend) commitList(ctx context.Context, bb *blockblob.Client, op, key string, ids []string, before azcore.ETag) error {
	_, err := bb.CommitBlockList(ctx, ids, nil)
	if err != nil && hasCode(err, bloberror.InvalidBlockList) {
		if now, err := b.etag(ctx, bb); err == nil && now != "" && now != before {
			return nil
		}
	}
	return b.fail(op, key, err)
}

// stageError marks an error from the service (as opposed to the reader).
type stageError struct{ err error }

func (e stageError) Error() string { return e.err.Error() }
func (e stageError) Unwrap() error { return e.err }

func (b *Backend) failStage(op, key string, err error) error {
	var se stageError
	if errors.As(err, &se) {
		return b.fail(op, key, se.err)
	}
	return err // the reader's error, as it was
}

// stage uploads first (if not empty; pooled is its buffer, if from the
// pool) and then the rest of r as blocks whose IDs record their offsets from
// off. It returns the IDs in order and the number of bytes. At most
// Concurrency blocks are uploading while the next is read.
func (b *Backend) stage(ctx context.Context, bb *blockblob.Client, off int64, first []byte, pooled *[]byte, r io.Reader) ([]string, int64, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		ids      []string
		n        int64
	)
	slots := make(chan struct{}, b.conc)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
			cancel(err)
		}
		mu.Unlock()
	}
	failed := func() bool { mu.Lock(); defer mu.Unlock(); return firstErr != nil }
	send := func(buf []byte, bp *[]byte) {
		id := blockID(off + n)
		ids = append(ids, id)
		n += int64(len(buf))
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			if _, err := bb.StageBlock(ctx, id, streaming.NopCloser(bytes.NewReader(buf)), nil); err != nil {
				// Not back to the pool: after a failed request the HTTP
				// transport may still be reading the buffer.
				fail(stageError{err})
				return
			}
			if bp != nil {
				b.bufs.Put(bp)
			}
		}()
	}
	if len(first) > 0 {
		send(first, pooled)
	} else if pooled != nil {
		b.bufs.Put(pooled)
	}
	for !failed() {
		bp := b.bufs.Get().(*[]byte)
		k, err := io.ReadFull(r, *bp)
		if k > 0 && (err == nil || err == io.EOF || err == io.ErrUnexpectedEOF) {
			send((*bp)[:k], bp)
		} else {
			b.bufs.Put(bp)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			fail(err)
			break
		}
	}
	wg.Wait()
	if firstErr != nil {
		return nil, 0, firstErr
	}
	return ids, n, nil
}

// blockID returns a new block ID: the block's offset in the object and 16
// random bytes, base64 (32 characters; all IDs of a blob must be as long).
func blockID(off int64) string {
	var raw [24]byte
	binary.BigEndian.PutUint64(raw[:8], uint64(off))
	rand.Read(raw[8:]) // never fails (crypto/rand)
	return base64.StdEncoding.EncodeToString(raw[:])
}

// sourceURL returns a URL the service can read the blob from, for copies
// between blobs (Put Block From URL, Copy Blob From URL): with a shared key,
// a read-only SAS valid for an hour; else the client's URL, which carries
// the configured SAS token.
func (b *Backend) sourceURL(bb *blockblob.Client) (string, error) {
	if !b.shared {
		return bb.URL(), nil
	}
	start := time.Now().Add(-15 * time.Minute) // clock skew
	return bb.GetSASURL(sas.BlobPermissions{Read: true}, time.Now().Add(time.Hour), &blob.GetSASURLOptions{StartTime: &start})
}
