package metatest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/feed"
)

// RunFeed runs the change feed's suite: events are appended through
// tx.Events() as the engine does, and read back through the database's
// feed.Store (directly and through a feed.Feed). open returns a fresh, empty
// database and its feed store per subtest. txs is how many transactions
// each of the 8 concurrent writers commits (0: 200, or 50 with -short).
func RunFeed(t *testing.T, txs int, open func(t *testing.T) (stowage.DB, feed.Store)) {
	if txs <= 0 {
		txs = 200
		if testing.Short() {
			txs = 50
		}
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, db stowage.DB, s feed.Store)
	}{
		{"OrderAndBounds", testFeedOrder},
		{"Pages", testFeedPages},
		{"Filters", testFeedFilters},
		{"TrimByCount", testFeedTrimCount},
		{"TrimByAge", testFeedTrimAge},
		{"Behind", testFeedBehind},
		{"Cursors", testFeedCursors},
		{"Consumer", testFeedConsumer},
		{"ConcurrentWriters", func(t *testing.T, db stowage.DB, s feed.Store) { testFeedConcurrent(t, db, s, txs) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, s := open(t)
			tt.fn(t, db, s)
		})
	}
}

// appendEvents appends each event in its own transaction.
func appendEvents(t *testing.T, db stowage.DB, evs ...stowage.Event) {
	t.Helper()
	for _, e := range evs {
		update(t, db, func(tx stowage.Tx) error { return tx.Events().Append(e) })
	}
}

// sequenced reads every event (after Sequence) through s.
func readAll(t *testing.T, s feed.Store) []stowage.Event {
	t.Helper()
	if err := s.Sequence(ctx); err != nil {
		t.Fatal(err)
	}
	var all []stowage.Event
	after := int64(0)
	for range 10000 {
		evs, next, err := s.Read(ctx, feed.Query{After: after, Limit: feed.MaxLimit})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, evs...)
		if next == after {
			return all
		}
		after = next
	}
	t.Fatal("feed: Read never stopped advancing")
	return nil
}

// sampleEvents: 12 events over 3 repositories, 2 actors, 4 kinds, one
// minute apart from now.
func sampleEvents() []stowage.Event {
	kinds := []stowage.EventKind{stowage.EventPush, stowage.EventUntag, stowage.EventDelete, stowage.EventLock}
	var out []stowage.Event
	for i := range 12 {
		out = append(out, stowage.Event{
			Time: now.Add(time.Duration(i) * time.Minute), Kind: kinds[i%4], Actor: []string{"alice", "bob"}[i%2],
			Addr: "10.0.0.1:1234", Repo: fmt.Sprintf("repo%d", i%3), Digest: dg(i), Tag: fmt.Sprintf("v%d", i),
			MediaType: stowage.MediaTypeOCIManifest, Size: int64(100 + i), Reason: stowage.ReasonUser,
			Previous: dg(1000 + i), Origin: "", Detail: fmt.Sprintf(`{"i":%d}`, i),
		})
	}
	return out
}

