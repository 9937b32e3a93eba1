package postgres_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/url"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/feed"
	"github.com/stowage/stowage/internal/testenv"
	"github.com/stowage/stowage/meta/metatest"
	"github.com/stowage/stowage/meta/postgres"
	"github.com/stowage/stowage/meta/postgres/pgtest"
	"github.com/stowage/stowage/meta/tables"
)

var ctx = context.Background()

func open(t *testing.T, cs string) *postgres.DB {
	t.Helper()
	db, err := postgres.Open(ctx, cs, postgres.Options{MaxConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestConformance(t *testing.T) {
	pgtest.Server(t)
	metatest.Run(t, func(t *testing.T) stowage.DB { return open(t, pgtest.Schema(t, "stowage_test")) })
}

func TestFeed(t *testing.T) {
	pgtest.Server(t)
	metatest.RunFeed(t, 200, func(t *testing.T) (stowage.DB, feed.Store) {
		db := open(t, pgtest.Schema(t, "stowage_test"))
		return db, db.Feed()
	})
}

func TestReopenKeepsData(t *testing.T) {
	cs := pgtest.Schema(t, "stowage_test")
	db, err := postgres.Open(ctx, cs, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(ctx, func(tx stowage.Tx) error { return tx.Repositories().CreateRepository("kept", time.Unix(1, 0)) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db = open(t, cs) // migrations must not run twice
	err = db.View(ctx, func(tx stowage.Tx) error { _, err := tx.Repositories().GetRepository("kept"); return err })
	if err != nil {
		t.Errorf("data lost across reopen: %v", err)
	}
}

func TestRefusesNewerSchema(t *testing.T) {
	cs := pgtest.Schema(t, "stowage_test")
	db0 := open(t, cs)
	_, known, err := db0.SchemaVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	db0.Close()
	conn, err := pgx.Connect(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(ctx, `INSERT INTO schema_migrations (version, applied) VALUES (99, 0)`)
	conn.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, opts := range []postgres.Options{{}, {NoMigrate: true}} {
		db, err := postgres.Open(ctx, cs, opts)
		if err == nil {
			db.Close()
			t.Fatalf("Open(%+v) accepted a database of schema version 99", opts)
		}
		if want := fmt.Sprintf("database schema version 99 is newer than this stowage binary understands (%d): upgrade stowage", known); !strings.Contains(err.Error(), want) {
			t.Errorf("Open(%+v) = %v\nwant it to say %q", opts, err, want)
		}
	}
}

func TestNoMigrate(t *testing.T) {
	cs := pgtest.Schema(t, "stowage_test")
	db, err := postgres.Open(ctx, cs, postgres.Options{NoMigrate: true})
	if err == nil {
		db.Close()
		t.Fatal("Open with NoMigrate accepted an empty database")
	}
	if !strings.Contains(err.Error(), "run stowage migrate") {
		t.Errorf("Open(NoMigrate) on an empty database = %v, want advice to run stowage migrate", err)
	}
	open(t, cs).Close()
	db, err = postgres.Open(ctx, cs, postgres.Options{NoMigrate: true})
	if err != nil {
		t.Fatalf("Open(NoMigrate) on a migrated database: %v", err)
	}
	db.Close()
}

// TestConcurrentOpensMigrateOnce: nodes that start together on an empty
// database all come up, and the schema is created once (without the
// advisory lock, the losers fail on tables that already exist).
func TestConcurrentOpensMigrateOnce(t *testing.T) {
	cs := pgtest.Schema(t, "stowage_test")
	const nodes = 4
	start := make(chan struct{})
	errs := make([]error, nodes)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			db, err := postgres.Open(ctx, cs, postgres.Options{MaxConns: 2})
			if err == nil {
				err = db.Update(ctx, func(tx stowage.Tx) error {
					return tx.Repositories().CreateRepository(fmt.Sprintf("node%d", i), time.Unix(1, 0))
				})
				db.Close()
			}
			errs[i] = err
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("node %d: %v", i, err)
		}
	}
	conn, err := pgx.Connect(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var rows, max int
	if err := conn.QueryRow(ctx, `SELECT count(*), max(version) FROM schema_migrations`).Scan(&rows, &max); err != nil {
		t.Fatal(err)
	}
	if rows != max {
		t.Errorf("schema_migrations has %d rows for version %d", rows, max)
	}
}

// TestUpdateRetriesSerializationFailure provokes a write skew: two Updates
// both read "repository r has no tag" and then each create a different tag.
// Neither touches a row the other writes, so only SERIALIZABLE isolation
// sees the conflict; one must fail with a serialization failure, be retried
// by Update, see the other's tag and write nothing.
func TestUpdateRetriesSerializationFailure(t *testing.T) {
	db := open(t, pgtest.Schema(t, "stowage_test"))
	var attempts atomic.Int32
	var read sync.WaitGroup // both have read, on their first attempt
	read.Add(2)
	worker := func(tag string) error {
		first := true
		return db.Update(ctx, func(tx stowage.Tx) error {
			attempts.Add(1)
			tags, err := tx.Tags().ListTags("r", "", 0)
			if first {
				first = false
				read.Done()
				read.Wait()
			}
			if err != nil {
				return err
			}
			if len(tags) > 0 {
				return nil // someone else was first
			}
			return tx.Tags().PutTag("r", tag, stowage.Digest("sha256:"+strings.Repeat("0", 64)), time.Unix(1, 0))
		})
	}
	errs := make(chan error, 2)
	for _, tag := range []string{"a", "b"} {
		go func() { errs <- worker(tag) }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("Update: %v", err)
		}
	}
	var tags []string
	if err := db.View(ctx, func(tx stowage.Tx) (err error) { tags, err = tx.Tags().ListTags("r", "", 0); return err }); err != nil {
		t.Fatal(err)
	}
	if len(tags) != 1 {
		t.Errorf("tags = %v, want exactly one: a write skew committed", tags)
	}
	if n := attempts.Load(); n < 3 {
		t.Errorf("%d attempts for 2 conflicting Updates: no retry happened", n)
	}
}

// TestAbortedTransactionIsNotCommitted: a failed statement aborts a
// PostgreSQL transaction. When fn swallows the error, Update must fail, not
// report a commit that did not happen.
func TestAbortedTransactionIsNotCommitted(t *testing.T) {
	db := open(t, pgtest.Schema(t, "stowage_test"))
	err := db.Update(ctx, func(tx stowage.Tx) error {
		if err := tx.Repositories().CreateRepository("r", time.Unix(1, 0)); err != nil {
			return err
		}
		bad := stowage.ManifestRecord{Repo: "r", Digest: "sha256:00", MediaType: "nul\x00byte", Created: time.Unix(1, 0)}
		if err := tx.Manifests().PutManifest(bad, nil); err == nil {
			t.Error("PostgreSQL accepted a NUL byte in TEXT")
		}
		return nil // swallowed
	})
	if err == nil {
		t.Fatal("Update reported success for an aborted transaction")
	}
	err = db.View(ctx, func(tx stowage.Tx) error { _, err := tx.Repositories().GetRepository("r"); return err })
	if !errors.Is(err, stowage.ErrNotFound) {
		t.Errorf("a write of the aborted transaction is visible: %v", err)
	}
}

func TestViewIsReadOnly(t *testing.T) {
	db := open(t, pgtest.Schema(t, "stowage_test"))
	if err := db.View(ctx, func(tx stowage.Tx) error { return tx.Repositories().CreateRepository("r", time.Unix(1, 0)) }); err == nil {
		t.Error("View wrote")
	}
}

// TestStartupErrors: what Open says when it cannot get going.
func TestStartupErrors(t *testing.T) {
	t.Run("unreachable", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close() // nothing listens there now
		_, err = postgres.Open(ctx, "postgres://stowage:secret@"+addr+"/stowage?sslmode=disable", postgres.Options{ConnectTimeout: 5 * time.Second})
		wantErr(t, err, "cannot reach PostgreSQL at "+addr, "check that the server is running")
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("the error shows the password: %v", err)
		}
	})
	t.Run("invalid connection string", func(t *testing.T) {
		_, err := postgres.Open(ctx, "postgres://stowage:secret@127.0.0.1:notaport/x", postgres.Options{})
		wantErr(t, err, "invalid PostgreSQL connection string")
	})

	base := pgtest.Server(t)
	u, err := url.Parse(base)
	if err != nil || !strings.HasPrefix(u.Scheme, "postgres") || u.User == nil {
		testenv.Skip(t, "postgres", "STOWAGE_TEST_POSTGRES is not a postgres:// URL with a user: cannot derive wrong credentials from it")
	}
	t.Run("wrong password", func(t *testing.T) {
		w := *u
		w.User = url.UserPassword(u.User.Username(), "not-the-password")
		db, err := postgres.Open(ctx, w.String(), postgres.Options{})
		if err == nil {
			db.Close()
			testenv.Skip(t, "postgres", "the test server does not check passwords (trust authentication)")
		}
		wantErr(t, err, "refused user", "password authentication failed", "fix the user and password")
	})
	t.Run("missing database", func(t *testing.T) {
		w := *u
		w.Path = "/stowage_missing_database"
		_, err := postgres.Open(ctx, w.String(), postgres.Options{})
		wantErr(t, err, `database "stowage_missing_database" does not exist`, "create it")
	})
}

func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want one saying %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q\ndoes not say %q", err, p)
		}
	}
	t.Logf("error: %v", err)
}

