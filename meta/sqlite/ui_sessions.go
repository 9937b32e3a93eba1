package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/ui/sessionstore"
)

var _ sessionstore.Provider = (*DB)(nil)

// UISessions returns the web UI's session store.
func (db *DB) UISessions() sessionstore.Store { return sessionStore{db} }

type sessionStore struct{ db *DB }

func (s sessionStore) PutSession(ctx context.Context, ss sessionstore.Session, now time.Time, max int) error {
	tx, err := s.db.rw.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM ui_sessions WHERE expires <= ?`, now.UnixNano()); err != nil {
		return err
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM ui_sessions`).Scan(&n); err != nil {
		return err
	}
	if n >= max {
		return sessionstore.TooMany()
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO ui_sessions (id_hash, name, sealed, nonce, csrf, expires) VALUES (?, ?, ?, ?, ?, ?)`,
		ss.IDHash, ss.Name, ss.Sealed, ss.Nonce, ss.CSRF, ss.Expires.UnixNano()); err != nil {
		return err
	}
	return tx.Commit()
}

func (s sessionStore) GetSession(ctx context.Context, idHash string, now time.Time) (sessionstore.Session, error) {
	ss := sessionstore.Session{IDHash: idHash}
	var exp int64
	err := s.db.ro.QueryRowContext(ctx, `SELECT name, sealed, nonce, csrf, expires FROM ui_sessions WHERE id_hash = ? AND expires > ?`,
		idHash, now.UnixNano()).Scan(&ss.Name, &ss.Sealed, &ss.Nonce, &ss.CSRF, &exp)
	if errors.Is(err, sql.ErrNoRows) {
		return ss, stowage.ErrNotFound
	}
	ss.Expires = time.Unix(0, exp)
	return ss, err
}

func (s sessionStore) DeleteSession(ctx context.Context, idHash string) error {
	_, err := s.db.rw.ExecContext(ctx, `DELETE FROM ui_sessions WHERE id_hash = ?`, idHash)
	return err
}
