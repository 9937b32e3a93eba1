package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/ui/sessionstore"
)

var _ sessionstore.Provider = (*DB)(nil)

// UISessions returns the web UI's session store.
func (db *DB) UISessions() sessionstore.Store { return sessionStore{db} }

type sessionStore struct{ db *DB }

func (s sessionStore) PutSession(ctx context.Context, ss sessionstore.Session, now time.Time, max int) error {
	return pgx.BeginFunc(ctx, s.db.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM ui_sessions WHERE expires <= $1`, now.UnixNano()); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM ui_sessions`).Scan(&n); err != nil {
			return err
		}
		if n >= max {
			return sessionstore.TooMany()
		}
		_, err := tx.Exec(ctx, `INSERT INTO ui_sessions (id_hash, name, sealed, nonce, csrf, expires) VALUES ($1, $2, $3, $4, $5, $6)`,
			ss.IDHash, ss.Name, ss.Sealed, ss.Nonce, ss.CSRF, ss.Expires.UnixNano())
		return err
	})
}

func (s sessionStore) GetSession(ctx context.Context, idHash string, now time.Time) (sessionstore.Session, error) {
	ss := sessionstore.Session{IDHash: idHash}
	var exp int64
	err := s.db.pool.QueryRow(ctx, `SELECT name, sealed, nonce, csrf, expires FROM ui_sessions WHERE id_hash = $1 AND expires > $2`,
		idHash, now.UnixNano()).Scan(&ss.Name, &ss.Sealed, &ss.Nonce, &ss.CSRF, &exp)
	if errors.Is(err, pgx.ErrNoRows) {
		return ss, stowage.ErrNotFound
	}
	ss.Expires = time.Unix(0, exp)
	return ss, err
}

func (s sessionStore) DeleteSession(ctx context.Context, idHash string) error {
	_, err := s.db.pool.Exec(ctx, `DELETE FROM ui_sessions WHERE id_hash = $1`, idHash)
	return err
}
