package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Encryption at rest, against the real server: what reaches the disk, what
// a damaged object gives a client, range reads, rotation under load, a key
// that goes away and comes back, and the startup checks.

var marker = []byte("STOWAGE-E2E-PLAINTEXT-MARKER-5d2a")

// markedBlob is n bytes of random data with the marker every 4 KiB.
func markedBlob(t testing.TB, n int) []byte {
	b := randomBytes(t, n)
	for off := 0; off+len(marker) <= n; off += 4096 {
		copy(b[off:], marker)
	}
	return b
}

// scanForMarker fails the test if any file under dir holds the marker.
func scanForMarker(t *testing.T, dir string) (files int, bytesScanned int64) {
	t.Helper()
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return nil
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Errorf("read %s: %v", p, err)
			return nil
		}
		files++
		bytesScanned += int64(len(raw))
		if bytes.Contains(raw, marker) {
			t.Errorf("%s holds the plaintext marker", p)
		}
		return nil
	})
	return files, bytesScanned
}

// pushChunked pushes b in chunks of the given size (PATCH each, then PUT).
func pushChunked(t testing.TB, base, repo string, b []byte, chunk int) string {
	t.Helper()
	d := sha256Digest(b)
	loc := startUpload(t, base, repo)
	for off := 0; off < len(b); off += chunk {
		end := min(off+chunk, len(b))
		r := mustDo(t, http.MethodPatch, base, loc, contentRange(off, end-off), b[off:end])
		if r.Status != http.StatusAccepted {
			t.Fatalf("PATCH [%d,%d): %s", off, end, r)
		}
		loc = r.Header.Get("Location")
	}
	r := mustDo(t, http.MethodPut, base, withDigest(loc, d), nil, nil)
	if r.Status != http.StatusCreated {
		t.Fatalf("finish chunked upload: %s", r)
	}
	return d
}

func blobPath(dir, d string) string {
	return filepath.Join(dir, "storage", "blobs", "sha256", d[7:9], d[7:])
}

func TestEncryptionNothingPlainAtRest(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir)
	blobs := map[string][]byte{}
	for i, n := range []int{100, 65536, 300_000, 2 << 20} {
		b := markedBlob(t, n)
		blobs[pushBlob(t, s.URL, "secret/mono", b)] = b
		b2 := markedBlob(t, n+i)
		blobs[pushChunked(t, s.URL, "secret/chunked", b2, 50_000)] = b2
	}
	// An upload left open (its chunks are on disk too).
	loc := startUpload(t, s.URL, "secret/open")
	open := markedBlob(t, 200_000)
	expect(t, "PATCH of an open upload", mustDo(t, http.MethodPatch, s.URL, loc, contentRange(0, len(open)), open), http.StatusAccepted, "")
	for d, b := range blobs {
		for _, repo := range []string{"secret/mono", "secret/chunked"} {
			r := mustDo(t, http.MethodGet, s.URL, "/v2/"+repo+"/blobs/"+d, nil, nil)
			if r.Status == http.StatusOK {
				if !bytes.Equal(r.Body, b) {
					t.Errorf("pull %s: wrong bytes", d)
				}
				if r.Header.Get("Docker-Content-Digest") != d {
					t.Errorf("pull %s: digest header %q", d, r.Header.Get("Docker-Content-Digest"))
				}
			}
		}
	}
	httpClient.CloseIdleConnections()
	s.Stop()
	files, n := scanForMarker(t, dir)
	t.Logf("scanned %d files, %d bytes: no plaintext marker", files, n)
	if files < 8 {
		t.Errorf("only %d files under the data directory; expected the blobs", files)
	}
	fi, err := os.Stat(filepath.Join(dir, "keys", "service.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("service key file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
}

// TestEncryptionTamper: one flipped byte in a stored blob: the pull fails
// (an integrity error if the damage is in the first segment, a cut-short
// body otherwise), never returns wrong bytes, and the blob is served again
// once the byte is put back (nothing was deleted).
func TestEncryptionTamper(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir)
	data := randomBytes(t, 1<<20)
	d := pushBlob(t, s.URL, "tamper/x", data)
	path := blobPath(dir, d)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, pos := range []int{3, 30, 100, 70_000, len(orig) / 2, len(orig) - 1} {
		bad := bytes.Clone(orig)
		bad[pos] ^= 0x10
		if err := os.WriteFile(path, bad, 0o644); err != nil {
			t.Fatal(err)
		}
		resp, err := http.Get(s.URL + "/v2/tamper/x/blobs/" + d)
		if err != nil {
			t.Fatal(err)
		}
		got, readErr := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusOK && readErr == nil:
			t.Errorf("flip at %d: a full 200 response (%d bytes, equal: %v)", pos, len(got), bytes.Equal(got, data))
		case resp.StatusCode == http.StatusOK:
			if !bytes.HasPrefix(data, got) {
				t.Errorf("flip at %d: the cut-short body holds wrong bytes", pos)
			}
		default:
			var e struct {
				Errors []struct{ Code, Message string }
			}
			json.Unmarshal(got, &e)
			if resp.StatusCode != 500 || len(e.Errors) == 0 || !strings.Contains(e.Errors[0].Message, "integrity") {
				t.Errorf("flip at %d: %d %s; want 500 with an integrity error", pos, resp.StatusCode, got)
			}
		}
	}
	if err := os.WriteFile(path, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := mustDo(t, http.MethodGet, s.URL, "/v2/tamper/x/blobs/"+d, nil, nil); r.Status != 200 || !bytes.Equal(r.Body, data) {
		t.Errorf("after repair: %s", r)
	}
	if strings.Contains(s.log.String(), "panic") {
		t.Errorf("server log holds a panic:\n%s", tail(s.log.String(), 3000))
	}
	httpClient.CloseIdleConnections()
}

