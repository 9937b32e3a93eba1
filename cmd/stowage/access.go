package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/auth"
	"github.com/stowage/stowage/config"
	"github.com/stowage/stowage/internal/httperr"
	"github.com/stowage/stowage/limits"
	"github.com/stowage/stowage/replication"
)

// InitialAdminPasswordFile is where the first admin's generated password
// is written when no password was given (mode 0600, in the data directory).
const InitialAdminPasswordFile = "initial-admin-password"

// checkExposure refuses to serve a non-loopback address without
// authentication, unless the operator asked for an open registry by name.
func checkExposure(cfg config.Config) error {
	if cfg.Auth.Enabled || cfg.InsecureOpen {
		return nil
	}
	host, _, _ := net.SplitHostPort(cfg.Addr)
	if isLoopback(host) {
		return nil
	}
	return fmt.Errorf("refusing to listen on %s without authentication: anyone who can reach it could push, pull and delete.\n"+
		"  Turn access control on (auth: {enabled: true} in the config file, or STOWAGE_AUTH=on; the first admin's\n"+
		"  password comes from STOWAGE_ADMIN_PASSWORD), or listen on 127.0.0.1, or, for a registry that is meant to be\n"+
		"  open to everyone who can reach it, pass --insecure-open-registry. See docs/access.md", cfg.Addr)
}

// limitsFor builds the request limits of the tier and overrides; nil when
// no limit is set.
func limitsFor(cfg config.Config, m *Main) (*limits.Limiter, error) {
	var lc limits.Config
	if cfg.Tier != "" {
		var err error
		if lc, err = limits.ForTier(cfg.Tier); err != nil {
			return nil, err
		}
	}
	for _, o := range []struct {
		src config.RateLimit
		dst *limits.Rate
	}{{cfg.Limits.Reads, &lc.Read}, {cfg.Limits.Writes, &lc.Write}, {cfg.Limits.Deletes, &lc.Delete}, {cfg.Limits.Tokens, &lc.Token}} {
		if o.src.Registry != nil {
			o.dst.Registry = *o.src.Registry
		}
		if o.src.Identity != nil {
			o.dst.Identity = *o.src.Identity
		}
	}
	if lc.Read == (limits.Rate{}) && lc.Write == (limits.Rate{}) && lc.Delete == (limits.Rate{}) && lc.Token == (limits.Rate{}) {
		return nil, nil
	}
	if err := lc.Validate(); err != nil {
		return nil, err
	}
	lc.TokenPath, lc.Logger, lc.Store = auth.TokenPath, m.log, sharedLimits(cfg, m.db)
	return limits.New(lc), nil
}

// sharedLimits is the store of the request and failed-login limits'
// buckets: on PostgreSQL the database, so that several nodes share them and
// a limit holds for the registry as a whole; nil (each process's memory) on
// SQLite, which one process uses at a time.
func sharedLimits(cfg config.Config, db stowage.DB) limits.Store {
	if s, ok := db.(limits.Store); ok && cfg.Database.Kind() == "postgres" {
		return s
	}
	return nil
}

