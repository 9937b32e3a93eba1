package stowage

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// DB holds all metadata: which repositories, manifests, tags and blobs exist,
// and what references what. It is the truth about references; storage is never
// walked to learn them.
type DB interface {
	// View runs fn in a read-only transaction.
	View(ctx context.Context, fn func(Tx) error) error
	// Update runs fn in a read-write transaction and commits it if fn returns
	// nil. It retries fn on serialization conflicts, so fn must not have side
	// effects outside the transaction. Policy (what may be written) lives in
	// Registry, not in Tx.
	Update(ctx context.Context, fn func(Tx) error) error
	Close() error
}

// Locker is an optional DB capability: named locks shared by every process
// that uses the database, so that background jobs (garbage collection,
// retention, scheduled purges) run on one node at a time when several
// `stowage serve` nodes share PostgreSQL. A DB without it is used by one
// process only (SQLite), and Registry then locks in-process.
type Locker interface {
	// TryLock takes the lock called name if nobody holds it, and returns
	// held, a context derived from ctx that ends when the lock is released
	// or lost (e.g. the database connection that holds it broke), and
	// release, which frees it (idempotent). The job must stop when held
	// ends. If another holder has the lock, TryLock returns ErrLocked.
	TryLock(ctx context.Context, name string) (held context.Context, release func(), err error)
}

// ErrLocked is TryLock's answer when another holder has the lock.
var ErrLocked = errors.New("lock held by another process")

// Tx is one transaction. It hands out one narrow store per concern (each
// interface below has at most a dozen methods), so a reader sees at a glance
// which facts a piece of the engine touches, and a capability package can ask
// for only the store it needs. Lookups that find nothing return ErrNotFound.
// Listing methods return names in byte order, strictly after `after`, at most
// limit of them (limit <= 0: no limit). Tx only reads and writes facts; what
// may be written is decided by the engine.
type Tx interface {
	Repositories() RepositoryTx
	Blobs() BlobTx
	Manifests() ManifestTx
	Tags() TagTx
	Uploads() UploadTx
	Settings() SettingsTx
	Recycle() RecycleTx
	Usage() UsageTx
	DataKeys() DataKeyTx
	// Events appends to the change feed, in this transaction.
	Events() EventTx
	// CollectQueue is the collector's queue of digests to look at.
	CollectQueue() CollectQueueTx
}

// CollectQueueTx is garbage collection's queue: the digests that may have
// become garbage since a collection last looked at them. The databases
// keep it with triggers, in the writing transaction, whoever writes: a new
// blob row enters it, and so does every digest that loses a manifest, a
// reference or a recycle bin reference to it (a deleted blob row leaves
// it). So every blob that nothing references is in the queue, and a
// collection reads the queue instead of every blob of the registry: its
// cost follows what changed since the last one, not the registry's size.
// A full pass (with the storage sweep) enqueues every unreferenced blob
// again from the blob rows, which also repairs a queue that missed one.
type CollectQueueTx interface {
	// QueuedBlobs lists the queue after `after` in digest order, at most
	// limit entries: each digest with its blob row (only Digest set, State
	// "", if it has none) and whether a manifest, reference or recycle bin
	// entry references it.
	QueuedBlobs(after Digest, limit int) ([]QueuedBlob, error)
	// Enqueue adds ds to the queue (no-op for those already in it).
	Enqueue(ds []Digest) error
	// Dequeue removes those of ds that need no collecting: without a blob
	// row in state pending or live, or referenced (re-checked in the
	// statement, so one referenced no more stays). It returns how many it
	// removed.
	Dequeue(ds []Digest) (int64, error)
	// CountQueued counts the queue.
	CountQueued() (int64, error)
}

// QueuedBlob is an entry of the collector's queue (CollectQueueTx).
type QueuedBlob struct {
	BlobRecord
	Referenced bool
}

// DataKeyTx reads and writes a data key in the same transaction as a value
// it seals (auth's token signing key and its setting). The data keys of
// encrypted storage objects are kept through storage/crypt's own KeyStore,
// in the same table: `stowage keys rotate` rewraps both.
type DataKeyTx interface {
	PutDataKey(k DataKey) error
	GetDataKey(id string) (DataKey, error)
}

