package metatest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/usage"
	"github.com/stowage/stowage/usage/history"
	"github.com/stowage/stowage/usage/rank"
)

// RunUsageUI checks the web UI's stores (usage/history, usage/rank) that
// both databases implement: days in order, the newest when limited, a day
// replaced; repository pages by name, size and change time, with a prefix,
// hiding list-locked repositories, walked by keyset cursors; the holders of
// a blob.
func RunUsageUI(t *testing.T, open func(t *testing.T) stowage.DB) {
	t.Run("UsageHistory", func(t *testing.T) { testUsageHistory(t, open(t)) })
	t.Run("RepositoryPages", func(t *testing.T) { testRepositoryPages(t, open(t)) })
}

func testUsageHistory(t *testing.T, db stowage.DB) {
	s, ok := history.Of(db)
	if !ok {
		t.Fatal("the database keeps no usage history (history.Provider)")
	}
	for i, day := range []string{"2026-03-02", "2026-03-01", "2026-03-04"} {
		d := history.Day{Day: day, PhysicalBytes: int64(100 * (i + 1)), LogicalBytes: int64(150 * (i + 1)), Blobs: 1, Repositories: 2,
			Manifests: 3, Tags: 4, Recorded: now.Add(time.Duration(i) * time.Hour)}
		if err := s.PutUsageDay(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutUsageDay(ctx, history.Day{Day: "2026-03-02", PhysicalBytes: 7, LogicalBytes: 8, Recorded: now}); err != nil {
		t.Fatal(err)
	}
	days, err := s.UsageDays(ctx, "2026-03-01", "2026-03-31", 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range days {
		got = append(got, fmt.Sprintf("%s:%d/%d", d.Day, d.PhysicalBytes, d.LogicalBytes))
	}
	if want := []string{"2026-03-01:200/300", "2026-03-02:7/8", "2026-03-04:300/450"}; !slices.Equal(got, want) {
		t.Errorf("UsageDays = %v, want %v (oldest first, the replaced day's new values)", got, want)
	}
	if days[0].Repositories != 2 || days[0].Tags != 4 || !days[0].Recorded.Equal(now.Add(time.Hour)) {
		t.Errorf("a day's other columns: %+v", days[0])
	}
	days, err = s.UsageDays(ctx, "2026-03-01", "2026-03-31", 2)
	if err != nil || len(days) != 2 || days[0].Day != "2026-03-02" || days[1].Day != "2026-03-04" {
		t.Errorf("UsageDays limit 2 = %+v, %v; want the newest two, oldest first", days, err)
	}
	if days, err := s.UsageDays(ctx, "2026-03-03", "2026-03-03", 1); err != nil || len(days) != 0 {
		t.Errorf("a day without a row: %+v, %v", days, err)
	}
}

func testRepositoryPages(t *testing.T, db stowage.DB) {
	s, ok := rank.Of(db)
	if !ok {
		t.Fatal("the database pages no repositories (rank.Provider)")
	}
	// Repository i holds a blob of its own of i+1 bytes and the shared blob
	// dg(1) (1000 bytes); b/hidden is list-locked; c/empty has nothing.
	names := []string{"a/one", "a/three", "a/two", "b/four", "b/hidden"}
	update(t, db, func(tx stowage.Tx) error {
		if err := tx.Blobs().PutBlob(stowage.BlobRecord{Digest: dg(1), Size: 1000, State: stowage.BlobLive, Created: now}); err != nil {
			return err
		}
		for i, n := range names {
			at := now.Add(time.Duration(i) * time.Minute)
			if err := tx.Repositories().CreateRepository(n, at); err != nil {
				return err
			}
			own := dg(100 + i)
			if err := tx.Blobs().PutBlob(stowage.BlobRecord{Digest: own, Size: int64(10 * (i + 1)), State: stowage.BlobLive, Created: now}); err != nil {
				return err
			}
			m := stowage.ManifestRecord{Repo: n, Digest: dg(200 + i), MediaType: stowage.MediaTypeOCIManifest, Size: 5, Created: at}
			if err := tx.Blobs().PutBlob(stowage.BlobRecord{Digest: m.Digest, Size: 5, State: stowage.BlobLive, Created: now}); err != nil {
				return err
			}
			refs := []stowage.ManifestRef{{Digest: dg(1), Kind: stowage.RefBlob}, {Digest: own, Kind: stowage.RefBlob}}
			if err := tx.Manifests().PutManifest(m, refs); err != nil {
				return err
			}
			if err := tx.Tags().PutTag(n, "v1", m.Digest, at); err != nil {
				return err
			}
		}
		if err := tx.Repositories().CreateRepository("c/empty", now.Add(-time.Hour)); err != nil {
			return err
		}
		return tx.Repositories().SetRepositoryLocks("b/hidden", stowage.LockList)
	})
	// The size order is the last recording's: c/empty was not measured.
	h, _ := history.Of(db)
	var sizes []usage.RepositorySpace
	for i, n := range names {
		sizes = append(sizes, usage.RepositorySpace{Name: n, ReferencedBytes: int64(1015 + 10*i)})
	}
	sizes = append(sizes, usage.RepositorySpace{Name: "gone", ReferencedBytes: 1 << 40}) // deleted since
	if err := h.PutRepositorySizes(ctx, sizes[:2]); err != nil {
		t.Fatal(err)
	}
	if err := h.PutRepositorySizes(ctx, sizes); err != nil { // replaces the first recording
		t.Fatal(err)
	}
	walk := func(q rank.Query) []string {
		var out []string
		for i := 0; i < 20; i++ {
			rows, err := s.RepositoryPage(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rows {
				out = append(out, fmt.Sprintf("%s=%d", r.Name, r.ReferencedBytes))
			}
			if len(rows) < q.Limit {
				return out
			}
			q.After = rows[len(rows)-1]
		}
		t.Fatal("RepositoryPage does not end")
		return nil
	}
	for _, tc := range []struct {
		q    rank.Query
		want []string
	}{
		{rank.Query{Order: rank.ByName, Limit: 2}, []string{"a/one=1015", "a/three=1025", "a/two=1035", "b/four=1045", "c/empty=0"}},
		{rank.Query{Order: rank.ByName, Limit: 2, Hidden: true}, []string{"a/one=1015", "a/three=1025", "a/two=1035", "b/four=1045", "b/hidden=1055", "c/empty=0"}},
		{rank.Query{Order: rank.BySize, Limit: 2}, []string{"b/four=1045", "a/two=1035", "a/three=1025", "a/one=1015", "c/empty=0"}},
		{rank.Query{Order: rank.BySize, Limit: 5, Hidden: true}, []string{"b/hidden=1055", "b/four=1045", "a/two=1035", "a/three=1025", "a/one=1015", "c/empty=0"}},
		{rank.Query{Order: rank.ByUpdated, Limit: 3}, []string{"b/four=1045", "a/two=1035", "a/three=1025", "a/one=1015", "c/empty=0"}},
		{rank.Query{Order: rank.ByName, Prefix: "a/t", Limit: 1}, []string{"a/three=1025", "a/two=1035"}},
		{rank.Query{Order: rank.BySize, Prefix: "a/", Limit: 2}, []string{"a/two=1035", "a/three=1025", "a/one=1015"}},
		{rank.Query{Order: rank.ByUpdated, Prefix: "b/", Limit: 5, Hidden: true}, []string{"b/hidden=1055", "b/four=1045"}},
	} {
		if got := walk(tc.q); !slices.Equal(got, tc.want) {
			t.Errorf("%+v: %v, want %v", tc.q, got, tc.want)
		}
	}
	rows, err := s.RepositoryPage(ctx, rank.Query{Order: rank.ByName, Prefix: "a/one", Limit: 1})
	if err != nil || len(rows) != 1 || rows[0].Tags != 1 || rows[0].Manifests != 1 || !rows[0].Updated.Equal(now) {
		t.Errorf("a/one's row: %+v, %v; want 1 tag, 1 manifest, updated at creation", rows, err)
	}
	holders, err := s.SharedBy(ctx, dg(1), 3)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range holders {
		got = append(got, h.Repo+"@"+string(h.Manifest)[len(h.Manifest)-3:])
	}
	if want := []string{"a/one@0c8", "a/three@0c9", "a/two@0ca"}; !slices.Equal(got, want) {
		t.Errorf("SharedBy(dg(1), 3) = %v, want %v", got, want)
	}
}
