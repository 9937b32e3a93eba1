package mgmt

import (
	"context"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/recyclebin"
)

// Policies is what /api/v1/retention, /purge and /purge-policies need
// (package policy's Runner).
type Policies interface {
	Retention(ctx context.Context) (policy.Retention, *policy.Run, error)
	SetRetention(ctx context.Context, p policy.Retention) error
	ApplyRetention(ctx context.Context, dryRun bool) (policy.Run, error)
	Purge(ctx context.Context, opts policy.PurgeOptions) (policy.Run, error)
	PurgePolicies(ctx context.Context) ([]policy.PurgePolicy, error)
	SetPurgePolicy(ctx context.Context, p policy.PurgePolicy) error
	DeletePurgePolicy(ctx context.Context, name string) error
}

// RecycleBin is what /api/v1/soft-delete and /recycle-bin need (package
// recyclebin's Bin).
type RecycleBin interface {
	SoftDelete(ctx context.Context) (stowage.SoftDeletePolicy, error)
	SetSoftDelete(ctx context.Context, p stowage.SoftDeletePolicy) error
	List(ctx context.Context, repo string) ([]stowage.RecycledManifest, error)
	Restore(ctx context.Context, id int64) (recyclebin.RestoreReport, error)
}

// WithPolicies enables the retention, purge, soft delete and recycle bin
// endpoints.
func (h *Handler) WithPolicies(p Policies, b RecycleBin) *Handler {
	h.pol, h.bin = p, b
	return h
}

// unconfigured is the error of an endpoint whose part (WithPolicies) the
// handler was built without.
func (h *Handler) unconfigured(head string) error {
	switch {
	case h.pol == nil && (head == "retention" || head == "purge" || head == "purge-policies"),
		h.bin == nil && (head == "soft-delete" || head == "recycle-bin"):
		return stowage.Errorf(stowage.CodeUnsupported, "/api/v1/%s is not enabled on this management API", head)
	}
	return nil
}