// KeyVersion names one version of a key-encryption key.
type KeyVersion struct {
	ID      string
	Version uint32
}

func (v KeyVersion) String() string { return fmt.Sprintf("%s version %d", v.ID, v.Version) }

// DataKey is an object's data key, wrapped by a key-encryption key.
type DataKey struct {
	ID      string // random, hex; written in the object's header
	Object  string // storage key of the object, for deletes
	Wrapped KeyVersion
	Key     []byte // the wrapped (encrypted) data key
	Created time.Time
}

// KeyVersionCount is how many data keys a key version wraps.
type KeyVersionCount struct {
	KeyVersion
	Count int64
}

// RecycleTx keeps soft-deleted manifests. While an entry exists, the
// manifest's own digest and what it references count as referenced (the
// collector keeps them).
type RecycleTx interface {
	PutRecycled(e RecycledManifest) (int64, error)
	GetRecycled(id int64) (RecycledManifest, error)
	// ListRecycled lists entries of repo ("" = all), newest first.
	ListRecycled(repo string) ([]RecycledManifest, error)
	// ExpiredRecycled lists entries that expired before `before`.
	ExpiredRecycled(before time.Time, limit int) ([]RecycledManifest, error)
	DeleteRecycled(id int64) error
	// CountRecycled counts the entries.
	CountRecycled() (int64, error)
	// RecycleOnlyBlobs lists, in digest order after `after`, the blobs
	// that recycle bin entries hold and nothing else does (no manifest is
	// or references them): what the entries' expiry frees.
	RecycleOnlyBlobs(after Digest, limit int) ([]RecycleHeld, error)
}

// RecycleHeld is a blob only recycle bin entries keep (RecycleOnlyBlobs).
type RecycleHeld struct {
	Digest Digest
	Size   int64
	// Expires: when the last entry that holds it expires.
	Expires time.Time
}

// RecycledManifest is a soft-deleted manifest.
type RecycledManifest struct {
	ID       int64
	Manifest ManifestRecord
	Refs     []ManifestRef
	Tags     []string
	// TagLocks are the locks the tags had (only tags with any), so a
	// restore brings them back as they were.
	TagLocks map[string]Locks
	Deleted  time.Time
	Expires  time.Time
}

// RepositoryTx reads and writes repositories.
type RepositoryTx interface {
	CreateRepository(name string, now time.Time) error // no-op if it exists (updates Updated)
	GetRepository(name string) (RepositoryRecord, error)
	// ListRepositories lists repository names; list-locked ones only if hidden is true.
	ListRepositories(after string, limit int, hidden bool) ([]string, error)
	SetRepositoryLocks(name string, l Locks) error
	// DeleteRepository removes the repository with its links, manifests,
	// references, tags and upload records. ErrNotFound if absent.
	DeleteRepository(name string) error
}

