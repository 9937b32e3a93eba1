package stowage

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"sort"
	"strconv"
	"strings"
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
	recordPulls   bool // Options.RecordPulls
	changes       ChangeHook
	storageLimit  int64
	nodeID        string
	// uploadLease and uploadRenew: an upload writer's lease, and how often
	// it is renewed (registry_uploadlock.go).
	uploadLease, uploadRenew time.Duration

	manifests *contentCache
	repos     *repoCache
	uploads   keyedMutex

	// pointDeletes makes a repository delete read and remove manifest by
	// manifest, as deleting an image does (tests compare it with the
	// snapshot a repository delete uses).
	pointDeletes bool
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
	// RecordPulls makes every manifest GET append a pull event to the
	// change feed (in its own transaction after the read; a HEAD is no
	// pull). Off by default: then a pull writes nothing.
	RecordPulls bool
	// Changes sees every tag and manifest change in its transaction
	// (registry_changes.go; replication's clocks). nil: nothing.
	Changes ChangeHook
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
	r.recordPulls, r.changes = opts.RecordPulls, opts.Changes
	if r.nodeID == "" {
		r.nodeID = newID()
	}
	if r.lease <= 0 {
		r.lease = time.Hour
	}
	r.uploadLease, r.uploadRenew = defaultUploadLease, defaultUploadLease/4
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
		b, err = tx.Blobs().RepositoryBlob(repo, d)
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
		if err := r.db.Update(ctx, func(tx Tx) error { return tx.Blobs().TouchBlob(d, now) }); err != nil {
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
		if rec, err := tx.Repositories().GetRepository(repo); err == nil && rec.Locks&LockDelete != 0 {
			return denied("repository "+repo, "delete", repo)
		}
		// Only a blob HEAD would show: not one being garbage-collected.
		if _, err := tx.Blobs().RepositoryBlob(repo, d); err != nil {
			return err
		}
		if err := tx.Blobs().UnlinkBlob(repo, d); err != nil {
			return err
		}
		// Decided after the unlink, in its transaction: an error rolls it back.
		users, err := tx.Manifests().ManifestParents(repo, d)
		if err != nil {
			return err
		}
		if len(users) > 0 {
			return inUse("blob", "manifest", repo, d, users, "delete the manifest first; garbage collection frees the blob once nothing uses it")
		}
		if h, ok := r.changes.(BlobDeleteHook); ok {
			return h.BlobDeleted(ctx, tx, repo, d)
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
			b, err = tx.Blobs().LinkedBlob(d, LockRead)
			if errors.Is(err, ErrNotFound) {
				r.log.Debug("mount refused: no repository that is not read-locked holds the blob; the client uploads instead", "repository", repo, "digest", d)
			}
		} else {
			b, err = tx.Blobs().RepositoryBlob(from, d)
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
		if err := r.checkRepoQuota(ctx, tx, repo, d, b.Size); err != nil {
			return err
		}
		if err := tx.Blobs().TouchBlob(d, now); err != nil {
			return err
		}
		if err := tx.Repositories().CreateRepository(repo, now); err != nil {
			return err
		}
		return tx.Blobs().LinkBlob(repo, d, now)
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
	return r.putBlob(ctx, repo, d, body, size, nil)
}

// putBlob is PutBlob, ending the upload session u (if not nil) where it
// records the blob (see recordBlob).
func (r *Registry) putBlob(ctx context.Context, repo string, d Digest, body io.Reader, size int64, u *UploadRecord) (BlobRecord, error) {
	if err := checkAlgorithm(d); err != nil {
		return BlobRecord{}, err
	}
	if err := r.checkWritable(ctx, repo); err != nil && !replicatedChange(ctx) {
		return BlobRecord{}, err
	}
	vr := NewVerifyingReader(body, d, size)
	// An encrypting store's data-key row goes in reserve's transaction
	// (datakeys_prepared.go).
	pctx, row := r.prepareDataKey(ctx, BlobKey(d))
	exists, err := r.reserveKeyed(ctx, repo, d, size, row)
	if err != nil {
		return BlobRecord{}, err
	}
	if exists {
		// Stored once for the whole registry: verify the bytes, keep none.
		if _, err := io.Copy(io.Discard, vr); err != nil {
			return BlobRecord{}, uploadError(err)
		}
	} else if err := r.store.Put(pctx, BlobKey(d), vr, size); err != nil {
		return BlobRecord{}, uploadError(err)
	}
	return r.recordBlob(ctx, repo, d, vr.N(), u)
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
// A row left 'deleting' by a collection that crashed (no collection holds
// the job lock "gc" now) it finishes deleting itself, in the collector's
// order, rather than wait for the next collection. It refuses (DENIED) a
// blob that would pass the registry's storage limit or repo's quota.
func (r *Registry) reserve(ctx context.Context, repo string, d Digest, size int64) (stored bool, err error) {
	return r.reserveKeyed(ctx, repo, d, size, nil)
}

// reserveKeyed is reserve that also records row (if not nil), the data key
// of the object the caller is about to write (DataKeyPreparer), in the
// transaction that finds d not stored.
func (r *Registry) reserveKeyed(ctx context.Context, repo string, d Digest, size int64, row *DataKey) (stored bool, err error) {
	putRow := func(tx Tx) error {
		if row == nil {
			return nil
		}
		return tx.DataKeys().PutDataKey(*row)
	}
	for attempt := 0; ; attempt++ {
		var state BlobState
		now := r.now()
		err := r.db.Update(ctx, func(tx Tx) error {
			b, err := tx.Blobs().GetBlob(d)
			if errors.Is(err, ErrNotFound) {
				if err := r.checkRegistryLimit(tx, size, 0); err != nil {
					return err
				}
				if err := r.checkRepoQuota(ctx, tx, repo, d, size); err != nil {
					return err
				}
				state = BlobPending
				if err := putRow(tx); err != nil {
					return err
				}
				return tx.Blobs().PutBlob(BlobRecord{Digest: d, Size: max(size, 0), Created: now, State: BlobPending,
					LastUsed: now, UnreferencedSince: now})
			}
			if err != nil {
				return err
			}
			state = b.State
			if state == BlobDeleting {
				return nil
			}
			if err := r.checkRepoQuota(ctx, tx, repo, d, max(size, b.Size)); err != nil {
				return err
			}
			if state == BlobPending {
				if err := putRow(tx); err != nil {
					return err
				}
			}
			return tx.Blobs().TouchBlob(d, now)
		})
		if err != nil {
			return false, err
		}
		if state != BlobDeleting {
			return state == BlobLive, nil
		}
		if finished, err := r.finishDeleting(ctx, d); err != nil {
			return false, err
		} else if finished {
			continue
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

// finishDeleting finishes the deletion of d, in state 'deleting', if no
// collection is running (on any node sharing the database): then a crashed
// one left the row. Holding the collector's job lock, it deletes the object,
// then the row, as the collector would (DeleteBlobs), and reports true. While
// a collection runs it does nothing and reports false: that collection
// finishes the row (step 0, or the batch it is deleting).
func (r *Registry) finishDeleting(ctx context.Context, d Digest) (bool, error) {
	held, release, err := TryJobLock(ctx, r.db, "gc")
	if errors.Is(err, ErrLocked) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer release()
	var b BlobRecord
	err = r.db.View(held, func(tx Tx) (err error) {
		b, err = tx.Blobs().GetBlob(d)
		return err
	})
	if errors.Is(err, ErrNotFound) || err == nil && b.State != BlobDeleting {
		return true, nil // finished meanwhile
	}
	if err != nil {
		return false, err
	}
	r.log.Info("finishing the deletion of a blob a crashed garbage collection left, to push it again", "digest", d)
	if err := r.DeleteBlobs(held, []BlobRecord{b}); err != nil {
		return false, fmt.Errorf("finishing the deletion of blob %s that an interrupted garbage collection left: %w", d, err)
	}
	return true, nil
}

// markLive is the last step of every blob write, inside the transaction that
// records it: the reserved row becomes live. If the collector took the row
// meanwhile (possible only with a minimum age shorter than the push), the
// write fails rather than record a blob whose object may be gone.
func markLive(tx Tx, d Digest, size int64, now time.Time) (BlobRecord, error) {
	b, err := tx.Blobs().GetBlob(d)
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
	return b, tx.Blobs().PutBlob(b)
}

// recordBlob records a verified, stored blob and links it into repo, and
// ends the upload session u if one is given, in one transaction. The
// session must still be there, in the generation u was read in: a finisher
// whose writer lease another writer took over (it stalled) must not end
// the new holder's session, and one whose session ended meanwhile (its
// repository was deleted, it was cancelled or expired) must not bring the
// repository back (BLOB_UPLOAD_UNKNOWN).
func (r *Registry) recordBlob(ctx context.Context, repo string, d Digest, size int64, u *UploadRecord) (BlobRecord, error) {
	now := r.now()
	var b BlobRecord
	err := r.db.Update(ctx, func(tx Tx) (err error) {
		if u != nil {
			cur, err := tx.Uploads().GetUpload(u.ID)
			if errors.Is(err, ErrNotFound) {
				return uploadUnknown(u.ID)
			}
			if err != nil {
				return err
			}
			if cur.Gen != u.Gen {
				return uploadTakenOver(u.ID)
			}
			if err := tx.Uploads().DeleteUpload(u.ID); err != nil {
				return err
			}
		}
		if err := writable(tx, repo); err != nil && !replicatedChange(ctx) {
			return err
		}
		if err := r.checkLimitsAtRecord(ctx, tx, repo, d, size); err != nil {
			return err
		}
		// The repository's row before the blob's (whose change updates a
		// held_bytes shard): the lock order of every writer (PostgreSQL
		// migration 0015), which a manifest push keeps too. The other
		// order deadlocked with a manifest push of the same repository
		// whose digest fell on the same shard.
		if err := tx.Repositories().CreateRepository(repo, now); err != nil {
			return err
		}
		if b, err = markLive(tx, d, size, now); err != nil {
			return err
		}
		return tx.Blobs().LinkBlob(repo, d, now)
	})
	if u != nil && ErrorCodeOf(err) == CodeBlobUploadUnknown {
		r.deleteUploadData(context.WithoutCancel(ctx), *u) // nothing will use it
	}
	return b, err
}

// ---- Upload sessions ----

func uploadUnknown(id string) error {
	return Errorf(CodeBlobUploadUnknown, "upload %s is unknown: it finished, was cancelled or expired, or its repository was deleted; start a new upload", id)
}

func uploadTakenOver(id string) error {
	return &Error{Code: CodeBlobUploadInvalid, Err: errTakenOver,
		Message: fmt.Sprintf("upload %s was taken over by another request while this one stalled (its writer lease ran out); nothing of this request was kept: check the upload's status and resume", id)}
}

func newID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

// uploadKey is the object holding an upload's bytes in writer generation gen
// (Appender backends); chunkKey is its piece starting at off (backends
// without Appender). Generation 0 keeps the original layout.
func uploadKey(id string, gen int64) string {
	if gen == 0 {
		return UploadPrefix(id) + "data"
	}
	return fmt.Sprintf("%sdata.%d", UploadPrefix(id), gen)
}

func chunkKey(id string, gen, off int64) string {
	if gen == 0 {
		return fmt.Sprintf("%s%020d", UploadPrefix(id), off)
	}
	return fmt.Sprintf("%sg%d.%020d", UploadPrefix(id), gen, off)
}

// StartUpload opens an upload session in repo.
func (r *Registry) StartUpload(ctx context.Context, repo string) (UploadRecord, error) {
	now := r.now()
	u := UploadRecord{ID: newID(), Repo: repo, Started: now, Updated: now}
	err := r.db.Update(ctx, func(tx Tx) error {
		if err := writable(tx, repo); err != nil {
			return err
		}
		return tx.Uploads().PutUpload(u)
	})
	return u, err
}

// GetUpload returns the session's progress.
func (r *Registry) GetUpload(ctx context.Context, repo, id string) (UploadRecord, error) {
	var u UploadRecord
	err := r.db.View(ctx, func(tx Tx) (err error) {
		u, err = tx.Uploads().GetUpload(id)
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
	ctx, u, unlock, err := r.lockUpload(ctx, repo, id)
	if err != nil {
		return UploadRecord{}, err
	}
	defer unlock()
	held := u
	if u, err = r.adoptUpload(ctx, u); err != nil {
		return u, r.leaseEnded(ctx, held, err)
	}
	next, err := r.appendUpload(ctx, u, start, length, body, true)
	return next, r.leaseEnded(ctx, held, err)
}

// adoptUpload makes the lease holder's own generation hold the session's
// recorded bytes. When the holder took over a lease that ran out while held
// (u.Gen > u.DataGen), the writer before it may still be appending to the
// old object: its late bytes must never reach the blob. So the recorded
// bytes are copied into a fresh object, checked against the saved hash state
// (they are what the session acknowledged, or the upload is lost), recorded
// as the session's data (fenced by the generation), and the old object is
// deleted. This happens only after such a takeover, never on the common path.
func (r *Registry) adoptUpload(ctx context.Context, u UploadRecord) (UploadRecord, error) {
	if u.DataGen == u.Gen {
		return u, nil
	}
	next := u
	next.DataGen = u.Gen
	if u.Size == 0 {
		return next, nil // nothing acknowledged: the next append starts the new object
	}
	src, err := r.openData(ctx, u)
	if IsNotExist(err) {
		// Committed by an earlier final PUT that stopped before recording
		// it (FinishUpload's committedEarlier), or lost: nothing to adopt.
		return u, nil
	}
	if err != nil {
		return u, Errorf(CodeUnavailable, "upload %s: its earlier writer may still be writing; retry in a moment (%v)", u.ID, err)
	}
	h := sha256.New()
	cr := &countingReader{r: io.TeeReader(src, h)}
	if r.app != nil {
		_, err = r.app.Append(ctx, uploadKey(u.ID, u.Gen), 0, cr)
	} else {
		err = r.store.Put(ctx, chunkKey(u.ID, u.Gen, 0), cr, -1)
		next.Chunks = 1
	}
	src.Close()
	if err != nil {
		return u, r.fenced(ctx, u, Errorf(CodeUnavailable, "upload %s: could not take over its data from its earlier writer; retry in a moment (%v)", u.ID, err))
	}
	if want, err := r.stateDigest(ctx, u); err != nil || cr.n != u.Size || digest.NewDigest(digest.SHA256, h) != want {
		r.dropUpload(ctx, u)
		return u, uploadLost(u.ID)
	}
	// The saved hash state is sealed with the old object's key, which goes
	// with that object: seal it again with the new one's.
	newKey := uploadKey(u.ID, u.Gen)
	if r.app == nil {
		newKey = chunkKey(u.ID, u.Gen, 0)
	}
	if next.HashState, err = r.sealHashState(ctx, h, newKey); err != nil {
		return u, r.fenced(ctx, u, err)
	}
	next.Updated = r.now()
	err = r.db.Update(ctx, func(tx Tx) error { return tx.Uploads().AdvanceUpload(next, u.Size) })
	if errors.Is(err, ErrNotFound) {
		return u, r.fenced(ctx, u, nil)
	}
	if err != nil {
		return u, err
	}
	r.deleteGeneration(ctx, u.ID, u.DataGen)
	return next, nil
}

func uploadChanged(id string) error {
	return Errorf(CodeBlobUploadInvalid, "upload %s was changed or ended by another request at the same time; check its status and resume", id)
}

func uploadLost(id string) error {
	return Errorf(CodeBlobUploadInvalid, "upload %s lost data it had acknowledged (its stored bytes are missing, shorter than or different from what was recorded, e.g. after a power loss): start the upload again", id)
}

// appendUpload writes a chunk to the lease holder's data object (adopted:
// u.DataGen == u.Gen), then records the new size and hash state, fenced by
// the generation. The Appender (or Put) returns only once the bytes are
// durable, so a saved hash state never describes bytes a power loss can take.
//
// With last, the request ends with this append (a PATCH): the transaction
// that records it also releases the writer lease, one commit fewer.
func (r *Registry) appendUpload(ctx context.Context, u UploadRecord, start, length int64, body io.Reader, last bool) (UploadRecord, error) {
	if start >= 0 && start != u.Size {
		return u, &Error{Code: CodeRangeInvalid, Message: fmt.Sprintf("chunk starts at byte %d but the upload has %d bytes: send the chunk that starts at %d", start, u.Size, u.Size),
			Detail: map[string]int64{"size": u.Size}}
	}
	if u.DataGen != u.Gen && u.Size > 0 {
		return u, uploadLost(u.ID) // adoptUpload found no data to take over
	}
	if length > 0 {
		if err := r.checkUploadLimits(ctx, u.Repo, u.Size+length); err != nil {
			r.dropUpload(ctx, u)
			return u, err
		}
	}
	h, err := r.resumeHash(ctx, u)
	if err != nil {
		return u, err
	}
	hp := newHashPipe(h) // hashes while the chunk is written (hashpipe.go)
	src := io.TeeReader(body, hp)
	if length >= 0 {
		src = &exactReader{r: src, n: length}
	}
	next := u
	next.DataGen, next.Verified = u.Gen, "" // more bytes: whatever was verified before is not the upload any more
	if r.app != nil {
		n, err := r.app.Append(ctx, uploadKey(u.ID, u.Gen), u.Size, src)
		if err != nil {
			return u, r.fenced(ctx, u, uploadError(err))
		}
		next.Size = n
	} else {
		cr := &countingReader{r: src}
		if err := r.store.Put(ctx, chunkKey(u.ID, u.Gen, u.Size), cr, length); err != nil {
			return u, r.fenced(ctx, u, uploadError(err))
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
	written := uploadKey(u.ID, u.Gen) // the object holding the bytes just hashed
	if r.app == nil {
		written = chunkKey(u.ID, u.Gen, u.Size)
	}
	state, err := r.sealHashState(ctx, hp.finish(), written)
	if err != nil {
		return u, r.fenced(ctx, u, err) // the object may be gone: another writer took over
	}
	next.HashState, next.Updated = state, r.now()
	var release func(Tx) error
	var released func()
	if last {
		release, released = releaseIn(ctx, u.ID)
	}
	err = r.db.Update(ctx, func(tx Tx) error {
		if err := tx.Uploads().AdvanceUpload(next, u.Size); err != nil || release == nil {
			return err
		}
		return release(tx)
	})
	if errors.Is(err, ErrNotFound) {
		return u, r.fenced(ctx, u, nil)
	}
	if err == nil && released != nil {
		released()
	}
	return next, err
}

// fenced says why a writer (generation u.Gen) could not record what it
// wrote, and deletes what nothing will read:
//   - the session is gone (cancelled, expired, or its repository deleted;
//     the lease's renewal then also ended the write): all its data goes,
//     including this writer's, which gets BLOB_UPLOAD_UNKNOWN;
//   - another writer took the session over: if that one already moved the
//     session's data to its own generation, whatever this writer wrote in
//     its generation (after adoptUpload deleted it, say) goes; if not, the
//     new holder still copies from it, so it stays;
//   - else the session is still the writer's: err (uploadChanged if nil).
func (r *Registry) fenced(ctx context.Context, u UploadRecord, err error) error {
	ctx = context.WithoutCancel(ctx) // the lease's context ends with it
	var cur UploadRecord
	gerr := r.db.View(ctx, func(tx Tx) (err error) {
		cur, err = tx.Uploads().GetUpload(u.ID)
		return err
	})
	switch {
	case errors.Is(gerr, ErrNotFound):
		r.deleteUploadData(ctx, u)
		return uploadUnknown(u.ID)
	case gerr == nil && cur.Gen != u.Gen:
		if cur.DataGen != u.Gen {
			r.deleteGeneration(ctx, u.ID, u.Gen)
		}
		return uploadTakenOver(u.ID)
	case err == nil:
		return uploadChanged(u.ID)
	}
	return err
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
		b, err := r.putBlob(ctx, repo, d, body, length, &u)
		if err == nil {
			r.deleteUploadData(ctx, u) // a racing PATCH's, if any
		}
		return b, err
	}
	ctx, u, unlock, err := r.lockUpload(ctx, repo, id)
	if err != nil {
		return BlobRecord{}, err
	}
	defer unlock()
	b, err := r.finishHeld(ctx, repo, u, d, start, length, body)
	return b, r.leaseEnded(ctx, u, err)
}

// finishHeld is FinishUpload under the session's writer lease (u as the
// holder read it).
func (r *Registry) finishHeld(ctx context.Context, repo string, u UploadRecord, d Digest, start, length int64, body io.Reader) (BlobRecord, error) {
	var err error
	if u, err = r.adoptUpload(ctx, u); err != nil {
		return BlobRecord{}, err
	}
	if length != 0 {
		if u, err = r.appendUpload(ctx, u, start, length, body, false); err != nil {
			return BlobRecord{}, err
		}
	}
	// 1. Check the stored bytes against what was recorded, and their digest.
	err = r.checkStored(ctx, u)
	var got Digest
	if err == nil {
		got, err = r.uploadDigest(ctx, u, d.Algorithm())
	}
	if IsNotExist(err) {
		ok, cerr := r.committedEarlier(ctx, u, d)
		if cerr != nil {
			if ErrorCodeOf(cerr) == CodeDigestInvalid {
				r.dropUpload(ctx, u)
			}
			return BlobRecord{}, cerr
		}
		if ok {
			return r.recordBlob(ctx, repo, d, u.Size, &u)
		}
		r.dropUpload(ctx, u)
		return BlobRecord{}, uploadLost(u.ID)
	}
	if errors.Is(err, errShortData) {
		r.dropUpload(ctx, u)
		return BlobRecord{}, uploadLost(u.ID)
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
	if exists {
		b, err := r.recordBlob(ctx, repo, d, u.Size, &u)
		if err == nil {
			r.deleteUploadData(ctx, u)
		}
		return b, err
	}
	if r.app == nil {
		// 2. Write the blob from the pieces, verified again as it streams;
		// 3. record it; 4. only then delete the pieces, so a retried PUT
		// after a failure anywhere before 3 finds them.
		rc, err := r.openChunks(ctx, u)
		if err != nil {
			return BlobRecord{}, err
		}
		err = r.store.Put(ctx, BlobKey(d), NewVerifyingReader(rc, d, u.Size), u.Size)
		rc.Close()
		if err != nil {
			return BlobRecord{}, uploadError(err)
		}
		b, err := r.recordBlob(ctx, repo, d, u.Size, &u)
		if err == nil {
			r.deleteUploadData(ctx, u)
		}
		return b, err
	}
	// 2. Record which digest the bytes were proved to have, where the saved
	// hash state cannot (any algorithm but sha256): a retried PUT after the
	// move below may claim only that digest (committedEarlier).
	if d.Algorithm() != digest.SHA256 && u.Verified != d {
		next := u
		next.Verified = d
		err := r.db.Update(ctx, func(tx Tx) error { return tx.Uploads().AdvanceUpload(next, u.Size) })
		if errors.Is(err, ErrNotFound) {
			return BlobRecord{}, r.fenced(ctx, u, nil)
		}
		if err != nil {
			return BlobRecord{}, err
		}
		u = next
	}
	// 3. Move the bytes into place (a rename on disk, no copy); 4. record
	// the blob.
	if err := r.app.Commit(ctx, uploadKey(u.ID, u.DataGen), BlobKey(d), u.Size); err != nil {
		ok := false
		if IsNotExist(err) {
			var cerr error
			if ok, cerr = r.committedEarlier(ctx, u, d); cerr != nil {
				return BlobRecord{}, cerr // not DIGEST_INVALID: d was verified above
			}
		}
		if !ok {
			return BlobRecord{}, err
		}
	}
	return r.recordBlob(ctx, repo, d, u.Size, &u)
}

var errShortData = errors.New("stored upload data is shorter than recorded")

// checkStored makes sure the session's stored data is not shorter than the
// size recorded with its hash state (bytes lost by a power loss before they
// were durable, or cut by a writer that lost its lease): the hash state must
// never vouch for bytes the store does not hold. A longer object is a torn
// tail from a failed append, which Commit cuts off. A missing object is
// reported as such (committed earlier, or lost).
func (r *Registry) checkStored(ctx context.Context, u UploadRecord) error {
	if u.Size == 0 {
		return nil
	}
	if r.app == nil {
		var n int64
		err := r.listChunks(ctx, u, func(_ string, oi ObjectInfo) { n += oi.Size })
		if err == nil && n == 0 {
			return fmt.Errorf("upload %s: no stored pieces: %w", u.ID, fs.ErrNotExist)
		}
		if err == nil && n < u.Size {
			return errShortData
		}
		return err
	}
	oi, err := r.store.Stat(ctx, uploadKey(u.ID, u.DataGen))
	if IsNotExist(err) {
		return err
	}
	if err == nil && oi.Size < u.Size {
		return errShortData
	}
	// Any other error: Commit checks the size again. (An encrypted upload
	// object's size comes from its tail copy, so a torn last segment left
	// by a failed append does not make it look short.)
	return nil
}

// committedEarlier reports whether an earlier FinishUpload of this session
// moved the data into place and then stopped (a crash, or a failure of the
// recording transaction, between the move and the commit): the upload data
// is gone, and the blob key holds the session's bytes. A retried PUT then
// only needs to record the blob. A session may only ever claim the bytes it
// received: d must be the digest they were proved to have, by the saved
// hash state (sha256) or by the final PUT that moved them (u.Verified).
// Another digest is DIGEST_INVALID, whatever happens to be stored under it.
func (r *Registry) committedEarlier(ctx context.Context, u UploadRecord, d Digest) (bool, error) {
	switch {
	case u.Verified != "":
		if u.Verified != d {
			return false, Errorf(CodeDigestInvalid, "uploaded content has digest %s, not the %s given; the upload was discarded", u.Verified, d)
		}
	case d.Algorithm() == digest.SHA256:
		got, err := r.stateDigest(ctx, u)
		if err != nil {
			return false, err
		}
		if got != d {
			return false, Errorf(CodeDigestInvalid, "uploaded content has digest %s, not the %s given; the upload was discarded", got, d)
		}
	default:
		return false, nil // nothing proves what the session held
	}
	// Fence the collector first, as every blob write does (its row may be
	// gone: a collection after the crash), then look for the object.
	if _, err := r.reserve(ctx, u.Repo, d, u.Size); err != nil {
		return false, err
	}
	oi, err := r.store.Stat(ctx, BlobKey(d))
	return err == nil && oi.Size == u.Size, nil
}

// stateDigest returns the sha256 digest of u's saved (possibly sealed) hash
// state: what the session's recorded bytes were proved to hash to.
func (r *Registry) stateDigest(ctx context.Context, u UploadRecord) (Digest, error) {
	h, err := r.resumeHash(ctx, u)
	if err != nil {
		return "", err
	}
	return digest.NewDigest(digest.SHA256, h), nil
}

// uploadDigest returns the digest of what the session holds: from the saved
// hash state for sha256, by reading the data back for other algorithms.
func (r *Registry) uploadDigest(ctx context.Context, u UploadRecord, alg digest.Algorithm) (Digest, error) {
	if alg == digest.SHA256 {
		h, err := r.resumeHash(ctx, u)
		if err != nil {
			return "", err
		}
		return digest.NewDigest(alg, h), nil
	}
	rc, err := r.openData(ctx, u)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	h := alg.Hash()
	n, err := io.Copy(h, rc)
	if err != nil {
		return "", err
	}
	if n != u.Size {
		return "", uploadLost(u.ID)
	}
	return digest.NewDigest(alg, h), nil
}

// openData reads the session's recorded bytes (its first u.Size bytes).
func (r *Registry) openData(ctx context.Context, u UploadRecord) (io.ReadCloser, error) {
	if r.app == nil {
		return r.openChunks(ctx, u)
	}
	rc, err := r.store.Open(ctx, uploadKey(u.ID, u.DataGen), 0)
	if IsNotExist(err) && u.Size == 0 {
		return io.NopCloser(eofReader{}), nil
	}
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(rc, u.Size), rc}, nil
}

// listChunks calls fn, in offset order, for the session's pieces of its
// data generation that make up its recorded bytes (backends without
// Appender). Pieces of other generations, or from failed writes, are left out.
func (r *Registry) listChunks(ctx context.Context, u UploadRecord, fn func(key string, oi ObjectInfo)) error {
	prefix := UploadPrefix(u.ID)
	if u.DataGen != 0 {
		prefix += fmt.Sprintf("g%d.", u.DataGen)
	}
	var pieces []ObjectInfo
	err := r.store.List(ctx, prefix, func(oi ObjectInfo) error { pieces = append(pieces, oi); return nil })
	if err != nil {
		return err
	}
	sort.Slice(pieces, func(i, j int) bool { return pieces[i].Key < pieces[j].Key })
	var off int64
	for _, p := range pieces {
		rest := p.Key[len(prefix):]
		at, err := strconv.ParseInt(rest, 10, 64)
		if len(rest) != 20 || err != nil || at != off || off >= u.Size {
			continue // another generation's piece, or one from a failed write
		}
		fn(p.Key, p)
		off += p.Size
	}
	return nil
}

// openChunks concatenates a session's pieces (backends without Appender).
func (r *Registry) openChunks(ctx context.Context, u UploadRecord) (io.ReadCloser, error) {
	var keys []string
	if err := r.listChunks(ctx, u, func(k string, _ ObjectInfo) { keys = append(keys, k) }); err != nil {
		return nil, err
	}
	var readers []io.Reader
	var closers multiCloser
	for _, k := range keys {
		rc, err := r.store.Open(ctx, k, 0)
		if err != nil {
			closers.Close()
			return nil, err
		}
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
	ctx, u, unlock, err := r.lockUpload(ctx, repo, id)
	if err != nil {
		return err
	}
	defer unlock()
	// A cancel is acknowledged only once the session is gone: if its
	// transaction failed, the client hears so and may cancel again.
	return r.endUpload(ctx, u)
}

// dropUpload ends the session u (as its writer generation u.Gen sees it)
// and deletes its data. If another writer took the session over meanwhile
// (this one stalled), the session and its data are the new holder's: both
// stay. A failure to end it is logged: the session expires in time.
func (r *Registry) dropUpload(ctx context.Context, u UploadRecord) {
	if err := r.endUpload(ctx, u); err != nil {
		r.log.Warn("could not delete upload record", "upload", u.ID, "err", err)
	}
}

// endUpload is dropUpload, returning the error of the transaction that
// ends the session (then the session and its data stay).
func (r *Registry) endUpload(ctx context.Context, u UploadRecord) error {
	ctx = context.WithoutCancel(ctx)
	err := r.db.Update(ctx, func(tx Tx) error {
		cur, err := tx.Uploads().GetUpload(u.ID)
		if err != nil {
			return err
		}
		if cur.Gen != u.Gen {
			return errTakenOver
		}
		return tx.Uploads().DeleteUpload(u.ID)
	})
	switch {
	case errors.Is(err, errTakenOver):
		return nil
	case err != nil && !errors.Is(err, ErrNotFound):
		return fmt.Errorf("upload %s: could not end the session: %w", u.ID, err)
	}
	r.deleteUploadData(ctx, u)
	return nil
}

// errTakenOver: another writer took the session over (uploadTakenOver; it
// also rolls back dropUpload's transaction).
var errTakenOver = errors.New("upload taken over by another writer")

// deleteUploadData deletes every object of the session, of every generation.
func (r *Registry) deleteUploadData(ctx context.Context, u UploadRecord) {
	r.deleteUploadKeys(ctx, u.ID, func(string) bool { return true })
}

// deleteGeneration deletes the data of one earlier writer generation.
func (r *Registry) deleteGeneration(ctx context.Context, id string, gen int64) {
	if r.app != nil {
		if err := r.store.Delete(ctx, uploadKey(id, gen)); err != nil {
			r.log.Warn("could not delete upload data", "key", uploadKey(id, gen), "err", err)
		}
		return
	}
	prefix := UploadPrefix(id)
	if gen != 0 {
		prefix += fmt.Sprintf("g%d.", gen)
	}
	r.deleteUploadKeys(ctx, id, func(k string) bool {
		rest, ok := strings.CutPrefix(k, prefix)
		return ok && len(rest) == 20
	})
}

func (r *Registry) deleteUploadKeys(ctx context.Context, id string, match func(string) bool) {
	var keys []string
	if err := r.store.List(ctx, UploadPrefix(id), func(oi ObjectInfo) error {
		if match(oi.Key) {
			keys = append(keys, oi.Key)
		}
		return nil
	}); err != nil {
		r.log.Warn("could not list upload data", "upload", id, "err", err)
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
