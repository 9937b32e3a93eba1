package stowage

import "time"

// SetUploadLease shortens an engine's upload writer lease and its renewal
// period, for tests of lease expiry (renew longer than lease: a writer that
// stalls without renewing).
func SetUploadLease(r *Registry, lease, renew time.Duration) {
	r.uploadLease, r.uploadRenew = lease, renew
}
