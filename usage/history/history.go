// Package history keeps the registry's usage over time: one row per day
// (UTC) with the totals of `stowage usage`, for the web UI's growth picture.
// `stowage serve` records at start and every hour (Record, on one node):
// a day's row holds the usage at its last recording, the day's end. The rows live in the
// metadata database (table usage_history), behind Store.
package history

import (
	"context"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/usage"
)

// Day is the registry's usage on one day.
type Day struct {
	Day           string    `json:"day"` // YYYY-MM-DD, UTC
	PhysicalBytes int64     `json:"physicalBytes"`
	LogicalBytes  int64     `json:"logicalBytes"`
	Blobs         int64     `json:"blobs"`
	Repositories  int64     `json:"repositories"`
	Manifests     int64     `json:"manifests"`
	Tags          int64     `json:"tags"`
	Recorded      time.Time `json:"recorded"`
}

// Store keeps the days, and each repository's size at the last recording
// (by which the UI lists repositories by size, usage/rank). Both metadata
// databases implement it.
type Store interface {
	// PutUsageDay inserts the day's row, or replaces it.
	PutUsageDay(ctx context.Context, d Day) error
	// PutRepositorySizes replaces every repository's recorded size.
	PutRepositorySizes(ctx context.Context, sizes []usage.RepositorySpace) error
	// UsageDays lists the days from `from` to `to` (inclusive, YYYY-MM-DD),
	// oldest first, at most limit of them (the newest limit when there
	// are more).
	UsageDays(ctx context.Context, from, to string, limit int) ([]Day, error)
}

// Provider is a database that keeps the usage history.
type Provider interface {
	UsageHistory() Store
}

// Of returns db's history store, if it has one.
func Of(db stowage.DB) (Store, bool) {
	p, ok := db.(Provider)
	if !ok {
		return nil, false
	}
	return p.UsageHistory(), true
}

// DayOf is t's day in UTC, as the rows name it.
func DayOf(t time.Time) string { return t.UTC().Format("2006-01-02") }

// Record writes today's row, from the totals the database keeps, and the
// repositories' sizes, read a page at a time (each page its own read
// transaction, so none stays open for the whole walk).
func Record(ctx context.Context, s Store, rep *usage.Reporter, now time.Time) (Day, error) {
	u, err := rep.Totals(ctx)
	if err != nil {
		return Day{}, err
	}
	d := Day{Day: DayOf(now), PhysicalBytes: u.PhysicalBytes, LogicalBytes: u.LogicalBytes, Blobs: u.Blobs,
		Repositories: u.Repositories, Manifests: u.Manifests, Tags: u.Tags, Recorded: now.UTC()}
	var sizes []usage.RepositorySpace
	for after := ""; ; {
		p, next, err := rep.UsagePage(ctx, after, usage.MaxPage)
		if err != nil {
			return d, err
		}
		sizes = append(sizes, p.PerRepository...)
		if next == "" {
			break
		}
		after = next
	}
	if err := s.PutRepositorySizes(ctx, sizes); err != nil {
		return d, err
	}
	return d, s.PutUsageDay(ctx, d)
}