func testFeedOrder(t *testing.T, db stowage.DB, s feed.Store) {
	if o, n, err := s.Bounds(ctx); err != nil || o != 0 || n != 0 {
		t.Fatalf("empty feed: Bounds = %d, %d, %v; want 0, 0", o, n, err)
	}
	if evs := readAll(t, s); len(evs) != 0 {
		t.Fatalf("empty feed: read %d events", len(evs))
	}
	want := sampleEvents()
	appendEvents(t, db, want[:5]...)
	// Several in one transaction keep their order.
	update(t, db, func(tx stowage.Tx) error {
		for _, e := range want[5:] {
			if err := tx.Events().Append(e); err != nil {
				return err
			}
		}
		return nil
	})
	// A rolled-back transaction leaves no event.
	db.Update(ctx, func(tx stowage.Tx) error {
		tx.Events().Append(stowage.Event{Kind: stowage.EventPush, Repo: "rolled-back"})
		return errors.New("roll back")
	})
	got := readAll(t, s)
	if len(got) != len(want) {
		t.Fatalf("read %d events, want %d", len(got), len(want))
	}
	for i := range got {
		if i > 0 && got[i].Seq <= got[i-1].Seq {
			t.Errorf("event %d: seq %d after %d: not increasing", i, got[i].Seq, got[i-1].Seq)
		}
		w := want[i]
		w.Seq = got[i].Seq
		if !got[i].Time.Equal(w.Time) {
			t.Errorf("event %d: time %v, want %v", i, got[i].Time, w.Time)
		}
		g := got[i]
		g.Time = w.Time
		if !reflect.DeepEqual(g, w) {
			t.Errorf("event %d:\n got %+v\nwant %+v", i, g, w)
		}
	}
	o, n, err := s.Bounds(ctx)
	if err != nil || o != got[0].Seq || n != got[len(got)-1].Seq {
		t.Errorf("Bounds = %d, %d, %v; want %d, %d", o, n, err, got[0].Seq, got[len(got)-1].Seq)
	}
	// An event without a time gets the transaction's (about now).
	before := time.Now().Add(-time.Minute)
	appendEvents(t, db, stowage.Event{Kind: stowage.EventPush, Repo: "untimed"})
	all := readAll(t, s)
	if last := all[len(all)-1]; last.Repo != "untimed" || last.Time.Before(before) {
		t.Errorf("event appended without a time: %+v, want a time after %v", last, before)
	}
}

func testFeedPages(t *testing.T, db stowage.DB, s feed.Store) {
	appendEvents(t, db, sampleEvents()...)
	all := readAll(t, s)
	for _, limit := range []int{1, 3, 5, 12, 50} {
		var got []stowage.Event
		after := int64(0)
		for range 100 {
			evs, next, err := s.Read(ctx, feed.Query{After: after, Limit: limit})
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) > limit {
				t.Fatalf("limit %d: read %d events", limit, len(evs))
			}
			if len(evs) > 0 && next != evs[len(evs)-1].Seq {
				t.Errorf("limit %d: next %d, want the last seq returned %d", limit, next, evs[len(evs)-1].Seq)
			}
			got = append(got, evs...)
			if next == after {
				break
			}
			after = next
		}
		if !reflect.DeepEqual(seqs(got), seqs(all)) {
			t.Errorf("limit %d: paged %v, want %v", limit, seqs(got), seqs(all))
		}
		if after != all[len(all)-1].Seq {
			t.Errorf("limit %d: cursor ends at %d, want the newest %d", limit, after, all[len(all)-1].Seq)
		}
	}
	// A cursor at the newest reads nothing and stays.
	newest := all[len(all)-1].Seq
	if evs, next, err := s.Read(ctx, feed.Query{After: newest}); err != nil || len(evs) != 0 || next != newest {
		t.Errorf("read after the newest: %d events, next %d, %v; want none, %d", len(evs), next, err, newest)
	}
}

func seqs(evs []stowage.Event) []int64 {
	out := []int64{}
	for _, e := range evs {
		out = append(out, e.Seq)
	}
	return out
}

