// Package s3 implements stowage.Backend (and stowage.Appender) on Amazon S3
// and S3-compatible servers (versitygw, MinIO, Ceph RGW, ...), with the AWS
// SDK for Go v2.
//
// Every write becomes visible atomically: Put buffers objects up to PartSize
// and sends them with one PutObject, and streams larger ones (or ones of
// unknown size) through a multipart upload that is completed only after the
// reader reached EOF without error, and aborted otherwise. Chunked uploads
// (Appender) are described in append.go.
//
// A process killed in the middle of a multipart Put leaves an incomplete
// multipart upload behind, which S3 keeps (and bills) until it is aborted:
// call AbortStaleUploads now and then, or give the bucket a lifecycle rule
// with AbortIncompleteMultipartUpload.
package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/stowage/stowage"
)

const (
	// DefaultPartSize is the part size of multipart uploads when Config.PartSize is 0.
	DefaultPartSize = 16 << 20
	// MinPartSize is S3's smallest part (except the last one of an upload).
	MinPartSize = 5 << 20
	// MaxPartSize bounds Config.PartSize: a part is held in memory while it is sent.
	MaxPartSize = 1 << 30

	maxS3Part  = 5 << 30 // S3's largest part, and largest CopyObject source
	maxParts   = 10000   // S3's most parts per multipart upload
	partGrowth = 1000    // parts sizes double after every partGrowth parts
)

// Config configures a Backend.
type Config struct {
	// Endpoint is the S3 API's URL, e.g. "http://127.0.0.1:7070" for a
	// local S3-compatible server; https:// is assumed without a scheme.
	// Empty: Amazon S3 in Region.
	Endpoint string
	// Region is the bucket's region. Empty: AWS_REGION / the shared AWS
	// config, else "us-east-1" (what most S3-compatible servers expect).
	Region string
	// Bucket holds the objects. It must exist.
	Bucket string
	// Prefix is prepended to every key, so that several registries (or
	// other data) can share a bucket; a "/" is added if it lacks one.
	Prefix string
	// AccessKeyID and SecretAccessKey are static credentials. When empty,
	// the SDK's default chain is used: AWS_ACCESS_KEY_ID /
	// AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN), AWS_PROFILE and the shared
	// credentials file, web identity, then the EC2/ECS instance role.
	AccessKeyID     string
	SecretAccessKey string
	// UsePathStyle addresses the bucket as <endpoint>/<bucket>/<key>
	// instead of <bucket>.<endpoint>/<key>; most S3-compatible servers
	// need it.
	UsePathStyle bool
	// PartSize is the size of multipart upload parts (default 16 MiB,
	// between 5 MiB and 1 GiB). Up to Concurrency+1 parts per write are in
	// memory at once.
	PartSize int64
	// Concurrency is the number of parts one write sends at once (default 2).
	Concurrency int
}

// Backend stores objects in an S3 bucket.
type Backend struct {
	client      *s3.Client
	bucket      string
	prefix      string
	partSize    int64
	concurrency int
	endpoint    string // for messages
}

var (
	_ stowage.Backend  = (*Backend)(nil)
	_ stowage.Appender = (*Backend)(nil)
)

// New returns a Backend for cfg, after checking that the bucket is
// reachable with the credentials given (HeadBucket); the error says what is
// wrong: the endpoint, the credentials, or the bucket.
func New(ctx context.Context, cfg Config) (*Backend, error) {
	b, err := newBackend(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	return b, nil
}

// newBackend builds the client without contacting the server.
func newBackend(ctx context.Context, cfg Config) (*Backend, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("s3: no bucket configured")
	}
	switch {
	case cfg.PartSize == 0:
		cfg.PartSize = DefaultPartSize
	case cfg.PartSize < MinPartSize || cfg.PartSize > MaxPartSize:
		return nil, fmt.Errorf("s3: part size %d is out of range: S3 needs at least %d bytes (5 MiB), and parts are buffered in memory, so at most %d (1 GiB)", cfg.PartSize, MinPartSize, MaxPartSize)
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 2
	}
	if (cfg.AccessKeyID == "") != (cfg.SecretAccessKey == "") {
		return nil, errors.New("s3: set both the access key ID and the secret access key, or neither (to use AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and the SDK's other sources)")
	}
	var opts []func(*awsconfig.LoadOptions) error
	if cfg.Region != "" {
		opts = append(opts, awsconfig.WithRegion(cfg.Region))
	}
	if cfg.AccessKeyID != "" {
		opts = append(opts, awsconfig.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, "")))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3: load AWS configuration: %w", err)
	}
	if awsCfg.Region == "" {
		awsCfg.Region = "us-east-1"
	}
	endpoint := cfg.Endpoint
	if endpoint != "" && !strings.Contains(endpoint, "://") {
		endpoint = "https://" + endpoint
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
		o.UsePathStyle = cfg.UsePathStyle
		// Ranged GETs, and objects from multipart uploads, have no
		// whole-object checksum to check: not worth a log line each.
		o.DisableLogOutputChecksumValidationSkipped = true
	})
	prefix := strings.TrimPrefix(cfg.Prefix, "/")
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	shown := endpoint
	if shown == "" {
		shown = "Amazon S3 (" + awsCfg.Region + ")"
	}
	return &Backend{client: client, bucket: cfg.Bucket, prefix: prefix, partSize: cfg.PartSize,
		concurrency: cfg.Concurrency, endpoint: shown}, nil
}

