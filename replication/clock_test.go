package replication_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/feed"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/replication"
	"github.com/stowage/stowage/storage/mem"
)

func TestHLC(t *testing.T) {
	at := func(ms int64) time.Time { return time.UnixMilli(ms) }
	cases := []struct {
		name string
		last HLC
		now  int64
		want HLC
	}{
		{"clock ahead of last", HLC{Wall: 100, Logical: 7, Region: "west"}, 200, HLC{Wall: 200, Region: "east"}},
		{"same millisecond", HLC{Wall: 100, Logical: 7, Region: "west"}, 100, HLC{Wall: 100, Logical: 8, Region: "east"}},
		// east's clock is 10 minutes behind west's: a change made after
		// seeing west's is still later.
		{"clock behind (skew)", HLC{Wall: 600_100, Region: "west"}, 100, HLC{Wall: 600_100, Logical: 1, Region: "east"}},
		{"first change", HLC{}, 5, HLC{Wall: 5, Region: "east"}},
	}
	for _, c := range cases {
		got := replication.Tick(c.last, at(c.now), "east")
		if got != c.want || !got.After(c.last) {
			t.Errorf("%s: Tick(%v, %d) = %v, want %v (after the last)", c.name, c.last, c.now, got, c.want)
		}
		back, err := replication.ParseHLC(got.String())
		if err != nil || back != got {
			t.Errorf("%s: ParseHLC(%q) = %v, %v", c.name, got.String(), back, err)
		}
	}
	order := []HLC{{}, {Wall: 1, Region: "b"}, {Wall: 1, Logical: 1, Region: "a"}, {Wall: 1, Logical: 1, Region: "b"}, {Wall: 2, Region: "a"}}
	for i := range order {
		for j := range order {
			if got, want := order[i].Compare(order[j]), sign(i-j); got != want {
				t.Errorf("%v.Compare(%v) = %d, want %d", order[i], order[j], got, want)
			}
		}
	}
	for _, bad := range []string{"", "1.2", "x.1.east", "1.x.east", "1.2.", "-1.0.east"} {
		if _, err := replication.ParseHLC(bad); err == nil {
			t.Errorf("ParseHLC(%q) accepted", bad)
		}
	}
}

type HLC = replication.HLC

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

// region is one region's engine over a real SQLite file, with its clock
// hook, and a clock that can be set (skew).
type region struct {
	name string
	reg  *stowage.Registry
	db   stowage.DB
	f    *feed.Feed
	skew time.Duration
	app  *replication.Applier
}

func newRegion(t *testing.T, name string, skew time.Duration) *region {
	t.Helper()
	db := openDB(t)
	rg := &region{name: name, db: db, skew: skew}
	rg.reg = stowage.NewRegistry(db, mem.New(), stowage.Options{Changes: replication.Clocks{Region: name},
		Now: func() time.Time { return time.Now().Add(rg.skew) }})
	fst, _ := feed.Of(db)
	rg.f = feed.New(fst, feed.Options{})
	rg.app = &replication.Applier{Reg: rg.reg, Region: name}
	return rg
}

var ctx = context.Background()