func testFeedFilters(t *testing.T, db stowage.DB, s feed.Store) {
	appendEvents(t, db, sampleEvents()...)
	all := readAll(t, s)
	queries := []struct {
		name string
		q    feed.Query
	}{
		{"repository", feed.Query{Repo: "repo1"}},
		{"actor", feed.Query{Actor: "bob"}},
		{"one kind", feed.Query{Kinds: []stowage.EventKind{stowage.EventDelete}}},
		{"two kinds", feed.Query{Kinds: []stowage.EventKind{stowage.EventPush, stowage.EventLock}}},
		{"since", feed.Query{Since: now.Add(5 * time.Minute)}},
		{"until (exclusive)", feed.Query{Until: now.Add(5 * time.Minute)}},
		{"time range", feed.Query{Since: now.Add(2 * time.Minute), Until: now.Add(9 * time.Minute)}},
		{"everything at once", feed.Query{Repo: "repo0", Actor: "alice", Kinds: []stowage.EventKind{stowage.EventPush, stowage.EventDelete}, Since: now.Add(time.Minute)}},
		{"no match", feed.Query{Repo: "absent"}},
		{"unknown kind", feed.Query{Kinds: []stowage.EventKind{"nope"}}},
	}
	for _, tc := range queries {
		t.Run(tc.name, func(t *testing.T) {
			want := []int64{}
			for _, e := range all {
				if tc.q.Match(e) {
					want = append(want, e.Seq)
				}
			}
			// Scan 1 examines one row per call: the cursor must still move
			// over rows that do not match, and never skip one that does.
			for _, scan := range []int{0, 1, 2, 5} {
				for _, limit := range []int{1, 2, 100} {
					q := tc.q
					q.Scan, q.Limit = scan, limit
					var got []stowage.Event
					for range 200 {
						evs, next, err := s.Read(ctx, q)
						if err != nil {
							t.Fatal(err)
						}
						for _, e := range evs {
							if !tc.q.Match(e) {
								t.Errorf("scan %d limit %d: event %d does not match the filter", scan, limit, e.Seq)
							}
						}
						got = append(got, evs...)
						if next < q.After {
							t.Fatalf("scan %d limit %d: cursor went back from %d to %d", scan, limit, q.After, next)
						}
						if next == q.After {
							break
						}
						q.After = next
					}
					if !reflect.DeepEqual(seqs(got), want) {
						t.Errorf("scan %d limit %d: read %v, want %v", scan, limit, seqs(got), want)
					}
					if q.After != all[len(all)-1].Seq {
						t.Errorf("scan %d limit %d: cursor ends at %d, want the newest %d (a filtered reader must move on)", scan, limit, q.After, all[len(all)-1].Seq)
					}
				}
			}
		})
	}
}

func testFeedTrimCount(t *testing.T, db stowage.DB, s feed.Store) {
	if n, err := s.Trim(ctx, time.Time{}, 5); err != nil || n != 0 {
		t.Fatalf("trim of an empty feed: %d, %v", n, err)
	}
	appendEvents(t, db, sampleEvents()...)
	all := readAll(t, s)
	for _, tc := range []struct {
		keep        int64
		wantDeleted int64
		wantOldest  int64
	}{
		{0, 0, all[0].Seq},   // no count limit
		{20, 0, all[0].Seq},  // fewer than keep
		{12, 0, all[0].Seq},  // exactly keep
		{5, 7, all[7].Seq},   // keeps the newest 5
		{5, 0, all[7].Seq},   // again: nothing more
		{1, 4, all[11].Seq},  // keeps the newest only
		{-1, 0, all[11].Seq}, // negative: no limit
	} {
		n, err := s.Trim(ctx, time.Time{}, tc.keep)
		if err != nil || n != tc.wantDeleted {
			t.Errorf("Trim(keep %d) = %d, %v; want %d deleted", tc.keep, n, err, tc.wantDeleted)
		}
		o, nw, _ := s.Bounds(ctx)
		if o != tc.wantOldest || nw != all[11].Seq {
			t.Errorf("after Trim(keep %d): Bounds %d, %d; want %d, %d", tc.keep, o, nw, tc.wantOldest, all[11].Seq)
		}
	}
	// The next event is numbered after the kept newest, not from 1 again.
	appendEvents(t, db, stowage.Event{Time: now, Kind: stowage.EventPush, Repo: "next"})
	rest := readAll(t, s)
	if len(rest) != 2 || rest[1].Seq <= all[11].Seq {
		t.Errorf("after trimming to one event and appending: %v, want [%d, >%d]", seqs(rest), all[11].Seq, all[11].Seq)
	}
}

