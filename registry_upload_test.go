package stowage_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/storage/crypt"
	"github.com/stowage/stowage/storage/fs"
	"github.com/stowage/stowage/storage/mem"
)

// noAppend hides a backend's Appender: uploads then go the chunk way
// (uploads/<id>/<offset> pieces, openChunks).
type noAppend struct{ stowage.Backend }

// uploadStores are the storage stacks the upload tests run on: a directory,
// the same encrypted (the default), and a directory without Appender.
var uploadStores = []string{"fs", "crypt", "chunks"}

// uploadNode is one registry node over the SQLite file and the storage
// directory under dir, shared by every node made with the same dir (each
// node opens the database itself, as separate processes do).
func uploadNode(t *testing.T, dir, kind string, opts stowage.Options) *stowage.Registry {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	disk, err := fs.New(filepath.Join(dir, "storage"))
	if err != nil {
		t.Fatal(err)
	}
	var store stowage.Backend = disk
	switch kind {
	case "crypt":
		keys, err := crypt.OpenFileKeyring(filepath.Join(dir, "keys", "service.json"), true)
		if err != nil {
			t.Fatal(err)
		}
		store = crypt.New(disk, crypt.NewManager(db, keys))
	case "chunks":
		store = noAppend{disk}
	}
	return stowage.NewRegistry(db, store, opts)
}

