package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/feed"
	"github.com/stowage/stowage/meta/postgres"
	"github.com/stowage/stowage/meta/postgres/pgtest"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/meta/tables"
	"github.com/stowage/stowage/pullthrough"
	"github.com/stowage/stowage/replication"
	"github.com/stowage/stowage/usage/history"
	"github.com/stowage/stowage/webhook"
)

// pgSchema returns a connection string to a fresh schema of the test
// PostgreSQL server (STOWAGE_TEST_POSTGRES, set by scripts/postgres-test.sh),
// dropped at the end, or skips the test.
func pgSchema(t *testing.T) string {
	t.Helper()
	return pgtest.Schema(t, "stowage_cmd_test")
}

// fillSQLite writes rows into every table of a registry's SQLite database.
func fillSQLite(t *testing.T, path string) {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Unix(1_700_000_000, 42)
	dg := func(i int) stowage.Digest { return stowage.Digest(fmt.Sprintf("sha256:%064x", i)) }
	err = db.Update(ctx, func(tx stowage.Tx) error {
		for i := 0; i < 3000; i++ { // more than one progress step
			repo := fmt.Sprintf("team/app%d", i%7)
			if err := tx.Repositories().CreateRepository(repo, now); err != nil {
				return err
			}
			if err := tx.Blobs().PutBlob(stowage.BlobRecord{Digest: dg(i), Size: int64(i), Created: now, State: stowage.BlobLive, LastUsed: now, UnreferencedSince: now}); err != nil {
				return err
			}
			if err := tx.Blobs().LinkBlob(repo, dg(i), now); err != nil {
				return err
			}
			if i%10 == 0 {
				m := stowage.ManifestRecord{Repo: repo, Digest: dg(100000 + i), MediaType: "application/vnd.oci.image.manifest.v1+json",
					Size: 123, Created: now}
				if err := tx.Manifests().PutManifest(m, []stowage.ManifestRef{{Digest: dg(i), Kind: stowage.RefBlob}}); err != nil {
					return err
				}
				if err := tx.Tags().PutTag(repo, fmt.Sprintf("v%d", i), m.Digest, now); err != nil {
					return err
				}
			}
		}
		if err := tx.Repositories().SetRepositoryLocks("team/app3", stowage.LockDelete); err != nil {
			return err
		}
		if err := tx.Uploads().PutUpload(stowage.UploadRecord{ID: "up1", Repo: "team/app1", Size: 5, HashState: []byte{1, 2, 3}, Started: now, Updated: now}); err != nil {
			return err
		}
		if err := tx.Uploads().PutUpload(stowage.UploadRecord{ID: "up2", Repo: "team/app1", Started: now, Updated: now}); err != nil {
			return err
		}
		if err := tx.Settings().PutSetting("quota.limits", `{"team/app1":1000}`, now); err != nil {
			return err
		}
		if err := tx.Settings().PutSetting("encryption", `{"encrypted":true,"key_id":"service-0123abcd"}`, now); err != nil {
			return err
		}
		for i := 0; i < 3; i++ {
			if _, err := tx.Recycle().PutRecycled(stowage.RecycledManifest{Manifest: stowage.ManifestRecord{Repo: "team/app2", Digest: dg(200000 + i), MediaType: "m", Created: now},
				Refs: []stowage.ManifestRef{{Digest: dg(i), Kind: stowage.RefBlob}}, Tags: []string{"old"}, Deleted: now, Expires: now.Add(time.Hour)}); err != nil {
				return err
			}
		}
		for _, repo := range []string{"team/app1", "team/app2"} { // the change feed
			if err := tx.Events().Append(stowage.Event{Time: now, Kind: stowage.EventPush, Actor: "ci", Repo: repo, Tag: "v1"}); err != nil {
				return err
			}
		}
		return tx.DataKeys().PutDataKey(stowage.DataKey{ID: "dk1", Object: "blobs/sha256/00/x", Wrapped: stowage.KeyVersion{ID: "service-0123abcd", Version: 1}, Key: []byte("wrapped"), Created: now})
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, present := range []bool{true, false} { // a mirror's repair queue
		if err := db.AddRepair(ctx, "storage", fmt.Sprint("blobs/sha256/00/r", i), present, now); err != nil {
			t.Fatal(err)
		}
	}
	// Webhooks (one with sealed secrets, one without), a delivery, a cursor.
	for _, r := range []webhook.Record{
		{Name: "ci", ID: "i1", URI: "https://ci.example/hook", Actions: []webhook.Action{webhook.ActionPush}, Scope: "team/*:*",
			HeaderNames: []string{"Authorization"}, HasSecret: true, Sealed: []byte{1, 2, 3}, DataKey: "dk1", Enabled: true, Created: now, Updated: now},
		{Name: "plain", ID: "i2", URI: "http://127.0.0.1:1/", Actions: []webhook.Action{webhook.ActionPush, webhook.ActionDelete}, Created: now, Updated: now},
	} {
		if err := db.Webhooks().CreateWebhook(ctx, r, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Webhooks().AddDelivery(ctx, webhook.Delivery{Webhook: "ci", Time: now, EventID: "e1", Seq: 1, Action: webhook.ActionPush,
		Repo: "team/app1", Tag: "v1", Attempt: 1, Status: 204, Duration: time.Millisecond}, 100); err != nil {
		t.Fatal(err)
	}
	if err := db.FeedCursors().SaveCursor(ctx, "webhook:ci", 1, now); err != nil {
		t.Fatal(err)
	}
	// A pull-through cache rule (its password sealed), a day of usage
	// history, and replication clocks (a tag and a tombstone).
	if err := db.PutCacheRule(ctx, pullthrough.Record{Rule: pullthrough.Rule{Name: "hub", Source: "hub/*", Upstream: "registry.example/library/*",
		Username: "me", HasPassword: true, Created: now}, Secret: []byte{4, 5, 6}}); err != nil {
		t.Fatal(err)
	}
	if err := db.UsageHistory().PutUsageDay(ctx, history.Day{Day: "2026-12-01", PhysicalBytes: 10, LogicalBytes: 20, Blobs: 1, Repositories: 1,
		Manifests: 2, Tags: 3, Recorded: now}); err != nil {
		t.Fatal(err)
	}
	if err := db.Update(ctx, func(tx stowage.Tx) error {
		cs := tx.(replication.ClockTx).ReplicationClocks()
		if err := cs.PutClock(replication.Clock{Repo: "team/app1", Name: "v1", Digest: dg(1), HLC: replication.HLC{Wall: 1796303223017, Logical: 2, Region: "east"}}); err != nil {
			return err
		}
		return cs.PutClock(replication.Clock{Repo: "team/app1", Name: replication.ManifestName(dg(9)), HLC: replication.HLC{Wall: 1796303223018, Region: "west"}})
	}); err != nil {
		t.Fatal(err)
	}
}

func TestMigrateMetadataToPostgres(t *testing.T) {
	target := pgSchema(t)
	ctx := context.Background()
	dir := t.TempDir()
	src := filepath.Join(dir, "stowage.db")
	fillSQLite(t, src)

	var out, errOut bytes.Buffer
	code := runMigrateMetadata(ctx, []string{"--data-dir", dir, "--to", target}, &out, &errOut)
	if code != 0 {
		t.Fatalf("migrate-metadata exit %d\n%s\n%s", code, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "verified: every table matches") {
		t.Errorf("output does not report the verification:\n%s", out.String())
	}
	// Not a terminal: one summary line instead of a bar.
	if !strings.Contains(errOut.String(), "progress: ") || !strings.Contains(errOut.String(), "mirror_repairs") {
		t.Errorf("no progress summary on stderr: %q", errOut.String())
	}

	// Every table, row for row.
	s, err := sqlite.Open(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p, err := postgres.Open(ctx, target, postgres.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, tab := range tables.All {
		var a, b [][]any
		s.ReadTable(ctx, tab, func(r []any) error { a = append(a, normalize(r)); return nil })
		p.ReadTable(ctx, tab, func(r []any) error { b = append(b, normalize(r)); return nil })
		if len(a) == 0 {
			t.Errorf("test data has no rows in %s", tab.Name)
		}
		if !reflect.DeepEqual(a, b) {
			t.Errorf("table %s differs after the copy (%d rows in SQLite, %d in PostgreSQL)", tab.Name, len(a), len(b))
		}
	}
	// The change feed goes on above the copied events: a new write appends
	// (its id past the copied ones) and is numbered after them.
	if err := p.Update(ctx, func(tx stowage.Tx) error {
		return tx.Events().Append(stowage.Event{Kind: stowage.EventUntag, Repo: "team/app1", Tag: "v1"})
	}); err != nil {
		t.Errorf("append an event after migrate-metadata: %v", err)
	}
	pf := p.Feed()
	if err := pf.Sequence(ctx); err != nil {
		t.Fatal(err)
	}
	if evs, _, err := pf.Read(ctx, feed.Query{After: 2}); err != nil || len(evs) != 1 || evs[0].Seq != 3 || evs[0].Kind != stowage.EventUntag {
		t.Errorf("the feed after migrate-metadata: %+v, %v; want the new event as seq 3", evs, err)
	}
	// The derived totals (held_bytes, kept by triggers) are rebuilt by the load.
	var heldS, heldP int64
	s.View(ctx, func(tx stowage.Tx) (err error) { heldS, err = tx.Usage().HeldBytes(); return err })
	p.View(ctx, func(tx stowage.Tx) (err error) { heldP, err = tx.Usage().HeldBytes(); return err })
	if heldS == 0 || heldS != heldP {
		t.Errorf("held bytes: %d in SQLite, %d in PostgreSQL after the copy", heldS, heldP)
	}
	// The registry works on the copy: a new recycle bin entry gets a new ID.
	err = p.Update(ctx, func(tx stowage.Tx) error {
		id, err := tx.Recycle().PutRecycled(stowage.RecycledManifest{Manifest: stowage.ManifestRecord{Repo: "r", Digest: stowage.Digest("sha256:" + strings.Repeat("ab", 32)), MediaType: "m"}})
		if err == nil && id <= 3 {
			t.Errorf("new recycle bin entry got ID %d, which the copy already uses", id)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	// A second run refuses a target that holds data; --force replaces it.
	out.Reset()
	errOut.Reset()
	if code := runMigrateMetadata(ctx, []string{"--data-dir", dir, "--to", target}, &out, &errOut); code == 0 ||
		!strings.Contains(errOut.String(), "already holds registry metadata") || !strings.Contains(errOut.String(), "--force") {
		t.Errorf("second run into a full database: exit %d, %s", code, errOut.String())
	}
	out.Reset()
	if code := runMigrateMetadata(ctx, []string{"--data-dir", dir, "--to", target, "--force", "--output", "json"}, &out, &errOut); code != 0 {
		t.Errorf("--force: exit %d: %s", code, errOut.String())
	}
	// --output json (TestEveryCommandPrintsJSON leaves this command here):
	// one document, the tables with their checksums, no password.
	var rep migrationReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || !rep.Verified || rep.Rows == 0 || len(rep.Tables) != len(tables.All) ||
		rep.Tables[0].Checksum == "" || rep.KeyFile == "" || strings.Contains(out.String(), "password=") {
		t.Errorf("migrate-metadata --output json: %v\n%s", err, out.String())
	}

	// A running registry (the data directory locked) is refused.
	lock, err := lockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	errOut.Reset()
	code = runMigrateMetadata(ctx, []string{"--data-dir", dir, "--to", target, "--force"}, &out, &errOut)
	lock.Close()
	if code == 0 || !strings.Contains(errOut.String(), "stop the registry first") {
		t.Errorf("with the data directory locked: exit %d, %s", code, errOut.String())
	}
}

func normalize(r []any) []any {
	out := make([]any, len(r))
	for i, v := range r {
		if b, ok := v.([]byte); ok {
			v = string(b)
		}
		out[i] = v
	}
	return out
}

func TestMigrateCommand(t *testing.T) {
	ctx := context.Background()
	t.Run("sqlite", func(t *testing.T) {
		dir := t.TempDir()
		var out, errOut bytes.Buffer
		// No database there: refused, naming the path and the flags, and
		// nothing created (serve creates databases).
		for _, args := range [][]string{{"--data-dir", filepath.Join(dir, "typo-dir")}, {"--data-dir", dir}, {"--database", filepath.Join(dir, "x.db")}} {
			out.Reset()
			errOut.Reset()
			if code := runMigrate(ctx, args, &out, &errOut); code != 1 || out.Len() != 0 ||
				!strings.Contains(errOut.String(), "no database at ") || !strings.Contains(errOut.String(), "--data-dir DIR") || !strings.Contains(errOut.String(), "--config FILE") {
				t.Errorf("migrate %q: exit %d\n%s%s; want exit 1 naming the path, --data-dir and --config", args, code, out.String(), errOut.String())
			}
		}
		if left, _ := os.ReadDir(dir); len(left) != 0 {
			t.Errorf("a refused migrate left %v in %s", left, dir)
		}
		// An existing (here empty, schema 0) database is migrated.
		if err := os.WriteFile(filepath.Join(dir, "stowage.db"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		errOut.Reset()
		if code := runMigrate(ctx, []string{"--data-dir", dir}, &out, &errOut); code != 0 {
			t.Fatalf("exit %d: %s", code, errOut.String())
		}
		var known int
		fmt.Sscanf(out.String()[strings.Index(out.String(), "this binary: ")+len("this binary: "):], "%d", &known)
		if !strings.Contains(out.String(), "schema version before: 0") || known < 9 || !strings.Contains(out.String(), fmt.Sprintf("schema version after:  %d", known)) {
			t.Errorf("output:\n%s", out.String())
		}
		out.Reset()
		runMigrate(ctx, []string{"--data-dir", dir}, &out, &errOut)
		if !strings.Contains(out.String(), "(0 migrations applied)") {
			t.Errorf("second run:\n%s", out.String())
		}
	})
	t.Run("postgres", func(t *testing.T) {
		target := pgSchema(t)
		var out, errOut bytes.Buffer
		if code := runMigrate(ctx, []string{"--data-dir", t.TempDir(), "--database", target}, &out, &errOut); code != 0 {
			t.Fatalf("exit %d: %s", code, errOut.String())
		}
		pg, _ := filepath.Glob("../../meta/postgres/migrations/*.sql")
		if n := len(pg); n < 2 || !strings.Contains(out.String(), fmt.Sprintf("schema version before: 0 (this binary: %d)", n)) ||
			!strings.Contains(out.String(), fmt.Sprintf("schema version after:  %d (%d migrations applied)", n, n)) {
			t.Errorf("output:\n%s", out.String())
		}
	})
}
