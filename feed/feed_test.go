package feed_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/feed"
	"github.com/stowage/stowage/meta/sqlite"
)

// TestFollow: Follow hands over every event in order, including ones
// appended while it waits, and stops when its context ends or the Feed is
// closed. (The stores' behaviour is meta/metatest's suite.)
func TestFollow(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	add := func(repo string) {
		if err := db.Update(ctx, func(tx stowage.Tx) error {
			return tx.Events().Append(stowage.Event{Kind: stowage.EventPush, Repo: repo})
		}); err != nil {
			t.Error(err)
		}
	}
	add("a")
	add("b")
	f := feed.New(db.Feed(), feed.Options{Poll: 5 * time.Millisecond})
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var got []string
	err = f.Follow(fctx, feed.Query{Kinds: []stowage.EventKind{stowage.EventPush}}, func(e stowage.Event) error {
		got = append(got, e.Repo)
		switch len(got) {
		case 2:
			go add("c") // arrives while Follow waits
		case 3:
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || strings.Join(got, ",") != "a,b,c" {
		t.Errorf("Follow: %v, got %v; want a,b,c then context.Canceled", err, got)
	}
	// A closed Feed ends Follow and answers waiting reads at once.
	go func() { time.Sleep(50 * time.Millisecond); f.Close() }()
	start := time.Now()
	err = f.Follow(ctx, feed.Query{After: 3}, func(stowage.Event) error { return nil })
	if !errors.Is(err, feed.ErrClosed) || time.Since(start) > 10*time.Second {
		t.Errorf("Follow on a closed feed: %v after %v", err, time.Since(start))
	}
	if p, err := f.Wait(ctx, feed.Query{After: 3}, time.Minute); err != nil || len(p.Events) != 0 {
		t.Errorf("Wait on a closed feed: %+v, %v", p, err)
	}
	// fn's error stops Follow.
	stop := errors.New("stop")
	if err := feed.New(db.Feed(), feed.Options{}).Follow(ctx, feed.Query{}, func(stowage.Event) error { return stop }); err != stop {
		t.Errorf("Follow with a failing fn: %v", err)
	}
}

func TestParseKinds(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{"push", "push", ""},
		{"push, delete,,untag", "push,delete,untag", ""},
		{"", "", ""},
		{"push,pushes", "", `unknown event kind "pushes"`},
	} {
		ks, err := feed.ParseKinds(tc.in)
		var names []string
		for _, k := range ks {
			names = append(names, string(k))
		}
		if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) || tc.err == "" && (err != nil || strings.Join(names, ",") != tc.want) {
			t.Errorf("ParseKinds(%q) = %v, %v; want %q, error %q", tc.in, names, err, tc.want, tc.err)
		}
	}
}

func TestQueryNormalized(t *testing.T) {
	for _, tc := range []struct{ in, want feed.Query }{
		{feed.Query{}, feed.Query{Limit: feed.DefaultLimit, Scan: feed.DefaultScan}},
		{feed.Query{Limit: 5000, Scan: 10, After: -3}, feed.Query{Limit: feed.MaxLimit, Scan: feed.MaxLimit}},
		{feed.Query{Limit: 10, Scan: 3}, feed.Query{Limit: 10, Scan: 10}},
	} {
		if got := tc.in.Normalized(); got.Limit != tc.want.Limit || got.Scan != tc.want.Scan || got.After != tc.want.After {
			t.Errorf("%+v.Normalized() = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}
