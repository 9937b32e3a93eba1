package s3

// These tests need an S3 server: scripts/s3-test.sh starts versitygw and sets
// STOWAGE_TEST_S3_ENDPOINT, STOWAGE_TEST_S3_ACCESS_KEY,
// STOWAGE_TEST_S3_SECRET_KEY and STOWAGE_TEST_S3_BUCKET (and optionally
// STOWAGE_TEST_S3_REGION). The bucket is created if missing. Every test works
// under its own key prefix, removed at the end.

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/internal/testenv"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/storage/crypt"
	"github.com/stowage/stowage/storage/storagetest"
)

var ctx = context.Background()

// testConfig returns the server's configuration, or skips the test.
func testConfig(t *testing.T) Config {
	t.Helper()
	ep := os.Getenv("STOWAGE_TEST_S3_ENDPOINT")
	if ep == "" {
		testenv.Skip(t, "s3", "no S3 server: set STOWAGE_TEST_S3_ENDPOINT, STOWAGE_TEST_S3_ACCESS_KEY, STOWAGE_TEST_S3_SECRET_KEY and STOWAGE_TEST_S3_BUCKET, or run scripts/s3-test.sh (starts versitygw)")
	}
	cfg := Config{
		Endpoint:        ep,
		Region:          os.Getenv("STOWAGE_TEST_S3_REGION"),
		Bucket:          os.Getenv("STOWAGE_TEST_S3_BUCKET"),
		AccessKeyID:     os.Getenv("STOWAGE_TEST_S3_ACCESS_KEY"),
		SecretAccessKey: os.Getenv("STOWAGE_TEST_S3_SECRET_KEY"),
		UsePathStyle:    true,
		PartSize:        MinPartSize, // so that tests of a few MiB use several parts
	}
	if cfg.Bucket == "" {
		cfg.Bucket = "stowage-test"
	}
	ensureBucket(t, cfg)
	return cfg
}

var bucketOnce sync.Once

func ensureBucket(t *testing.T, cfg Config) {
	bucketOnce.Do(func() {
		b, err := newBackend(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if b.check(ctx) == nil {
			return
		}
		if _, err := b.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &cfg.Bucket}); err != nil {
			t.Fatalf("create bucket %s: %v", cfg.Bucket, err)
		}
	})
}

var unsafeChars = regexp.MustCompile(`[^a-z0-9]+`)

// uniquePrefix is a key prefix no other test (or run) uses.
func uniquePrefix(t *testing.T) string {
	var r [4]byte
	rand.Read(r[:])
	name := strings.Trim(unsafeChars.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	return fmt.Sprintf("stowage-test/%s-%x-%s/", time.Now().UTC().Format("20060102t150405"), r, name)
}

// newTestBackend returns a Backend under a fresh prefix, emptied at the end.
func newTestBackend(t *testing.T) (*Backend, Config) {
	t.Helper()
	cfg := testConfig(t)
	cfg.Prefix = uniquePrefix(t)
	b, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		var keys []string
		b.List(ctx, "", func(oi stowage.ObjectInfo) error { keys = append(keys, oi.Key); return nil })
		for _, k := range keys {
			b.Delete(ctx, k)
		}
		b.AbortStaleUploads(ctx, 0)
	})
	return b, cfg
}

func TestConformance(t *testing.T) {
	testConfig(t)
	storagetest.Run(t, func(t *testing.T) stowage.Backend {
		b, _ := newTestBackend(t)
		return b
	})
}

// Encryption over S3: the decorator is an Appender too, and rewrites the
// last segment of the upload object on every chunk.
func TestConformanceEncrypted(t *testing.T) {
	testConfig(t)
	storagetest.Run(t, func(t *testing.T) stowage.Backend {
		b, _ := newTestBackend(t)
		c := crypt.New(b, newManager(t))
		if _, ok := c.(stowage.Appender); !ok {
			t.Fatal("crypt over s3 is not an Appender")
		}
		return c
	})
}

func newManager(t *testing.T) *crypt.Manager {
	db, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	k, err := crypt.OpenFileKeyring(filepath.Join(t.TempDir(), "keys", "service.json"), true)
	if err != nil {
		t.Fatal(err)
	}
	return crypt.NewManager(db, k)
}