// TestEncryptionRangeReads: Range reads at random offsets and lengths
// equal the plaintext.
func TestEncryptionRangeReads(t *testing.T) {
	s := startServer(t, t.TempDir())
	data := randomBytes(t, 700_001)
	d := pushChunked(t, s.URL, "ranges/x", data, 123_457)
	for i := 0; i < 40; i++ {
		start := mrand.IntN(len(data))
		end := min(start+mrand.IntN(200_000), len(data)-1)
		r := mustDo(t, http.MethodGet, s.URL, "/v2/ranges/x/blobs/"+d, map[string]string{"Range": fmt.Sprintf("bytes=%d-%d", start, end)}, nil)
		if r.Status != http.StatusPartialContent || !bytes.Equal(r.Body, data[start:end+1]) {
			t.Fatalf("range %d-%d: %d, %d bytes, equal %v", start, end, r.Status, len(r.Body), bytes.Equal(r.Body, data[start:end+1]))
		}
	}
	httpClient.CloseIdleConnections()
}

// stowageCLI runs the stowage binary with args and returns its output.
func stowageCLI(t testing.TB, args ...string) (string, error) {
	cmd := exec.Command(binPath, args...)
	cmd.Env = serverEnv()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		return "", err
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), err
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		<-done
		return out.String(), fmt.Errorf("stowage %v did not finish in 2 minutes", args)
	}
}

type keyStatus struct {
	Encryption string
	Status     struct {
		Provider string
		Current  struct{ ID, Version any }
		Versions []struct{ ID, Version any }
		DataKeys []struct {
			ID      string
			Version int
			Count   int
		} `json:"dataKeys"`
	}
}

func keysStatus(t *testing.T, s *server) keyStatus {
	t.Helper()
	out, err := stowageCLI(t, "keys", "status", "--output", "json", "--registry", s.URL)
	var st keyStatus
	if err != nil || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("keys status: %v\n%s", err, out)
	}
	return st
}

