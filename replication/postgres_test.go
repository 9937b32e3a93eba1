package replication_test

import (
	"context"
	"testing"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/meta/postgres"
	"github.com/stowage/stowage/meta/postgres/pgtest"
)

// TestPostgres runs the clock, lock, identity and convergence tests with
// every region on PostgreSQL (a schema of its own on the server named by
// STOWAGE_TEST_POSTGRES; scripts/postgres-test.sh runs it; without a
// server it skips).
func TestPostgres(t *testing.T) {
	pgtest.Server(t)
	sqliteOpen := openDB
	openDB = func(t *testing.T) stowage.DB {
		db, err := postgres.Open(context.Background(), pgtest.Schema(t, "replication_test"), postgres.Options{MaxConns: 8})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	t.Cleanup(func() { openDB = sqliteOpen })
	for _, c := range []struct {
		name string
		test func(*testing.T)
	}{
		{"LastWriterWins", TestLastWriterWins},
		{"DeleteNotResurrected", TestDeleteNotResurrected},
		{"CausalUnderSkew", TestCausalUnderSkew},
		{"RemovalBeforeOlderPush", TestRemovalBeforeOlderPush},
		{"LocksNeverRevert", TestLocksNeverRevert},
		{"RepositoryDelete", TestRepositoryDelete},
		{"RepositoryDeleteSparesALaterPush", TestRepositoryDeleteSparesALaterPush},
		{"RetentionOfReadThroughCopy", TestRetentionOfReadThroughCopy},
		{"LockOfMissingTargetDoesNotStall", TestLockOfMissingTargetDoesNotStall},
		{"IdentityReplication", TestIdentityReplication},
		{"DeleteAndConcurrentTagMove", TestDeleteAndConcurrentTagMove},
		{"RepositoryDeleteAfterWhatItRemoves", TestRepositoryDeleteAfterWhatItRemoves},
		{"ConvergenceModel", func(t *testing.T) { convergenceModel(t, []uint64{1, 2}, 60) }},
	} {
		t.Run(c.name, c.test)
	}
}