// check tells what keeps the bucket from being used, if anything.
func (b *Backend) check(ctx context.Context) error {
	_, err := b.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &b.bucket})
	if err == nil {
		return nil
	}
	var send *smithyhttp.RequestSendError
	if errors.As(err, &send) {
		return fmt.Errorf("s3: cannot reach the S3 endpoint %s (is the address right and the server up?): %w", b.endpoint, err)
	}
	if msg := err.Error(); strings.Contains(msg, "get identity") || strings.Contains(msg, "get credentials") ||
		httpStatus(err) == 0 && strings.Contains(msg, "credentials") {
		// The SDK looked for credentials (its last source, the instance
		// metadata service, may even have answered 403) before it tried
		// the endpoint: an endpoint that cannot be reached is the first
		// thing to fix, and it is not a credentials problem.
		if perr := b.probe(ctx); perr != nil {
			return fmt.Errorf("s3: cannot reach the S3 endpoint %s (is the address right and the server up?): %w", b.endpoint, perr)
		}
		return fmt.Errorf("s3: no credentials for %s: set the access key ID and secret access key in the configuration, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: %w", b.endpoint, err)
	}
	// A HEAD response has no body, so no error code: a GET tells more
	// (versitygw, for one, answers 404 to an unknown access key).
	code := errorCode(err)
	if _, lerr := b.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &b.bucket, MaxKeys: aws.Int32(1)}); lerr != nil && errorCode(lerr) != "" {
		err, code = lerr, errorCode(lerr)
	}
	status := httpStatus(err)
	switch {
	case code == "InvalidAccessKeyId" || code == "SignatureDoesNotMatch" || code == "XAdminUserNotFound" ||
		code == "InvalidToken" || code == "ExpiredToken" || code == "InvalidSecurity":
		return fmt.Errorf("s3: %s rejected the credentials (access key ID or secret access key wrong?): %w", b.endpoint, err)
	case code == "AccessDenied" || code == "AllAccessDisabled" || status == 403 || status == 401:
		return fmt.Errorf("s3: access to bucket %q at %s was denied: the access key ID or secret access key is wrong, or the key has no permission on the bucket: %w", b.bucket, b.endpoint, err)
	case code == "NoSuchBucket" || status == 404:
		return fmt.Errorf("s3: bucket %q does not exist at %s; create it first (or fix the bucket name): %w", b.bucket, b.endpoint, err)
	case code == "PermanentRedirect" || code == "AuthorizationHeaderMalformed" || status == 301 || status == 307:
		return fmt.Errorf("s3: bucket %q is in another region than the one configured; set the region: %w", b.bucket, err)
	}
	return fmt.Errorf("s3: bucket %q at %s is not usable: %w", b.bucket, b.endpoint, err)
}

