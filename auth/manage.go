package auth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"strconv"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/stowage/stowage"
)

// UserSpec creates a user.
type UserSpec struct {
	Name     string `json:"name"`
	Password string `json:"password"`
	Admin    bool   `json:"admin,omitempty"`
	ScopeMap string `json:"scopeMap,omitempty"` // the rights of a user who is not an admin
}

// UserInfo is a user as listed (never its password hash).
type UserInfo struct {
	Name     string    `json:"name"`
	Admin    bool      `json:"admin"`
	Disabled bool      `json:"disabled"`
	ScopeMap string    `json:"scopeMap,omitempty"`
	Created  time.Time `json:"createdTime"`
	Updated  time.Time `json:"lastUpdateTime"`
}

// UserChange changes a user; nil fields stay as they are.
type UserChange struct {
	Admin    *bool   `json:"admin,omitempty"`
	Disabled *bool   `json:"disabled,omitempty"`
	ScopeMap *string `json:"scopeMap,omitempty"` // "" removes it
}

// TokenSpec creates a token.
type TokenSpec struct {
	Name     string     `json:"name"`
	ScopeMap string     `json:"scopeMap"`
	Status   Status     `json:"status,omitempty"` // default enabled
	Expiry   *time.Time `json:"expiry,omitempty"`
}

// TokenInfo is a token as listed. Password values appear only in the
// answer that generated them.
type TokenInfo struct {
	Name      string         `json:"name"`
	ScopeMap  string         `json:"scopeMap"`
	Status    Status         `json:"status"`
	Expiry    *time.Time     `json:"expiry,omitempty"`
	Passwords []PasswordInfo `json:"passwords"`
	Created   time.Time      `json:"createdTime"`
	Updated   time.Time      `json:"lastUpdateTime"`
}

// PasswordInfo is one of a token's passwords.
type PasswordInfo struct {
	Name    string     `json:"name"` // password1 or password2
	Created time.Time  `json:"creationTime"`
	Expiry  *time.Time `json:"expiry,omitempty"`
	Value   string     `json:"value,omitempty"` // only when just generated: it is not stored
}

// TokenChange changes a token; nil fields stay as they are.
type TokenChange struct {
	Status   *Status    `json:"status,omitempty"`
	ScopeMap *string    `json:"scopeMap,omitempty"`
	Expiry   *time.Time `json:"expiry,omitempty"`
	// NoExpiry removes the expiry.
	NoExpiry bool `json:"noExpiry,omitempty"`
}

// ScopeMapSpec creates or replaces a scope map.
type ScopeMapSpec struct {
	Description string `json:"description,omitempty"`
	Rules       []Rule `json:"rules"`
}

func notFoundErr(kind, name, hint string) error {
	return stowage.Errorf(stowage.CodeNameUnknown, "no %s named %q; %s", kind, trunc(name), hint)
}

const (
	hintUsers     = "list users with 'stowage user list'"
	hintTokens    = "list tokens with 'stowage token list'"
	hintScopeMaps = "list scope maps with 'stowage scope-map list'"
)

func userInfo(u *storedUser) UserInfo {
	return UserInfo{Name: u.Name, Admin: u.Admin, Disabled: u.Disabled, ScopeMap: u.ScopeMap, Created: u.Created, Updated: u.Updated}
}

func tokenInfo(t *storedToken) TokenInfo {
	ti := TokenInfo{Name: t.Name, ScopeMap: t.ScopeMap, Status: t.Status, Expiry: t.Expiry,
		Passwords: []PasswordInfo{}, Created: t.Created, Updated: t.Updated}
	for i, p := range t.Passwords {
		if p != nil {
			ti.Passwords = append(ti.Passwords, PasswordInfo{Name: passwordName(i), Created: p.Created, Expiry: p.Expiry})
		}
	}
	return ti
}

func passwordName(i int) string { return "password" + string(rune('1'+i)) }

func passwordSlot(name string) (int, error) {
	switch name {
	case "password1", "1":
		return 0, nil
	case "password2", "2":
		return 1, nil
	}
	return 0, stowage.Errorf(stowage.CodeInvalidParameter, "password %q: want password1 or password2", trunc(name))
}

