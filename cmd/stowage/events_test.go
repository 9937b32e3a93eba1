package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/config"
)

// syncBuffer is a bytes.Buffer safe for a command writing while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestEventsCommand drives `stowage events` against the real server: text
// and JSON output, filters, -n with the hint to go on, --follow until
// interrupted, the fell-behind error, and a shutdown that does not wait for
// a long poll.
func TestEventsCommand(t *testing.T) {
	m := startMain(t, t.TempDir())
	closed := false
	defer func() {
		if !closed {
			m.Close()
		}
	}()
	base := "http://" + m.Addr
	ctx := context.Background()
	appendEvent := func(e stowage.Event) {
		t.Helper()
		if err := m.db.Update(ctx, func(tx stowage.Tx) error { return tx.Events().Append(e) }); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Now().Add(-time.Hour).UTC()
	dg := stowage.Digest("sha256:" + strings.Repeat("ab", 32))
	appendEvent(stowage.Event{Time: t0, Kind: stowage.EventPush, Actor: "alice", Addr: "10.1.2.3:4000", Repo: "app", Tag: "v1", Digest: dg, Size: 2048,
		Detail: `{"userAgent":"crane","requestId":"r1"}`})
	appendEvent(stowage.Event{Time: t0.Add(time.Minute), Kind: stowage.EventUntag, Actor: "alice", Repo: "app", Tag: "v1", Digest: dg})
	appendEvent(stowage.Event{Time: t0.Add(2 * time.Minute), Kind: stowage.EventDelete, Repo: "app", Digest: dg, Reason: stowage.ReasonRetention})
	appendEvent(stowage.Event{Time: t0.Add(3 * time.Minute), Kind: stowage.EventLoginFailed, Actor: "mallory", Addr: "10.9.9.9:1"})

	out, errOut, code := cli(t, "events", "--registry", base)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 5 || !strings.HasPrefix(strings.TrimSpace(lines[0]), "SEQ") ||
		!strings.Contains(lines[1], "push") || !strings.Contains(lines[1], "app:v1@sha256:abababababab") || !strings.Contains(lines[1], "size=2.0KiB") ||
		!strings.Contains(lines[1], "from=10.1.2.3:4000") || !strings.Contains(lines[1], `detail={"userAgent":"crane","requestId":"r1"}`) || !strings.Contains(lines[3], "reason=retention") || !strings.Contains(lines[4], "mallory") {
		t.Errorf("events: %d\n%s\n%s", code, out, errOut)
	}
	// Columns line up: KIND starts at the same offset on every line.
	if i, j := strings.Index(lines[1], "push"), strings.Index(lines[2], "untag"); i != j {
		t.Errorf("columns do not line up:\n%s", out)
	}

	out, errOut, code = cli(t, "events", "--registry", base, "--output", "json", "-n", "2")
	var first struct {
		Seq        int64  `json:"seq"`
		Kind       string `json:"kind"`
		Repository string `json:"repository"`
	}
	jl := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(jl) != 2 || json.Unmarshal([]byte(jl[0]), &first) != nil || first.Seq != 1 || first.Kind != "push" ||
		!strings.Contains(errOut, "--after 2") {
		t.Errorf("events --output json -n 2: %d\n%s\n%s", code, out, errOut)
	}

	out, _, code = cli(t, "events", "--registry", base, "--repository", "app", "--kind", "delete,untag", "--since", "2h")
	if code != 0 || strings.Count(out, "\n") != 3 || strings.Contains(out, " push ") {
		t.Errorf("filtered: %d\n%s", code, out)
	}
	out, _, code = cli(t, "events", "--registry", base, "--actor", "alice", "--until", t0.Add(30*time.Second).Format(time.RFC3339))
	if code != 0 || strings.Count(out, "\n") != 2 {
		t.Errorf("actor and until: %d\n%s", code, out)
	}
	for _, args := range [][]string{{"--kind", "pushes"}, {"--since", "yesterday"}, {"--output", "yaml"}, {"app"}} {
		if _, errOut, code := cli(t, append([]string{"events", "--registry", base}, args...)...); code != 2 || errOut == "" {
			t.Errorf("events %v: code %d, stderr %q; want 2 with a message", args, code, errOut)
		}
	}

	// --follow prints what is there, then what comes, until interrupted.
	fctx, cancel := context.WithCancel(ctx)
	var fout, ferr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(fctx, []string{"events", "--registry", base, "--follow", "--after", "3"}, &fout, &ferr)
	}()
	waitFor := func(what string) {
		t.Helper()
		for i := 0; !strings.Contains(fout.String(), what); i++ {
			if i == 200 {
				t.Fatalf("--follow never printed %q:\n%s\n%s", what, fout.String(), ferr.String())
			}
			time.Sleep(25 * time.Millisecond)
		}
	}
	waitFor("mallory")
	appendEvent(stowage.Event{Kind: stowage.EventPush, Actor: "bob", Repo: "late", Tag: "v9"})
	waitFor("late:v9")
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("--follow interrupted: exit %d, %s", code, ferr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("--follow did not stop when interrupted")
	}
	if strings.Contains(fout.String(), "app:v1") {
		t.Errorf("--follow --after 3 printed events up to 3:\n%s", fout.String())
	}

	// Retention deleted events 1 to 3: a reader at 1 is told, with how to resume.
	f, err := openFeed(m.db, config.Events{MaxCount: 2})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := f.Trim(ctx); err != nil || n != 3 {
		t.Fatalf("trim: %d, %v", n, err)
	}
	_, errOut, code = cli(t, "events", "--registry", base, "--after", "1")
	if code != 1 || !strings.Contains(errOut, "EVENTS_TRIMMED") || !strings.Contains(errOut, "events 2 to 3 were deleted") || !strings.Contains(errOut, "after=3") {
		t.Errorf("fell behind: %d %s", code, errOut)
	}

	// A long poll in flight does not hold up shutdown.
	go run(ctx, []string{"events", "--registry", base, "--follow", "--after", "5"}, &syncBuffer{}, &syncBuffer{})
	time.Sleep(300 * time.Millisecond) // the poll is waiting on the server
	start := time.Now()
	closed = true
	if err := m.Close(); err != nil {
		t.Errorf("close with a long poll in flight: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("close took %v with a long poll in flight", d)
	}
}
