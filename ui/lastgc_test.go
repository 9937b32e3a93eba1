package ui_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/gc"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/storage/mem"
	"github.com/stowage/stowage/ui"
)

var lastGCRe = regexp.MustCompile(`(?s)id="last-gc">(.*?)</dd>`)

// TestLastGCSurvivesRestart: the overview's last garbage collection is
// read from the database, so a server started afterwards (a restart, or
// another node on the same database) shows it.
func TestLastGCSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "stowage.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	reg := stowage.NewRegistry(db, mem.New(), stowage.Options{})
	dg := push(t, reg, "a/x", "1", "a layer")
	if err := reg.DeleteManifest(ctx, "a/x", stowage.Reference{Digest: dg}); err != nil {
		t.Fatal(err)
	}
	overview := func(rec *ui.GCRecorder) string {
		h, err := ui.New(ui.Options{Registry: reg, GC: rec})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(h)
		defer srv.Close()
		resp, err := http.Get(srv.URL + "/ui/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b [1 << 20]byte
		n, _ := readAll(resp.Body, b[:])
		m := lastGCRe.FindStringSubmatch(string(b[:n]))
		if m == nil {
			t.Fatalf("no last-gc on the overview (%d)", resp.StatusCode)
		}
		return m[1]
	}
	first := ui.RecordGC(gc.New(reg))
	if got := overview(first); !regexp.MustCompile(`none recorded`).MatchString(got) {
		t.Errorf("before any collection: %q", got)
	}
	zero := time.Duration(0)
	rep, err := first.Collect(ctx, gc.Options{MinAge: &zero})
	if err != nil || rep.BlobsDeleted == 0 {
		t.Fatalf("collect: %+v %v", rep, err)
	}
	want := regexp.MustCompile(`\b3 blobs, .*460 B.* freed`)
	if got := overview(first); !want.MatchString(got) {
		t.Errorf("the server that collected: %q", got)
	}
	// Another process (a restart, or another node): a new recorder.
	if got := overview(ui.RecordGC(gc.New(reg))); !want.MatchString(got) {
		t.Errorf("after a restart: %q, want the last collection", got)
	}
}

func readAll(r interface{ Read([]byte) (int, error) }, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := r.Read(b[n:])
		n += m
		if err != nil {
			return n, nil
		}
	}
	return n, nil
}