func validatePassword(p string) error {
	switch {
	case len(p) < 8:
		return stowage.Errorf(stowage.CodeInvalidParameter, "the password is too short: use at least 8 characters (better: a generated one)")
	case len(p) > 72:
		return stowage.Errorf(stowage.CodeInvalidParameter, "the password is longer than 72 bytes, more than bcrypt can check: use a shorter one")
	}
	return nil
}

func (a *Authority) hash(password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), a.opts.BcryptCost)
	return string(h), err
}

// nameTaken refuses a user or token name already used by either: basic
// authentication looks both up by name.
func (s *state) nameTaken(name string) error {
	if _, ok := s.Users[name]; ok {
		return stowage.Errorf(stowage.CodeInvalidParameter, "a user named %q exists; users and tokens share one namespace, pick another name", name)
	}
	if _, ok := s.Tokens[name]; ok {
		return stowage.Errorf(stowage.CodeInvalidParameter, "a token named %q exists; users and tokens share one namespace, pick another name", name)
	}
	return nil
}

func (s *state) checkScopeMap(name string) error {
	if name == "" {
		return nil
	}
	if _, ok := s.scopeMap(name); !ok {
		return notFoundErr("scope map", name, "create it first ('stowage scope-map create') or "+hintScopeMaps)
	}
	return nil
}

// ---- users ----

// CreateUser creates a user with a password.
func (a *Authority) CreateUser(ctx context.Context, spec UserSpec) (UserInfo, error) {
	if err := validateName("user", spec.Name); err != nil {
		return UserInfo{}, err
	}
	if err := validatePassword(spec.Password); err != nil {
		return UserInfo{}, err
	}
	h, err := a.hash(spec.Password)
	if err != nil {
		return UserInfo{}, err
	}
	stamp := randomID(8)
	var out UserInfo
	c := &change{kind: stowage.EventUser, detail: map[string]any{"action": "create", "name": spec.Name, "admin": spec.Admin, "scopeMap": spec.ScopeMap}}
	if ctx.Value(bootstrapKey{}) != nil {
		c.detail["bootstrap"] = true // each region's own first admin: not replicated (replica.go)
	}
	_, err = a.store.update(ctx, c, func(st *state, now time.Time) error {
		if err := st.nameTaken(spec.Name); err != nil {
			return err
		}
		if err := st.checkScopeMap(spec.ScopeMap); err != nil {
			return err
		}
		u := &storedUser{Name: spec.Name, PasswordHash: h, Stamp: stamp, Admin: spec.Admin, ScopeMap: spec.ScopeMap, Created: now, Updated: now}
		st.Users[u.Name] = u
		out = userInfo(u)
		return nil
	})
	return out, err
}

// Users lists the users by name.
func (a *Authority) Users(ctx context.Context) ([]UserInfo, error) {
	st, err := a.store.get(ctx)
	if err != nil {
		return nil, err
	}
	out := []UserInfo{}
	for _, k := range sortedKeys(st.Users) {
		out = append(out, userInfo(st.Users[k]))
	}
	return out, nil
}

// User returns one user.
func (a *Authority) User(ctx context.Context, name string) (UserInfo, error) {
	st, err := a.store.get(ctx)
	if err != nil {
		return UserInfo{}, err
	}
	u, ok := st.Users[name]
	if !ok {
		return UserInfo{}, notFoundErr("user", name, hintUsers)
	}
	return userInfo(u), nil
}

// HasUsers reports whether any user exists (a fresh registry has none).
func (a *Authority) HasUsers(ctx context.Context) (bool, error) {
	st, err := a.store.get(ctx)
	if err != nil {
		return false, err
	}
	return len(st.Users) > 0, nil
}

