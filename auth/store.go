package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stowage/stowage"
)

// The settings keys the authority keeps its documents under.
const (
	SettingState = "auth.state"       // users, scope maps, tokens, anonymous pull (JSON)
	SettingKey   = "auth.signing-key" // the token signing key (JSON)
)

// store keeps the state in the settings table, one JSON document, and a
// cached snapshot of it. Changes made through this store publish their
// result at once; changes made elsewhere (another node, sharing the
// database) are picked up when the snapshot is older than refresh.
type store struct {
	db      stowage.DB
	now     func() time.Time
	refresh time.Duration
	hook    stowage.ChangeHook // Options.Changes

	mu  sync.Mutex // serializes reloads and publishing
	cur atomic.Pointer[snapshot]
}

type snapshot struct {
	st     *state
	raw    string
	loaded time.Time
}

func readState(tx stowage.Tx) (*state, string, error) {
	raw, err := tx.Settings().GetSetting(SettingState)
	if errors.Is(err, stowage.ErrNotFound) {
		return newState(), "", nil
	}
	if err != nil {
		return nil, "", err
	}
	st := newState()
	if err := json.Unmarshal([]byte(raw), st); err != nil {
		return nil, "", fmt.Errorf("the access control settings (%s) are not valid JSON: %w", SettingState, err)
	}
	st.normalize()
	return st, raw, nil
}

// get returns the current state: the cached snapshot while it is fresh,
// else the database's (parsed again only if it changed).
func (s *store) get(ctx context.Context) (*state, error) {
	if sn := s.cur.Load(); sn != nil && s.now().Sub(sn.loaded) < s.refresh {
		return sn.st, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sn := s.cur.Load()
	if sn != nil && s.now().Sub(sn.loaded) < s.refresh {
		return sn.st, nil
	}
	var raw string
	var err error
	if err := s.db.View(ctx, func(tx stowage.Tx) error {
		raw, err = tx.Settings().GetSetting(SettingState)
		if errors.Is(err, stowage.ErrNotFound) {
			raw, err = "", nil
		}
		return err
	}); err != nil {
		return nil, fmt.Errorf("read access control settings: %w", err)
	}
	now := s.now()
	if sn != nil && raw == sn.raw {
		s.cur.Store(&snapshot{st: sn.st, raw: raw, loaded: now})
		return sn.st, nil
	}
	st := newState()
	if raw != "" {
		if err := json.Unmarshal([]byte(raw), st); err != nil {
			return nil, fmt.Errorf("the access control settings (%s) are not valid JSON: %w", SettingState, err)
		}
		st.normalize()
	}
	s.cur.Store(&snapshot{st: st, raw: raw, loaded: now})
	return st, nil
}

// change is what an update does, for the change feed: one event of kind
// (user, token, scope map, policy) with detail (what the update sets;
// never a password or its hash), which fn may fill in.
type change struct {
	kind   stowage.EventKind
	detail map[string]any
}

// update applies fn to the state in one transaction: it reads the stored
// document, lets fn change it, and writes it back with the next version,
// so concurrent changes (on this node or another) never lose each other.
// The same transaction appends c's event, with the actor ctx carries.
// fn may run more than once (the database retries conflicts): it must only
// change the state it is given (and c).
func (s *store) update(ctx context.Context, c *change, fn func(st *state, now time.Time) error) (*state, error) {
	now := s.now()
	var out *state
	var raw string
	err := s.db.Update(ctx, func(tx stowage.Tx) error {
		st, _, err := readState(tx)
		if err != nil {
			return err
		}
		if err := fn(st, now); err != nil {
			return err
		}
		st.Version++
		b, err := json.Marshal(st)
		if err != nil {
			return err
		}
		if err := tx.Settings().PutSetting(SettingState, string(b), now); err != nil {
			return err
		}
		e := stowage.NewEvent(ctx, c.kind, "")
		e.Time, e.Detail = now, stowage.EventDetail(ctx, c.detail)
		if s.hook != nil {
			if err := s.hook.Change(ctx, tx, &e); err != nil {
				return err
			}
		}
		if err := tx.Events().Append(e); err != nil {
			return err
		}
		out, raw = st, string(b)
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if cur := s.cur.Load(); cur == nil || cur.st.Version <= out.Version {
		s.cur.Store(&snapshot{st: out, raw: raw, loaded: s.now()})
	}
	s.mu.Unlock()
	return out, nil
}