// setupAuth builds the authority (nil with auth off) and creates the first
// admin on a registry that has no user yet.
func (m *Main) setupAuth(ctx context.Context, db stowage.DB) (*auth.Authority, error) {
	c := m.Config.Auth
	if !c.Enabled {
		return nil, nil
	}
	var proxies []netip.Prefix
	for _, p := range c.TrustedProxies {
		pf, err := config.ParsePrefix(p)
		if err != nil {
			return nil, err
		}
		proxies = append(proxies, pf)
	}
	opts := auth.Options{Realm: c.Realm, Service: c.Service, TokenTTL: time.Duration(c.TokenTTL),
		RefreshTTL: time.Duration(c.RefreshTTL), TrustedProxies: proxies, LoginStore: sharedLimits(m.Config, db), Logger: m.log}
	if r := m.Config.Replication.Region; r != "" {
		opts.Changes = replication.Clocks{Region: r} // users, tokens and scope maps replicate (docs/replication.md)
	}
	if m.keys != nil {
		// The token signing key is sealed with the encryption key, which
		// every node holds and the database does not (docs/access.md).
		opts.Keys = m.keys.Keys
	}
	a, err := auth.New(ctx, db, opts)
	if err != nil {
		return nil, fmt.Errorf("access control: %w", err)
	}
	has, err := a.HasUsers(ctx)
	if err != nil || has {
		return a, err
	}
	password := os.Getenv(c.AdminPasswordEnv)
	generated := password == ""
	if generated {
		password = newPassword()
	}
	created, err := a.EnsureAdmin(ctx, c.Admin, password)
	if err != nil {
		return nil, fmt.Errorf("create the first admin %q: %w", c.Admin, err)
	}
	if created && generated {
		path := filepath.Join(m.Config.DataDir, InitialAdminPasswordFile)
		if err := os.WriteFile(path, []byte(password+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("write the first admin's password: %w", err)
		}
		m.say("created the admin user %q; its password is in %s (log in, change it with 'stowage user passwd %s', then delete the file)\n", c.Admin, path, c.Admin)
	} else if created {
		m.say("created the admin user %q with the password from $%s\n", c.Admin, c.AdminPasswordEnv)
	}
	return a, nil
}

// routes mounts the APIs: access control outside, request limits inside
// it (so limits know who is asking), the handlers innermost. log is the
// server's logger (errors that are not a *stowage.Error are logged).
func routes(mux *http.ServeMux, log *slog.Logger, a *auth.Authority, lim *limits.Limiter, oci, mgmtAPI, acr, metrics http.Handler) {
	limit := func(h http.Handler) http.Handler {
		if lim == nil {
			return h
		}
		name := func(r *http.Request) string { return "" } // without auth, all callers are one anonymous identity
		if a != nil {
			name = a.LimitName
		}
		return lim.Middleware(name, h)
	}
	oci, mgmtAPI, acr = limit(oci), limit(mgmtAPI), limit(acr)
	if a == nil {
		mux.Handle("/v2/", oci)
		mux.Handle("/v2", oci)
		mux.Handle("/api/v1/", mgmtAPI)
		mux.Handle(auth.AdminPrefix, errorHandler(log, errAccessOff))
		mux.Handle("/acr/v1/", acr)
		mux.Handle("/metrics", metrics)
		return
	}
	mux.Handle("/v2/", a.Middleware(oci))
	mux.Handle("/v2", a.Middleware(oci))
	mux.Handle(auth.TokenPath, limit(a.TokenHandler()))
	mux.Handle(auth.AdminPrefix, a.ManagementMiddleware(limit(a.Handler())))
	mux.Handle("/api/v1/", a.ManagementMiddleware(mgmtAPI))
	mux.Handle("/acr/v1/", a.ManagementMiddleware(acr))
	mux.Handle("/metrics", a.ManagementMiddleware(metrics))
}

// errAccessOff answers the access control API with access control off.
var errAccessOff = stowage.Errorf(stowage.CodeUnsupported, "access control is off on this registry: there are no users or tokens to manage (turn it on with auth.enabled, see docs/access.md)")

// errorHandler answers every request with err, through the one error
// writer and with the server's logger (which it needs for an error that
// is not a *stowage.Error: logged, and answered 500).
func errorHandler(log *slog.Logger, err error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httperr.Write(w, r, log, err)
	})
}

func storageLimitText(n int64) string {
	if n <= 0 {
		return "unlimited"
	}
	return stowage.HumanBytes(n)
}

func requestLimitText(l *limits.Limiter) string {
	if l == nil {
		return "unlimited"
	}
	c := l.Config()
	return fmt.Sprintf("reads %d/%d, writes %d/%d, deletes %d/%d, token requests %d/%d per minute (registry/identity; 0: none)",
		c.Read.Registry, c.Read.Identity, c.Write.Registry, c.Write.Identity, c.Delete.Registry, c.Delete.Identity, c.Token.Registry, c.Token.Identity)
}

// newPassword returns a random password: 24 URL-safe characters (144 bits).
func newPassword() string {
	var b [18]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
