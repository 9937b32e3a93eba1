package stowage

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
)

// Registry is the engine: it owns the behaviour of pushes, pulls, mounts,
// deletes and listings, on top of a metadata DB and a storage Backend. HTTP
// handlers, the management API and background jobs all act through it.
// Names, tags and digests it receives are already validated.
type Registry struct {
	db    DB
	store Backend
	app   Appender // nil when the backend cannot append
	log   *slog.Logger
	now   func() time.Time

	lease         time.Duration
	keepReferrers bool
	storageLimit  int64
	nodeID        string

	manifests *contentCache
	repos     *repoCache
	uploads   keyedMutex
}

// Options tunes a Registry. The zero value is usable.
type Options struct {
	Logger *slog.Logger
	Now    func() time.Time // for tests; default time.Now
	// Lease is how long a blob a client has just seen or uploaded is safe
	// from garbage collection even if nothing references it. Default 1h.
	Lease time.Duration
	// KeepReferrers keeps a manifest's referrers (signatures, SBOMs) when
	// it is deleted; by default they are deleted with it.
	KeepReferrers bool
	// ManifestCacheBytes bounds the in-memory cache of manifest bytes
	// (content-addressed, so never stale). Default 64 MiB; negative disables.
	ManifestCacheBytes int64
	// ManifestCacheTTL, if positive, drops cached manifests after this
	// long (serve sets it to the encryption key cache's lifetime).
	ManifestCacheTTL time.Duration
	// StorageLimit is the most bytes the registry may hold, each digest
	// once (0: no limit). See registry_quota.go.
	StorageLimit int64
	// NodeID names this node (stable across restarts) among the nodes
	// sharing the database; it prefixes the node's upload leases. Default:
	// a random one.
	NodeID string
}

// NewRegistry returns an engine over db and store.
func NewRegistry(db DB, store Backend, opts Options) *Registry {
	r := &Registry{db: db, store: store, log: opts.Logger, now: opts.Now}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.now == nil {
		r.now = time.Now
	}
	r.app, _ = store.(Appender)
	r.lease, r.keepReferrers, r.storageLimit, r.nodeID = opts.Lease, opts.KeepReferrers, opts.StorageLimit, opts.NodeID
	if r.nodeID == "" {
		r.nodeID = newID()
	}
	if r.lease <= 0 {
		r.lease = time.Hour
	}
	size := opts.ManifestCacheBytes
	if size == 0 {
		size = 64 << 20
	}
	r.manifests = newContentCache(size, opts.ManifestCacheTTL)
	r.repos = newRepoCache()
	return r
}

// DB returns the metadata database (for jobs and tools built on the engine).
func (r *Registry) DB() DB { return r.db }

// Backend returns the storage backend.
func (r *Registry) Backend() Backend { return r.store }

// ---- Blobs ----

func blobUnknown(repo string, d Digest) error {
	return Errorf(CodeBlobUnknown, "blob %s is not in repository %s: push it or mount it there first", d, repo)
}