// TestTablesListMatchesSchema: meta/tables (what migrate-metadata copies)
// names every table and column of the schema.
func TestTablesListMatchesSchema(t *testing.T) {
	cs := pgtest.Schema(t, "stowage_test")
	db := open(t, cs)
	conn, err := pgx.Connect(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT table_name::text, column_name::text FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name <> 'schema_migrations' ORDER BY 1, 2`)
	if err != nil {
		t.Fatal(err)
	}
	schema := map[string][]string{}
	for rows.Next() {
		var tab, col string
		if err := rows.Scan(&tab, &col); err != nil {
			t.Fatal(err)
		}
		schema[tab] = append(schema[tab], col)
	}
	rows.Close()
	for _, tab := range tables.All {
		cols := append([]string(nil), tab.Columns...)
		sort.Strings(cols)
		if got := schema[tab.Name]; !slices.Equal(cols, got) {
			t.Errorf("table %s: schema columns %v, meta/tables lists %v", tab.Name, got, cols)
		}
		delete(schema, tab.Name)
		if err := db.ReadTable(ctx, tab, func([]any) error { return nil }); err != nil {
			t.Error(err)
		}
	}
	for _, tab := range tables.Derived {
		if _, ok := schema[tab]; !ok {
			t.Errorf("derived table %s is not in the schema", tab)
		}
		delete(schema, tab)
	}
	for _, tab := range tables.PostgresOnly {
		if _, ok := schema[tab]; !ok {
			t.Errorf("table %s is not in the schema", tab)
		}
		delete(schema, tab)
	}
	for tab := range schema {
		t.Errorf("table %s is missing from meta/tables", tab)
	}
}

// TestJobLockAcrossPools: two pools (two nodes) on one database: one holds
// a job lock at a time; when the holder's session dies (a node killed, its
// connection cut), the holder's context ends and the lock is free.
func TestJobLockAcrossPools(t *testing.T) {
	old := postgres.SetLockCheckInterval(100 * time.Millisecond)
	defer postgres.SetLockCheckInterval(old)
	cs := pgtest.Schema(t, "stowage_test")
	a, b := open(t, cs), open(t, cs)
	_, releaseA, err := a.TryLock(ctx, "gc")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.TryLock(ctx, "gc"); !errors.Is(err, stowage.ErrLocked) {
		t.Fatalf("node b: TryLock(gc) while node a holds it: %v, want ErrLocked", err)
	}
	releaseA()
	held, releaseB, err := b.TryLock(ctx, "gc")
	if err != nil {
		t.Fatalf("node b after a released: %v", err)
	}
	defer releaseB()
	// Cut node b's session, as if its node died.
	conn, err := pgx.Connect(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	err = conn.QueryRow(ctx, `SELECT COUNT(pg_terminate_backend(pid)) FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
		AND pid IN (SELECT pid FROM pg_stat_activity WHERE query LIKE '%pg_try_advisory_lock%' OR query LIKE '-- ping%')`).Scan(&n)
	// (The holder's connection is pinged every lock check interval, 100 ms
	// here, after which its last query is pgx's "-- ping"; on a loaded
	// machine that happens before this query runs.)
	if err != nil || n == 0 {
		t.Fatalf("terminate the lock holder's session: %d sessions, %v", n, err)
	}
	select {
	case <-held.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("the holder's context did not end after its session died")
	}
	if _, rel, err := a.TryLock(ctx, "gc"); err != nil {
		t.Fatalf("lock not free after its holder's session died: %v", err)
	} else {
		rel()
	}
}

// TestLoadedEventsKeepFeedGoing: after migrate-metadata copies events in
// (with their ids and seqs), new events still append, and the sequencer
// numbers them above the copied ones.
func TestLoadedEventsKeepFeedGoing(t *testing.T) {
	db := open(t, pgtest.Schema(t, "stowage_test"))
	ev, _ := tables.Lookup("events")
	err := db.Load(ctx, false, func(l *postgres.Loader) error {
		i := 0
		_, err := l.Copy(ev, func() ([]any, bool, error) {
			i++
			if i > 3 {
				return nil, false, nil
			}
			return []any{int64(i), int64(i), int64(1), "push", "", "", "r", "", "", "", int64(0), "", "", "", ""}, true, nil
		})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(ctx, func(tx stowage.Tx) error {
		return tx.Events().Append(stowage.Event{Kind: stowage.EventPush, Repo: "after-copy"})
	}); err != nil {
		t.Fatalf("append after loading events: %v", err)
	}
	f := db.Feed()
	if err := f.Sequence(ctx); err != nil {
		t.Fatal(err)
	}
	evs, _, err := f.Read(ctx, feed.Query{After: 3})
	if err != nil || len(evs) != 1 || evs[0].Repo != "after-copy" || evs[0].Seq != 4 {
		t.Errorf("after the copied events 1..3: %+v, %v; want the new event as seq 4", evs, err)
	}
}

// TestLongUpdateOutlastsStreamOfWriters: a long transaction in a write
// skew with a stream of short ones (it reads what they write, they read
// what it writes) loses every time they commit first. Update must still
// commit it: after a few losses it runs alone among writers (escalateAfter),
// the short ones wait, and it wins. Before, it failed after 30 attempts (a
// repository delete of 150 manifests under 8 pushing clients answered 500).
func TestLongUpdateOutlastsStreamOfWriters(t *testing.T) {
	db := open(t, pgtest.Schema(t, "stowage_test"))
	d := stowage.Digest("sha256:" + strings.Repeat("0", 64))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var short atomic.Int64
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				err := db.Update(ctx, func(tx stowage.Tx) error {
					if _, err := tx.Tags().ListTags("long", "", 0); err != nil {
						return err
					}
					return tx.Tags().PutTag("short", fmt.Sprintf("w%d-%d", w, i%50), d, time.Unix(1, 0))
				})
				if err != nil && ctx.Err() == nil {
					t.Errorf("short Update: %v", err)
					return
				}
				short.Add(1)
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	time.Sleep(200 * time.Millisecond) // the stream runs
	var attempts int
	err := db.Update(ctx, func(tx stowage.Tx) error {
		attempts++
		if _, err := tx.Tags().ListTags("short", "", 0); err != nil {
			return err
		}
		time.Sleep(50 * time.Millisecond) // long: the short ones commit meanwhile
		return tx.Tags().PutTag("long", "t", d, time.Unix(1, 0))
	})
	if err != nil {
		t.Fatalf("the long Update failed after %d attempts while %d short ones committed: %v", attempts, short.Load(), err)
	}
	t.Logf("the long Update committed at attempt %d; %d short ones committed meanwhile", attempts, short.Load())
}

// TestJobLocksLeaveThePool: held job locks (the feed readers hold theirs
// for the life of the process) take no connection from the pool; with
// pool connections holding them, four readers took a pool of four and
// every request waited for good (a region on PostgreSQL hung after
// minutes in the geo-replication test).
func TestJobLocksLeaveThePool(t *testing.T) {
	pgtest.Server(t)
	db, err := postgres.Open(ctx, pgtest.Schema(t, "stowage_test"), postgres.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, name := range []string{"feed:webhooks", "feed:replication-west", "feed:replication-north", "purge-policies"} {
		_, release, err := db.TryLock(qctx, name)
		if err != nil {
			t.Fatalf("TryLock(%s): %v", name, err)
		}
		defer release()
	}
	if err := db.View(qctx, func(tx stowage.Tx) error {
		_, err := tx.Settings().GetSetting("x")
		if errors.Is(err, stowage.ErrNotFound) {
			return nil
		}
		return err
	}); err != nil {
		t.Fatalf("a read with four job locks held and a pool of two: %v", err)
	}
}

// TestWritersDoNotDeadlock: tagged pushes and deletes of one repository,
// and a long writer that has to run alone, go side by side without a
// deadlock. PostgreSQL detects a deadlock only after deadlock_timeout (1 s
// by default), which both writers wait, so deadlocks made pushes outlive a
// 2 s GC lease (TestGCStressMultiNode). Two caused them: a manifest insert
// reached repository_usage (usage triggers) before its tag reached the
// repositories row (tags_version), while a tag delete went the other way;
// and the escalated writer locked the write tables one after the other
// while the others held rows in them.
func TestWritersDoNotDeadlock(t *testing.T) {
	db := open(t, pgtest.Schema(t, "stowage_test"))
	now := time.Unix(1, 0)
	dg := func(s string) stowage.Digest { return stowage.Digest(digestOf(s)) }
	layer := dg("layer")
	if err := db.Update(ctx, func(tx stowage.Tx) error {
		if err := tx.Repositories().CreateRepository("r", now); err != nil {
			return err
		}
		return tx.Blobs().PutBlob(stowage.BlobRecord{Digest: layer, Size: 10, Created: now, State: stowage.BlobLive, LastUsed: now, UnreferencedSince: now})
	}); err != nil {
		t.Fatal(err)
	}
	live := func(tx stowage.Tx, d stowage.Digest, size int64) error {
		return tx.Blobs().PutBlob(stowage.BlobRecord{Digest: d, Size: size, Created: now, State: stowage.BlobLive, LastUsed: now, UnreferencedSince: now})
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var pushes atomic.Int64
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				config, m, tag := dg(fmt.Sprintf("config %d %d", w, i)), dg(fmt.Sprintf("manifest %d %d", w, i)), fmt.Sprintf("w%d-%d", w, i)
				err := db.Update(ctx, func(tx stowage.Tx) error {
					if err := tx.Repositories().CreateRepository("r", now); err != nil {
						return err
					}
					if err := live(tx, config, 5); err != nil {
						return err
					}
					if err := live(tx, m, 100); err != nil {
						return err
					}
					rec := stowage.ManifestRecord{Repo: "r", Digest: m, MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 100, Created: now}
					if err := tx.Manifests().PutManifest(rec, []stowage.ManifestRef{{Digest: config, Kind: stowage.RefBlob}, {Digest: layer, Kind: stowage.RefBlob}}); err != nil {
						return err
					}
					return tx.Tags().PutTag("r", tag, m, now)
				})
				if err != nil {
					t.Errorf("push: %v", err)
					return
				}
				pushes.Add(1)
				if i%2 == 1 {
					continue
				}
				if err := db.Update(ctx, func(tx stowage.Tx) error {
					if err := tx.Tags().DeleteTag("r", tag); err != nil {
						return err
					}
					return tx.Manifests().DeleteManifest("r", m)
				}); err != nil {
					t.Errorf("delete: %v", err)
					return
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	// The long writer reads the tags the pushes write and writes a tag
	// they read (their repository's tags_version): it loses until it runs
	// alone.
	for i := range 3 {
		if err := db.Update(ctx, func(tx stowage.Tx) error {
			if _, err := tx.Tags().ListTags("r", "", 0); err != nil {
				return err
			}
			time.Sleep(50 * time.Millisecond)
			return tx.Tags().PutTag("r", fmt.Sprintf("long-%d", i), layer, now)
		}); err != nil {
			t.Errorf("long writer: %v", err)
		}
	}
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	serialization, deadlocks, alone := db.Retries()
	t.Logf("%d pushes; retries: %d after a serialization failure, %d after a deadlock; %d attempts alone", pushes.Load(), serialization, deadlocks, alone)
	if deadlocks != 0 {
		t.Errorf("%d deadlocks among writers, want 0", deadlocks)
	}
	if alone == 0 || pushes.Load() < 10 {
		t.Fatal("the test did not exercise writers running alone beside pushes")
	}
}

// TestSharedLayerWritersDoNotDeadlock: pushes and manifest deletes of
// different repositories whose manifests share layers write the layers'
// digest_owners rows (migration 0017) as the layers' first and second
// users come and go, pushes in the manifest's order and deletes in the
// index's (the reverse here). Waiting for those rows deadlocked one to four
// times in three seconds; a writer that finds one taken fails at once
// instead (digest_owners_nowait) and is retried.
func TestSharedLayerWritersDoNotDeadlock(t *testing.T) {
	db := open(t, pgtest.Schema(t, "stowage_test"))
	now := time.Unix(1, 0)
	dg := func(s string) stowage.Digest { return stowage.Digest(digestOf(s)) }
	var layers []stowage.Digest
	for i := range 6 {
		layers = append(layers, dg(fmt.Sprintf("layer %d", i)))
	}
	slices.Sort(layers)
	slices.Reverse(layers)
	live := func(tx stowage.Tx, d stowage.Digest, size int64) error {
		return tx.Blobs().PutBlob(stowage.BlobRecord{Digest: d, Size: size, Created: now, State: stowage.BlobLive, LastUsed: now, UnreferencedSince: now})
	}
	if err := db.Update(ctx, func(tx stowage.Tx) error {
		for _, l := range layers {
			if err := live(tx, l, 10); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var pushes atomic.Int64
	deadline := time.Now().Add(3 * time.Second)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			repo := fmt.Sprintf("r%d", w)
			for i := 0; time.Now().Before(deadline); i++ {
				m := dg(fmt.Sprintf("manifest %d %d", w, i))
				if err := db.Update(ctx, func(tx stowage.Tx) error {
					if err := tx.Repositories().CreateRepository(repo, now); err != nil {
						return err
					}
					if err := live(tx, m, 100); err != nil {
						return err
					}
					var refs []stowage.ManifestRef
					for _, l := range layers {
						refs = append(refs, stowage.ManifestRef{Digest: l, Kind: stowage.RefBlob})
					}
					return tx.Manifests().PutManifest(stowage.ManifestRecord{Repo: repo, Digest: m, MediaType: "m", Size: 100, Created: now}, refs)
				}); err != nil {
					t.Errorf("push: %v", err)
					return
				}
				pushes.Add(1)
				if err := db.Update(ctx, func(tx stowage.Tx) error { return tx.Manifests().DeleteManifest(repo, m) }); err != nil {
					t.Errorf("delete: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	serialization, deadlocks, alone := db.Retries()
	t.Logf("%d pushes; retries: %d after a serialization failure, %d after a deadlock; %d attempts alone", pushes.Load(), serialization, deadlocks, alone)
	if deadlocks != 0 {
		t.Errorf("%d deadlocks among writers, want 0", deadlocks)
	}
}

func digestOf(s string) string {
	return fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(s)))
}

// TestCancelledRequestEndsItsQuery: when a request's context ends, its
// query ends on the server too, not only the client's side of the
// connection. (Suspected when a query held a core for 34 minutes in a
// scale run; pgx's default context handling passes this test, so that
// query outlived something else, not its request's context.)
func TestCancelledRequestEndsItsQuery(t *testing.T) {
	db := open(t, pgtest.Schema(t, "stowage_test"))
	marker := fmt.Sprintf("stowage-cancel-%d", time.Now().UnixNano())
	qctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	err := db.View(qctx, func(tx stowage.Tx) error {
		_, err := tx.Settings().GetSetting("x") // the transaction is open
		if err != nil && !errors.Is(err, stowage.ErrNotFound) {
			return err
		}
		// CPU-bound, no sleep: PostgreSQL notices a closed connection only
		// when it writes to it.
		return postgres.Exec(tx, "SELECT count(*) FROM generate_series(1, 10000000000) /* "+marker+" */")
	})
	if err == nil || time.Since(t0) > 10*time.Second {
		t.Fatalf("a query past its context: %v after %v, want an error within the cancel's few seconds", err, time.Since(t0))
	}
	// The server's side: no backend runs it any more.
	conn, err := pgx.Connect(ctx, pgtest.Schema(t, "stowage_test"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	deadline := time.Now().Add(5 * time.Second)
	for {
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%'||$1||'%' AND pid <> pg_backend_pid()", marker).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the query still runs on the server %v after its context ended", time.Since(t0))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestLoadReplaceKeepsSums: `stowage migrate-metadata --force` loads a
// registry over one that holds metadata (Load with replace). The sums the
// triggers keep (held bytes, live blobs, usage) must then be the loaded
// registry's: TRUNCATE fires no triggers, so they kept the old rows'
// share and the copy added its own on top (found by an outside review).
// The same holds for who uses each digest (unique bytes): both registries
// use one base layer, which the replaced registry's rows made someone
// else's.
func TestLoadReplaceKeepsSums(t *testing.T) {
	src := open(t, pgtest.Schema(t, "stowage_test"))
	dst := open(t, pgtest.Schema(t, "stowage_test"))
	now := time.Unix(1, 0)
	base := stowage.Digest(digestOf("base layer"))
	fill := func(db *postgres.DB, repo string, n int) {
		t.Helper()
		if err := db.Update(ctx, func(tx stowage.Tx) error {
			if err := tx.Repositories().CreateRepository(repo, now); err != nil {
				return err
			}
			if err := tx.Blobs().PutBlob(stowage.BlobRecord{Digest: base, Size: 1000, Created: now, State: stowage.BlobLive, LastUsed: now, UnreferencedSince: now}); err != nil {
				return err
			}
			for i := range n {
				c, m := stowage.Digest(digestOf(fmt.Sprintf("%s config %d", repo, i))), stowage.Digest(digestOf(fmt.Sprintf("%s manifest %d", repo, i)))
				for _, b := range []stowage.BlobRecord{{Digest: c, Size: int64(10 + i)}, {Digest: m, Size: 100}} {
					b.Created, b.State, b.LastUsed, b.UnreferencedSince = now, stowage.BlobLive, now, now
					if err := tx.Blobs().PutBlob(b); err != nil {
						return err
					}
				}
				rec := stowage.ManifestRecord{Repo: repo, Digest: m, MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 100, Created: now}
				if err := tx.Manifests().PutManifest(rec, []stowage.ManifestRef{{Digest: c, Kind: stowage.RefBlob}, {Digest: base, Kind: stowage.RefBlob}}); err != nil {
					return err
				}
				if err := tx.Tags().PutTag(repo, fmt.Sprintf("v%d", i), m, now); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	fill(src, "loaded", 5)
	fill(dst, "old", 7) // what --force replaces
	sums := func(db *postgres.DB) (u stowage.UsageTotals, held int64, repos []stowage.RepositoryUsage) {
		t.Helper()
		if err := db.View(ctx, func(tx stowage.Tx) (err error) {
			if u, err = tx.Usage().Totals(); err != nil {
				return err
			}
			if repos, err = tx.Usage().RepositoryUsage("", 0); err != nil {
				return err
			}
			held, err = tx.Usage().HeldBytes()
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return u, held, repos
	}
	for round := range 2 {
		err := dst.Load(ctx, true, func(l *postgres.Loader) error {
			for _, tb := range tables.All {
				var rows [][]any
				if err := src.ReadTable(ctx, tb, func(row []any) error { rows = append(rows, row); return nil }); err != nil {
					return err
				}
				i := 0
				if _, err := l.Copy(tb, func() ([]any, bool, error) {
					if i == len(rows) {
						return nil, false, nil
					}
					i++
					return rows[i-1], true, nil
				}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		wantU, wantHeld, wantRepos := sums(src)
		if gotU, gotHeld, gotRepos := sums(dst); gotU != wantU || gotHeld != wantHeld || !reflect.DeepEqual(gotRepos, wantRepos) {
			t.Errorf("load %d with replace: totals %+v, held %d, repositories %+v; want the source's %+v, %d, %+v",
				round+1, gotU, gotHeld, gotRepos, wantU, wantHeld, wantRepos)
		}
	}
}
