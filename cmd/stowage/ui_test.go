package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stowage/stowage/config"
	"github.com/stowage/stowage/usage/history"
)

// TestServeUI: `stowage serve` serves the web UI under /ui/ from the
// binary, and records today's usage row at start.
func TestServeUI(t *testing.T) {
	m := startMain(t, t.TempDir())
	defer m.Close()
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range []struct {
		path, want string
		status     int
	}{
		{"/ui/", "What uses space", 200},
		{"/ui/repositories", "Repositories", 200},
		{"/ui/static/ui.css", ".chart", 200},
		{"/ui", "", http.StatusFound},
	} {
		resp, err := noFollow.Get("http://" + m.Addr + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.want) {
			t.Errorf("GET %s: %d %.200s, want %d with %q", tc.path, resp.StatusCode, b, tc.status, tc.want)
		}
	}
	hs, ok := history.Of(m.db)
	if !ok {
		t.Fatal("SQLite keeps no usage history")
	}
	today := history.DayOf(time.Now())
	for i := 0; ; i++ {
		days, err := hs.UsageDays(context.Background(), today, today, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(days) == 1 {
			break
		}
		if i == 100 {
			t.Fatal("no usage row for today 5 s after the start")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestServeUILimits: the UI is under the API's request limits: with 5
// reads a minute for the registry, the sixth page answers 429.
func TestServeUILimits(t *testing.T) {
	cfg := config.Default()
	cfg.Addr, cfg.DataDir = "127.0.0.1:0", t.TempDir()
	reads := 5
	cfg.Limits.Reads.Registry = &reads
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	m := NewMain(cfg, testWriter{t})
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var codes []int
	for i := 0; i < 6; i++ {
		resp, err := http.Get("http://" + m.Addr + "/ui/repositories")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
	}
	if codes[0] != 200 || codes[5] != http.StatusTooManyRequests {
		t.Errorf("six UI pages with 5 reads a minute: %v, want 200 first and 429 last", codes)
	}
}