// BlobTx reads and writes blobs: one row per digest for the whole registry,
// plus the links that make a blob visible in a repository.
type BlobTx interface {
	PutBlob(b BlobRecord) error // insert or replace the row
	GetBlob(d Digest) (BlobRecord, error)
	SetBlobState(d Digest, state BlobState) error
	// TouchBlob extends the blob's lease: last used at now.
	TouchBlob(d Digest, now time.Time) error
	// MarkUnreferenced restarts the grace period of digests that may just
	// have lost a reference.
	MarkUnreferenced(ds []Digest, now time.Time) error
	DeleteBlob(d Digest) error                                // the row and its links
	LinkBlob(repo string, d Digest, now time.Time) error      // no-op if linked
	UnlinkBlob(repo string, d Digest) error                   // ErrNotFound if not linked
	RepositoryBlob(repo string, d Digest) (BlobRecord, error) // live and linked (with RepoLocks), else ErrNotFound
	// LinkedBlob returns d if it is live and linked in at least one
	// repository that has none of the locks in without, else ErrNotFound.
	LinkedBlob(d Digest, without Locks) (BlobRecord, error)
	// BlobReferenced reports whether any manifest (in any repository) is d
	// or references d.
	BlobReferenced(d Digest) (bool, error)
	// CollectableBlobs lists unreferenced blobs in state pending or live
	// whose grace period began before unrefBefore and whose lease ended
	// before usedBefore, in digest order after `after`.
	CollectableBlobs(unrefBefore, usedBefore time.Time, after Digest, limit int) ([]BlobRecord, error)
	// BlobsInState lists blobs in one state, in digest order after `after`.
	BlobsInState(state BlobState, after Digest, limit int) ([]BlobRecord, error)
	// ExistingBlobs returns those of ds that have a row, in any state, in
	// no particular order: the orphan sweep checks a page of listed objects
	// with one query (point lookups, never a scan of the table).
	ExistingBlobs(ds []Digest) ([]Digest, error)
	// MarkCollectable is the collector's fence for a batch of candidates
	// (package gc): those of ds that are still collectable (state pending or
	// live, unreferenced by any manifest, reference or recycle bin entry,
	// unreferenced since before unrefBefore, last used before usedBefore)
	// are set to state 'deleting' and returned, in one statement of point
	// lookups. The others are left as they are.
	MarkCollectable(ds []Digest, unrefBefore, usedBefore time.Time) ([]BlobRecord, error)
	// DeleteBlobRows is DeleteBlob for each of ds (rows and links), in one
	// statement per table; a digest without a row is skipped.
	DeleteBlobRows(ds []Digest) error
	// UnreferencedBlobs returns the rows of the blobs among ds that
	// BlobReferenced reports false for, not counting the manifests and
	// references of repository except ("": none), in digest order (digests
	// without a row are left out): what a delete frees, in one read for
	// many digests (callers pass at most a few hundred at a time). With
	// except, it is the answer as if that repository were gone.
	UnreferencedBlobs(ds []Digest, except string) ([]BlobRecord, error)
}

// ManifestTx reads and writes manifests and the references they hold.
type ManifestTx interface {
	PutManifest(m ManifestRecord, refs []ManifestRef) error // replaces an existing row and its refs
	GetManifest(repo string, d Digest) (ManifestRecord, error)
	DeleteManifest(repo string, d Digest) error // and its refs; ErrNotFound if absent
	ListManifests(repo string) ([]ManifestRecord, error)
	ManifestRefs(repo string, d Digest) ([]ManifestRef, error)
	// ManifestParents lists the manifests of repo that reference d.
	ManifestParents(repo string, d Digest) ([]Digest, error)
	Referrers(repo string, subject Digest) ([]ManifestRecord, error)
	// SetManifestLocks sets a manifest's locks (and moves the repository's
	// TagsVersion, since cached tag resolutions carry them).
	SetManifestLocks(repo string, d Digest, l Locks) error
	// SetUntaggedSince records when a manifest lost its last tag.
	SetUntaggedSince(repo string, d Digest, t time.Time) error
	// UntaggedManifests lists the manifests of repo that have no tag, are
	// not a child of another manifest of repo, and have been untagged since
	// before `before` (never-tagged ones count from their creation).
	UntaggedManifests(repo string, before time.Time) ([]ManifestRecord, error)
	// UntaggedManifestsAfter is UntaggedManifests for the whole registry,
	// one page at a time: in (repository, created, digest) order, the first
	// limit after the position of `after` (its Repo, Created and Digest;
	// the zero record: from the start).
	UntaggedManifestsAfter(before time.Time, after ManifestRecord, limit int) ([]ManifestRecord, error)
	// RepositoryRefs returns every reference the manifests of repo hold,
	// by manifest (each list ordered by child, as ManifestRefs): one read
	// for a whole repository.
	RepositoryRefs(repo string) (map[Digest][]ManifestRef, error)
}

// TagTx reads and writes tags.
type TagTx interface {
	PutTag(repo, tag string, d Digest, now time.Time) error // creates or moves
	GetTag(repo, tag string) (Digest, error)
	// ListTags lists the tags of repo that are not list-locked.
	ListTags(repo, after string, limit int) ([]string, error)
	GetTagRecord(repo, tag string) (TagRecord, error)
	SetTagLocks(repo, tag string, l Locks) error
	TagsOf(repo string, d Digest) ([]string, error)
	// TagRecords lists the tags of repo with what they point at and when
	// they were last pushed.
	TagRecords(repo string) ([]TagRecord, error)
	DeleteTag(repo, tag string) error // ErrNotFound if absent
}