// probe opens a TCP connection to a configured endpoint (not Amazon S3's):
// nil if something listens there.
func (b *Backend) probe(ctx context.Context) error {
	u, err := url.Parse(b.endpoint)
	if err != nil || u.Host == "" {
		return nil
	}
	host := u.Host
	if u.Port() == "" {
		port := "443"
		if u.Scheme == "http" {
			port = "80"
		}
		host = net.JoinHostPort(u.Hostname(), port)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", host)
	if err != nil {
		return err
	}
	return c.Close()
}

// full returns the S3 key of a storage key.
func (b *Backend) full(key string) string { return b.prefix + key }

// where names an object in messages.
func (b *Backend) where(key string) string { return "s3://" + b.bucket + "/" + b.full(key) }

func httpStatus(err error) int {
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func isNotFound(err error) bool {
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	if errors.As(err, &nsk) || errors.As(err, &nf) {
		return true
	}
	switch errorCode(err) {
	case "NoSuchKey", "NotFound":
		return true
	}
	return false
}

// wrap names the operation and the object in an SDK error, and makes a
// missing object an fs.ErrNotExist.
func (b *Backend) wrap(op, key string, err error) error {
	if err == nil {
		return nil
	}
	if isNotFound(err) {
		return fmt.Errorf("s3 %s %s: %w (%w)", op, b.where(key), iofs.ErrNotExist, err)
	}
	return fmt.Errorf("s3 %s %s: %w", op, b.where(key), err)
}

// Open returns the object's bytes from offset on, with a ranged GET.
func (b *Backend) Open(ctx context.Context, key string, offset int64) (io.ReadCloser, error) {
	in := &s3.GetObjectInput{Bucket: &b.bucket, Key: aws.String(b.full(key))}
	if offset > 0 {
		in.Range = aws.String(fmt.Sprintf("bytes=%d-", offset))
	}
	out, err := b.client.GetObject(ctx, in)
	if err != nil {
		if errorCode(err) != "InvalidRange" && httpStatus(err) != 416 {
			return nil, b.wrap("open", key, err)
		}
		// Offset at or past the end of the stored object (S3 answers 416):
		// the object may still be longer (an upload, see append.go).
		h, err := b.head(ctx, key)
		if err != nil {
			return nil, err
		}
		if offset >= h.size() {
			return io.NopCloser(strings.NewReader("")), nil
		}
		return b.openAppended(ctx, key, h, offset)
	}
	h := headOf(out.Metadata, aws.ToInt64(out.ContentLength), out.ETag, out.LastModified)
	if h.base == 0 {
		return out.Body, nil
	}
	out.Body.Close()
	if offset > 0 {
		// ContentLength is the length of the range; Content-Range has the
		// whole tail's: "bytes <first>-<last>/<length>".
		cr := aws.ToString(out.ContentRange)
		total, err := parseInt(cr[strings.LastIndex(cr, "/")+1:])
		if err != nil || total <= 0 {
			if h, err = b.head(ctx, key); err != nil {
				return nil, err
			}
		} else {
			h.length = total
		}
	}
	return b.openAppended(ctx, key, h, offset)
}

// Put stores r under key: one PutObject up to PartSize bytes, a multipart
// upload above (or when the size is unknown and turns out larger).
func (b *Backend) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	r = ctxReader{ctx, r}
	if size > b.partSize {
		return b.putMultipart(ctx, key, r, size)
	}
	// Up to PartSize bytes (or an unknown size): read one byte more than
	// fits in one PutObject to see whether it does.
	limit := b.partSize
	if size >= 0 {
		limit = size
	}
	var buf bytes.Buffer
	if size >= 0 {
		buf.Grow(int(size) + 1)
	}
	n, err := io.CopyN(&buf, r, limit+1)
	switch {
	case err == io.EOF:
		if size >= 0 && n != size {
			return fmt.Errorf("s3 put %s: the data has %d bytes, not %d", b.where(key), n, size)
		}
		return b.putSmall(ctx, key, buf.Bytes(), nil)
	case err != nil:
		return fmt.Errorf("s3 put %s: %w", b.where(key), err)
	case size >= 0:
		return fmt.Errorf("s3 put %s: the data is longer than %d bytes", b.where(key), size)
	}
	return b.putMultipart(ctx, key, io.MultiReader(&buf, r), size)
}

// putSmall stores data with one PutObject.
func (b *Backend) putSmall(ctx context.Context, key string, data []byte, meta map[string]string) error {
	_, err := b.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &b.bucket, Key: aws.String(b.full(key)), Body: bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))), Metadata: meta,
	})
	return b.wrap("put", key, err)
}

