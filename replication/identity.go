package replication

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/stowage/stowage"
)

// IdentityStore is the access control of a region, as replication sees it
// (auth.Authority implements it): users, tokens and scope maps as stored
// records, their secrets as hashes.
type IdentityStore interface {
	// ReadIdentity returns the stored record of the identity of kind
	// (stowage.EventUser, EventToken, EventScopeMap) named name, as it is
	// now in the database; nil when there is none.
	ReadIdentity(ctx context.Context, kind stowage.EventKind, name string) (json.RawMessage, error)
	// ApplyIdentity stores rec as that identity (nil: deletes it), in a
	// transaction whose change hook (Clocks) sees ctx: refused with
	// ErrStale when this region has a later change of it.
	ApplyIdentity(ctx context.Context, kind stowage.EventKind, name string, rec json.RawMessage) error
}

func isIdentity(k stowage.EventKind) bool {
	return k == stowage.EventUser || k == stowage.EventToken || k == stowage.EventScopeMap
}

// identityClockRepo is the Repo of identities' clocks (no repository has
// an empty name); their Name is kind:name.
const identityClockRepo = ""

func identityClockName(kind stowage.EventKind, name string) string { return string(kind) + ":" + name }

// identityOf returns the identity an event of kind user, token or scope-map
// names (Detail "name"), and whether the event is replicated: not a
// region's own first admin (Detail "bootstrap"), nor a change that names
// no identity.
func identityOf(e stowage.Event) (string, bool) {
	var d struct {
		Name      string `json:"name"`
		Bootstrap bool   `json:"bootstrap"`
	}
	if e.Detail == "" || json.Unmarshal([]byte(e.Detail), &d) != nil || d.Name == "" || d.Bootstrap {
		return "", false
	}
	return d.Name, true
}

// identityChange is Clocks.Change for a user, token or scope map change:
// one clock per identity, last writer wins.
func (c Clocks) identityChange(ctx context.Context, cs ClockStore, e *stowage.Event) error {
	name, ok := identityOf(*e)
	if !ok {
		return nil
	}
	key := identityClockName(e.Kind, name)
	cur, err := cs.GetClock(identityClockRepo, key)
	if err != nil && !errors.Is(err, stowage.ErrNotFound) {
		return err
	}
	var h HLC
	if a, isApplied := ctx.Value(appliedKey{}).(applied); isApplied {
		if a.fetched || cur.HLC.Compare(a.hlc) >= 0 {
			return ErrStale
		}
		h = a.hlc
	} else {
		h = Tick(cur.HLC, e.Time, c.Region)
	}
	if err := cs.PutClock(Clock{Repo: identityClockRepo, Name: key, HLC: h}); err != nil {
		return err
	}
	return setDetail(e, "hlc", h.String())
}

// identity applies a user, token or scope map change from a peer.
func (a *Applier) identity(ctx context.Context, ch Change) (Result, error) {
	if a.Identities == nil {
		return Result{Reason: "refused here: access control is off in region " + a.Region}, nil
	}
	if ch.Identity == "" {
		return Result{}, stowage.Errorf(stowage.CodeUnsupported, "an identity change names its user, token or scope map (identity)")
	}
	ctx = WithApplied(ctx, ch.Origin, ch.HLC)
	return outcome(a.Identities.ApplyIdentity(ctx, ch.Kind, ch.Identity, ch.Record))
}