func noise(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func sha512Digest(b []byte) stowage.Digest {
	s := sha512.Sum512(b)
	return stowage.Digest("sha512:" + hex.EncodeToString(s[:]))
}

func sha256Digest(b []byte) stowage.Digest { return stowage.Digest("sha256:" + sha(b)) }

// wantBlob checks that repo serves exactly want under d.
func wantBlob(t *testing.T, reg *stowage.Registry, repo string, d stowage.Digest, want []byte) {
	t.Helper()
	rc, _, err := reg.OpenBlob(context.Background(), repo, d, 0)
	if err != nil {
		t.Errorf("open %s in %s: %v", d, repo, err)
		return
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("%s in %s holds %d bytes that are not the %d pushed (read error %v): a blob stored under a digest its bytes do not have", d, repo, len(got), len(want), err)
	}
}

// TestUploadClaimsOnlyItsOwnBytes (issue 12 #12): a session may only ever
// commit the bytes it received. A writer of team-a/app who knows the digest
// and size of a sha512 blob held only by team-b/secret sends that many
// random bytes, lets a first PUT move them (it fails afterwards: the
// repository is write-locked), and then PUTs team-b's digest: it must not
// get team-b's blob into team-a/app. The honest retry of the first PUT
// still succeeds.
func TestUploadClaimsOnlyItsOwnBytes(t *testing.T) {
	ctx := context.Background()
	for _, kind := range uploadStores {
		t.Run(kind, func(t *testing.T) {
			reg := uploadNode(t, t.TempDir(), kind, stowage.Options{})
			secret := noise(t, 70000)
			dSecret := sha512Digest(secret)
			if _, err := reg.PutBlob(ctx, "team-b/secret", dSecret, bytes.NewReader(secret), int64(len(secret))); err != nil {
				t.Fatal(err)
			}
			seed := []byte("team-a's first blob")
			if _, err := reg.PutBlob(ctx, "team-a/app", sha256Digest(seed), bytes.NewReader(seed), int64(len(seed))); err != nil {
				t.Fatal(err)
			}
			// attempt uploads random bytes of the secret's size, makes the
			// PUT of their own digest fail after it moved them, unlocks,
			// and PUTs d with no body.
			attempt := func(d func(own stowage.Digest) stowage.Digest) (own []byte, ownD stowage.Digest, err error) {
				own = noise(t, len(secret))
				ownD = sha512Digest(own)
				u, err := reg.StartUpload(ctx, "team-a/app")
				if err != nil {
					t.Fatal(err)
				}
				if _, err := reg.WriteUpload(ctx, "team-a/app", u.ID, 0, int64(len(own)), bytes.NewReader(own)); err != nil {
					t.Fatal(err)
				}
				if _, err := reg.SetLocks(ctx, "team-a/app", stowage.Reference{}, stowage.LockWrite, 0); err != nil {
					t.Fatal(err)
				}
				if _, err := reg.FinishUpload(ctx, "team-a/app", u.ID, ownD, -1, 0, nil); stowage.ErrorCodeOf(err) != stowage.CodeDenied {
					t.Fatalf("PUT into a write-locked repository: %v, want DENIED", err)
				}
				if _, err := reg.SetLocks(ctx, "team-a/app", stowage.Reference{}, 0, stowage.LockWrite); err != nil {
					t.Fatal(err)
				}
				_, err = reg.FinishUpload(ctx, "team-a/app", u.ID, d(ownD), -1, 0, nil)
				return own, ownD, err
			}
			_, _, err := attempt(func(stowage.Digest) stowage.Digest { return dSecret })
			if stowage.ErrorCodeOf(err) != stowage.CodeDigestInvalid {
				t.Errorf("PUT of team-b's digest for a session holding other bytes: %v, want DIGEST_INVALID", err)
			}
			if _, err := reg.StatBlob(ctx, "team-a/app", dSecret); stowage.ErrorCodeOf(err) != stowage.CodeBlobUnknown {
				t.Errorf("team-b's blob is visible in team-a/app (%v): a session linked bytes it never received", err)
				wantBlob(t, reg, "team-a/app", dSecret, secret)
			}
			own, ownD, err := attempt(func(own stowage.Digest) stowage.Digest { return own })
			if err != nil {
				t.Fatalf("retried PUT of the session's own digest: %v", err)
			}
			wantBlob(t, reg, "team-a/app", ownD, own)
		})
	}
}

// TestUploadWithoutAppender: a backend that cannot append stores a chunked
// upload as pieces; a failed chunk leaves the session where it was; the
// final PUT (with a last chunk, sha256 or sha512) serves exactly the bytes
// sent, and removes the pieces only once the blob is recorded.
func TestUploadWithoutAppender(t *testing.T) {
	ctx := context.Background()
	store := noAppend{mem.New()}
	if _, ok := stowage.Backend(store).(stowage.Appender); ok {
		t.Fatal("noAppend still offers Append")
	}
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	reg := stowage.NewRegistry(db, store, stowage.Options{})
	for _, tc := range []struct {
		name   string
		digest func([]byte) stowage.Digest
	}{{"sha256", sha256Digest}, {"sha512", sha512Digest}} {
		t.Run(tc.name, func(t *testing.T) {
			chunks := [][]byte{noise(t, 1000), noise(t, 1), noise(t, 70000)}
			last := noise(t, 333)
			u, err := reg.StartUpload(ctx, "r")
			if err != nil {
				t.Fatal(err)
			}
			var sent []byte
			for i, c := range chunks {
				if _, err := reg.WriteUpload(ctx, "r", u.ID, int64(len(sent)), int64(len(c)), bytes.NewReader(c)); err != nil {
					t.Fatalf("chunk %d: %v", i, err)
				}
				sent = append(sent, c...)
				// A chunk shorter than announced fails and changes nothing.
				if _, err := reg.WriteUpload(ctx, "r", u.ID, int64(len(sent)), 10, bytes.NewReader([]byte("short"))); stowage.ErrorCodeOf(err) != stowage.CodeSizeInvalid {
					t.Errorf("short chunk: %v, want SIZE_INVALID", err)
				}
				if got, err := reg.GetUpload(ctx, "r", u.ID); err != nil || got.Size != int64(len(sent)) {
					t.Fatalf("after chunk %d: size %d (%v), want %d", i, got.Size, err, len(sent))
				}
			}
			whole := append(append([]byte{}, sent...), last...)
			d := tc.digest(whole)
			if _, err := reg.FinishUpload(ctx, "r", u.ID, tc.digest(sent), int64(len(sent)), int64(len(last)), bytes.NewReader(last)); stowage.ErrorCodeOf(err) != stowage.CodeDigestInvalid {
				t.Errorf("PUT with the digest of fewer bytes: %v, want DIGEST_INVALID", err)
			}
			// That discarded the session: push again, and finish right.
			if u, err = reg.StartUpload(ctx, "r"); err != nil {
				t.Fatal(err)
			}
			if _, err := reg.WriteUpload(ctx, "r", u.ID, 0, int64(len(sent)), bytes.NewReader(sent)); err != nil {
				t.Fatal(err)
			}
			if _, err := reg.FinishUpload(ctx, "r", u.ID, d, int64(len(sent)), int64(len(last)), bytes.NewReader(last)); err != nil {
				t.Fatalf("finish: %v", err)
			}
			wantBlob(t, reg, "r", d, whole)
			if err := store.List(ctx, "uploads/", func(oi stowage.ObjectInfo) error {
				t.Errorf("upload data left behind: %s", oi.Key)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestUploadWriterFencing (issue 13 #1): a writer that lost its lease must
// never change the session's stored bytes. Two nodes share one SQLite file
// and one storage directory. "skew": node b's clock is 31 s ahead, so by
// its clock node a's lease has run out while a streams a chunk; b must
// still be refused (leases end by the database's clock). "stall": node a
// stops renewing its lease in the middle of a chunk (a pause longer than
// the lease); b takes over and finishes the upload, then a's chunk lands:
// the blob must hold b's bytes, not a's.
func TestUploadWriterFencing(t *testing.T) {
	ctx := context.Background()
	const first, size = 65536 + 1000, 70000
	for _, kind := range uploadStores {
		t.Run(kind+"/skew", func(t *testing.T) {
			dir := t.TempDir()
			a := uploadNode(t, dir, kind, stowage.Options{})
			b := uploadNode(t, dir, kind, stowage.Options{Now: func() time.Time { return time.Now().Add(31 * time.Second) }})
			u, err := a.StartUpload(ctx, "r")
			if err != nil {
				t.Fatal(err)
			}
			aBytes, bBytes := noise(t, size), noise(t, size)
			pr, pw := io.Pipe()
			done := make(chan error, 1)
			go func() {
				_, err := a.WriteUpload(ctx, "r", u.ID, 0, size, pr)
				done <- err
			}()
			pw.Write(aBytes[:1000]) // a holds the lease and is writing
			_, errB := b.WriteUpload(ctx, "r", u.ID, 0, size, bytes.NewReader(bBytes))
			pw.Write(aBytes[1000:])
			pw.Close()
			errA := <-done
			if errB == nil {
				t.Errorf("node b (clock 31 s ahead) wrote the session while node a held its lease")
				// The interleaving the lease must prevent: b finishes with
				// its digest, and a's chunk landed last.
				if _, err := b.FinishUpload(ctx, "r", u.ID, sha256Digest(bBytes), -1, 0, nil); err == nil {
					wantBlob(t, b, "r", sha256Digest(bBytes), bBytes)
				}
				return
			}
			if stowage.ErrorCodeOf(errB) != stowage.CodeBlobUploadInvalid {
				t.Errorf("node b while node a writes: %v, want BLOB_UPLOAD_INVALID", errB)
			}
			if errA != nil {
				t.Fatalf("node a's chunk: %v", errA)
			}
			if _, err := b.FinishUpload(ctx, "r", u.ID, sha256Digest(aBytes), -1, 0, nil); err != nil {
				t.Fatalf("finish on node b: %v", err)
			}
			wantBlob(t, b, "r", sha256Digest(aBytes), aBytes)
		})
		t.Run(kind+"/stall", func(t *testing.T) {
			dir := t.TempDir()
			a := uploadNode(t, dir, kind, stowage.Options{})
			b := uploadNode(t, dir, kind, stowage.Options{})
			stowage.SetUploadLease(a, 300*time.Millisecond, time.Hour) // a never renews
			stowage.SetUploadLease(b, 300*time.Millisecond, 50*time.Millisecond)
			u, err := a.StartUpload(ctx, "r")
			if err != nil {
				t.Fatal(err)
			}
			head := noise(t, first)
			if _, err := a.WriteUpload(ctx, "r", u.ID, 0, first, bytes.NewReader(head)); err != nil {
				t.Fatal(err)
			}
			aBytes, bBytes := noise(t, size), noise(t, size)
			pr, pw := io.Pipe()
			done := make(chan error, 1)
			go func() {
				_, err := a.WriteUpload(ctx, "r", u.ID, first, size, pr)
				done <- err
			}()
			pw.Write(aBytes[:1000]) // a is writing, and stalls there
			var errA error
			wake := func() { // a wakes up; its chunk lands now
				pw.Write(aBytes[1000:])
				pw.Close()
				errA = <-done
			}
			var errB error
			for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				// With encryption, a's append has cut the object back to the
				// start of its last segment (whose acknowledged bytes are in
				// the tail copy): b copies them all the same, at once.
				_, errB = b.WriteUpload(ctx, "r", u.ID, first, size, bytes.NewReader(bBytes))
				if errB == nil || !strings.Contains(errB.Error(), "being written by another request") {
					break
				}
			}
			if errB != nil {
				t.Fatalf("node b after node a's lease ran out, while a still writes: %v", errB)
			}
			wake()
			if errA == nil {
				t.Errorf("node a's chunk was accepted after node b took the session over")
			}
			whole := append(append([]byte{}, head...), bBytes...)
			d := sha256Digest(whole)
			if _, err := b.FinishUpload(ctx, "r", u.ID, d, -1, 0, nil); err != nil {
				t.Fatalf("finish on node b: %v", err)
			}
			wantBlob(t, b, "r", d, whole)
			// a's late chunk, written after b deleted a's generation, is
			// gone too (a deletes what it wrote once it is refused).
			if left := uploadObjects(t, b, stowage.UploadPrefix(u.ID)); len(left) > 0 {
				t.Errorf("upload data left after the session finished: %v", left)
			}
		})
	}
}

// TestUploadExpirySparesStreamingChunk (issue 13 #8): the collector expires
// idle sessions, never one whose writer holds its lease, however long its
// chunk has been streaming.
func TestUploadExpirySparesStreamingChunk(t *testing.T) {
	e := newEnv(t, nil)
	busy, err := e.reg.StartUpload(e.ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	idle, err := e.reg.StartUpload(e.ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	data := noise(t, 5000)
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := e.reg.WriteUpload(e.ctx, "r", busy.ID, 0, int64(len(data)), pr)
		done <- err
	}()
	pw.Write(data[:100])
	e.clock.Advance(48 * time.Hour) // the chunk streams for two days
	rep, err := collect(e.ctx, e.reg, gcOptions{UploadExpiry: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if rep.UploadsExpired != 1 {
		t.Errorf("expired %d sessions, want 1 (the idle one)", rep.UploadsExpired)
	}
	pw.Write(data[100:])
	pw.Close()
	if err := <-done; err != nil {
		t.Fatalf("the long chunk failed: %v", err)
	}
	if _, err := e.reg.FinishUpload(e.ctx, "r", busy.ID, sha256Digest(data), -1, 0, nil); err != nil {
		t.Fatalf("finish: %v", err)
	}
	if _, err := e.reg.GetUpload(e.ctx, "r", idle.ID); stowage.ErrorCodeOf(err) != stowage.CodeBlobUploadUnknown {
		t.Errorf("idle session after GC: %v, want BLOB_UPLOAD_UNKNOWN", err)
	}
}

// TestFinishRefusesLostBytes (issue 12 #7): the final PUT trusts the saved
// hash state only for bytes the store still holds. Here the upload file is
// shorter than recorded (a power loss took bytes that were not durable):
// the PUT fails with BLOB_UPLOAD_INVALID (start again), also when the blob
// is already stored from elsewhere, and nothing is linked.
func TestFinishRefusesLostBytes(t *testing.T) {
	ctx := context.Background()
	for _, stored := range []bool{false, true} {
		t.Run(map[bool]string{false: "new", true: "already-stored"}[stored], func(t *testing.T) {
			dir := t.TempDir()
			reg := uploadNode(t, dir, "fs", stowage.Options{})
			data := noise(t, 10000)
			d := sha256Digest(data)
			if stored {
				if _, err := reg.PutBlob(ctx, "other", d, bytes.NewReader(data), int64(len(data))); err != nil {
					t.Fatal(err)
				}
			}
			u, err := reg.StartUpload(ctx, "r")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := reg.WriteUpload(ctx, "r", u.ID, 0, int64(len(data)), bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(filepath.Join(dir, "storage", "uploads", u.ID, "data"), 4096); err != nil {
				t.Fatal(err)
			}
			if _, err := reg.FinishUpload(ctx, "r", u.ID, d, -1, 0, nil); stowage.ErrorCodeOf(err) != stowage.CodeBlobUploadInvalid {
				t.Errorf("PUT of a session whose stored bytes are shorter than recorded: %v, want BLOB_UPLOAD_INVALID", err)
			}
			if _, err := reg.StatBlob(ctx, "r", d); stowage.ErrorCodeOf(err) != stowage.CodeBlobUnknown {
				t.Errorf("blob linked from a session that lost bytes: %v", err)
			}
		})
	}
}

// failAfter fails after n bytes, like a client that goes away mid-chunk.
type failAfter struct {
	r io.Reader
	n int
}

func (f *failAfter) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("client went away")
	}
	p = p[:min(len(p), f.n)]
	n, err := f.r.Read(p)
	f.n -= n
	return n, err
}

// TestFinishAfterFailedPatch: a PATCH that fails part-way (the client went
// away) leaves the session where it was, whatever it left in storage (with
// encryption: the object cut back to the segment it sealed again, then torn
// segments). A final PUT without a body then commits the acknowledged
// bytes, for sha256 (from the hash state) as for sha512 (which reads the
// bytes back).
func TestFinishAfterFailedPatch(t *testing.T) {
	ctx := context.Background()
	for _, kind := range uploadStores {
		for _, tc := range []struct {
			alg    string
			digest func([]byte) stowage.Digest
			failAt int // bytes the failing PATCH brings before it fails
		}{
			{"sha256", sha256Digest, 3<<19 + 77},
			{"sha512", sha512Digest, 3<<19 + 77},
			{"sha512-early", sha512Digest, 10},
		} {
			t.Run(kind+"/"+tc.alg, func(t *testing.T) {
				reg := uploadNode(t, t.TempDir(), kind, stowage.Options{})
				data := noise(t, 65536+34464) // ends inside the second segment
				u, err := reg.StartUpload(ctx, "r")
				if err != nil {
					t.Fatal(err)
				}
				if _, err := reg.WriteUpload(ctx, "r", u.ID, 0, int64(len(data)), bytes.NewReader(data)); err != nil {
					t.Fatal(err)
				}
				if _, err := reg.WriteUpload(ctx, "r", u.ID, int64(len(data)), 2<<20, &failAfter{bytes.NewReader(noise(t, 2<<20)), tc.failAt}); err == nil {
					t.Fatal("a PATCH whose client went away succeeded")
				}
				if got, err := reg.GetUpload(ctx, "r", u.ID); err != nil || got.Size != int64(len(data)) {
					t.Fatalf("after the failed PATCH: size %d (%v), want %d", got.Size, err, len(data))
				}
				d := tc.digest(data)
				if _, err := reg.FinishUpload(ctx, "r", u.ID, d, -1, 0, nil); err != nil {
					t.Fatalf("final PUT after a failed PATCH: %v", err)
				}
				wantBlob(t, reg, "r", d, data)
			})
		}
	}
}