func testFeedTrimAge(t *testing.T, db stowage.DB, s feed.Store) {
	evs := sampleEvents() // now, now+1m, ... now+11m
	// Event 8 carries an old time (a node with a slow clock): retention
	// deletes only from the oldest end, so it stays while 7 stays.
	evs[8].Time = now.Add(-time.Hour)
	appendEvents(t, db, evs...)
	all := readAll(t, s)
	n, err := s.Trim(ctx, now.Add(5*time.Minute), 0) // older than event 5
	if err != nil || n != 5 {
		t.Errorf("Trim(older than +5m) = %d, %v; want 5 deleted", n, err)
	}
	left := readAll(t, s)
	if !reflect.DeepEqual(seqs(left), seqs(all[5:])) {
		t.Errorf("after trim by age: %v, want %v (event 8's old time must not punch a hole)", seqs(left), seqs(all[5:]))
	}
	// Older than everything: all but the newest go.
	n, err = s.Trim(ctx, now.Add(24*time.Hour), 0)
	if err != nil || n != 6 {
		t.Errorf("Trim(older than all) = %d, %v; want 6 deleted (all but the newest)", n, err)
	}
	if o, nw, _ := s.Bounds(ctx); o != all[11].Seq || nw != all[11].Seq {
		t.Errorf("Bounds %d, %d after trimming everything old; want the newest %d kept", o, nw, all[11].Seq)
	}
	// Age and count together: the stricter wins.
	appendEvents(t, db, sampleEvents()...)
	all = readAll(t, s)
	if n, err := s.Trim(ctx, now.Add(2*time.Minute), 4); err != nil || n != 9 {
		t.Errorf("Trim(age +2m, keep 4) over %d events = %d, %v; want 9 deleted (count is stricter)", len(all), n, err)
	}
	if n, err := s.Trim(ctx, now.Add(12*time.Minute), 4); err != nil || n != 3 {
		t.Errorf("Trim(age +12m, keep 4) = %d, %v; want 3 deleted (age is stricter)", n, err)
	}
}