// TestEncryptionRotationUnderLoad: `stowage keys rotate` runs twice while
// pushes (whole and chunked) and pulls go on: none fails, afterwards every
// data key is wrapped by the current version, the old versions retire, and
// after a restart everything reads back.
func TestEncryptionRotationUnderLoad(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, dir)
	var mu sync.Mutex
	pushed := map[string][]byte{}
	var failures []string
	fail := func(f string, args ...any) {
		mu.Lock()
		failures = append(failures, fmt.Sprintf(f, args...))
		mu.Unlock()
	}
	for i := range 30 { // data keys for the rotation to rewrap
		b := randomBytes(t, 1000+i)
		pushed[pushBlob(t, s.URL, "rot/pre", b)] = b
	}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var ops sync.Map
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil && i < 2000; i++ {
				b := make([]byte, 20_000+mrand.IntN(150_000))
				rand.Read(b)
				d := sha256Digest(b)
				var r response
				var err error
				if i%2 == 0 {
					r, err = do(context.Background(), http.MethodPost, s.URL, "/v2/rot/load/blobs/uploads/?digest="+d, nil, b)
				} else {
					r, err = pushChunkedNoFatal(s.URL, "rot/load", b, 64_000)
				}
				if err != nil || r.Status != http.StatusCreated {
					fail("worker %d push %d: %v %v", w, i, err, r)
					continue
				}
				mu.Lock()
				pushed[d] = b
				var old string
				for k := range pushed { // a random earlier blob
					old = k
					break
				}
				want := pushed[old]
				mu.Unlock()
				g, err := do(context.Background(), http.MethodGet, s.URL, "/v2/rot/load/blobs/"+d, nil, nil)
				if err != nil || g.Status != 200 || !bytes.Equal(g.Body, b) {
					fail("worker %d pull of what it pushed: %v %v", w, err, g)
				}
				repo := "rot/load"
				if len(want) < 2000 {
					repo = "rot/pre"
				}
				if g, err := do(context.Background(), http.MethodGet, s.URL, "/v2/"+repo+"/blobs/"+old, nil, nil); err != nil || g.Status != 200 || !bytes.Equal(g.Body, want) {
					fail("worker %d pull of an earlier blob: %v %v", w, err, g)
				}
				n, _ := ops.LoadOrStore(w, new(int))
				*n.(*int)++
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	for range 2 {
		out, err := stowageCLI(t, "keys", "rotate", "--registry", s.URL)
		if err != nil {
			t.Fatalf("keys rotate: %v\n%s", err, out)
		}
		t.Logf("keys rotate: %s", strings.TrimSpace(out[strings.LastIndex(strings.TrimRight(out, "\n"), "\n")+1:]))
	}
	time.Sleep(300 * time.Millisecond)
	stop()
	wg.Wait()
	total := 0
	ops.Range(func(_, v any) bool { total += *v.(*int); return true })
	t.Logf("%d push+pull rounds ran during the rotations; %d blobs in all", total, len(pushed))
	for _, f := range failures {
		t.Error(f)
	}
	// A push that read the current version just before the last switch
	// may have wrapped its key with the old one: a rewrap pass picks it up.
	if out, err := stowageCLI(t, "keys", "rotate", "--rewrap-only", "--registry", s.URL); err != nil {
		t.Fatalf("keys rotate --rewrap-only: %v\n%s", err, out)
	}
	st := keysStatus(t, s)
	if len(st.Status.DataKeys) != 1 || fmt.Sprint(st.Status.DataKeys[0].Version) != fmt.Sprint(st.Status.Current.Version) {
		t.Fatalf("after rotation, data keys per version: %+v (current %v)", st.Status.DataKeys, st.Status.Current)
	}
	if out, err := stowageCLI(t, "keys", "retire", "2", "--registry", s.URL); err != nil {
		t.Errorf("keys retire 2: %v\n%s", err, out)
	}
	// Version 1, in the key file, wraps version 3 (kept in the database).
	for _, v := range []string{"1", "3"} {
		if out, err := stowageCLI(t, "keys", "retire", v, "--registry", s.URL); err == nil {
			t.Errorf("retiring version %s (the key file's root, or the current version) succeeded: %s", v, out)
		}
	}
	httpClient.CloseIdleConnections()
	s.Stop()
	s = startServer(t, dir)
	for d, b := range pushed {
		repo := "rot/load"
		if len(b) < 2000 {
			repo = "rot/pre"
		}
		if r := mustDo(t, http.MethodGet, s.URL, "/v2/"+repo+"/blobs/"+d, nil, nil); r.Status != 200 || !bytes.Equal(r.Body, b) {
			t.Errorf("after restart, %s: %s", d, r)
		}
	}
	httpClient.CloseIdleConnections()
}

