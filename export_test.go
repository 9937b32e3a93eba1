package stowage

import "time"

// SetUploadLease shortens an engine's upload writer lease and its renewal
// period, for tests of lease expiry (renew longer than lease: a writer that
// stalls without renewing).
func SetUploadLease(r *Registry, lease, renew time.Duration) {
	r.uploadLease, r.uploadRenew = lease, renew
}

// SetPointDeletes makes DeleteRepository read and remove its manifests one
// by one with the database's point queries, as before the snapshot
// (registry_delete_repo.go), for tests that compare the two.
func SetPointDeletes(r *Registry, on bool) { r.pointDeletes = on }