func random(t *testing.T, n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func read(t *testing.T, b stowage.Backend, key string, off int64) []byte {
	t.Helper()
	rc, err := b.Open(ctx, key, off)
	if err != nil {
		t.Fatalf("Open(%s, %d): %v", key, off, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s from %d: %v", key, off, err)
	}
	return data
}

// onlyReader hides other interfaces (bytes.Reader's Seek, WriterTo): a
// request body streamed from the network.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

// failingReader yields data, then fails.
type failingReader struct {
	data []byte
	err  error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, f.err
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

var errBoom = errors.New("boom")

// multipartUploads lists the incomplete multipart uploads under b's prefix.
func multipartUploads(t *testing.T, b *Backend) []string {
	t.Helper()
	out, err := b.client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &b.bucket, Prefix: aws.String(b.prefix)})
	if err != nil {
		t.Fatalf("ListMultipartUploads: %v", err)
	}
	var keys []string
	for _, u := range out.Uploads {
		keys = append(keys, aws.ToString(u.Key))
	}
	return keys
}

func listKeys(t *testing.T, b stowage.Backend, prefix string) []string {
	t.Helper()
	var keys []string
	if err := b.List(ctx, prefix, func(oi stowage.ObjectInfo) error { keys = append(keys, oi.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	sort.Strings(keys)
	return keys
}

// Large objects go through multipart uploads, with known and unknown sizes.
func TestPutMultipart(t *testing.T) {
	b, _ := newTestBackend(t)
	data := random(t, 3*MinPartSize+12345)
	for _, size := range []int64{int64(len(data)), -1} {
		key := fmt.Sprintf("blobs/x/mu/size%d", size)
		if err := b.Put(ctx, key, onlyReader{bytes.NewReader(data)}, size); err != nil {
			t.Fatal(err)
		}
		if got := read(t, b, key, 0); !bytes.Equal(got, data) {
			t.Fatalf("size %d: read back %d bytes, differing", size, len(got))
		}
		if got := read(t, b, key, MinPartSize+7); !bytes.Equal(got, data[MinPartSize+7:]) {
			t.Fatalf("size %d: read at an offset: differing", size)
		}
		if fi, err := b.Stat(ctx, key); err != nil || fi.Size != int64(len(data)) {
			t.Fatalf("Stat = %+v, %v", fi, err)
		}
	}
	// A size that does not match the data: nothing is stored.
	if err := b.Put(ctx, "blobs/x/mu/short", bytes.NewReader(data), int64(len(data))+1); err == nil {
		t.Error("Put with fewer bytes than its size succeeded")
	}
	if err := b.Put(ctx, "blobs/x/mu/long", bytes.NewReader(data), int64(len(data))-1); err == nil {
		t.Error("Put with more bytes than its size succeeded")
	}
	if err := b.Put(ctx, "blobs/x/mu/small", bytes.NewReader(data[:10]), 11); err == nil {
		t.Error("small Put with fewer bytes than its size succeeded")
	}
	if keys := listKeys(t, b, "blobs/x/mu/"); strings.Join(keys, ",") != "blobs/x/mu/size-1,blobs/x/mu/size"+fmt.Sprint(len(data)) {
		t.Errorf("objects after Puts: %v", keys)
	}
	if ups := multipartUploads(t, b); len(ups) != 0 {
		t.Errorf("multipart uploads left: %v", ups)
	}
}

// A reader error in the middle of a multipart Put aborts the upload: no
// object, no multipart upload left, and an existing object is kept.
func TestPutReaderErrorAborts(t *testing.T) {
	b, _ := newTestBackend(t)
	key := "blobs/ab/or/ted"
	for _, size := range []int64{-1, 4 * MinPartSize} {
		err := b.Put(ctx, key, &failingReader{data: random(t, 2*MinPartSize+100), err: errBoom}, size)
		if !errors.Is(err, errBoom) {
			t.Fatalf("Put with a failing reader (size %d): err = %v, want the reader's error", size, err)
		}
		if _, err := b.Stat(ctx, key); !stowage.IsNotExist(err) {
			t.Errorf("a failed Put left an object (Stat err = %v)", err)
		}
		if ups := multipartUploads(t, b); len(ups) != 0 {
			t.Errorf("a failed Put left multipart uploads: %v", ups)
		}
	}
	old := random(t, 1000)
	if err := b.Put(ctx, key, bytes.NewReader(old), int64(len(old))); err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, key, &failingReader{data: random(t, 2*MinPartSize+100), err: errBoom}, -1); err == nil {
		t.Fatal("Put with a failing reader succeeded")
	}
	if got := read(t, b, key, 0); !bytes.Equal(got, old) {
		t.Error("a failed replace changed the object")
	}
	// A cancelled context aborts too.
	cctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	go func() {
		pw.Write(random(t, 2*MinPartSize))
		cancel()
		pw.Write(random(t, 1000))
		pw.Close()
	}()
	if err := b.Put(cctx, "blobs/ca/nc/elled", pr, -1); err == nil {
		t.Error("Put with a cancelled context succeeded")
	}
	pr.Close()
	if _, err := b.Stat(ctx, "blobs/ca/nc/elled"); !stowage.IsNotExist(err) {
		t.Errorf("a cancelled Put left an object (Stat err = %v)", err)
	}
	if ups := multipartUploads(t, b); len(ups) != 0 {
		t.Errorf("a cancelled Put left multipart uploads: %v", ups)
	}
}

// TestAbortStaleUploads: the multipart upload a process killed in the middle
// of a Put leaves is aborted once it is older than the age given (stowage
// serve calls AbortStaleUploads at start and hourly), and only under the
// backend's prefix.
func TestAbortStaleUploads(t *testing.T) {
	b, _ := newTestBackend(t)
	other, _ := newTestBackend(t)
	// What a killed Put leaves: a multipart upload with a part, never
	// completed nor aborted.
	killedPut := func(b *Backend, key string) {
		t.Helper()
		up, err := b.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &b.bucket, Key: aws.String(b.full(key))})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.client.UploadPart(ctx, &s3.UploadPartInput{Bucket: &b.bucket, Key: aws.String(b.full(key)), UploadId: up.UploadId,
			PartNumber: aws.Int32(1), Body: bytes.NewReader(random(t, MinPartSize))}); err != nil {
			t.Fatal(err)
		}
	}
	killedPut(b, "blobs/ki/ll/ed")
	killedPut(other, "blobs/ot/he/r")
	if err := b.Put(ctx, "blobs/ke/pt/one", bytes.NewReader([]byte("kept")), 4); err != nil {
		t.Fatal(err)
	}
	if n, err := b.AbortStaleUploads(ctx, time.Hour); err != nil || n != 0 {
		t.Errorf("AbortStaleUploads(1h) of a fresh upload = %d, %v; want 0 (it may still be running)", n, err)
	}
	if ups := multipartUploads(t, b); len(ups) != 1 {
		t.Fatalf("multipart uploads before the abort: %v, want 1", ups)
	}
	time.Sleep(1100 * time.Millisecond) // S3 times have 1 s resolution
	if n, err := b.AbortStaleUploads(ctx, time.Second); err != nil || n != 1 {
		t.Errorf("AbortStaleUploads(1s) = %d, %v; want 1 aborted", n, err)
	}
	if ups := multipartUploads(t, b); len(ups) != 0 {
		t.Errorf("multipart uploads left after the abort: %v", ups)
	}
	if ups := multipartUploads(t, other); len(ups) != 1 {
		t.Errorf("the abort reached another prefix: %v", ups)
	}
	if got := read(t, b, "blobs/ke/pt/one", 0); string(got) != "kept" {
		t.Errorf("a complete object after the abort: %q", got)
	}
}

// A docker-style push: one Append streams a whole layer into parts; the
// upload object reads back whole from any offset; Commit copies it (cut at
// size) and removes every piece.
func TestAppendStream(t *testing.T) {
	b, _ := newTestBackend(t)
	data := random(t, 4*MinPartSize+MinPartSize/3)
	key := "uploads/stream/data"
	n, err := b.Append(ctx, key, 0, onlyReader{bytes.NewReader(data)})
	if err != nil || n != int64(len(data)) {
		t.Fatalf("Append = %d, %v; want %d", n, err, len(data))
	}
	if parts := listKeys(t, b, key+partsSuffix); len(parts) < 3 {
		t.Errorf("a streamed append made %d part objects, want several: %v", len(parts), parts)
	}
	if fi, err := b.Stat(ctx, key); err != nil || fi.Size != int64(len(data)) {
		t.Fatalf("Stat of the upload object = %+v, %v", fi, err)
	}
	for _, off := range []int64{0, 1, MinPartSize - 1, MinPartSize, 2*MinPartSize + 5, int64(len(data)) - minTail - 1, int64(len(data)) - 1, int64(len(data))} {
		if got := read(t, b, key, off); !bytes.Equal(got, data[off:]) {
			t.Errorf("Open of the upload object at %d: %d bytes, differing", off, len(got))
		}
	}
	// Commit all of it.
	if err := b.Commit(ctx, key, "blobs/st/re/am", int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if got := read(t, b, "blobs/st/re/am", 0); !bytes.Equal(got, data) {
		t.Fatal("committed object differs")
	}
	if keys := listKeys(t, b, "uploads/"); len(keys) != 0 {
		t.Errorf("Commit left upload objects: %v", keys)
	}

	// Commit a prefix that ends inside a part (a tail the registry never
	// recorded): the rest never reaches dst.
	if _, err := b.Append(ctx, key, 0, onlyReader{bytes.NewReader(data)}); err != nil {
		t.Fatal(err)
	}
	cut := int64(2*MinPartSize + 1234)
	if err := b.Commit(ctx, key, "blobs/cu/t/x", cut); err != nil {
		t.Fatal(err)
	}
	if got := read(t, b, "blobs/cu/t/x", 0); !bytes.Equal(got, data[:cut]) {
		t.Fatalf("Commit(size %d) stored %d bytes, differing", cut, len(got))
	}
	if err := b.Commit(ctx, key, "blobs/cu/t/y", cut); !stowage.IsNotExist(err) {
		t.Errorf("second Commit of the same upload: err = %v, want not-exist", err)
	}
	if ups := multipartUploads(t, b); len(ups) != 0 {
		t.Errorf("multipart uploads left: %v", ups)
	}
	if keys := listKeys(t, b, "uploads/"); len(keys) != 0 {
		t.Errorf("upload objects left: %v", keys)
	}
}

// The process restarts between chunks: a new Backend on the same bucket and
// prefix goes on with the upload; a chunk retried from an offset inside the
// uploaded parts (the registry recorded less than was stored) works too.
func TestAppendAcrossRestart(t *testing.T) {
	b1, cfg := newTestBackend(t)
	data := random(t, 5*MinPartSize+777)
	key := "uploads/restart/data"
	chunks := []int64{MinPartSize / 2, MinPartSize + 3, 2 * MinPartSize} // then the rest
	var off int64
	for _, c := range chunks {
		n, err := b1.Append(ctx, key, off, bytes.NewReader(data[off:off+c]))
		off += c
		if err != nil || n != off {
			t.Fatalf("Append = %d, %v; want %d", n, err, off)
		}
	}
	b2, err := New(ctx, cfg) // the restarted process
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := b2.Stat(ctx, key); err != nil || fi.Size != off {
		t.Fatalf("after a restart, Stat = %+v, %v; want size %d", fi, err, off)
	}
	// A chunk that fails half-way leaves the upload as it was.
	if _, err := b2.Append(ctx, key, off, &failingReader{data: data[off : off+MinPartSize+minTail+10], err: errBoom}); !errors.Is(err, errBoom) {
		t.Fatalf("Append with a failing reader: err = %v, want the reader's error", err)
	}
	if fi, err := b2.Stat(ctx, key); err != nil || fi.Size != off {
		t.Fatalf("after a failed Append, Stat = %+v, %v; want size %d", fi, err, off)
	}
	// Retry from an offset inside an uploaded part.
	back := int64(MinPartSize + 100)
	if back >= off-minTail {
		t.Fatalf("test setup: offset %d is not inside the parts (size %d)", back, off)
	}
	n, err := b2.Append(ctx, key, back, bytes.NewReader(data[back:]))
	if err != nil || n != int64(len(data)) {
		t.Fatalf("Append from inside the parts = %d, %v; want %d", n, err, len(data))
	}
	if got := read(t, b2, key, 0); !bytes.Equal(got, data) {
		t.Fatal("upload object differs after a restart and a retry")
	}
	b3, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := b3.Commit(ctx, key, "blobs/re/st/art", int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if got := read(t, b3, "blobs/re/st/art", 0); !bytes.Equal(got, data) {
		t.Fatal("committed object differs")
	}
	if keys := listKeys(t, b3, "uploads/"); len(keys) != 0 {
		t.Errorf("Commit left upload objects: %v", keys)
	}
	if ups := multipartUploads(t, b3); len(ups) != 0 {
		t.Errorf("multipart uploads left: %v", ups)
	}
}

// Small chunks, and the crypt-style rewrite of the last bytes: Append at an
// offset a little before the end replaces what follows.
func TestAppendRewriteTail(t *testing.T) {
	b, _ := newTestBackend(t)
	key := "uploads/rewrite/data"
	var want []byte
	var size int64
	for i := 0; i < 40; i++ {
		chunk := random(t, 300<<10)
		at := size
		if i%3 == 1 {
			at = max(0, size-(64<<10+28)) // rewrite the last segment
		}
		want = append(want[:at], chunk...)
		n, err := b.Append(ctx, key, at, bytes.NewReader(chunk))
		if err != nil || n != int64(len(want)) {
			t.Fatalf("chunk %d: Append(%d) = %d, %v; want %d", i, at, n, err, len(want))
		}
		size = n
	}
	if got := read(t, b, key, 0); !bytes.Equal(got, want) {
		t.Fatal("upload object differs")
	}
	if err := b.Commit(ctx, key, "blobs/sm/al/l", size); err != nil {
		t.Fatal(err)
	}
	if got := read(t, b, "blobs/sm/al/l", 0); !bytes.Equal(got, want) {
		t.Fatal("committed object differs")
	}
	if keys := listKeys(t, b, "uploads/"); len(keys) != 0 {
		t.Errorf("Commit left upload objects: %v", keys)
	}
}

// Delete of an upload object removes its parts; errors of Commit and Append.
func TestAppendDeleteAndErrors(t *testing.T) {
	b, _ := newTestBackend(t)
	key := "uploads/del/data"
	data := random(t, 2*MinPartSize+minTail+1)
	if _, err := b.Append(ctx, key, 0, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if len(listKeys(t, b, key+partsSuffix)) == 0 {
		t.Fatal("no part objects")
	}
	if err := b.Commit(ctx, key, "blobs/to/o/long", int64(len(data))+1); err == nil {
		t.Error("Commit of more bytes than the upload has succeeded")
	}
	if _, err := b.Append(ctx, key, int64(len(data))+1, bytes.NewReader(data)); err == nil {
		t.Error("Append past the end succeeded")
	}
	if _, err := b.Append(ctx, "uploads/none/data", 5, bytes.NewReader(data)); err == nil {
		t.Error("Append to a missing upload object at offset 5 succeeded")
	}
	if err := b.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if keys := listKeys(t, b, "uploads/"); len(keys) != 0 {
		t.Errorf("Delete left upload objects: %v", keys)
	}
	if _, err := b.Stat(ctx, key); !stowage.IsNotExist(err) {
		t.Errorf("after Delete, Stat err = %v", err)
	}
}

// New says what is wrong.
func TestNewErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	_, err = New(ctx, Config{Endpoint: "http://" + closed, Bucket: "b", AccessKeyID: "a", SecretAccessKey: "s", UsePathStyle: true})
	t.Log(err)
	if err == nil || !strings.Contains(err.Error(), "cannot reach") {
		t.Errorf("unreachable endpoint: %v", err)
	}
	if _, err := New(ctx, Config{Endpoint: "http://" + closed}); err == nil || !strings.Contains(err.Error(), "no bucket") {
		t.Errorf("no bucket: %v", err)
	}
	if _, err := New(ctx, Config{Bucket: "b", PartSize: 1 << 20}); err == nil || !strings.Contains(err.Error(), "part size") {
		t.Errorf("small part size: %v", err)
	}

	if os.Getenv("STOWAGE_TEST_S3_ENDPOINT") == "" && !testenv.Required("s3") {
		t.Log("no S3 server: skipping the checks of credentials and bucket")
		return
	}
	cfg := testConfig(t)
	bad := cfg
	bad.SecretAccessKey += "-wrong"
	_, err = New(ctx, bad)
	t.Log(err)
	if err == nil || !strings.Contains(err.Error(), "secret access key") {
		t.Errorf("wrong secret: %v", err)
	}
	bad = cfg
	bad.AccessKeyID = "nosuchkey"
	_, err = New(ctx, bad)
	t.Log(err)
	if err == nil || !strings.Contains(err.Error(), "secret access key") {
		t.Errorf("unknown access key: %v", err)
	}
	bad = cfg
	bad.Bucket = "stowage-no-such-bucket"
	_, err = New(ctx, bad)
	t.Log(err)
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing bucket: %v", err)
	}
	// Credentials from the environment.
	env := cfg
	env.AccessKeyID, env.SecretAccessKey = "", ""
	t.Setenv("AWS_ACCESS_KEY_ID", cfg.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", cfg.SecretAccessKey)
	if _, err := New(ctx, env); err != nil {
		t.Errorf("credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY: %v", err)
	}
}

// No credentials anywhere: the message says where to put them.
func TestNewNoCredentials(t *testing.T) {
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "", "AWS_PROFILE": "",
		"AWS_CONFIG_FILE": filepath.Join(dir, "config"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "credentials"),
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_WEB_IDENTITY_TOKEN_FILE": "", "AWS_CONTAINER_CREDENTIALS_FULL_URI": "",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "",
	} {
		t.Setenv(k, v)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0") // an endpoint that answers
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = New(ctx, Config{Endpoint: "http://" + ln.Addr().String(), Bucket: "b", UsePathStyle: true})
	t.Log(err)
	if err == nil || !strings.Contains(err.Error(), "no credentials") {
		t.Errorf("no credentials: %v", err)
	}
	// An endpoint that cannot be reached is said so, not blamed on the
	// credentials (the SDK looks for them before it dials).
	_, err = New(ctx, Config{Endpoint: "http://127.0.0.1:1", Bucket: "b", UsePathStyle: true})
	if err == nil || !strings.Contains(err.Error(), "cannot reach the S3 endpoint http://127.0.0.1:1") {
		t.Errorf("no credentials, endpoint unreachable: %v", err)
	}
}

// A chunked push through the encryption decorator, large enough for parts:
// every chunk reseals the last segment, an Append a little before the end of
// the stored object.
func TestEncryptedChunkedPush(t *testing.T) {
	inner, _ := newTestBackend(t)
	b := crypt.New(inner, newManager(t))
	a := b.(stowage.Appender)
	data := random(t, 3*MinPartSize+MinPartSize/2+17)
	key := "uploads/enc/data"
	var off int64
	for _, n := range []int64{MinPartSize + 1000, 300 << 10, 2 * MinPartSize, -1} {
		if n < 0 {
			n = int64(len(data)) - off
		}
		got, err := a.Append(ctx, key, off, onlyReader{bytes.NewReader(data[off : off+n])})
		off += n
		if err != nil || got != off {
			t.Fatalf("Append = %d, %v; want %d", got, err, off)
		}
	}
	if parts := listKeys(t, inner, key+partsSuffix); len(parts) < 2 {
		t.Errorf("encrypted upload has %d part objects, want several", len(parts))
	}
	if got := read(t, b, key, 0); !bytes.Equal(got, data) {
		t.Fatal("encrypted upload object reads back differently")
	}
	if err := a.Commit(ctx, key, "blobs/en/cr/ypted", off); err != nil {
		t.Fatal(err)
	}
	if got := read(t, b, "blobs/en/cr/ypted", 0); !bytes.Equal(got, data) {
		t.Fatal("committed encrypted object differs")
	}
	if got := read(t, inner, "blobs/en/cr/ypted", 0); bytes.Contains(got, data[:4096]) {
		t.Error("the stored object holds plaintext")
	}
	if keys := listKeys(t, inner, "uploads/"); len(keys) != 0 {
		t.Errorf("upload objects left: %v", keys)
	}
}
