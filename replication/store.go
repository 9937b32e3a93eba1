package replication

import "github.com/stowage/stowage"

// Clock is what a region knows about the last change of one tag, or of one
// manifest's existence: the reading of that change's clock, and its
// outcome. Name is a tag, or "@" + digest for a manifest. Digest is what
// the tag points at, or the manifest's own digest; "" means removed (an
// untagged tag, a deleted manifest: a tombstone, kept so that an older
// change arriving later, from replication or read-through, cannot bring it
// back). Locks have clocks too (locks.go): "lock:<target>:<attribute>",
// whose Digest is "locked" or "", and "lock:<target>", its last removal.
type Clock struct {
	Repo   string
	Name   string
	Digest stowage.Digest
	HLC    HLC
}

// Removed reports whether c records a removal (a tombstone).
func (c Clock) Removed() bool { return c.Digest == "" }

// ManifestName is the Clock name of the manifest d.
func ManifestName(d stowage.Digest) string { return "@" + string(d) }

// ClockStore keeps the clocks, in the transaction of the change they
// describe (both metadata databases implement it; the table is
// replication_clocks).
type ClockStore interface {
	// GetClock returns the clock of repo's tag or manifest name;
	// stowage.ErrNotFound when there is none (no change since replication
	// began: the zero reading).
	GetClock(repo, name string) (Clock, error)
	// PutClock creates or replaces a clock.
	PutClock(c Clock) error
	// LatestLive returns, of repo's tags and manifests that exist (not
	// tombstones; not the repository's own clock, nor a lock's), the clock with the
	// latest reading (HLC order: wall, logical, region in byte order);
	// stowage.ErrNotFound when there is none.
	LatestLive(repo string) (Clock, error)
}

// ClockTx is the optional capability of a stowage.Tx that keeps clocks.
type ClockTx interface {
	ReplicationClocks() ClockStore
}