func pushChunkedNoFatal(base, repo string, b []byte, chunk int) (response, error) {
	ctx := context.Background()
	r, err := do(ctx, http.MethodPost, base, "/v2/"+repo+"/blobs/uploads/", nil, nil)
	if err != nil || r.Status != http.StatusAccepted {
		return r, err
	}
	loc := r.Header.Get("Location")
	for off := 0; off < len(b); off += chunk {
		end := min(off+chunk, len(b))
		if r, err = do(ctx, http.MethodPatch, base, loc, contentRange(off, end-off), b[off:end]); err != nil || r.Status != http.StatusAccepted {
			return r, err
		}
		loc = r.Header.Get("Location")
	}
	return do(ctx, http.MethodPut, base, withDigest(loc, sha256Digest(b)), nil, nil)
}

// writeKeyFile writes a customer key file with one fresh key.
func writeKeyFile(t testing.TB, path, id string) {
	key := make([]byte, 32)
	rand.Read(key)
	body := fmt.Sprintf(`{"id": %q, "current": 1, "versions": {"1": %q}}`, id, base64.StdEncoding.EncodeToString(key))
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestEncryptionKeyUnavailable: with a customer key file that goes away,
// pulls and pushes fail with 503 "encryption key unavailable" (no stack,
// nothing deleted), and work again when the file is back.
func TestEncryptionKeyUnavailable(t *testing.T) {
	keys := filepath.Join(t.TempDir(), "customer.json")
	writeKeyFile(t, keys, "acme-registry")
	s := startServer(t, t.TempDir(), "STOWAGE_ENCRYPTION_KEY_FILE="+keys, "STOWAGE_ENCRYPTION_CACHE_TTL=1ms")
	data := randomBytes(t, 200_000)
	d := pushBlob(t, s.URL, "cmk/x", data)
	saved, _ := os.ReadFile(keys)
	if err := os.Remove(keys); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1200 * time.Millisecond) // the key file is looked at once a second
	r := mustDo(t, http.MethodGet, s.URL, "/v2/cmk/x/blobs/"+d, nil, nil)
	if !expect(t, "pull without the key", r, http.StatusServiceUnavailable, "UNAVAILABLE") || !strings.Contains(string(r.Body), "encryption key unavailable") {
		t.Errorf("pull without the key: %s", r)
	}
	b2 := randomBytes(t, 1000)
	r = mustDo(t, http.MethodPost, s.URL, "/v2/cmk/x/blobs/uploads/?digest="+sha256Digest(b2), nil, b2)
	expect(t, "push without the key", r, http.StatusServiceUnavailable, "UNAVAILABLE")
	if r := mustDo(t, http.MethodHead, s.URL, "/v2/cmk/x/blobs/"+d, nil, nil); r.Status != 200 {
		t.Errorf("HEAD without the key (metadata only): %s", r)
	}
	if err := os.WriteFile(keys, saved, 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1200 * time.Millisecond)
	if r := mustDo(t, http.MethodGet, s.URL, "/v2/cmk/x/blobs/"+d, nil, nil); r.Status != 200 || !bytes.Equal(r.Body, data) {
		t.Errorf("pull with the key back: %s", r)
	}
	if strings.Contains(s.log.String(), "goroutine ") || strings.Contains(s.log.String(), "panic") {
		t.Errorf("server log holds a stack:\n%s", tail(s.log.String(), 3000))
	}
	httpClient.CloseIdleConnections()
}

// serveRefused starts `stowage serve` and expects it to exit with an error
// that contains want.
func serveRefused(t *testing.T, dir, want string, env ...string) {
	t.Helper()
	var out syncBuffer
	cmd := exec.Command(binPath, "serve", "--addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "--data-dir", dir)
	cmd.Env, cmd.Stdout, cmd.Stderr = append(serverEnv(), env...), &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(out.String(), want) {
			t.Errorf("serve %v: exit %v; want a refusal saying %q; output:\n%s", env, err, want, out.String())
		}
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
		t.Errorf("serve %v kept running; want a refusal saying %q", env, want)
	}
}

