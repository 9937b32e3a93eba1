package metatest

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/feed"
)

func cursorsOf(t *testing.T, db stowage.DB) feed.CursorStore {
	t.Helper()
	cs, ok := feed.CursorsOf(db)
	if !ok {
		t.Fatalf("%T keeps no feed cursors", db)
	}
	return cs
}

// testFeedCursors: the cursor store, and retention held back by cursors.
func testFeedCursors(t *testing.T, db stowage.DB, s feed.Store) {
	cs := cursorsOf(t, db)
	if _, ok, err := cs.Cursor(ctx, "webhook:a"); ok || err != nil {
		t.Fatalf("a cursor that was never saved: ok %v, %v", ok, err)
	}
	for _, c := range []struct {
		name string
		seq  int64
	}{{"webhook:b", 3}, {"replication:west", 7}, {"webhook:b", 9}} {
		if err := cs.SaveCursor(ctx, c.name, c.seq, now); err != nil {
			t.Fatal(err)
		}
	}
	got, err := cs.Cursors(ctx)
	want := []feed.Cursor{{Name: "replication:west", Seq: 7, Updated: now}, {Name: "webhook:b", Seq: 9, Updated: now}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Cursors = %+v, %v; want %+v (sorted by name, the last save wins)", got, err, want)
	}
	if err := cs.DeleteCursor(ctx, "webhook:b"); err != nil {
		t.Fatal(err)
	}
	if err := cs.DeleteCursor(ctx, "never"); err != nil {
		t.Fatalf("deleting a missing cursor: %v", err)
	}
	if c, ok, err := cs.Cursor(ctx, "replication:west"); !ok || err != nil || c.Seq != 7 {
		t.Fatalf("Cursor = %+v, %v, %v", c, ok, err)
	}
	if err := cs.DeleteCursor(ctx, "replication:west"); err != nil {
		t.Fatal(err)
	}

	// Retention by age stops at the first event a cursor has not passed;
	// retention by count does not.
	appendEvents(t, db, sampleEvents()...) // now .. now+11m
	all := readAll(t, s)
	if err := cs.SaveCursor(ctx, "slow", all[2].Seq, now); err != nil {
		t.Fatal(err)
	}
	if err := cs.SaveCursor(ctx, "fast", all[10].Seq, now); err != nil {
		t.Fatal(err)
	}
	later := func() time.Time { return now.Add(24 * time.Hour) }
	held := feed.New(s, feed.Options{Retention: feed.Retention{MaxAge: time.Minute}, Now: later, Cursors: cs})
	if n, err := held.Trim(ctx); err != nil || n != 3 {
		t.Errorf("Trim by age with a cursor at event 3 of 12 = %d, %v; want 3 deleted (the cursor's unhandled events kept)", n, err)
	}
	if o, _, _ := s.Bounds(ctx); o != all[3].Seq {
		t.Errorf("oldest after a held trim = %d, want %d", o, all[3].Seq)
	}
	counted := feed.New(s, feed.Options{Retention: feed.Retention{MaxAge: time.Minute, MaxCount: 4}, Now: later, Cursors: cs})
	if n, err := counted.Trim(ctx); err != nil || n != 5 {
		t.Errorf("Trim by count past a cursor = %d, %v; want 5 deleted (max_count bounds the feed whatever the readers)", n, err)
	}
	if err := cs.DeleteCursor(ctx, "slow"); err != nil {
		t.Fatal(err)
	}
	if n, err := held.Trim(ctx); err != nil || n != 3 {
		t.Errorf("Trim by age after the slow cursor went = %d, %v; want 3 (up to the fast cursor, which handled event 11)", n, err)
	}
}

