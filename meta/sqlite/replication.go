package sqlite

import (
	"database/sql"
	"errors"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/replication"
)

// ReplicationClocks returns the transaction's store of replication clocks
// (table replication_clocks).
func (t *Tx) ReplicationClocks() replication.ClockStore { return clockStore{t} }

var _ replication.ClockTx = (*Tx)(nil)

type clockStore struct{ t *Tx }

func (s clockStore) GetClock(repo, name string) (replication.Clock, error) {
	c := replication.Clock{Repo: repo, Name: name}
	err := s.t.row(`SELECT digest, wall, logical, region FROM replication_clocks WHERE repo = ? AND name = ?`, repo, name).
		Scan(&c.Digest, &c.HLC.Wall, &c.HLC.Logical, &c.HLC.Region)
	if errors.Is(err, sql.ErrNoRows) {
		return c, stowage.ErrNotFound
	}
	return c, err
}

func (s clockStore) PutClock(c replication.Clock) error {
	_, err := s.t.exec(`INSERT INTO replication_clocks (repo, name, digest, wall, logical, region) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (repo, name) DO UPDATE SET digest = excluded.digest, wall = excluded.wall, logical = excluded.logical, region = excluded.region`,
		c.Repo, c.Name, string(c.Digest), c.HLC.Wall, c.HLC.Logical, c.HLC.Region)
	return err
}

func (s clockStore) LatestLive(repo string) (replication.Clock, error) {
	c := replication.Clock{Repo: repo}
	err := s.t.row(`SELECT name, digest, wall, logical, region FROM replication_clocks
		WHERE repo = ? AND digest <> '' AND name <> ? AND name NOT LIKE 'lock:%' ORDER BY wall DESC, logical DESC, region DESC LIMIT 1`, repo, replication.RepositoryName).
		Scan(&c.Name, &c.Digest, &c.HLC.Wall, &c.HLC.Logical, &c.HLC.Region)
	if errors.Is(err, sql.ErrNoRows) {
		return c, stowage.ErrNotFound
	}
	return c, err
}