// TestEncryptionStartupChecks: a wrong key, a configuration that does not
// match how the data was written, and the opt-out's warning.
func TestEncryptionStartupChecks(t *testing.T) {
	needServer(t)
	t.Run("wrong service key", func(t *testing.T) {
		dir := t.TempDir()
		s := startServer(t, dir)
		pushBlob(t, s.URL, "k/x", []byte("encrypted with the first key"))
		httpClient.CloseIdleConnections()
		s.Stop()
		good, _ := os.ReadFile(filepath.Join(dir, "keys", "service.json"))
		var f struct{ ID string }
		json.Unmarshal(good, &f)
		writeKeyFile(t, filepath.Join(dir, "keys", "service.json"), f.ID) // same id, other key
		serveRefused(t, dir, "does not open this registry's data")
		writeKeyFile(t, filepath.Join(dir, "keys", "service.json"), "another-key")
		serveRefused(t, dir, "is not the key this registry's data is encrypted with")
		serveRefused(t, dir, "data is encrypted", "STOWAGE_ENCRYPTION=none")
		os.Remove(filepath.Join(dir, "keys", "service.json"))
		serveRefused(t, dir, "restore the key file from your backup")
		if _, err := os.Stat(filepath.Join(dir, "keys", "service.json")); err == nil {
			t.Error("a refused start with a missing key file created a new key")
		}
		os.WriteFile(filepath.Join(dir, "keys", "service.json"), good, 0o600)
		s = startServer(t, dir)
		httpClient.CloseIdleConnections()
	})
	t.Run("opt-out", func(t *testing.T) {
		dir := t.TempDir()
		s := startServer(t, dir, "STOWAGE_ENCRYPTION=none")
		// The port opens before the server logs its setup (a start that
		// fails leaves nothing behind): wait for the line, boundedly.
		for i := 0; i < 100 && !strings.Contains(s.log.String(), "encryption at rest is OFF"); i++ {
			time.Sleep(100 * time.Millisecond)
		}
		if !strings.Contains(s.log.String(), "encryption at rest is OFF") {
			t.Errorf("no warning with encryption: none:\n%s", s.log.String())
		}
		b := markedBlob(t, 10_000)
		d := pushBlob(t, s.URL, "plain/x", b)
		httpClient.CloseIdleConnections()
		s.Stop()
		raw, err := os.ReadFile(blobPath(dir, d))
		if err != nil || !bytes.Equal(raw, b) {
			t.Errorf("with encryption: none the blob should be stored as is: %v", err)
		}
		serveRefused(t, dir, "stored without encryption")
	})
	t.Run("key from the environment", func(t *testing.T) {
		dir := t.TempDir()
		key := base64.StdEncoding.EncodeToString(randomBytes(t, 32))
		s := startServer(t, dir, "STOWAGE_ENCRYPTION_KEY_ENV=ACME_KEK", "ACME_KEK="+key)
		b := randomBytes(t, 5000)
		d := pushBlob(t, s.URL, "env/x", b)
		httpClient.CloseIdleConnections()
		s.Stop()
		other := base64.StdEncoding.EncodeToString(randomBytes(t, 32))
		serveRefused(t, dir, "does not open this registry's data", "STOWAGE_ENCRYPTION_KEY_ENV=ACME_KEK", "ACME_KEK="+other)
		serveRefused(t, dir, "empty or not set", "STOWAGE_ENCRYPTION_KEY_ENV=ACME_KEK")
		s = startServer(t, dir, "STOWAGE_ENCRYPTION_KEY_ENV=ACME_KEK", "ACME_KEK="+key)
		if r := mustDo(t, http.MethodGet, s.URL, "/v2/env/x/blobs/"+d, nil, nil); r.Status != 200 || !bytes.Equal(r.Body, b) {
			t.Errorf("pull with the right key: %s", r)
		}
		httpClient.CloseIdleConnections()
	})
}