// EnsureAdmin creates the admin user name with password unless a user of
// that name exists (its password is then left alone: change it through the
// API). It reports whether it created the user. Use it at startup, e.g.
// from an environment variable, to bootstrap a registry.
func (a *Authority) EnsureAdmin(ctx context.Context, name, password string) (bool, error) {
	st, err := a.store.get(ctx)
	if err != nil {
		return false, err
	}
	if u, ok := st.Users[name]; ok {
		if !u.Admin {
			return false, stowage.Errorf(stowage.CodeInvalidParameter, "user %q exists but is not an admin; pick another name for the first admin", name)
		}
		return false, nil
	}
	_, err = a.CreateUser(context.WithValue(ctx, bootstrapKey{}, true), UserSpec{Name: name, Password: password, Admin: true})
	if err != nil && stowage.ErrorCodeOf(err) == stowage.CodeInvalidParameter {
		// Created meanwhile (another node)? Then it is there.
		if u, e := a.User(ctx, name); e == nil && u.Admin {
			return false, nil
		}
	}
	if err == nil {
		a.log.Info("admin user created", "audit", "user.bootstrap", "target", name)
	}
	return err == nil, err
}

// DeleteUser deletes a user. The last enabled admin cannot be deleted.
func (a *Authority) DeleteUser(ctx context.Context, name string) error {
	c := &change{kind: stowage.EventUser, detail: map[string]any{"action": "delete", "name": name}}
	_, err := a.store.update(ctx, c, func(st *state, now time.Time) error {
		u, ok := st.Users[name]
		if !ok {
			return notFoundErr("user", name, hintUsers)
		}
		if u.Admin && !u.Disabled && st.enabledAdmins() == 1 {
			return stowage.Errorf(stowage.CodeDenied, "user %q is the last enabled admin; make another user admin before deleting it", name)
		}
		delete(st.Users, name)
		return nil
	})
	return err
}

// SetPassword sets a user's password. Refresh tokens issued for the old
// one stop working.
func (a *Authority) SetPassword(ctx context.Context, name, password string) error {
	if err := validatePassword(password); err != nil {
		return err
	}
	h, err := a.hash(password)
	if err != nil {
		return err
	}
	stamp := randomID(8)
	c := &change{kind: stowage.EventUser, detail: map[string]any{"action": "password", "name": name}}
	_, err = a.store.update(ctx, c, func(st *state, now time.Time) error {
		u, ok := st.Users[name]
		if !ok {
			return notFoundErr("user", name, hintUsers)
		}
		nu := *u
		nu.PasswordHash, nu.Stamp, nu.Updated = h, stamp, now
		st.Users[name] = &nu
		return nil
	})
	return err
}

// UpdateUser changes a user's admin flag, disabled flag or scope map. It
// refuses to leave the registry without an enabled admin.
func (a *Authority) UpdateUser(ctx context.Context, name string, c UserChange) (UserInfo, error) {
	var out UserInfo
	ch := &change{kind: stowage.EventUser}
	_, err := a.store.update(ctx, ch, func(st *state, now time.Time) error {
		u, ok := st.Users[name]
		if !ok {
			return notFoundErr("user", name, hintUsers)
		}
		nu := *u
		if c.Admin != nil {
			nu.Admin = *c.Admin
		}
		if c.Disabled != nil {
			nu.Disabled = *c.Disabled
		}
		if c.ScopeMap != nil {
			if err := st.checkScopeMap(*c.ScopeMap); err != nil {
				return err
			}
			nu.ScopeMap = *c.ScopeMap
		}
		if u.Admin && !u.Disabled && (!nu.Admin || nu.Disabled) && st.enabledAdmins() == 1 {
			return stowage.Errorf(stowage.CodeDenied, "user %q is the last enabled admin; make another user admin first", name)
		}
		nu.Updated = now
		st.Users[name] = &nu
		out = userInfo(&nu)
		ch.detail = map[string]any{"action": "update", "name": name, "admin": nu.Admin, "disabled": nu.Disabled, "scopeMap": nu.ScopeMap}
		return nil
	})
	return out, err
}

// ---- scope maps ----

// ScopeMaps lists the scope maps, built-in ones first.
func (a *Authority) ScopeMaps(ctx context.Context) ([]ScopeMap, error) {
	st, err := a.store.get(ctx)
	if err != nil {
		return nil, err
	}
	out := []ScopeMap{}
	for _, m := range builtInScopeMaps {
		out = append(out, copyScopeMap(&m))
	}
	for _, k := range sortedKeys(st.ScopeMaps) {
		out = append(out, copyScopeMap(st.ScopeMaps[k]))
	}
	return out, nil
}