// UploadTx reads and writes upload sessions; they survive restarts.
type UploadTx interface {
	PutUpload(u UploadRecord) error
	// AdvanceUpload records new progress (size, hash state, chunks, updated,
	// data generation, verified digest) only if the upload is still at
	// fromSize and its generation is still u.Gen, so two writers can never
	// both advance it, and a writer whose lease was taken over never can;
	// ErrNotFound otherwise.
	AdvanceUpload(u UploadRecord, fromSize int64) error
	GetUpload(id string) (UploadRecord, error)
	DeleteUpload(id string) error
	// StaleUploads lists sessions last updated before `before` whose writer
	// lease (if any) has run out by the database's clock.
	StaleUploads(before time.Time, limit int) ([]UploadRecord, error)
	// ClaimUpload makes writer the session's only writer for lease (renewed
	// by claiming again): ErrLocked while another writer's lease runs,
	// ErrNotFound without the session. Lease ends are judged by the
	// database's own clock, never by the nodes' clocks. Taking over a lease
	// that ran out while held (not released) bumps the session's Gen.
	ClaimUpload(id, writer string, lease time.Duration) error
	// ReleaseUpload ends writer's lease (nothing if it is not the writer).
	ReleaseUpload(id, writer string) error
	// ReleaseUploadWriters ends the leases of every writer whose name
	// starts with prefix ("": all), e.g. a restarted node's from before.
	ReleaseUploadWriters(prefix string) (int64, error)
}

// SettingsTx stores registry-wide settings as JSON values.
type SettingsTx interface {
	GetSetting(key string) (string, error) // ErrNotFound if unset
	PutSetting(key, value string, now time.Time) error
}

// UsageTx answers "what uses space" from the metadata alone. The sums
// (Totals, and each repository's referenced bytes and counts) are kept by
// the databases as rows change, so reading them costs the same at any size.
// So is, per digest, whether one repository uses it alone (and which): a
// repository's unique bytes are a sum over the digests it owns alone, at a
// cost that grows with those. Bytes unique to a manifest are found by index
// probes for each digest it uses.
type UsageTx interface {
	// BlobTotals counts live blobs and their bytes: each digest once.
	BlobTotals() (count, bytes int64, err error)
	// Totals is the registry's usage summed over repositories.
	Totals() (UsageTotals, error)
	// RepositoryUsage returns, for the repositories named after `after`, in
	// name order, at most limit of them (limit <= 0: all), the bytes their
	// manifests reference (each digest once per repository), the bytes of
	// those referenced by no other repository, and their counts.
	RepositoryUsage(after string, limit int) ([]RepositoryUsage, error)
	// LargestRepositories is RepositoryUsage for the limit repositories
	// that reference the most bytes, largest first (then by name).
	LargestRepositories(limit int) ([]RepositoryUsage, error)
	// RepositoryUsageOf is RepositoryUsage's row for one repository, at a
	// cost that grows with that repository, not the registry; ErrNotFound
	// if it does not exist.
	RepositoryUsageOf(repo string) (RepositoryUsage, error)
	// RepositoryKept is RepositoryUsageOf without UniqueBytes (left 0):
	// the kept sums only, one row whatever the repository's size (the
	// unique bytes read each digest the repository owns alone);
	// ErrNotFound if it does not exist.
	RepositoryKept(repo string) (RepositoryUsage, error)
	// ManifestUsage returns, for the manifests of repo after `after` in the
	// order newest first (created descending, then digest descending), at
	// most limit of them (limit <= 0: all), their bytes (itself plus the
	// blobs it references) and the bytes only it references in the whole
	// registry.
	ManifestUsage(repo string, after ManifestCursor, limit int) ([]ManifestUsage, error)
	// HeldBytes is what storage holds or is being written for the storage
	// limit: the bytes of blobs in state pending or live, each digest once.
	HeldBytes() (int64, error)
	// RepositoryHeldBytes is what a repository holds for its quota: the
	// live blobs linked into it or that are its manifests, each digest once.
	RepositoryHeldBytes(repo string) (int64, error)
}

