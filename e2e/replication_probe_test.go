package e2e

import (
	"net/http"
	"testing"
	"time"
)

// ---- geo-replication: conflicts forced with a partition ----

// testConflictProbes forces, with a partition of west, two interleavings
// the storm hits only by chance, and checks the regions still converge.
func testConflictProbes(t *testing.T, rs []*geoRegion) {
	east, west := rs[0], rs[1]
	// report says how the regions ended; a divergence fails.
	report := func(t *testing.T, what string, repos, targets []string) {
		t.Helper()
		if st, all, ok := sameState(t, rs, repos, targets, 8*time.Second); ok {
			t.Logf("%s: converged: %v %v", what, st.Tags, st.Locks)
		} else {
			t.Errorf("%s: the regions never converge:\neast  %v %v\nwest  %v %v\nnorth %v %v",
				what, all[0].Tags, all[0].Locks, all[1].Tags, all[1].Locks, all[2].Tags, all[2].Locks)
		}
	}
	t.Run("delete of a manifest vs a concurrent move of its tag", func(t *testing.T) {
		const repo = "probe/del"
		d, err := geoImage(east.URL(), east.URL(), repo, "t", "probe-d")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := geoImage(west.URL(), west.URL(), repo, "other", "probe-e"); err != nil {
			t.Fatal(err)
		}
		converge(t, rs, []string{repo}, 20*time.Second)
		partition(rs, west, true)
		// West moves t to its image; then east, which has not seen that,
		// deletes the manifest t points to there (taking t with it).
		if _, err := geoImage(west.URL(), west.URL(), repo, "t", "probe-e"); err != nil {
			partition(rs, west, false)
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
		r := geoMustDo(t, http.MethodDelete, east.URL(), "/v2/"+repo+"/manifests/"+d, nil, nil)
		partition(rs, west, false)
		expect(t, "delete in east", r, http.StatusAccepted, "")
		report(t, "move of t in west, then (later clock) delete in east of the manifest t pointed to there", []string{repo}, nil)
	})
	t.Run("write lock vs a concurrent push", func(t *testing.T) {
		const repo = "probe/lock"
		d0, err := geoImage(east.URL(), east.URL(), repo, "t", "probe-l0")
		if err != nil {
			t.Fatal(err)
		}
		converge(t, rs, []string{repo}, 20*time.Second)
		partition(rs, west, true)
		// West pushes t; then east, which has not seen that, write-locks t.
		if _, err := geoImage(west.URL(), west.URL(), repo, "t", "probe-l1"); err != nil {
			partition(rs, west, false)
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
		r := geoMustDo(t, http.MethodPatch, east.URL(), "/api/v1/locks/"+repo+":t", jsonHdr, jsonOf(map[string]bool{"writeEnabled": false}))
		partition(rs, west, false)
		expect(t, "write-lock t in east", r, http.StatusOK, "")
		defer func() { // unlocked and pushed again: the same everywhere, for what follows
			for _, g := range rs {
				geoMustDo(t, http.MethodPatch, g.URL(), "/api/v1/locks/"+repo+":t", jsonHdr, jsonOf(map[string]bool{"writeEnabled": true}))
			}
			time.Sleep(500 * time.Millisecond)
			if _, err := geoImage(north(rs).URL(), north(rs).URL(), repo, "t", "probe-l2"); err != nil {
				t.Error(err)
			}
			convergeState(t, rs, []string{repo}, []string{repo + ":t"}, 20*time.Second)
		}()
		report(t, "push of t in west, then (later clock) a write lock of t in east", []string{repo}, []string{repo + ":t"})
		// Only the replication applier passes a lock: a client's move of
		// the locked tag is refused, with the replication header too.
		m := geoMustDo(t, http.MethodGet, east.URL(), "/v2/"+repo+"/manifests/"+d0, map[string]string{"Accept": acceptOCI}, nil)
		expect(t, "the first image by digest", m, http.StatusOK, "")
		r = geoMustDo(t, http.MethodPut, east.URL(), "/v2/"+repo+"/manifests/t",
			map[string]string{"Content-Type": acceptOCI, "Stowage-Replication": "1"}, m.Body)
		expect(t, "a client's move of the write-locked tag, with the replication header", r, http.StatusForbidden, "DENIED")
	})
}

func north(rs []*geoRegion) *geoRegion { return rs[2] }