// ScopeMap returns one scope map.
func (a *Authority) ScopeMap(ctx context.Context, name string) (ScopeMap, error) {
	st, err := a.store.get(ctx)
	if err != nil {
		return ScopeMap{}, err
	}
	m, ok := st.scopeMap(name)
	if !ok {
		return ScopeMap{}, notFoundErr("scope map", name, hintScopeMaps)
	}
	return copyScopeMap(m), nil
}

func copyScopeMap(m *ScopeMap) ScopeMap {
	c := *m
	c.Rules = make([]Rule, len(m.Rules))
	for i, r := range m.Rules {
		c.Rules[i] = Rule{r.Repository, append([]Action(nil), r.Actions...)}
	}
	return c
}

// PutScopeMap creates or replaces a scope map; it reports whether it
// created it. Tokens and users bound to it get the new rules at once.
func (a *Authority) PutScopeMap(ctx context.Context, name string, spec ScopeMapSpec) (ScopeMap, bool, error) {
	if err := validateName("scope map", name); err != nil {
		return ScopeMap{}, false, err
	}
	rules, err := validateRules(spec.Rules)
	if err != nil {
		return ScopeMap{}, false, err
	}
	if len(spec.Description) > 1024 {
		return ScopeMap{}, false, stowage.Errorf(stowage.CodeInvalidParameter, "the description is longer than 1024 characters")
	}
	var out ScopeMap
	var created bool
	c := &change{kind: stowage.EventScopeMap}
	_, err = a.store.update(ctx, c, func(st *state, now time.Time) error {
		m := &ScopeMap{Name: name, Description: spec.Description, Rules: rules, Created: now, Updated: now}
		old, ok := st.ScopeMaps[name]
		if ok {
			m.Created = old.Created
		}
		created = !ok
		st.ScopeMaps[name] = m
		out = copyScopeMap(m)
		action := "update"
		if created {
			action = "create"
		}
		c.detail = map[string]any{"action": action, "name": name, "rules": rules}
		return nil
	})
	return out, created, err
}

// DeleteScopeMap deletes a scope map no token or user uses.
func (a *Authority) DeleteScopeMap(ctx context.Context, name string) error {
	c := &change{kind: stowage.EventScopeMap, detail: map[string]any{"action": "delete", "name": name}}
	_, err := a.store.update(ctx, c, func(st *state, now time.Time) error {
		if m, ok := st.scopeMap(name); ok && m.BuiltIn {
			return stowage.Errorf(stowage.CodeDenied, "scope map %q is built in and cannot be deleted", name)
		}
		if _, ok := st.ScopeMaps[name]; !ok {
			return notFoundErr("scope map", name, hintScopeMaps)
		}
		var users []string
		for _, k := range sortedKeys(st.Tokens) {
			if st.Tokens[k].ScopeMap == name {
				users = append(users, "token "+k)
			}
		}
		for _, k := range sortedKeys(st.Users) {
			if st.Users[k].ScopeMap == name {
				users = append(users, "user "+k)
			}
		}
		if len(users) > 0 {
			return &stowage.Error{Code: stowage.CodeDenied, Detail: map[string]any{"usedBy": users},
				Message: "scope map " + name + " is used by " + joinMax(users, 5) + "; delete them or bind them to another scope map first"}
		}
		delete(st.ScopeMaps, name)
		return nil
	})
	return err
}

func joinMax(s []string, n int) string {
	out := ""
	for i, x := range s {
		if i == n {
			return out + " and " + strconv.Itoa(len(s)-n) + " more"
		}
		if i > 0 {
			out += ", "
		}
		out += x
	}
	return out
}

// ---- tokens ----

// generatePassword returns a new random password (32 characters) and its
// bcrypt hash.
func (a *Authority) generatePassword() (string, string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", "", err
	}
	p := base64.RawURLEncoding.EncodeToString(b)
	h, err := a.hash(p)
	return p, h, err
}

func (a *Authority) checkExpiry(e *time.Time, what string) error {
	if e != nil && !e.After(a.now()) {
		return stowage.Errorf(stowage.CodeInvalidParameter, "the %s expiry %s is in the past: give a time in the future (RFC 3339, e.g. 2030-01-31T00:00:00Z)", what, e.UTC().Format(time.RFC3339))
	}
	return nil
}

