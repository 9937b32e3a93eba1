package azure_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/internal/testenv"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/storage/azure"
	"github.com/stowage/stowage/storage/crypt"
	"github.com/stowage/stowage/storage/storagetest"
)

// The tests run against a real server: scripts/azure-test.sh starts Azurite
// and sets these variables. Each test works under its own key prefix.
const (
	envConn      = "STOWAGE_TEST_AZURE_CONNECTION_STRING"
	envContainer = "STOWAGE_TEST_AZURE_CONTAINER"
)

var ctx = context.Background()

func serverConfig(t *testing.T) azure.Config {
	t.Helper()
	cs := os.Getenv(envConn)
	if cs == "" {
		testenv.Skip(t, "azure", envConn+" is not set: run scripts/azure-test.sh, which starts Azurite and runs these tests against it")
	}
	name := os.Getenv(envContainer)
	if name == "" {
		name = "stowage-test"
	}
	return azure.Config{ConnectionString: cs, Container: name, CreateContainer: true}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

var unsafeChars = regexp.MustCompile(`[^a-z0-9]+`)

// uniquePrefix returns a fresh prefix for t; everything under it is deleted
// when t ends.
func uniquePrefix(t *testing.T, cfg azure.Config) string {
	p := "test/" + strings.Trim(unsafeChars.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-") + "-" + randomHex(4) + "/"
	t.Cleanup(func() {
		cfg.Prefix = p
		b, err := azure.New(ctx, cfg)
		if err != nil {
			t.Logf("cleanup of %s: %v", p, err)
			return
		}
		b.List(ctx, "", func(oi stowage.ObjectInfo) error { return b.Delete(ctx, oi.Key) })
	})
	return p
}

// newBackend returns a Backend under a fresh prefix, with mod applied to
// its configuration; the configuration is returned to make more Backends
// over the same objects (a restarted server).
func newBackend(t *testing.T, mod func(*azure.Config)) (*azure.Backend, azure.Config) {
	t.Helper()
	cfg := serverConfig(t)
	if mod != nil {
		mod(&cfg)
	}
	cfg.Prefix = uniquePrefix(t, cfg)
	b, err := azure.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b, cfg
}

func reopen(t *testing.T, cfg azure.Config) *azure.Backend {
	t.Helper()
	b, err := azure.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// small makes every write multi-block and every Commit of more than 1 MiB a
// blockwise copy, so the suite's small objects take the large-object paths.
func small(c *azure.Config) { c.BlockSize, c.Concurrency = 64<<10, 3 }

func smallBackend(t *testing.T) *azure.Backend {
	b, _ := newBackend(t, small)
	azure.SetCopyLimits(b, 1<<20, 256<<10)
	azure.SetListPageSize(b, 2)
	return b
}

func TestConformance(t *testing.T) {
	serverConfig(t)
	storagetest.Run(t, func(t *testing.T) stowage.Backend { b, _ := newBackend(t, nil); return b })
}

// Staged Puts (and their race between concurrent writers of one key),
// multi-block appends restaging a block's start, blockwise commit copies,
// List pagination.
func TestConformanceSmallBlocks(t *testing.T) {
	serverConfig(t)
	storagetest.Run(t, func(t *testing.T) stowage.Backend { return smallBackend(t) })
}

// The same, with pieces restaged by download and upload (the fallback when
// Put Block From URL is refused).
func TestConformanceWithoutFromURL(t *testing.T) {
	serverConfig(t)
	storagetest.Run(t, func(t *testing.T) stowage.Backend {
		b := smallBackend(t)
		azure.SetNoFromURL(b)
		return b
	})
}

func openDB(t *testing.T) *sqlite.DB {
	db, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func newManager(t *testing.T) *crypt.Manager {
	k, err := crypt.OpenFileKeyring(filepath.Join(t.TempDir(), "keys", "service.json"), true)
	if err != nil {
		t.Fatal(err)
	}
	return crypt.NewManager(openDB(t), k)
}

// The encryption decorator appends at offsets before the end (it seals its
// last segment again), the case block restaging is for.
func TestConformanceEncrypted(t *testing.T) {
	serverConfig(t)
	for _, tc := range []struct {
		name string
		new  func(t *testing.T) *azure.Backend
	}{
		{"DefaultBlocks", func(t *testing.T) *azure.Backend { b, _ := newBackend(t, nil); return b }},
		{"SmallBlocks", smallBackend},
	} {
		t.Run(tc.name, func(t *testing.T) {
			storagetest.Run(t, func(t *testing.T) stowage.Backend {
				b := crypt.New(tc.new(t), newManager(t))
				if _, ok := b.(stowage.Appender); !ok {
					t.Fatal("crypt over azure is not an Appender")
				}
				return b
			})
		})
	}
}

func read(t *testing.T, b stowage.Backend, key string) []byte {
	t.Helper()
	rc, err := b.Open(ctx, key, 0)
	if err != nil {
		t.Fatalf("Open(%s): %v", key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return data
}

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

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

func append_(t *testing.T, a stowage.Appender, key string, off int64, data []byte) int64 {
	t.Helper()
	n, err := a.Append(ctx, key, off, bytes.NewReader(data))
	if err != nil {
		t.Fatalf("Append(%s, %d, %d bytes): %v", key, off, len(data), err)
	}
	if n != off+int64(len(data)) {
		t.Fatalf("Append(%s, %d, %d bytes) = %d", key, off, len(data), n)
	}
	return n
}

// TestRestartDuringUpload: each chunk goes to a new Backend (a restarted or
// another server), with a failed append, a rewrite of the last bytes and a
// torn tail in between; the state is all in the storage account.
func TestRestartDuringUpload(t *testing.T) {
	for _, fromURL := range []bool{true, false} {
		name := "FromURL"
		if !fromURL {
			name = "Download"
		}
		t.Run(name, func(t *testing.T) {
			b1, cfg := newBackend(t, small)
			server := func() *azure.Backend {
				b := reopen(t, cfg)
				if !fromURL {
					azure.SetNoFromURL(b)
				}
				return b
			}
			data := random(600 << 10)
			key := "uploads/restart/data"
			off := append_(t, b1, key, 0, data[:200<<10]) // 3 blocks and a bit
			// Server 2: a failed chunk, then the chunk again.
			b2 := server()
			if _, err := b2.Append(ctx, key, off, &failingReader{data: data[off : off+150<<10], err: errBoom}); err == nil {
				t.Fatal("Append with a failing reader returned nil")
			}
			off = append_(t, b2, key, off, data[off:off+150<<10])
			// Server 3: rewrites from inside a block (as crypt does) to the end.
			b3 := server()
			back := off - 100_000
			off = append_(t, b3, key, back, data[back:400<<10])
			// Server 4: a torn tail nobody retries, then the last chunk.
			b4 := server()
			if _, err := b4.Append(ctx, key, off, &failingReader{data: bytes.Repeat([]byte("X"), 90<<10), err: errBoom}); err == nil {
				t.Fatal("Append with a failing reader returned nil")
			}
			b5 := server()
			off = append_(t, b5, key, off, data[off:])
			if got := read(t, b5, key); !bytes.Equal(got, data) {
				t.Fatalf("upload object differs from the appended bytes (%d bytes, want %d)", len(got), len(data))
			}
			committed, _, err := azure.Blocks(ctx, b5, key)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("upload object: %d committed blocks %v", len(committed), committed)
			if err := server().Commit(ctx, key, "blobs/re/st/art", off); err != nil {
				t.Fatal(err)
			}
			if got := read(t, b1, "blobs/re/st/art"); !bytes.Equal(got, data) {
				t.Fatal("committed blob differs from the appended bytes")
			}
			if _, err := b1.Stat(ctx, key); !stowage.IsNotExist(err) {
				t.Errorf("upload object survived Commit: %v", err)
			}
		})
	}
}

// The same through the encryption decorator: the data keys are in the
// (shared) database, the upload's state in Azure.
func TestRestartDuringEncryptedUpload(t *testing.T) {
	_, cfg := newBackend(t, small)
	m := newManager(t)
	server := func() stowage.Appender { return crypt.New(reopen(t, cfg), m).(stowage.Appender) }
	data := random(1<<20 + 12345)
	key := "uploads/crypt-restart/data"
	var off int64
	for i, n := range []int{100_000, 1, 300_000, 65536, 500_000} {
		a := server()
		if i == 2 {
			if _, err := a.Append(ctx, key, off, &failingReader{data: data[off : off+50_000], err: errBoom}); err == nil {
				t.Fatal("Append with a failing reader returned nil")
			}
			a = server()
		}
		off = append_(t, a, key, off, data[off:off+int64(n)])
	}
	off = append_(t, server(), key, off, data[off:])
	if err := server().Commit(ctx, key, "blobs/cr/yp/t", off); err != nil {
		t.Fatal(err)
	}
	if got := read(t, server().(stowage.Backend), "blobs/cr/yp/t"); !bytes.Equal(got, data) {
		t.Fatal("committed encrypted blob differs from the appended bytes")
	}
}

// TestFailedPutLeavesNothing: a reader error in the middle of a multi-block
// Put commits nothing: no blob, nothing listed, and an existing blob stays.
func TestFailedPutLeavesNothing(t *testing.T) {
	b, _ := newBackend(t, small)
	key := "blobs/fa/il/ed"
	for _, n := range []int{10, 64 << 10, 700 << 10} {
		err := b.Put(ctx, key, &failingReader{data: random(n), err: errBoom}, int64(n)+1000)
		if !errors.Is(err, errBoom) {
			t.Fatalf("Put of %d bytes, then a reader error: err = %v, want the reader's error", n, err)
		}
		if _, err := b.Stat(ctx, key); !stowage.IsNotExist(err) {
			t.Fatalf("after a failed Put of %d bytes: Stat err = %v, want not exist", n, err)
		}
		if _, err := b.Open(ctx, key, 0); !stowage.IsNotExist(err) {
			t.Fatalf("after a failed Put of %d bytes: Open err = %v, want not exist", n, err)
		}
		var keys []string
		if err := b.List(ctx, "", func(oi stowage.ObjectInfo) error { keys = append(keys, oi.Key); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(keys) != 0 {
			t.Fatalf("after a failed Put: listed %v", keys)
		}
	}
	old := random(300 << 10)
	if err := b.Put(ctx, key, bytes.NewReader(old), -1); err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, key, &failingReader{data: random(500 << 10), err: errBoom}, -1); !errors.Is(err, errBoom) {
		t.Fatalf("failed replace: err = %v", err)
	}
	if got := read(t, b, key); !bytes.Equal(got, old) {
		t.Fatal("a failed replace changed the blob")
	}
}

// TestCommitCuts: Commit of fewer bytes than the upload holds cuts inside a
// block, and a size past the end is an error that changes nothing.
func TestCommitCuts(t *testing.T) {
	b, _ := newBackend(t, small)
	data := random(300 << 10)
	key := "uploads/cut/data"
	append_(t, b, key, 0, data)
	if err := b.Commit(ctx, key, "blobs/cu/t/long", int64(len(data))+1); err == nil {
		t.Fatal("Commit past the end succeeded")
	}
	size := int64(150<<10 + 7)
	if err := b.Commit(ctx, key, "blobs/cu/t/short", size); err != nil {
		t.Fatal(err)
	}
	if got := read(t, b, "blobs/cu/t/short"); !bytes.Equal(got, data[:size]) {
		t.Fatalf("Commit(%d) stored %d bytes, not the upload's first %d", size, len(got), size)
	}
	if _, err := b.Stat(ctx, "blobs/cu/t/long"); !stowage.IsNotExist(err) {
		t.Errorf("a failed Commit left its destination: %v", err)
	}
}

// stream yields n pseudo-random bytes without holding them, and records
// the heap's high-water mark while it is read.
type stream struct {
	n, done int64
	h       [32]byte
	peak    atomic.Uint64
	sum     interface{ Write([]byte) (int, error) }
}

func (s *stream) Read(p []byte) (int, error) {
	if s.done == s.n {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), s.n-s.done)]
	for i := range p {
		if (s.done+int64(i))%32 == 0 {
			s.h = sha256.Sum256(s.h[:])
		}
		p[i] = s.h[(s.done+int64(i))%32]
	}
	if s.done/(1<<20) != (s.done+int64(len(p)))/(1<<20) {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		if ms.HeapAlloc > s.peak.Load() {
			s.peak.Store(ms.HeapAlloc)
		}
	}
	s.done += int64(len(p))
	s.sum.Write(p)
	return len(p), nil
}

// TestOnePatchStreams: a docker-style push (the whole layer in one Append)
// is staged block by block as it arrives: memory stays at a few blocks.
func TestOnePatchStreams(t *testing.T) {
	const block, size = 512 << 10, 32 << 20
	b, _ := newBackend(t, func(c *azure.Config) { c.BlockSize, c.Concurrency = block, 2 })
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	h := sha256.New()
	s := &stream{n: size, sum: h}
	start := time.Now()
	n, err := b.Append(ctx, "uploads/stream/data", 0, s)
	if err != nil || n != size {
		t.Fatalf("Append = %d, %v", n, err)
	}
	grew := int64(s.peak.Load()) - int64(base)
	t.Logf("streamed %d MiB in %v; heap grew by at most %.1f MiB", size>>20, time.Since(start).Round(time.Millisecond), float64(grew)/(1<<20))
	if grew > 16<<20 {
		t.Errorf("the heap grew by %d MiB while a %d MiB chunk was appended; want a few blocks of %d KiB", grew>>20, size>>20, block>>10)
	}
	committed, _, err := azure.Blocks(ctx, b, "uploads/stream/data")
	if err != nil {
		t.Fatal(err)
	}
	if len(committed) != size/block {
		t.Errorf("%d committed blocks, want %d", len(committed), size/block)
	}
	want := h.Sum(nil)
	if err := b.Commit(ctx, "uploads/stream/data", "blobs/st/re/am", size); err != nil {
		t.Fatal(err)
	}
	rc, err := b.Open(ctx, "blobs/st/re/am", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	h2 := sha256.New()
	if n, err := io.Copy(h2, rc); err != nil || n != size || !bytes.Equal(h2.Sum(nil), want) {
		t.Fatalf("read back %d bytes (%v), digest match %v", n, err, bytes.Equal(h2.Sum(nil), want))
	}
}

// TestAppendToPutBlob: an object written with one Put Blob has no block
// list; appending inside it, and committing part of it, still work.
func TestAppendToPutBlob(t *testing.T) {
	b, _ := newBackend(t, nil)
	data := random(100_000)
	key := "uploads/putblob/data"
	if err := b.Put(ctx, key, bytes.NewReader(data[:70_000]), 70_000); err != nil {
		t.Fatal(err)
	}
	append_(t, b, key, 50_000, data[50_000:])
	if got := read(t, b, key); !bytes.Equal(got, data) {
		t.Fatal("append into a Put object: wrong bytes")
	}
	if err := b.Put(ctx, key, bytes.NewReader(data), -1); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(ctx, key, "blobs/pu/tb/lob", 99_999); err != nil {
		t.Fatal(err)
	}
	if got := read(t, b, "blobs/pu/tb/lob"); !bytes.Equal(got, data[:99_999]) {
		t.Fatal("commit of part of a Put object: wrong bytes")
	}
}

// TestPutMoreThanSize: size is a hint; Put stores what the reader yields.
func TestPutMoreThanSize(t *testing.T) {
	b := smallBackend(t)
	data := random(200_000)
	for _, size := range []int64{0, 10, 150_000} {
		if err := b.Put(ctx, "blobs/mo/re/than", bytes.NewReader(data), size); err != nil {
			t.Fatal(err)
		}
		if got := read(t, b, "blobs/mo/re/than"); !bytes.Equal(got, data) {
			t.Fatalf("size %d: read back %d bytes, want %d", size, len(got), len(data))
		}
	}
}

func TestOpenPastEnd(t *testing.T) {
	b, _ := newBackend(t, nil)
	if err := b.Put(ctx, "blobs/pa/st/end", strings.NewReader("12345"), 5); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{5, 6, 1000} {
		rc, err := b.Open(ctx, "blobs/pa/st/end", off)
		if err != nil {
			t.Fatalf("Open at %d: %v", off, err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || len(got) != 0 {
			t.Errorf("Open at %d read %q, %v; want nothing", off, got, err)
		}
	}
}

// TestNewChecks: New says what is wrong with the configuration, or that
// the endpoint cannot be reached (no server needed).
func TestNewChecks(t *testing.T) {
	shortCtx := func() context.Context {
		c, cancel := context.WithTimeout(ctx, 60*time.Second)
		t.Cleanup(cancel)
		return c
	}
	for _, tc := range []struct {
		name string
		cfg  azure.Config
		want string
	}{
		{"NoContainer", azure.Config{AccountName: "a", AccountKey: "a2V5"}, "no container"},
		{"NoCredentials", azure.Config{Container: "c"}, "no credentials"},
		{"KeyWithoutName", azure.Config{AccountKey: "a2V5", Container: "c"}, "needs the account name"},
		{"KeyNotBase64", azure.Config{AccountName: "a", AccountKey: "not base64!", Container: "c"}, "not valid"},
		{"BadConnectionString", azure.Config{ConnectionString: "nonsense", Container: "c"}, "connection string is not valid"},
		{"Both", azure.Config{ConnectionString: "AccountName=a;AccountKey=a2V5", AccountName: "a", Container: "c"}, "not both"},
		{"Unreachable", azure.Config{AccountName: "devstoreaccount1", AccountKey: "a2V5", ServiceURL: "http://127.0.0.1:1/devstoreaccount1", Container: "c"}, "cannot reach http://127.0.0.1:1/devstoreaccount1/c"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := azure.New(shortCtx(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v; want an error saying %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "a2V5") {
				t.Errorf("the error shows the key: %v", err)
			}
			t.Log(err)
		})
	}
}

// TestNewServerChecks: a wrong key and a missing container.
func TestNewServerChecks(t *testing.T) {
	shortCtx := func() context.Context {
		c, cancel := context.WithTimeout(ctx, 60*time.Second)
		t.Cleanup(cancel)
		return c
	}
	cfg := serverConfig(t)
	t.Run("WrongKey", func(t *testing.T) {
		c := cfg
		c.ConnectionString = regexp.MustCompile(`AccountKey=[^;]*`).ReplaceAllString(c.ConnectionString, "AccountKey="+strings.Repeat("QUJD", 16))
		_, err := azure.New(shortCtx(), c)
		if err == nil || !strings.Contains(err.Error(), "refused the credentials") {
			t.Fatalf("New with a wrong key = %v; want an error about the credentials", err)
		}
		t.Log(err)
	})
	t.Run("MissingContainer", func(t *testing.T) {
		c := cfg
		c.Container = "missing-" + randomHex(6)
		c.CreateContainer = false
		_, err := azure.New(shortCtx(), c)
		if err == nil || !strings.Contains(err.Error(), "does not exist") || !strings.Contains(err.Error(), c.Container) {
			t.Fatalf("New with a missing container = %v; want an error naming it", err)
		}
		t.Log(err)
		c.CreateContainer = true
		b, err := azure.New(shortCtx(), c)
		if err != nil {
			t.Fatalf("New with CreateContainer: %v", err)
		}
		t.Cleanup(func() {
			cc, err := container.NewClientFromConnectionString(c.ConnectionString, c.Container, nil)
			if err == nil {
				_, err = cc.Delete(ctx, nil)
			}
			if err != nil {
				t.Logf("delete container %s: %v", c.Container, err)
			}
		})
		if err := b.Put(ctx, "blobs/x", strings.NewReader("x"), 1); err != nil {
			t.Fatal(err)
		}
		// Once it exists, CreateContainer is no error.
		if _, err := azure.New(shortCtx(), c); err != nil {
			t.Fatal(err)
		}
	})
}

// TestMissing: operations on missing objects wrap fs.ErrNotExist and name
// the key.
func TestMissing(t *testing.T) {
	b, _ := newBackend(t, nil)
	_, err := b.Stat(ctx, "blobs/mi/ss/ing")
	if !stowage.IsNotExist(err) || !strings.Contains(err.Error(), "blobs/mi/ss/ing") {
		t.Errorf("Stat of a missing key: %v", err)
	}
	if _, err := b.Append(ctx, "uploads/missing/data", 10, strings.NewReader("x")); !stowage.IsNotExist(err) {
		t.Errorf("Append at 10 of a missing upload: %v", err)
	}
	if err := b.Commit(ctx, "uploads/missing/data", "blobs/mi/ss/ing", 0); !stowage.IsNotExist(err) {
		t.Errorf("Commit of a missing upload: %v", err)
	}
	t.Log(err)
}
