package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/stowage/stowage"
)

// Geo-replication of users, tokens and scope maps (docs/replication.md):
// the replicator reads the record an identity event names as it is stored
// (ReadIdentity) and a peer stores it as is (ApplyIdentity), last writer
// wins by the clock the change hook (Options.Changes) keeps per identity.
//
// What a record holds, and how each field travels: a user's password and a
// token's passwords as their bcrypt hashes (never plaintext: the hashes are
// what every region checks logins against), their stamps (a new stamp ends
// refresh tokens and cached logins, here as there), the admin flag, status,
// scope map and expiry. Nothing in a record is sealed. The token signing key
// (SettingKey) is not a record: each region keeps its own, so a region's
// access tokens are good only there (a client logs in to each region).
// Anonymous pull is a policy setting, set per region. Each region's first
// admin, created at start (EnsureAdmin), is its own: its creation is not
// replicated (a change of it through the API is).

type bootstrapKey struct{}

// ReadIdentity returns the stored record of the user, token or scope map
// (kind EventUser, EventToken or EventScopeMap) named name, as JSON with
// its secrets hashed; nil when there is none (deleted). It reads the
// database, not the cached snapshot, so a record is never older than the
// change that names it.
func (a *Authority) ReadIdentity(ctx context.Context, kind stowage.EventKind, name string) (json.RawMessage, error) {
	var rec any
	err := a.store.db.View(ctx, func(tx stowage.Tx) error {
		st, _, err := readState(tx)
		if err != nil {
			return err
		}
		rec = nil
		switch kind {
		case stowage.EventUser:
			if u, ok := st.Users[name]; ok {
				rec = u
			}
		case stowage.EventToken:
			if t, ok := st.Tokens[name]; ok {
				rec = t
			}
		case stowage.EventScopeMap:
			if m, ok := st.ScopeMaps[name]; ok {
				rec = m
			}
		default:
			return fmt.Errorf("not an identity: %q", kind)
		}
		return nil
	})
	if err != nil || rec == nil {
		return nil, err
	}
	return json.Marshal(rec)
}

// ApplyIdentity stores rec (from ReadIdentity in another region) as the
// user, token or scope map name, or deletes it when rec is nil. ctx
// carries the change's origin and clock: the change hook refuses it when
// this region has a later change of that identity. The references a record
// holds (a token's scope map) are not checked: the region that made the
// change did, and its changes arrive in order.
func (a *Authority) ApplyIdentity(ctx context.Context, kind stowage.EventKind, name string, rec json.RawMessage) error {
	var user *storedUser
	var token *storedToken
	var sm *ScopeMap
	var recName string
	if rec != nil {
		var err error
		switch kind {
		case stowage.EventUser:
			err = json.Unmarshal(rec, &user)
			if user != nil {
				recName = user.Name
			}
		case stowage.EventToken:
			err = json.Unmarshal(rec, &token)
			if token != nil {
				recName = token.Name
			}
		case stowage.EventScopeMap:
			err = json.Unmarshal(rec, &sm)
			if sm != nil {
				recName = sm.Name
				if sm.Rules == nil {
					sm.Rules = []Rule{}
				}
			}
		}
		if err != nil || recName != name {
			return stowage.Errorf(stowage.CodeInvalidParameter, "the %s record of %q is not valid", kind, trunc(name))
		}
	}
	if kind != stowage.EventUser && kind != stowage.EventToken && kind != stowage.EventScopeMap {
		return stowage.Errorf(stowage.CodeUnsupported, "not an identity: %q", kind)
	}
	if err := validateName(string(kind), name); err != nil {
		return err
	}
	if _, builtIn := newState().scopeMap(name); builtIn && kind == stowage.EventScopeMap {
		return stowage.Errorf(stowage.CodeDenied, "scope map %q is built in", name)
	}
	action := "replicate"
	if rec == nil {
		action = "replicate.delete"
	}
	c := &change{kind: kind, detail: map[string]any{"action": action, "name": name}}
	_, err := a.store.update(ctx, c, func(st *state, _ time.Time) error {
		switch kind {
		case stowage.EventUser:
			delete(st.Users, name)
			if user != nil {
				st.Users[name] = user
			}
		case stowage.EventToken:
			delete(st.Tokens, name)
			if token != nil {
				st.Tokens[name] = token
			}
		case stowage.EventScopeMap:
			delete(st.ScopeMaps, name)
			if sm != nil {
				st.ScopeMaps[name] = sm
			}
		}
		return nil
	})
	return err
}