// testFeedConsumer: a consumer sees every event at least once, in order,
// retries a failing page without skipping it, resumes after a restart from
// its saved cursor, and is told when retention passed it.
func testFeedConsumer(t *testing.T, db stowage.DB, s feed.Store) {
	cs := cursorsOf(t, db)
	f := feed.New(s, feed.Options{Poll: time.Millisecond})
	appendEvents(t, db, sampleEvents()[:4]...)
	var mu sync.Mutex
	var seen []int64
	failures := 2
	newConsumer := func(name string) *feed.Consumer {
		return &feed.Consumer{Name: name, Feed: f, Cursors: cs, DB: db, FromOldest: true,
			Poll: 20 * time.Millisecond, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond,
			Handle: func(ctx context.Context, evs []stowage.Event) error {
				mu.Lock()
				defer mu.Unlock()
				if failures > 0 {
					failures--
					return errors.New("receiver down")
				}
				for _, e := range evs {
					seen = append(seen, e.Seq)
				}
				return nil
			}}
	}
	waitSeen := func(n int) []int64 {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			mu.Lock()
			got := append([]int64(nil), seen...)
			mu.Unlock()
			if len(got) >= n {
				return got
			}
			time.Sleep(2 * time.Millisecond)
		}
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("consumer saw %v, want %d events", seen, n)
		return nil
	}
	run := func(c *feed.Consumer) (stop func()) {
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- c.Run(cctx) }()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run = %v after cancel, want nil", err)
			}
		}
	}
	c := newConsumer("hook")
	stop := run(c)
	appendEvents(t, db, sampleEvents()[4:8]...)
	got := waitSeen(8)
	for deadline := time.Now().Add(10 * time.Second); c.Status().Cursor < readAll(t, s)[7].Seq && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	stop()
	all := readAll(t, s)
	if !reflect.DeepEqual(got, seqs(all)) {
		t.Errorf("consumer saw %v, want every event once in order %v (a failed page retried, not skipped)", got, seqs(all))
	}
	if st := c.Status(); st.Cursor != all[7].Seq || st.Handled != 8 || st.LastError != "" {
		t.Errorf("status after catching up: %+v", st)
	}
	if cur, ok, err := cs.Cursor(ctx, "hook"); !ok || err != nil || cur.Seq != all[7].Seq {
		t.Errorf("saved cursor %+v, %v, %v; want %d", cur, ok, err, all[7].Seq)
	}

	// Restart: a new consumer of the same name sees only what came after.
	mu.Lock()
	seen = nil
	mu.Unlock()
	appendEvents(t, db, sampleEvents()[8:10]...)
	stop = run(newConsumer("hook"))
	got = waitSeen(2)
	stop()
	all = readAll(t, s)
	if !reflect.DeepEqual(got, seqs(all[8:10])) {
		t.Errorf("after a restart the consumer saw %v, want only %v", got, seqs(all[8:10]))
	}

	// Fell behind: retention by count passed the cursor; Behind decides.
	if err := cs.SaveCursor(ctx, "late", all[0].Seq, now); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Trim(ctx, time.Time{}, 3); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	seen = nil
	mu.Unlock()
	late := newConsumer("late")
	var behindAt int64
	late.Behind = func(_ context.Context, err error, oldest int64) (int64, error) {
		if !errors.Is(err, feed.ErrBehind) {
			t.Errorf("Behind got %v", err)
		}
		mu.Lock()
		behindAt = oldest
		mu.Unlock()
		return oldest - 1, nil
	}
	stop = run(late)
	got = waitSeen(3)
	stop()
	o, _, _ := s.Bounds(ctx)
	if behindAt != o || !reflect.DeepEqual(got, []int64{all[7].Seq, all[8].Seq, all[9].Seq}) {
		t.Errorf("a consumer behind retention: Behind at %d (oldest %d), then saw %v", behindAt, o, got)
	}
	// Without Behind, Run stops with the error.
	if err := cs.SaveCursor(ctx, "stuck", all[0].Seq, now); err != nil {
		t.Fatal(err)
	}
	stuck := newConsumer("stuck")
	if err := stuck.Run(ctx); !errors.Is(err, feed.ErrBehind) {
		t.Errorf("Run of a consumer behind retention without Behind = %v, want ErrBehind", err)
	}
}