func validStatus(s Status) error {
	if s != Enabled && s != Disabled {
		return stowage.Errorf(stowage.CodeInvalidParameter, "status %q: want enabled or disabled", trunc(string(s)))
	}
	return nil
}

// CreateToken creates a token bound to a scope map, with two generated
// passwords. The answer is the only place their values appear.
func (a *Authority) CreateToken(ctx context.Context, spec TokenSpec) (TokenInfo, error) {
	if err := validateName("token", spec.Name); err != nil {
		return TokenInfo{}, err
	}
	if spec.ScopeMap == "" {
		return TokenInfo{}, stowage.Errorf(stowage.CodeInvalidParameter, "a token needs a scope map (e.g. _repositories_pull, or one made with 'stowage scope-map create')")
	}
	if spec.Status == "" {
		spec.Status = Enabled
	}
	if err := validStatus(spec.Status); err != nil {
		return TokenInfo{}, err
	}
	if err := a.checkExpiry(spec.Expiry, "token"); err != nil {
		return TokenInfo{}, err
	}
	var values [2]string
	var hashes [2]string
	for i := range values {
		var err error
		if values[i], hashes[i], err = a.generatePassword(); err != nil {
			return TokenInfo{}, err
		}
	}
	stamps := [2]string{randomID(8), randomID(8)}
	var out TokenInfo
	c := &change{kind: stowage.EventToken, detail: map[string]any{"action": "create", "name": spec.Name, "scopeMap": spec.ScopeMap, "status": spec.Status, "expiry": spec.Expiry}}
	_, err := a.store.update(ctx, c, func(st *state, now time.Time) error {
		if err := st.nameTaken(spec.Name); err != nil {
			return err
		}
		if err := st.checkScopeMap(spec.ScopeMap); err != nil {
			return err
		}
		t := &storedToken{Name: spec.Name, ScopeMap: spec.ScopeMap, Status: spec.Status, Expiry: spec.Expiry, Created: now, Updated: now}
		for i := range t.Passwords {
			t.Passwords[i] = &tokenPassword{Hash: hashes[i], Stamp: stamps[i], Created: now}
		}
		st.Tokens[t.Name] = t
		out = tokenInfo(t)
		return nil
	})
	if err != nil {
		return TokenInfo{}, err
	}
	for i := range out.Passwords {
		out.Passwords[i].Value = values[i]
	}
	return out, nil
}

// Tokens lists the tokens by name.
func (a *Authority) Tokens(ctx context.Context) ([]TokenInfo, error) {
	st, err := a.store.get(ctx)
	if err != nil {
		return nil, err
	}
	out := []TokenInfo{}
	for _, k := range sortedKeys(st.Tokens) {
		out = append(out, tokenInfo(st.Tokens[k]))
	}
	return out, nil
}

// Token returns one token.
func (a *Authority) Token(ctx context.Context, name string) (TokenInfo, error) {
	st, err := a.store.get(ctx)
	if err != nil {
		return TokenInfo{}, err
	}
	t, ok := st.Tokens[name]
	if !ok {
		return TokenInfo{}, notFoundErr("token", name, hintTokens)
	}
	return tokenInfo(t), nil
}

// UpdateToken enables or disables a token, changes its scope map or expiry.
func (a *Authority) UpdateToken(ctx context.Context, name string, c TokenChange) (TokenInfo, error) {
	if c.Status != nil {
		if err := validStatus(*c.Status); err != nil {
			return TokenInfo{}, err
		}
	}
	if err := a.checkExpiry(c.Expiry, "token"); err != nil {
		return TokenInfo{}, err
	}
	var out TokenInfo
	ch := &change{kind: stowage.EventToken}
	_, err := a.store.update(ctx, ch, func(st *state, now time.Time) error {
		t, ok := st.Tokens[name]
		if !ok {
			return notFoundErr("token", name, hintTokens)
		}
		nt := *t
		if c.Status != nil {
			nt.Status = *c.Status
		}
		if c.ScopeMap != nil {
			if *c.ScopeMap == "" {
				return stowage.Errorf(stowage.CodeInvalidParameter, "a token needs a scope map; disable or delete the token instead")
			}
			if err := st.checkScopeMap(*c.ScopeMap); err != nil {
				return err
			}
			nt.ScopeMap = *c.ScopeMap
		}
		if c.NoExpiry {
			nt.Expiry = nil
		}
		if c.Expiry != nil {
			nt.Expiry = c.Expiry
		}
		nt.Updated = now
		st.Tokens[name] = &nt
		out = tokenInfo(&nt)
		ch.detail = map[string]any{"action": "update", "name": name, "scopeMap": nt.ScopeMap, "status": nt.Status, "expiry": nt.Expiry}
		return nil
	})
	return out, err
}

