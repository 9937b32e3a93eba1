package stowage

import (
	"context"
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

// Tx is one transaction. Lookups that find nothing return ErrNotFound.
// Listing methods return names in byte order, strictly after `after`, at most
// limit of them (limit <= 0: no limit).
type Tx interface {
	// Repositories.
	CreateRepository(name string, now time.Time) error // no-op if it exists
	GetRepository(name string) (RepositoryRecord, error)
	ListRepositories(after string, limit int) ([]string, error)

	// Blobs: one row per digest for the whole registry, plus the links that
	// make a blob visible in a repository.
	PutBlob(b BlobRecord) error // insert, or keep the existing row
	GetBlob(d Digest) (BlobRecord, error)
	LinkBlob(repo string, d Digest, now time.Time) error      // no-op if linked
	UnlinkBlob(repo string, d Digest) error                   // ErrNotFound if not linked
	RepositoryBlob(repo string, d Digest) (BlobRecord, error) // ErrNotFound unless linked

	// Manifests and the references they hold.
	PutManifest(m ManifestRecord, refs []ManifestRef) error // replaces an existing row and its refs
	GetManifest(repo string, d Digest) (ManifestRecord, error)
	DeleteManifest(repo string, d Digest) error // and its refs; ErrNotFound if absent
	Referrers(repo string, subject Digest) ([]ManifestRecord, error)

	// Tags.
	PutTag(repo, tag string, d Digest, now time.Time) error // creates or moves
	GetTag(repo, tag string) (Digest, error)
	ListTags(repo, after string, limit int) ([]string, error)
	TagsOf(repo string, d Digest) ([]string, error)
	DeleteTag(repo, tag string) error // ErrNotFound if absent

	// Upload sessions; they survive restarts.
	PutUpload(u UploadRecord) error
	// AdvanceUpload records new progress only if the upload is still at
	// fromSize, so two writers can never both advance it; ErrNotFound otherwise.
	AdvanceUpload(u UploadRecord, fromSize int64) error
	GetUpload(id string) (UploadRecord, error)
	DeleteUpload(id string) error
}

// RepositoryRecord is a repository.
type RepositoryRecord struct {
	Name    string
	Created time.Time
	Updated time.Time
	// TagsVersion changes whenever a tag of the repository is created, moved
	// or deleted (in the same transaction), so it validates cached tag data.
	TagsVersion int64
}

// BlobRecord is a stored blob.
type BlobRecord struct {
	Digest  Digest
	Size    int64
	Created time.Time
}

// ManifestRecord is a manifest in a repository. Its bytes are in storage under BlobKey(Digest).
type ManifestRecord struct {
	Repo         string
	Digest       Digest
	MediaType    string
	ArtifactType string // the manifest's artifactType, else its config's media type (images)
	Size         int64
	Subject      Digest // "" if none
	Annotations  map[string]string
	Created      time.Time
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
}
