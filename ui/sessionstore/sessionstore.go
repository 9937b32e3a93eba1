// Package sessionstore keeps the web UI's login sessions in the metadata
// database, so a session survives a restart and works on every node of a
// scale-out (docs/scale-out.md) without sticky sessions.
//
// A row holds no secret that opens anything by itself: the session id is
// stored as its SHA-256 (IDHash), and the password the person logged in
// with is sealed (AES-GCM) under a key that only the cookie holds. A
// database leak therefore yields neither a usable session nor a password.
package sessionstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/stowage/stowage"
)

// Session is one row.
type Session struct {
	IDHash  string // hex SHA-256 of the session id (HashID)
	Name    string // the user or token logged in
	Sealed  []byte // the password, AES-GCM under the cookie's key
	Nonce   []byte
	CSRF    string // the token the session's forms carry
	Expires time.Time
}

// Store keeps sessions.
type Store interface {
	// PutSession inserts s, unless max or more live sessions exist at now
	// (then stowage.CodeTooManyRequests); expired rows are deleted first.
	PutSession(ctx context.Context, s Session, now time.Time, max int) error
	// GetSession returns the live session (expires after now) with the
	// id hash; stowage.ErrNotFound if there is none.
	GetSession(ctx context.Context, idHash string, now time.Time) (Session, error)
	// DeleteSession removes the session; a missing one is not an error.
	DeleteSession(ctx context.Context, idHash string) error
}

// HashID is the id hash a session id is stored under.
func HashID(id string) string {
	h := sha256.Sum256([]byte(id))
	return hex.EncodeToString(h[:])
}

// Provider is a database that keeps UI sessions.
type Provider interface {
	UISessions() Store
}

// Of returns db's Store, if it has one.
func Of(db stowage.DB) (Store, bool) {
	p, ok := db.(Provider)
	if !ok {
		return nil, false
	}
	return p.UISessions(), true
}

// TooMany is PutSession's error when the session limit is reached.
func TooMany() error {
	return stowage.Errorf(stowage.CodeTooManyRequests, "too many open sessions on this registry; try again later")
}