// putMultipart streams r into a multipart upload, completed only if r ends
// without error (and with size bytes, when size >= 0), aborted otherwise.
func (b *Backend) putMultipart(ctx context.Context, key string, r io.Reader, size int64) error {
	fixed := int64(0) // with a known size, one part size that fits it in maxParts parts
	if size >= 0 {
		fixed = max(b.partSize, (size+maxParts-1)/maxParts)
	}
	// CRC32 checksums of the parts, as the SDK's transfer manager sends.
	created, err := b.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket: &b.bucket, Key: aws.String(b.full(key)), ChecksumAlgorithm: types.ChecksumAlgorithmCrc32})
	if err != nil {
		return b.wrap("put (create multipart upload)", key, err)
	}
	id := created.UploadId
	var mu sync.Mutex
	var parts []types.CompletedPart
	p := newPipeline(ctx, b.concurrency)
	var total int64
	var rerr error
	for n := int32(1); ; n++ {
		if n > maxParts {
			rerr = fmt.Errorf("the data needs more than %d parts", maxParts)
			break
		}
		ps := fixed
		if ps == 0 {
			ps = b.partSizeAt(int(n - 1))
		}
		buf := make([]byte, ps)
		got, err := io.ReadFull(r, buf)
		total += int64(got)
		if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
			rerr = err
			break
		}
		if perr := p.Failed(); perr != nil {
			break
		}
		if got > 0 || n == 1 {
			data, num := buf[:got], n
			p.Go(func(ctx context.Context) error {
				out, err := b.client.UploadPart(ctx, &s3.UploadPartInput{
					Bucket: &b.bucket, Key: aws.String(b.full(key)), UploadId: id, PartNumber: aws.Int32(num),
					Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(len(data))),
					ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
				})
				if err != nil {
					return b.wrap(fmt.Sprintf("put (upload part %d)", num), key, err)
				}
				mu.Lock()
				parts = append(parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(num),
					ChecksumCRC32: out.ChecksumCRC32, ChecksumCRC32C: out.ChecksumCRC32C,
					ChecksumCRC64NVME: out.ChecksumCRC64NVME, ChecksumSHA1: out.ChecksumSHA1, ChecksumSHA256: out.ChecksumSHA256})
				mu.Unlock()
				return nil
			})
		}
		if err != nil { // EOF
			break
		}
	}
	perr := p.Wait()
	if rerr == nil && size >= 0 && total != size {
		rerr = fmt.Errorf("the data has %d bytes, not %d", total, size)
	}
	if rerr == nil && perr == nil {
		sort.Slice(parts, func(i, j int) bool { return *parts[i].PartNumber < *parts[j].PartNumber })
		_, err := b.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
			Bucket: &b.bucket, Key: aws.String(b.full(key)), UploadId: id,
			MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
		})
		if err == nil {
			return nil
		}
		perr = b.wrap("put (complete multipart upload)", key, err)
	}
	b.abort(ctx, key, id)
	if rerr != nil {
		return fmt.Errorf("s3 put %s: %w", b.where(key), rerr)
	}
	return perr
}

// abort aborts a multipart upload, even when ctx was cancelled.
func (b *Backend) abort(ctx context.Context, key string, id *string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	// The error is not returned: the caller's error matters more, and
	// AbortStaleUploads (or a lifecycle rule) collects what is left.
	b.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
		Bucket: &b.bucket, Key: aws.String(b.full(key)), UploadId: id})
}

// partSizeAt is the size of part n (0-based) of a write of unknown size: it
// doubles every 1000 parts, so that 10,000 parts reach S3's 5 TiB limit.
func (b *Backend) partSizeAt(n int) int64 {
	return min(b.partSize<<(n/partGrowth), maxS3Part)
}

// Stat returns the object's size (HeadObject).
func (b *Backend) Stat(ctx context.Context, key string) (stowage.ObjectInfo, error) {
	h, err := b.head(ctx, key)
	if err != nil {
		return stowage.ObjectInfo{}, err
	}
	return stowage.ObjectInfo{Key: key, Size: h.size(), ModTime: h.modTime}, nil
}

// Delete removes the object and, if it is an upload object (append.go), its
// parts. S3 does not mind deleting a missing key.
func (b *Backend) Delete(ctx context.Context, key string) error {
	_, err := b.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &b.bucket, Key: aws.String(b.full(key))})
	if err != nil && !isNotFound(err) {
		return b.wrap("delete", key, err)
	}
	return b.deleteParts(ctx, key, -1)
}

