package postgres_test

import (
	"testing"

	"github.com/stowage/stowage/meta/postgres/pgtest"
	"github.com/stowage/stowage/replication/replicationtest"
)

func TestReplicationClocks(t *testing.T) {
	pgtest.Server(t)
	replicationtest.TestClockStore(t, open(t, pgtest.Schema(t, "stowage_test")))
}
