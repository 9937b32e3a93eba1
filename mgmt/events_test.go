package mgmt_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/feed"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/mgmt"
	"github.com/stowage/stowage/storage/mem"
)

// TestEventsAPI: GET /api/v1/events pages by cursor, filters, waits, and
// answers 410 Gone to a reader that fell behind the retained events.
func TestEventsAPI(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	evs := []stowage.Event{
		{Time: t0, Kind: stowage.EventPush, Actor: "alice", Addr: "10.0.0.1:5555", Repo: "app", Digest: stowage.Digest("sha256:" + strings.Repeat("a", 64)), Tag: "v1",
			MediaType: stowage.MediaTypeOCIManifest, Size: 512, Detail: `{"requestId":"r1"}`},
		{Time: t0.Add(time.Minute), Kind: stowage.EventPush, Actor: "bob", Repo: "web", Tag: "latest"},
		{Time: t0.Add(2 * time.Minute), Kind: stowage.EventUntag, Actor: "alice", Repo: "app", Tag: "v1"},
		{Time: t0.Add(3 * time.Minute), Kind: stowage.EventDelete, Repo: "app", Reason: stowage.ReasonRetention, Detail: "not json"},
		{Time: t0.Add(4 * time.Minute), Kind: stowage.EventPush, Actor: "alice", Repo: "app", Tag: "v2"},
	}
	for _, e := range evs {
		if err := db.Update(ctx, func(tx stowage.Tx) error { return tx.Events().Append(e) }); err != nil {
			t.Fatal(err)
		}
	}
	f := feed.New(db.Feed(), feed.Options{Retention: feed.Retention{MaxCount: 3}, Poll: 5 * time.Millisecond})
	reg := stowage.NewRegistry(db, mem.New(), stowage.Options{})
	h := mgmt.New(reg, nil).WithEvents(f)

	get := func(url string) (int, mgmt.EventsPage, string) {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, url, nil))
		var p mgmt.EventsPage
		if rec.Code == http.StatusOK {
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
				t.Fatalf("%s: %v", url, err)
			}
		}
		return rec.Code, p, rec.Body.String()
	}
	seqsOf := func(p mgmt.EventsPage) []int64 {
		out := []int64{}
		for _, e := range p.Events {
			out = append(out, e.Seq)
		}
		return out
	}
	for _, tc := range []struct {
		url     string
		code    int
		seqs    []int64
		next    int64
		bodyHas string
	}{
		{"/api/v1/events", 200, []int64{1, 2, 3, 4, 5}, 5, `"detail": {`},
		{"/api/v1/events?after=1&n=2", 200, []int64{2, 3}, 3, ""},
		{"/api/v1/events?repository=app", 200, []int64{1, 3, 4, 5}, 5, ""},
		{"/api/v1/events?actor=alice&kind=push", 200, []int64{1, 5}, 5, ""},
		{"/api/v1/events?kind=untag,delete", 200, []int64{3, 4}, 5, `"reason": "retention"`},
		{"/api/v1/events?since=2026-03-01T12:01:00Z&until=2026-03-01T12:03:00Z", 200, []int64{2, 3}, 5, ""},
		{"/api/v1/events?after=5", 200, []int64{}, 5, ""},
		{"/api/v1/events?after=4&wait=5s", 200, []int64{5}, 5, ""},
		{"/api/v1/events?kind=pushes", 400, nil, 0, "unknown event kind"},
		{"/api/v1/events?since=yesterday", 400, nil, 0, "RFC 3339"},
		{"/api/v1/events?n=0", 400, nil, 0, "INVALID_PARAMETER"},
		{"/api/v1/events?after=-1", 400, nil, 0, "INVALID_PARAMETER"},
		{"/api/v1/events?wait=2m", 400, nil, 0, "wait="},
		{"/api/v1/events?repository=UPPER", 400, nil, 0, "NAME_INVALID"},
		{"/api/v1/events?after=99", 400, nil, 0, "past the newest event"},
	} {
		code, p, body := get(tc.url)
		if code != tc.code || !strings.Contains(body, tc.bodyHas) {
			t.Errorf("GET %s: %d %s; want %d with %q", tc.url, code, body, tc.code, tc.bodyHas)
			continue
		}
		if code == 200 && (!equalSeqs(seqsOf(p), tc.seqs) || p.Next != tc.next || p.Oldest != 1 || p.Newest != 5) {
			t.Errorf("GET %s: seqs %v next %d oldest %d newest %d; want %v next %d oldest 1 newest 5", tc.url, seqsOf(p), p.Next, p.Oldest, p.Newest, tc.seqs, tc.next)
		}
	}
	// The first event, field by field.
	_, p, _ := get("/api/v1/events?n=1")
	b, _ := json.Marshal(p.Events[0])
	if want := `{"seq":1,"time":"2026-03-01T12:00:00Z","kind":"push","actor":"alice","addr":"10.0.0.1:5555","repository":"app","digest":"sha256:` +
		strings.Repeat("a", 64) + `","tag":"v1","mediaType":"application/vnd.oci.image.manifest.v1+json","size":512,"detail":{"requestId":"r1"}}`; string(b) != want {
		t.Errorf("event JSON:\n got %s\nwant %s", b, want)
	}
	// A long poll at the end waits, then answers an empty page.
	start := time.Now()
	if code, p, body := get("/api/v1/events?after=5&wait=100ms"); code != 200 || len(p.Events) != 0 || p.Next != 5 {
		t.Errorf("long poll at the end: %d %s", code, body)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("long poll returned after %v, before its wait", d)
	}
	// Retention keeps 3: a reader at 1 missed event 2.
	if n, err := f.Trim(ctx); err != nil || n != 2 {
		t.Fatalf("Trim = %d, %v", n, err)
	}
	code, _, body := get("/api/v1/events?after=1")
	if code != http.StatusGone || !strings.Contains(body, "EVENTS_TRIMMED") || !strings.Contains(body, "events 2 to 2 were deleted") ||
		!strings.Contains(body, "resume with after=2") {
		t.Errorf("a reader that fell behind: %d %s; want 410 EVENTS_TRIMMED naming the missed events and how to resume", code, body)
	}
	if code, p, _ := get("/api/v1/events?after=2"); code != 200 || !equalSeqs(seqsOf(p), []int64{3, 4, 5}) || p.Oldest != 3 {
		t.Errorf("resuming at the oldest retained: %d %v", code, seqsOf(p))
	}
	if code, p, _ := get("/api/v1/events"); code != 200 || !equalSeqs(seqsOf(p), []int64{3, 4, 5}) {
		t.Errorf("no cursor after a trim: %d %v, want the retained events", code, seqsOf(p))
	}
	// Without a feed the endpoint says so.
	rec := httptest.NewRecorder()
	mgmt.New(reg, nil).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/events", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("no feed: %d %s", rec.Code, rec.Body)
	}
}

func equalSeqs(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