// DeleteToken deletes a token; requests with it are refused at once.
func (a *Authority) DeleteToken(ctx context.Context, name string) error {
	c := &change{kind: stowage.EventToken, detail: map[string]any{"action": "delete", "name": name}}
	_, err := a.store.update(ctx, c, func(st *state, now time.Time) error {
		if _, ok := st.Tokens[name]; !ok {
			return notFoundErr("token", name, hintTokens)
		}
		delete(st.Tokens, name)
		return nil
	})
	return err
}

// GeneratePassword generates (or regenerates) password1 or password2 of
// a token, with an optional expiry. The old value of that password, and
// the refresh tokens issued for it, stop working; the other password
// keeps working, which is how passwords are rotated.
func (a *Authority) GeneratePassword(ctx context.Context, token, which string, expiry *time.Time) (PasswordInfo, error) {
	slot, err := passwordSlot(which)
	if err != nil {
		return PasswordInfo{}, err
	}
	if err := a.checkExpiry(expiry, "password"); err != nil {
		return PasswordInfo{}, err
	}
	value, h, err := a.generatePassword()
	if err != nil {
		return PasswordInfo{}, err
	}
	stamp := randomID(8)
	var out PasswordInfo
	c := &change{kind: stowage.EventToken, detail: map[string]any{"action": "password.generate", "name": token, "password": passwordName(slot), "expiry": expiry}}
	_, err = a.store.update(ctx, c, func(st *state, now time.Time) error {
		t, ok := st.Tokens[token]
		if !ok {
			return notFoundErr("token", token, hintTokens)
		}
		nt := *t
		nt.Passwords[slot] = &tokenPassword{Hash: h, Stamp: stamp, Created: now, Expiry: expiry}
		nt.Updated = now
		st.Tokens[token] = &nt
		out = PasswordInfo{Name: passwordName(slot), Created: now, Expiry: expiry, Value: value}
		return nil
	})
	return out, err
}

// DeletePassword removes password1 or password2 of a token.
func (a *Authority) DeletePassword(ctx context.Context, token, which string) error {
	slot, err := passwordSlot(which)
	if err != nil {
		return err
	}
	c := &change{kind: stowage.EventToken, detail: map[string]any{"action": "password.delete", "name": token, "password": passwordName(slot)}}
	_, err = a.store.update(ctx, c, func(st *state, now time.Time) error {
		t, ok := st.Tokens[token]
		if !ok {
			return notFoundErr("token", token, hintTokens)
		}
		if t.Passwords[slot] == nil {
			return notFoundErr("password", passwordName(slot), "token "+token+" has no such password")
		}
		nt := *t
		nt.Passwords[slot] = nil
		nt.Updated = now
		st.Tokens[token] = &nt
		return nil
	})
	return err
}

// ---- anonymous pull ----

// AnonymousPull reports whether anonymous pull is on.
func (a *Authority) AnonymousPull(ctx context.Context) (bool, error) {
	st, err := a.store.get(ctx)
	if err != nil {
		return false, err
	}
	return st.AnonymousPull, nil
}

// SetAnonymousPull turns anonymous pull on or off: content/read and
// metadata/read on every repository for callers without credentials.
func (a *Authority) SetAnonymousPull(ctx context.Context, on bool) error {
	c := &change{kind: stowage.EventPolicy}
	_, err := a.store.update(ctx, c, func(st *state, now time.Time) error {
		c.detail = map[string]any{"name": "anonymousPull", "before": st.AnonymousPull, "after": on}
		st.AnonymousPull = on
		return nil
	})
	return err
}