// openDB opens a region's metadata database: a SQLite file, or a
// PostgreSQL schema of its own under TestPostgres.
var openDB = func(t *testing.T) stowage.DB {
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "stowage.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// image pushes a config and a manifest into repo (by tag, or by digest
// when tag is ""), returning the manifest's digest and bytes.
func (rg *region) image(t *testing.T, repo, tag, seed string) (stowage.Digest, []byte) {
	t.Helper()
	cfg := []byte(`{"seed":"` + seed + `"}`)
	cd := digest.FromBytes(cfg)
	if _, err := rg.reg.PutBlob(ctx, repo, cd, bytes.NewReader(cfg), int64(len(cfg))); err != nil {
		t.Fatal(err)
	}
	m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[]}`, cd, len(cfg)))
	ref := stowage.Reference{Tag: tag}
	if tag == "" {
		ref = stowage.Reference{Digest: digest.FromBytes(m)}
	}
	res, err := rg.reg.PutManifest(ctx, repo, ref, "application/vnd.oci.image.manifest.v1+json", m, nil)
	if err != nil {
		t.Fatal(err)
	}
	return res.Digest, m
}

// changes returns the replicable changes made here after seq, as the
// replicator ships them (without blobs: the test copies those by hand).
func (rg *region) changes(t *testing.T, after int64) []replication.Change {
	t.Helper()
	p, err := rg.f.Read(ctx, feed.Query{After: after, Resume: true, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var out []replication.Change
	for _, e := range p.Events {
		if e.Origin != "" {
			continue
		}
		ch, ok := replication.ChangeOf(e, rg.name)
		if !ok {
			continue
		}
		if ch.Kind == stowage.EventPush || ch.Kind == stowage.EventRestore { // as the replicator ships them
			_, body, err := rg.reg.GetManifest(ctx, e.Repo, stowage.Reference{Digest: e.Digest})
			if err != nil {
				t.Fatal(err)
			}
			ch.Manifest = body
		}
		out = append(out, ch)
	}
	return out
}

func (rg *region) newest(t *testing.T) int64 {
	fst, _ := feed.Of(rg.db)
	_, n, err := fst.Bounds(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// copyBlobs gives to the blobs of manifest m from src, as the replicator does first.
func copyBlobs(t *testing.T, src, dst *region, repo string, m []byte) {
	var man struct {
		Config struct{ Digest stowage.Digest } `json:"config"`
	}
	json.Unmarshal(m, &man)
	rc, b, err := src.reg.OpenBlob(ctx, repo, man.Config.Digest, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := dst.reg.PutBlob(ctx, repo, man.Config.Digest, rc, b.Size); err != nil {
		t.Fatal(err)
	}
}

func (rg *region) apply(t *testing.T, src *region, chs []replication.Change) []replication.Result {
	t.Helper()
	var out []replication.Result
	for _, ch := range chs {
		if ch.Kind == stowage.EventPush {
			copyBlobs(t, src, rg, ch.Repo, ch.Manifest)
		}
		r, err := rg.app.Apply(ctx, ch)
		if err != nil {
			t.Fatalf("%s applying %+v: %v", rg.name, ch, err)
		}
		out = append(out, r)
	}
	return out
}

func (rg *region) tag(t *testing.T, repo, tag string) stowage.Digest {
	t.Helper()
	m, err := rg.reg.ResolveManifest(ctx, repo, stowage.Reference{Tag: tag})
	if stowage.ErrorCodeOf(err) == stowage.CodeManifestUnknown || stowage.ErrorCodeOf(err) == stowage.CodeNameUnknown {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return m.Digest
}

// TestLastWriterWins: two regions change the same tag concurrently (each
// before seeing the other's change), with skewed clocks; after exchanging
// their changes (in either order, each twice) both hold the same outcome:
// that of the later clock reading.
func TestLastWriterWins(t *testing.T) {
	cases := []struct {
		name       string
		eastSkew   time.Duration
		westSkew   time.Duration
		eastFirst  bool   // east changes first (in real time)
		eastDelete bool   // east untags instead of moving
		want       string // "east" or "west": whose outcome wins
	}{
		{"no skew, west later", 0, 0, true, false, "west"},
		{"no skew, east later", 0, 0, false, false, "east"},
		{"east clock 10m ahead wins though earlier", 10 * time.Minute, 0, true, false, "east"},
		{"west clock 10m behind loses though later", 0, -10 * time.Minute, true, false, "east"},
		{"delete vs later push", 0, 0, true, true, "west"},
		{"delete later than push", 0, 0, false, true, "east"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			east, west := newRegion(t, "east", c.eastSkew), newRegion(t, "west", c.westSkew)
			// Both start with app:v1 -> base (made in east, replicated).
			base, _ := east.image(t, "app", "v1", "base")
			west.apply(t, east, east.changes(t, 0))
			if got := west.tag(t, "app", "v1"); got != base {
				t.Fatalf("west v1 = %s, want %s", got, base)
			}
			e0, w0 := east.newest(t), west.newest(t)
			var eastWant, westWant stowage.Digest
			do := func(rg *region) {
				if rg == east && c.eastDelete {
					if _, err := east.reg.Untag(ctx, "app", "v1", false); err != nil {
						t.Fatal(err)
					}
					eastWant = ""
					return
				}
				d, _ := rg.image(t, "app", "v1", rg.name)
				if rg == east {
					eastWant = d
				} else {
					westWant = d
				}
			}
			if c.eastFirst {
				do(east)
				time.Sleep(3 * time.Millisecond)
				do(west)
			} else {
				do(west)
				time.Sleep(3 * time.Millisecond)
				do(east)
			}
			fromEast, fromWest := east.changes(t, e0), west.changes(t, w0)
			for i := 0; i < 2; i++ { // twice: the second time changes nothing
				rs := west.apply(t, east, fromEast)
				rs2 := east.apply(t, west, fromWest)
				if i == 1 {
					for _, r := range append(rs, rs2...) {
						if r.Applied {
							t.Errorf("applying again changed something: %+v", r)
						}
					}
				}
			}
			want := westWant
			if c.want == "east" {
				want = eastWant
			}
			for _, rg := range []*region{east, west} {
				if got := rg.tag(t, "app", "v1"); got != want {
					t.Errorf("%s: app:v1 = %q, want %q (%s's)", rg.name, got, want, c.want)
				}
			}
		})
	}
}

// TestDeleteNotResurrected: a manifest deleted in east after west pushed it
// stays deleted in both, and an old push of it arriving again later (a
// retry, another region's stale copy) does not bring it back; a read-through
// copy of it is refused too.
func TestDeleteNotResurrected(t *testing.T) {
	east, west := newRegion(t, "east", 0), newRegion(t, "west", 0)
	d, m := west.image(t, "app", "v1", "x")
	push := west.changes(t, 0)
	east.apply(t, west, push)
	e0 := east.newest(t)
	if _, err := east.reg.DeleteImage(ctx, "app", stowage.Reference{Digest: d}, false); err != nil {
		t.Fatal(err)
	}
	west.apply(t, east, east.changes(t, e0))
	for i := 0; i < 2; i++ {
		east.apply(t, west, push) // the old push again
	}
	for _, rg := range []*region{east, west} {
		if got := rg.tag(t, "app", "v1"); got != "" {
			t.Errorf("%s: app:v1 = %s after the delete, want gone", rg.name, got)
		}
		if _, err := rg.reg.ResolveManifest(ctx, "app", stowage.Reference{Digest: d}); stowage.ErrorCodeOf(err) != stowage.CodeManifestUnknown {
			t.Errorf("%s: manifest %s: %v, want MANIFEST_UNKNOWN", rg.name, d, err)
		}
	}
	// A read-through copy is refused: the delete is remembered.
	_, err := east.reg.PutManifest(replication.WithFetched(ctx, "west"), "app", stowage.Reference{Digest: d}, "application/vnd.oci.image.manifest.v1+json", m, nil)
	if err == nil {
		t.Errorf("a read-through copy of a deleted manifest was stored")
	}
	// A push made after the delete (later clock) does bring it back.
	west.image(t, "app", "v1", "x")
	w1 := west.newest(t)
	_ = w1
	east.apply(t, west, west.changes(t, west.newest(t)-1))
	if got := east.tag(t, "app", "v1"); got != d {
		t.Errorf("east: app:v1 = %q after a later push, want %s", got, d)
	}
}

// TestCausalUnderSkew: east's clock is 10 minutes behind west's. West moves
// a tag; east receives it, then moves the tag itself. East's change came
// after west's (east had seen it), so it must win in both regions, though
// east's wall clock says it is 10 minutes older.
func TestCausalUnderSkew(t *testing.T) {
	east, west := newRegion(t, "east", -10*time.Minute), newRegion(t, "west", 0)
	west.image(t, "app", "v1", "w")
	east.apply(t, west, west.changes(t, 0))
	e0 := east.newest(t)
	d, _ := east.image(t, "app", "v1", "e")
	west.apply(t, east, east.changes(t, e0))
	for _, rg := range []*region{east, west} {
		if got := rg.tag(t, "app", "v1"); got != d {
			t.Errorf("%s: app:v1 = %s, want east's later move %s", rg.name, got, d)
		}
	}
}

// TestRemovalBeforeOlderPush: north hears of east's untag (made after east
// received west's push) before it hears of west's push itself (the two come
// over different links). The push, older than the untag, must not bring the
// tag back in north.
func TestRemovalBeforeOlderPush(t *testing.T) {
	east, west, north := newRegion(t, "east", 0), newRegion(t, "west", 0), newRegion(t, "north", 0)
	d, _ := west.image(t, "app", "v1", "w")
	push := west.changes(t, 0)
	east.apply(t, west, push)
	e0 := east.newest(t)
	if _, err := east.reg.Untag(ctx, "app", "v1", false); err != nil {
		t.Fatal(err)
	}
	untag := east.changes(t, e0)
	if rs := north.apply(t, east, untag); !rs[0].Applied {
		t.Errorf("untag of a tag north never had: %+v, want the removal recorded", rs[0])
	}
	north.apply(t, west, push)
	west.apply(t, east, untag)
	for _, rg := range []*region{east, west, north} {
		if got := rg.tag(t, "app", "v1"); got != "" {
			t.Errorf("%s: app:v1 = %s, want removed (the untag is later than the push of %s)", rg.name, got, d)
		}
	}
}

// TestLocksNeverRevert: east delete-locks a tag while west, before hearing
// of it, write-locks the same tag. Each change replicates; whatever the
// order, and applied twice, both regions end with both locks: a
// concurrent change of another attribute never reverts a lock (ACR #592).
// Then west unlocks write; east's older write change (arriving again) does
// not undo that.
func TestLocksNeverRevert(t *testing.T) {
	east, west := newRegion(t, "east", 0), newRegion(t, "west", 0)
	east.image(t, "app", "v1", "x")
	west.apply(t, east, east.changes(t, 0))
	e0, w0 := east.newest(t), west.newest(t)
	if _, err := east.reg.SetLocks(ctx, "app", stowage.Reference{Tag: "v1"}, stowage.LockDelete, 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Millisecond)
	if _, err := west.reg.SetLocks(ctx, "app", stowage.Reference{Tag: "v1"}, stowage.LockWrite, 0); err != nil {
		t.Fatal(err)
	}
	fromEast, fromWest := east.changes(t, e0), west.changes(t, w0)
	if len(fromEast) != 1 || len(fromWest) != 1 || fromWest[0].Locks == nil {
		t.Fatalf("lock changes: %+v / %+v", fromEast, fromWest)
	}
	for i := 0; i < 2; i++ {
		west.apply(t, east, fromEast)
		east.apply(t, west, fromWest)
	}
	check := func(want stowage.Locks) {
		t.Helper()
		for _, rg := range []*region{east, west} {
			l, err := rg.reg.Locks(ctx, "app", stowage.Reference{Tag: "v1"})
			if err != nil || l != want {
				t.Errorf("%s: app:v1 locks %v, %v; want %v", rg.name, l, err, want)
			}
		}
	}
	check(stowage.LockWrite | stowage.LockDelete)
	w1 := west.newest(t)
	if _, err := west.reg.SetLocks(ctx, "app", stowage.Reference{Tag: "v1"}, 0, stowage.LockWrite); err != nil {
		t.Fatal(err)
	}
	east.apply(t, west, west.changes(t, w1))
	east.apply(t, west, fromWest) // the older write lock again
	check(stowage.LockDelete)
	// A repository lock replicates too.
	e1 := east.newest(t)
	if _, err := east.reg.SetLocks(ctx, "app", stowage.Reference{}, stowage.LockList, 0); err != nil {
		t.Fatal(err)
	}
	west.apply(t, east, east.changes(t, e1))
	if l, err := west.reg.Locks(ctx, "app", stowage.Reference{}); err != nil || l != stowage.LockList {
		t.Errorf("west: repository app locks %v, %v; want list locked", l, err)
	}
}

// TestRepositoryDelete: east deletes a repository; west, which had its
// manifests, loses them, but keeps what it pushed there later (a newer
// change); an old push of a deleted manifest, or a read-through copy of it,
// does not come back.
func TestRepositoryDelete(t *testing.T) {
	east, west, north := newRegion(t, "east", 0), newRegion(t, "west", 0), newRegion(t, "north", 0)
	d, m := east.image(t, "app", "v1", "old")
	push := east.changes(t, 0)
	west.apply(t, east, push)
	north.apply(t, east, push) // north keeps a copy (it hears of the delete later)
	e0 := east.newest(t)
	if _, err := east.reg.DeleteRepository(ctx, "app", false); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Millisecond)
	w0 := west.newest(t)
	newer, _ := west.image(t, "app", "v2", "new") // after the delete, before hearing of it
	for i := 0; i < 2; i++ {
		west.apply(t, east, east.changes(t, e0))
		east.apply(t, west, west.changes(t, w0))
		west.apply(t, north, push) // the old push again (blobs from north)
	}
	for _, rg := range []*region{east, west} {
		if got := rg.tag(t, "app", "v1"); got != "" {
			t.Errorf("%s: app:v1 = %s after the repository delete", rg.name, got)
		}
		if got := rg.tag(t, "app", "v2"); got != newer {
			t.Errorf("%s: app:v2 = %q, want the later push %s", rg.name, got, newer)
		}
	}
	if _, err := west.reg.PutManifest(replication.WithFetched(ctx, "east"), "app", stowage.Reference{Digest: d}, "application/vnd.oci.image.manifest.v1+json", m, nil); err == nil {
		t.Errorf("a read-through copy of a manifest of the deleted repository was stored")
	}
}

// TestRepositoryDeleteSparesALaterPush: the applier of a repository delete
// lists what is older, then deletes; a push made here in between (later
// than the delete) must survive. The check is in the deleting
// transaction: deleting the whole repository with the delete's clock is
// refused while something later lives in it.
func TestRepositoryDeleteSparesALaterPush(t *testing.T) {
	east, west := newRegion(t, "east", 0), newRegion(t, "west", 0)
	east.image(t, "app", "v1", "old")
	west.apply(t, east, east.changes(t, 0))
	e0 := east.newest(t)
	if _, err := east.reg.DeleteRepository(ctx, "app", false); err != nil {
		t.Fatal(err)
	}
	del := east.changes(t, e0)
	if len(del) != 1 {
		t.Fatalf("east's repository delete: %d changes, want 1", len(del))
	}
	time.Sleep(3 * time.Millisecond)
	later, _ := west.image(t, "app", "v2", "new") // in the applier's window
	_, err := west.reg.DeleteRepository(replication.WithApplied(ctx, "east", del[0].HLC), "app", false)
	if !errors.Is(err, replication.ErrStale) {
		t.Errorf("deleting the repository with the delete's clock over a later push: %v, want ErrStale", err)
	}
	if got := west.tag(t, "app", "v2"); got != later {
		t.Errorf("west: app:v2 = %q after the repository delete was applied, want the later push %s", got, later)
	}
}

// TestRetentionOfReadThroughCopy: west holds a read-through copy of east's
// image (its push has not arrived); west's retention deletes the untagged
// copy. That is a local clean-up: it is not shipped (east keeps its
// image), and the push, when it arrives, brings the image back to west. A
// user's delete of such a copy is shipped (it deletes the image).
func TestRetentionOfReadThroughCopy(t *testing.T) {
	east, west := newRegion(t, "east", 0), newRegion(t, "west", 0)
	d, m := east.image(t, "app", "v1", "x")
	copyBlobs(t, east, west, "app", m)
	if _, err := west.reg.PutManifest(replication.WithFetched(ctx, "east"), "app", stowage.Reference{Digest: d}, "application/vnd.oci.image.manifest.v1+json", m, nil); err != nil {
		t.Fatal(err)
	}
	w0 := west.newest(t)
	if _, err := west.reg.DeleteImage(stowage.WithReason(ctx, stowage.ReasonRetention), "app", stowage.Reference{Digest: d}, false); err != nil {
		t.Fatal(err)
	}
	if chs := west.changes(t, w0); len(chs) != 0 {
		t.Errorf("west ships its retention of a read-through copy: %+v", chs)
	}
	west.apply(t, east, east.changes(t, 0))
	if got := west.tag(t, "app", "v1"); got != d {
		t.Errorf("west: app:v1 = %q after the push arrived, want %s", got, d)
	}
	// A user's delete of a copy is a delete of the image.
	d2, m2 := east.image(t, "app", "v2", "y")
	copyBlobs(t, east, west, "app", m2)
	if _, err := west.reg.PutManifest(replication.WithFetched(ctx, "east"), "app", stowage.Reference{Digest: d2}, "application/vnd.oci.image.manifest.v1+json", m2, nil); err != nil {
		t.Fatal(err)
	}
	w1 := west.newest(t)
	if _, err := west.reg.DeleteImage(ctx, "app", stowage.Reference{Digest: d2}, false); err != nil {
		t.Fatal(err)
	}
	if chs := west.changes(t, w1); len(chs) != 1 || chs[0].Kind != stowage.EventDelete {
		t.Errorf("a user's delete of a read-through copy: %+v, want one delete shipped", chs)
	}
}