func testFeedBehind(t *testing.T, db stowage.DB, s feed.Store) {
	ret := feed.Retention{MaxAge: time.Hour, MaxCount: 5}
	f := feed.New(s, feed.Options{Retention: ret, Now: func() time.Time { return now.Add(time.Hour) }})
	if p, err := f.Read(ctx, feed.Query{}); err != nil || len(p.Events) != 0 || p.Next != 0 || p.Oldest != 0 {
		t.Fatalf("empty feed: %+v, %v", p, err)
	}
	appendEvents(t, db, sampleEvents()...)
	all := readAll(t, s)
	if n, err := f.Trim(ctx); err != nil || n != 7 {
		t.Fatalf("Feed.Trim = %d, %v; want 7 (keep 5)", n, err)
	}
	oldest := all[7].Seq
	for _, tc := range []struct {
		after      int64
		resume     bool
		behind     bool
		wantEvents int
	}{
		{0, false, false, 5},           // no cursor: from the oldest retained
		{0, true, true, 0},             // the cursor 0 of a reader that read the feed while it was empty
		{oldest - 1, false, false, 5},  // saw everything before the oldest
		{oldest - 1, true, false, 5},   //
		{oldest, false, false, 4},      //
		{oldest - 2, false, true, 0},   // missed oldest-1
		{all[0].Seq, false, true, 0},   // missed most
		{all[11].Seq, false, false, 0}, // caught up
	} {
		p, err := f.Read(ctx, feed.Query{After: tc.after, Resume: tc.resume})
		if tc.behind {
			var se *stowage.Error
			if !errors.Is(err, feed.ErrBehind) || !errors.As(err, &se) || se.Code != stowage.CodeEventsTrimmed {
				t.Errorf("after=%d (resume %v) with oldest %d: err = %v, want ErrBehind as a %s error", tc.after, tc.resume, oldest, err, stowage.CodeEventsTrimmed)
			} else {
				t.Logf("after=%d: %v", tc.after, se.Message)
			}
			continue
		}
		if err != nil || len(p.Events) != tc.wantEvents || p.Oldest != oldest || p.Newest != all[11].Seq {
			t.Errorf("after=%d: %d events, oldest %d, newest %d, %v; want %d, %d, %d", tc.after, len(p.Events), p.Oldest, p.Newest, err,
				tc.wantEvents, oldest, all[11].Seq)
		}
	}
	if _, err := f.Read(ctx, feed.Query{After: all[11].Seq + 10}); !errors.Is(err, feed.ErrAhead) {
		t.Errorf("a cursor past the newest event: err = %v, want ErrAhead", err)
	}
	// Wait returns at once when there is something, and after the wait
	// when there is not.
	start := time.Now()
	if p, err := f.Wait(ctx, feed.Query{After: all[10].Seq}, time.Minute); err != nil || len(p.Events) != 1 {
		t.Errorf("Wait with an event pending: %d events, %v", len(p.Events), err)
	}
	if p, err := f.Wait(ctx, feed.Query{After: all[11].Seq}, 50*time.Millisecond); err != nil || len(p.Events) != 0 || p.Next != all[11].Seq {
		t.Errorf("Wait at the end: %+v, %v", p, err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Wait took %v", d)
	}
}

// testFeedConcurrent is the feed's central promise under concurrency:
// writers commit events while readers follow the feed by cursor, and every
// reader ends up having seen every committed event exactly once, always in
// increasing seq, never finding one below its cursor later.
//
// Some writers hold their transaction open for a moment after appending,
// so that on PostgreSQL an event with a lower id commits after events with
// higher ids. A feed that numbered events at insert (or read them by id)
// fails here: its reader passes the late event's id before it commits and
// never sees it. Checked on PostgreSQL by making Sequence number rows with
// their id (`SET seq = id`): the readers then miss events ("never saw N
// committed events") in every run.
func testFeedConcurrent(t *testing.T, db stowage.DB, s feed.Store, txs int) {
	writers := 8
	f := feed.New(s, feed.Options{Poll: time.Millisecond})
	var mu sync.Mutex
	committed := map[string]bool{}
	var wg sync.WaitGroup
	done := make(chan struct{})
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range txs {
				n := 1 + rng.IntN(3)
				hold := rng.IntN(8) == 0
				var ids []string
				err := db.Update(ctx, func(tx stowage.Tx) error {
					ids = ids[:0]
					for k := range n {
						id := fmt.Sprintf("w%d-t%d-e%d", w, i, k)
						if err := tx.Events().Append(stowage.Event{Kind: stowage.EventPush, Repo: fmt.Sprintf("r%d", w), Tag: id}); err != nil {
							return err
						}
						ids = append(ids, id)
					}
					if hold {
						time.Sleep(time.Duration(1+rng.IntN(5)) * time.Millisecond)
					}
					return nil
				})
				if err != nil {
					t.Errorf("writer %d tx %d: %v", w, i, err)
					return
				}
				mu.Lock()
				for _, id := range ids {
					committed[id] = true
				}
				mu.Unlock()
			}
		}()
	}
	go func() { wg.Wait(); close(done) }()

	type result struct {
		seen map[string]int64
		err  error
	}
	readers := 2
	results := make(chan result, readers)
	for r := range readers {
		go func() {
			seen := map[string]int64{}
			var cursor, last int64
			fail := func(format string, args ...any) {
				results <- result{seen, fmt.Errorf("reader %d: "+format, append([]any{r}, args...)...)}
			}
			finished := false
			for range 1_000_000 {
				select {
				case <-done:
					finished = true
				default:
				}
				p, err := f.Read(ctx, feed.Query{After: cursor, Limit: 7 + r*43})
				if err != nil {
					fail("%v", err)
					return
				}
				for _, e := range p.Events {
					if e.Seq <= last {
						fail("event %s has seq %d, at or below the cursor %d it had already passed", e.Tag, e.Seq, last)
						return
					}
					if at, dup := seen[e.Tag]; dup {
						fail("event %s seen twice (seq %d and %d)", e.Tag, at, e.Seq)
						return
					}
					seen[e.Tag], last = e.Seq, e.Seq
				}
				if p.Next < cursor {
					fail("cursor went back from %d to %d", cursor, p.Next)
					return
				}
				caughtUp := len(p.Events) == 0 && p.Next == cursor
				cursor = p.Next
				if caughtUp {
					time.Sleep(2 * time.Millisecond)
				}
				// Done when the writers had finished before this read began
				// and it found nothing new.
				if finished && caughtUp {
					results <- result{seen, nil}
					return
				}
			}
			fail("did not catch up")
		}()
	}
	for range readers {
		res := <-results
		if res.err != nil {
			t.Error(res.err)
			continue
		}
		mu.Lock()
		missed := 0
		for id := range committed {
			if _, ok := res.seen[id]; !ok {
				missed++
				if missed <= 5 {
					t.Errorf("a reader never saw committed event %s", id)
				}
			}
		}
		for id := range res.seen {
			if !committed[id] {
				t.Errorf("a reader saw event %s, which no committed transaction wrote", id)
			}
		}
		if missed > 0 {
			t.Errorf("a reader never saw %d of %d committed events", missed, len(committed))
		}
		mu.Unlock()
	}
	<-done
}