// UsageTotals is the registry's usage summed.
type UsageTotals struct {
	Blobs         int64 // live blobs
	PhysicalBytes int64 // their bytes, each digest once
	Repositories  int64
	// ReferencedBytes is the sum over repositories of what each references
	// (logical bytes).
	ReferencedBytes   int64
	Manifests         int64
	Tags              int64
	UntaggedManifests int64
}

// ManifestCursor is a position in ManifestUsage's order: the last row of
// the previous page (the zero value: the start).
type ManifestCursor struct {
	Created time.Time
	Digest  Digest
}

// RepositoryRecord is a repository.
type RepositoryRecord struct {
	Name    string
	Created time.Time
	Updated time.Time
	// TagsVersion changes whenever a tag of the repository is created, moved
	// or deleted (in the same transaction), so it validates cached tag data.
	TagsVersion int64
	Locks       Locks
}

// Locks are ACR's changeable attributes, as what is disabled (the zero
// value: everything enabled).
type Locks uint8

const (
	LockWrite  Locks = 1 << iota // no overwrite (tags), no push (repositories)
	LockDelete                   // no delete
	LockRead                     // no pull
	LockList                     // hidden from listings
)

// BlobState is where a blob is in its life.
type BlobState string

const (
	BlobPending  BlobState = "pending"  // an upload is writing its object; invisible
	BlobLive     BlobState = "live"     // stored; visible where linked
	BlobDeleting BlobState = "deleting" // being collected; invisible
)

// BlobRecord is a stored blob.
type BlobRecord struct {
	Digest            Digest
	Size              int64
	Created           time.Time
	State             BlobState
	LastUsed          time.Time // the lease
	UnreferencedSince time.Time // start of the grace period
	// RepoLocks are the locks of the repository the blob was looked up in
	// (set by RepositoryBlob only), so a pull needs one query.
	RepoLocks Locks
}

// TagRecord is a tag.
type TagRecord struct {
	Name    string
	Digest  Digest
	Updated time.Time
	Created time.Time
	Locks   Locks
}

// RepositoryUsage is what a repository holds, deduplicated.
type RepositoryUsage struct {
	Name              string
	ReferencedBytes   int64 // every digest its manifests use, once
	UniqueBytes       int64 // used by no other repository: what deleting it frees
	Manifests         int64
	Tags              int64
	UntaggedManifests int64
}

// ManifestUsage is what one manifest holds.
type ManifestUsage struct {
	Digest      Digest
	MediaType   string
	Size        int64 // the manifest plus the blobs it references
	UniqueBytes int64 // bytes referenced by no other manifest in the registry
	Tags        []string
	Created     time.Time
}

// ManifestRecord is a manifest in a repository. Its bytes are in storage
// under BlobKey(Digest). It holds names, digests, sizes and times only:
// nothing copied out of the manifest's content (annotations, artifact type,
// platform), which encryption at rest must cover; the engine reads those
// from the stored manifest (Registry.describe).
type ManifestRecord struct {
	Repo      string
	Digest    Digest
	MediaType string
	Size      int64
	Subject   Digest // "" if none
	Created   time.Time
	Locks     Locks
}

// RefKind says what a manifest reference points at.
type RefKind string

const (
	RefBlob     RefKind = "blob"     // a config or layer
	RefManifest RefKind = "manifest" // a child of an index
)

// ManifestRef is one reference held by a manifest.
type ManifestRef struct {
	Digest Digest
	Kind   RefKind
}

// UploadRecord is an upload session.
type UploadRecord struct {
	ID        string
	Repo      string
	Size      int64  // bytes received so far
	HashState []byte // marshaled sha256 state over those bytes
	Chunks    int    // pieces stored, for backends without Appender
	Started   time.Time
	Updated   time.Time
	// Gen is the writer generation, bumped when a writer takes over a lease
	// that ran out while held; DataGen is the generation whose data object
	// holds the recorded bytes (see Registry.lockUpload).
	Gen, DataGen int64
	// Verified is the digest a final PUT proved the bytes have, recorded
	// before it moved them to their blob key ("" before that).
	Verified Digest
}