// List calls fn for every object under prefix, a page (1000 keys) at a time.
// An upload object in progress is listed as stored: its tail object (at its
// key, with the tail's size) and its part objects (see append.go).
func (b *Backend) List(ctx context.Context, prefix string, fn func(stowage.ObjectInfo) error) error {
	return b.list(ctx, prefix, func(o types.Object) error {
		return fn(stowage.ObjectInfo{Key: strings.TrimPrefix(aws.ToString(o.Key), b.prefix),
			Size: aws.ToInt64(o.Size), ModTime: aws.ToTime(o.LastModified)})
	})
}

func (b *Backend) list(ctx context.Context, prefix string, fn func(types.Object) error) error {
	pg := s3.NewListObjectsV2Paginator(b.client, &s3.ListObjectsV2Input{
		Bucket: &b.bucket, Prefix: aws.String(b.full(prefix))})
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return b.wrap("list", prefix+"*", err)
		}
		for _, o := range page.Contents {
			if err := fn(o); err != nil {
				return err
			}
		}
	}
	return nil
}

// AbortStaleUploads aborts the multipart uploads under the backend's prefix
// that were started more than age ago: what a process killed in the middle of
// a Put or Commit left. It returns how many it aborted.
func (b *Backend) AbortStaleUploads(ctx context.Context, age time.Duration) (int, error) {
	in := &s3.ListMultipartUploadsInput{Bucket: &b.bucket, Prefix: aws.String(b.prefix)}
	n := 0
	for {
		out, err := b.client.ListMultipartUploads(ctx, in)
		if err != nil {
			return n, b.wrap("list multipart uploads", "*", err)
		}
		for _, u := range out.Uploads {
			if time.Since(aws.ToTime(u.Initiated)) < age {
				continue
			}
			_, err := b.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
				Bucket: &b.bucket, Key: u.Key, UploadId: u.UploadId})
			if err != nil && errorCode(err) != "NoSuchUpload" {
				return n, b.wrap("abort multipart upload", strings.TrimPrefix(aws.ToString(u.Key), b.prefix), err)
			}
			n++
		}
		if !aws.ToBool(out.IsTruncated) {
			return n, nil
		}
		in.KeyMarker, in.UploadIdMarker = out.NextKeyMarker, out.NextUploadIdMarker
	}
}

// copySource is the x-amz-copy-source of key: bucket/key, URL-escaped.
func (b *Backend) copySource(key string) *string {
	segs := strings.Split(b.full(key), "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return aws.String(url.PathEscape(b.bucket) + "/" + strings.Join(segs, "/"))
}

// ctxReader stops a long copy when the request is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// pipeline runs up to n requests at once; the first error cancels the rest.
type pipeline struct {
	ctx    context.Context
	cancel context.CancelFunc
	sem    chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
	err    error
}

func newPipeline(ctx context.Context, n int) *pipeline {
	ctx, cancel := context.WithCancel(ctx)
	return &pipeline{ctx: ctx, cancel: cancel, sem: make(chan struct{}, n)}
}

// Go runs fn when a slot is free (it blocks until then, which is what keeps
// the number of buffered parts bounded).
func (p *pipeline) Go(fn func(context.Context) error) {
	select {
	case p.sem <- struct{}{}:
	case <-p.ctx.Done():
		p.fail(p.ctx.Err())
		return
	}
	p.wg.Add(1)
	go func() {
		defer func() { <-p.sem; p.wg.Done() }()
		if err := fn(p.ctx); err != nil {
			p.fail(err)
		}
	}()
}

func (p *pipeline) fail(err error) {
	p.once.Do(func() { p.err = err; p.cancel() })
}

// Failed reports the first error so far, without waiting.
func (p *pipeline) Failed() error {
	select {
	case <-p.ctx.Done():
		p.once.Do(func() { p.err = p.ctx.Err() })
		return p.err
	default:
		return nil
	}
}

// Wait waits for every request and returns the first error.
func (p *pipeline) Wait() error {
	p.wg.Wait()
	p.once.Do(func() {}) // no error: p.err stays nil
	p.cancel()
	return p.err
}

// parseInt parses a metadata number ("" is 0).
func parseInt(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	return strconv.ParseInt(s, 10, 64)
}