// StatBlob returns the blob if it is visible in repo. It also renews the
// blob's lease: a client that saw the blob (and so may skip uploading it)
// can reference it in a manifest before the collector may take it.
func (r *Registry) StatBlob(ctx context.Context, repo string, d Digest) (BlobRecord, error) {
	var b BlobRecord
	err := r.db.View(ctx, func(tx Tx) (err error) {
		b, err = tx.RepositoryBlob(repo, d)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return b, blobUnknown(repo, d)
	}
	if err != nil {
		return b, err
	}
	if b.RepoLocks&LockRead != 0 {
		return b, denied("repository "+repo, "read", repo)
	}
	// Renew the lease only when a quarter of it has passed: at most a write
	// per blob every few minutes, not one per HEAD.
	if now := r.now(); now.Sub(b.LastUsed) > r.lease/4 {
		if err := r.db.Update(ctx, func(tx Tx) error { return tx.TouchBlob(d, now) }); err != nil {
			return b, err
		}
		b.LastUsed = now
	}
	return b, nil
}

// OpenBlob returns the blob's bytes from offset, if it is visible in repo.
func (r *Registry) OpenBlob(ctx context.Context, repo string, d Digest, offset int64) (io.ReadCloser, BlobRecord, error) {
	b, err := r.StatBlob(ctx, repo, d)
	if err != nil {
		return nil, b, err
	}
	rc, err := r.store.Open(ctx, BlobKey(d), offset)
	if IsNotExist(err) {
		r.log.Error("blob recorded in the database is missing from storage", "digest", d, "repo", repo)
		return nil, b, Errorf(CodeBlobUnknown, "blob %s is recorded but missing from storage; run `stowage scrub`, and restore it from a backup or another copy", d)
	}
	return rc, b, err
}

// DeleteBlob removes the blob from repo. The bytes stay while any repository
// still holds the blob (garbage collection frees them). A blob that a
// manifest of repo uses is refused (DENIED, naming the manifest): the image
// would no longer pull; delete the manifest first. The check and the unlink
// are one transaction, as a manifest PUT checks the link in its own, so one
// of two racing requests sees the other.
func (r *Registry) DeleteBlob(ctx context.Context, repo string, d Digest) error {
	err := r.db.Update(ctx, func(tx Tx) error {
		if rec, err := tx.GetRepository(repo); err == nil && rec.Locks&LockDelete != 0 {
			return denied("repository "+repo, "delete", repo)
		}
		if err := tx.UnlinkBlob(repo, d); err != nil {
			return err
		}
		// Decided after the unlink, in its transaction: an error rolls it back.
		users, err := tx.ManifestParents(repo, d)
		if err != nil {
			return err
		}
		if len(users) > 0 {
			return inUse("blob", "manifest", repo, d, users, "delete the manifest first; garbage collection frees the blob once nothing uses it")
		}
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		return blobUnknown(repo, d)
	}
	return err
}

// MountBlob makes a blob of repository from visible in repo without copying
// it; with from empty (automatic content discovery), a blob that some
// repository which is not read-locked holds. It reports false, with no
// error, when the blob cannot be mounted: from does not hold it, from is
// read-locked (a mount must not expose what a pull could not read), or,
// without from, only read-locked repositories hold it, or none does (its
// repositories were deleted, or it was deleted from each). The client then
// uploads it as usual.
func (r *Registry) MountBlob(ctx context.Context, repo, from string, d Digest) (BlobRecord, bool, error) {
	var b BlobRecord
	now := r.now()
	err := r.db.Update(ctx, func(tx Tx) (err error) {
		if err := writable(tx, repo); err != nil {
			return err
		}
		if from == "" {
			// Automatic content discovery: the client did not say where the
			// blob is; a copy that some repository could serve in a pull
			// will do, not one only read-locked or unlinked repositories hold.
			b, err = tx.LinkedBlob(d, LockRead)
			if errors.Is(err, ErrNotFound) {
				r.log.Debug("mount refused: no repository that is not read-locked holds the blob; the client uploads instead", "repository", repo, "digest", d)
			}
		} else {
			b, err = tx.RepositoryBlob(from, d)
			if err == nil && b.RepoLocks&LockRead != 0 {
				r.log.Debug("mount refused: the source repository is read-locked; the client uploads instead", "repository", repo, "from", from, "digest", d)
				err = ErrNotFound
			}
		}
		if err == nil && b.State != BlobLive {
			err = ErrNotFound
		}
		if err != nil {
			return err
		}
		if err := r.checkRepoQuota(tx, repo, d, b.Size); err != nil {
			return err
		}
		if err := tx.TouchBlob(d, now); err != nil {
			return err
		}
		if err := tx.CreateRepository(repo, now); err != nil {
			return err
		}
		return tx.LinkBlob(repo, d, now)
	})
	if errors.Is(err, ErrNotFound) {
		return b, false, nil
	}
	return b, err == nil, err
}

// PutBlob stores a whole blob in one request (monolithic push). The bytes are
// verified against d (and size, if >= 0) while they stream to storage, and
// the blob becomes visible only after both checks passed.
func (r *Registry) PutBlob(ctx context.Context, repo string, d Digest, body io.Reader, size int64) (BlobRecord, error) {
	if err := checkAlgorithm(d); err != nil {
		return BlobRecord{}, err
	}
	if err := r.checkWritable(ctx, repo); err != nil {
		return BlobRecord{}, err
	}
	vr := NewVerifyingReader(body, d, size)
	exists, err := r.reserve(ctx, repo, d, size)
	if err != nil {
		return BlobRecord{}, err
	}
	if exists {
		// Stored once for the whole registry: verify the bytes, keep none.
		if _, err := io.Copy(io.Discard, vr); err != nil {
			return BlobRecord{}, uploadError(err)
		}
	} else if err := r.store.Put(ctx, BlobKey(d), vr, size); err != nil {
		return BlobRecord{}, uploadError(err)
	}
	return r.recordBlob(ctx, repo, d, vr.N(), "")
}

func checkAlgorithm(d Digest) error {
	// The algorithms the OCI image spec registers; go-digest would also
	// take sha384, which clients do not expect.
	if a := d.Algorithm(); a != digest.SHA256 && a != digest.SHA512 {
		return Errorf(CodeDigestInvalid, "digest algorithm %q is not supported: use sha256 or sha512", a)
	}
	return nil
}

// uploadError keeps *Error values (digest or size mismatch) and wraps the
// rest (a client that hung up, a full disk) as BLOB_UPLOAD_INVALID.
func uploadError(err error) error {
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	return &Error{Code: CodeBlobUploadInvalid, Message: "upload failed before all bytes were stored; nothing was kept, retry the upload", Err: err}
}

// reserve is step 1 of every blob write: it tells whether d is already
// stored (then the caller writes nothing, and the lease just renewed keeps
// the collector away), or records a pending row before the caller writes
// the object. It waits while the collector is deleting d, so an object
// written now can never be deleted by a collection that started earlier.
// It refuses (DENIED) a blob that would pass the registry's storage limit
// or repo's quota.
func (r *Registry) reserve(ctx context.Context, repo string, d Digest, size int64) (stored bool, err error) {
	for attempt := 0; ; attempt++ {
		var state BlobState
		now := r.now()
		err := r.db.Update(ctx, func(tx Tx) error {
			b, err := tx.GetBlob(d)
			if errors.Is(err, ErrNotFound) {
				if err := r.checkRegistryLimit(tx, size, 0); err != nil {
					return err
				}
				if err := r.checkRepoQuota(tx, repo, d, size); err != nil {
					return err
				}
				state = BlobPending
				return tx.PutBlob(BlobRecord{Digest: d, Size: max(size, 0), Created: now, State: BlobPending,
					LastUsed: now, UnreferencedSince: now})
			}
			if err != nil {
				return err
			}
			state = b.State
			if state == BlobDeleting {
				return nil
			}
			if err := r.checkRepoQuota(tx, repo, d, max(size, b.Size)); err != nil {
				return err
			}
			return tx.TouchBlob(d, now)
		})
		if err != nil {
			return false, err
		}
		if state != BlobDeleting {
			return state == BlobLive, nil
		}
		if attempt == 200 {
			return false, Errorf(CodeUnavailable, "blob %s is being garbage-collected right now; retry the upload in a moment", d)
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// markLive is the last step of every blob write, inside the transaction that
// records it: the reserved row becomes live. If the collector took the row
// meanwhile (possible only with a minimum age shorter than the push), the
// write fails rather than record a blob whose object may be gone.
func markLive(tx Tx, d Digest, size int64, now time.Time) (BlobRecord, error) {
	b, err := tx.GetBlob(d)
	if errors.Is(err, ErrNotFound) || err == nil && b.State == BlobDeleting {
		return b, Errorf(CodeBlobUploadInvalid, "blob %s was garbage-collected while it was being pushed (a collection with a minimum age shorter than the push?); push it again", d)
	}
	if err != nil {
		return b, err
	}
	b.Size, b.State = size, BlobLive
	if now.After(b.LastUsed) {
		b.LastUsed = now
	}
	return b, tx.PutBlob(b)
}

// recordBlob records a verified, stored blob and links it into repo, and
// ends the upload session uploadID if one is given, in one transaction.
func (r *Registry) recordBlob(ctx context.Context, repo string, d Digest, size int64, uploadID string) (BlobRecord, error) {
	now := r.now()
	var b BlobRecord
	err := r.db.Update(ctx, func(tx Tx) (err error) {
		if err := writable(tx, repo); err != nil {
			return err
		}
		if err := r.checkLimitsAtRecord(tx, repo, d, size); err != nil {
			return err
		}
		if b, err = markLive(tx, d, size, now); err != nil {
			return err
		}
		if err := tx.CreateRepository(repo, now); err != nil {
			return err
		}
		if err := tx.LinkBlob(repo, d, now); err != nil {
			return err
		}
		if uploadID != "" {
			if err := tx.DeleteUpload(uploadID); err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
		}
		return nil
	})
	return b, err
}

// ---- Upload sessions ----

func uploadUnknown(id string) error {
	return Errorf(CodeBlobUploadUnknown, "upload %s is unknown: it finished, was cancelled or expired; start a new upload", id)
}

func newID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

func uploadKey(id string) string { return UploadPrefix(id) + "data" }

// StartUpload opens an upload session in repo.
func (r *Registry) StartUpload(ctx context.Context, repo string) (UploadRecord, error) {
	now := r.now()
	u := UploadRecord{ID: newID(), Repo: repo, Started: now, Updated: now}
	err := r.db.Update(ctx, func(tx Tx) error {
		if err := writable(tx, repo); err != nil {
			return err
		}
		return tx.PutUpload(u)
	})
	return u, err
}

// GetUpload returns the session's progress.
func (r *Registry) GetUpload(ctx context.Context, repo, id string) (UploadRecord, error) {
	var u UploadRecord
	err := r.db.View(ctx, func(tx Tx) (err error) {
		u, err = tx.GetUpload(id)
		return err
	})
	if errors.Is(err, ErrNotFound) || err == nil && u.Repo != repo {
		return UploadRecord{}, uploadUnknown(id)
	}
	return u, err
}

// WriteUpload appends body to the session. start is where the client says
// the chunk begins (-1 if it did not say) and length its size (-1 if unknown).
func (r *Registry) WriteUpload(ctx context.Context, repo, id string, start, length int64, body io.Reader) (UploadRecord, error) {
	ctx, unlock, err := r.lockUpload(ctx, id)
	if err != nil {
		return UploadRecord{}, err
	}
	defer unlock()
	u, err := r.GetUpload(ctx, repo, id)
	if err != nil {
		return u, err
	}
	return r.appendUpload(ctx, u, start, length, body)
}

func (r *Registry) appendUpload(ctx context.Context, u UploadRecord, start, length int64, body io.Reader) (UploadRecord, error) {
	if start >= 0 && start != u.Size {
		return u, &Error{Code: CodeRangeInvalid, Message: fmt.Sprintf("chunk starts at byte %d but the upload has %d bytes: send the chunk that starts at %d", start, u.Size, u.Size),
			Detail: map[string]int64{"size": u.Size}}
	}
	if length > 0 {
		if err := r.checkUploadLimits(ctx, u.Repo, u.Size+length); err != nil {
			r.dropUpload(ctx, u)
			return u, err
		}
	}
	h := sha256.New()
	if len(u.HashState) > 0 {
		if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(u.HashState); err != nil {
			return u, fmt.Errorf("upload %s: resume hash state: %w", u.ID, err)
		}
	}
	src := io.TeeReader(body, h)
	if length >= 0 {
		src = &exactReader{r: src, n: length}
	}
	next := u
	if r.app != nil {
		n, err := r.app.Append(ctx, uploadKey(u.ID), u.Size, src)
		if err != nil {
			return u, uploadError(err)
		}
		next.Size = n
	} else {
		cr := &countingReader{r: src}
		if err := r.store.Put(ctx, fmt.Sprintf("%s%020d", UploadPrefix(u.ID), u.Size), cr, length); err != nil {
			return u, uploadError(err)
		}
		next.Size += cr.n
		next.Chunks++
	}
	if length < 0 {
		// The chunk's size was not announced: check what it brought.
		if err := r.checkUploadLimits(ctx, u.Repo, next.Size); err != nil {
			r.dropUpload(ctx, u)
			return u, err
		}
	}
	state, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return u, err
	}
	next.HashState, next.Updated = state, r.now()
	err = r.db.Update(ctx, func(tx Tx) error { return tx.AdvanceUpload(next, u.Size) })
	if errors.Is(err, ErrNotFound) {
		return u, Errorf(CodeBlobUploadInvalid, "upload %s was changed or ended by another request at the same time; check its status and resume", u.ID)
	}
	return next, err
}

// FinishUpload completes the session with an optional last chunk and makes
// the blob visible as d in repo, if the bytes match d.
func (r *Registry) FinishUpload(ctx context.Context, repo, id string, d Digest, start, length int64, body io.Reader) (BlobRecord, error) {
	if err := checkAlgorithm(d); err != nil {
		return BlobRecord{}, err
	}
	u, err := r.GetUpload(ctx, repo, id)
	if err != nil {
		return BlobRecord{}, err
	}
	if u.Size == 0 && (start <= 0) {
		// Nothing was sent before: the common POST-then-PUT flow. Stream the
		// body straight to its final place, verified, written once. It
		// never touches the session's data, so it needs no writer lease (a
		// PATCH racing it on another node fails when the session ends).
		unlock := r.uploads.lock(id)
		defer unlock()
		b, err := r.PutBlob(ctx, repo, d, body, length)
		if err != nil {
			return b, err
		}
		r.dropUpload(ctx, u)
		return b, nil
	}
	ctx, unlock, err := r.lockUpload(ctx, id)
	if err != nil {
		return BlobRecord{}, err
	}
	defer unlock()
	if u, err = r.GetUpload(ctx, repo, id); err != nil { // as the lease holder sees it
		return BlobRecord{}, err
	}
	if length != 0 {
		if u, err = r.appendUpload(ctx, u, start, length, body); err != nil {
			return BlobRecord{}, err
		}
	}
	got, err := r.uploadDigest(ctx, u, d.Algorithm())
	if IsNotExist(err) && r.committedEarlier(ctx, u, d) {
		return r.recordBlob(ctx, repo, d, u.Size, u.ID)
	}
	if err != nil {
		return BlobRecord{}, err
	}
	if got != d {
		r.dropUpload(ctx, u)
		return BlobRecord{}, Errorf(CodeDigestInvalid, "uploaded content has digest %s, not the %s given; the upload was discarded", got, d)
	}
	exists, err := r.reserve(ctx, u.Repo, d, u.Size)
	if err != nil {
		return BlobRecord{}, err
	}
	switch {
	case exists:
		r.deleteUploadData(ctx, u)
	case r.app != nil:
		// 1. the bytes were verified above; 2. move them into place (a rename
		// on disk, no copy); 3. record the blob below.
		if err := r.app.Commit(ctx, uploadKey(u.ID), BlobKey(d), u.Size); err != nil {
			if !IsNotExist(err) || !r.committedEarlier(ctx, u, d) {
				return BlobRecord{}, err
			}
		}
	default:
		rc, err := r.openChunks(ctx, u)
		if err != nil {
			return BlobRecord{}, err
		}
		err = r.store.Put(ctx, BlobKey(d), NewVerifyingReader(rc, d, u.Size), u.Size)
		rc.Close()
		if err != nil {
			return BlobRecord{}, uploadError(err)
		}
		r.deleteUploadData(ctx, u)
	}
	return r.recordBlob(ctx, repo, d, u.Size, u.ID)
}

// committedEarlier reports whether an earlier FinishUpload of this session
// moved the data into place and then stopped (a crash between the rename and
// the database commit): the upload data is gone, and the blob key holds the
// session's bytes. A retried PUT then only needs to record the blob.
func (r *Registry) committedEarlier(ctx context.Context, u UploadRecord, d Digest) bool {
	oi, err := r.store.Stat(ctx, BlobKey(d))
	if err != nil || oi.Size != u.Size {
		return false
	}
	if d.Algorithm() == digest.SHA256 {
		// The saved hash state already proved the session's bytes are d, and
		// anything at the blob key was verified before it got there.
		return true
	}
	rc, err := r.store.Open(ctx, BlobKey(d), 0)
	if err != nil {
		return false
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, NewVerifyingReader(rc, d, u.Size))
	return err == nil
}

// uploadDigest returns the digest of what the session holds: from the saved
// hash state for sha256, by reading the data back for other algorithms.
func (r *Registry) uploadDigest(ctx context.Context, u UploadRecord, alg digest.Algorithm) (Digest, error) {
	if alg == digest.SHA256 {
		h := sha256.New()
		if len(u.HashState) > 0 {
			if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(u.HashState); err != nil {
				return "", err
			}
		}
		return digest.NewDigest(alg, h), nil
	}
	var rc io.ReadCloser
	var err error
	if r.app != nil {
		rc, err = r.store.Open(ctx, uploadKey(u.ID), 0)
		if IsNotExist(err) && u.Size == 0 {
			rc, err = io.NopCloser(eofReader{}), nil
		}
	} else {
		rc, err = r.openChunks(ctx, u)
	}
	if err != nil {
		return "", err
	}
	defer rc.Close()
	h := alg.Hash()
	n, err := io.Copy(h, io.LimitReader(rc, u.Size))
	if err != nil {
		return "", err
	}
	if n != u.Size {
		return "", fmt.Errorf("upload %s: stored data has %d bytes, expected %d", u.ID, n, u.Size)
	}
	return digest.NewDigest(alg, h), nil
}

// openChunks concatenates a session's pieces (backends without Appender).
func (r *Registry) openChunks(ctx context.Context, u UploadRecord) (io.ReadCloser, error) {
	var keys []string
	err := r.store.List(ctx, UploadPrefix(u.ID), func(oi ObjectInfo) error { keys = append(keys, oi.Key); return nil })
	if err != nil {
		return nil, err
	}
	sortStrings(keys)
	var readers []io.Reader
	var closers multiCloser
	var off int64
	for _, k := range keys {
		var at int64
		if _, err := fmt.Sscanf(k[len(UploadPrefix(u.ID)):], "%d", &at); err != nil || at != off || off >= u.Size {
			continue // a piece from a failed write: not part of the recorded upload
		}
		rc, err := r.store.Open(ctx, k, 0)
		if err != nil {
			closers.Close()
			return nil, err
		}
		oi, _ := r.store.Stat(ctx, k)
		off += oi.Size
		readers = append(readers, rc)
		closers = append(closers, rc)
	}
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(io.MultiReader(readers...), u.Size), closers}, nil
}

// CancelUpload ends a session and discards its data.
func (r *Registry) CancelUpload(ctx context.Context, repo, id string) error {
	ctx, unlock, err := r.lockUpload(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	u, err := r.GetUpload(ctx, repo, id)
	if err != nil {
		return err
	}
	r.dropUpload(ctx, u)
	return nil
}

func (r *Registry) dropUpload(ctx context.Context, u UploadRecord) {
	if err := r.db.Update(ctx, func(tx Tx) error { return tx.DeleteUpload(u.ID) }); err != nil && !errors.Is(err, ErrNotFound) {
		r.log.Warn("could not delete upload record", "upload", u.ID, "err", err)
	}
	r.deleteUploadData(ctx, u)
}

func (r *Registry) deleteUploadData(ctx context.Context, u UploadRecord) {
	var keys []string
	if err := r.store.List(ctx, UploadPrefix(u.ID), func(oi ObjectInfo) error { keys = append(keys, oi.Key); return nil }); err != nil {
		r.log.Warn("could not list upload data", "upload", u.ID, "err", err)
	}
	for _, k := range keys {
		if err := r.store.Delete(ctx, k); err != nil {
			r.log.Warn("could not delete upload data", "key", k, "err", err)
		}
	}
}

// ---- helpers ----

// exactReader fails if its source holds more or fewer than n bytes.
type exactReader struct {
	r io.Reader
	n int64
}

func (e *exactReader) Read(p []byte) (int, error) {
	if int64(len(p)) > e.n+1 {
		p = p[:e.n+1]
	}
	n, err := e.r.Read(p)
	e.n -= int64(n)
	if e.n < 0 {
		return n, Errorf(CodeSizeInvalid, "chunk is longer than its Content-Range or Content-Length says")
	}
	if err == io.EOF && e.n > 0 {
		return n, Errorf(CodeSizeInvalid, "chunk is %d bytes shorter than its Content-Range or Content-Length says", e.n)
	}
	return n, err
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

type multiCloser []io.Closer

func (m multiCloser) Close() error {
	var errs []error
	for _, c := range m {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// keyedMutex serializes work on one key (an upload session) in this process.
// Across processes, AdvanceUpload's conditional update keeps sessions consistent.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyLock
}

type keyLock struct {
	mu   sync.Mutex
	refs int
}

func (k *keyedMutex) lock(key string) func() {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*keyLock{}
	}
	l := k.locks[key]
	if l == nil {
		l = &keyLock{}
		k.locks[key] = l
	}
	l.refs++
	k.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}
