package main

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/scrub"
	"github.com/stowage/stowage/storage/crypt"
	"github.com/stowage/stowage/storage/mirror"
)

// metricsHandler serves /metrics in the Prometheus text format: storage
// copy health and repairs, the last scrub, blob totals and data keys per
// key version. Values are read when scraped.
func metricsHandler(reg *stowage.Registry, db stowage.DB, topo *topology, keys *crypt.Manager) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b strings.Builder
		metric := func(name, typ, help string) {
			fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
		}
		label := func(kv ...string) string {
			var parts []string
			for i := 0; i+1 < len(kv); i += 2 {
				v := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(kv[i+1])
				parts = append(parts, fmt.Sprintf("%s=%q", kv[i], v))
			}
			return "{" + strings.Join(parts, ",") + "}"
		}
		ctx := r.Context()
		if count, bytes, err := usageTotals(ctx, db); err == nil {
			metric("stowage_blobs", "gauge", "Live blobs stored (each digest once).")
			fmt.Fprintf(&b, "stowage_blobs %d\n", count)
			metric("stowage_blob_bytes", "gauge", "Bytes of live blobs (each digest once).")
			fmt.Fprintf(&b, "stowage_blob_bytes %d\n", bytes)
		}
		if len(topo.mirrors) > 0 {
			metric("stowage_storage_copy_state", "gauge", "1 for the state each mirror copy is in (healthy, degraded, down).")
			for _, m := range topo.mirrors {
				for _, c := range m.m.Status().Copies {
					for _, st := range []string{mirror.Healthy, mirror.Degraded, mirror.Down} {
						v := 0
						if c.State == st {
							v = 1
						}
						fmt.Fprintf(&b, "stowage_storage_copy_state%s %d\n", label("mirror", m.path, "copy", c.Name, "state", st), v)
					}
				}
			}
			metric("stowage_storage_copy_consecutive_failures", "gauge", "Operations in a row that failed on a mirror copy.")
			for _, m := range topo.mirrors {
				for _, c := range m.m.Status().Copies {
					fmt.Fprintf(&b, "stowage_storage_copy_consecutive_failures%s %d\n", label("mirror", m.path, "copy", c.Name), c.Failures)
				}
			}
			metric("stowage_storage_pending_repairs", "gauge", "Objects a mirror copy lacks (or still holds after a delete), queued for repair.")
			for _, m := range topo.mirrors {
				fmt.Fprintf(&b, "stowage_storage_pending_repairs%s %d\n", label("mirror", m.path), m.m.Status().PendingRepairs)
			}
			metric("stowage_storage_read_faults_total", "counter", "Objects reads found missing or damaged on a mirror copy (each object at most once a minute), each queued for repair.")
			for _, m := range topo.mirrors {
				for _, c := range m.m.Status().Copies {
					fmt.Fprintf(&b, "stowage_storage_read_faults_total%s %d\n", label("mirror", m.path, "copy", c.Name, "kind", "missing"), c.MissingFound)
					fmt.Fprintf(&b, "stowage_storage_read_faults_total%s %d\n", label("mirror", m.path, "copy", c.Name, "kind", "corrupt"), c.CorruptFound)
				}
			}
			metric("stowage_storage_repaired_total", "counter", "Copies a mirror's repair queue and scrubs rewrote since the start.")
			for _, m := range topo.mirrors {
				fmt.Fprintf(&b, "stowage_storage_repaired_total%s %d\n", label("mirror", m.path), m.m.Status().Repaired)
			}
		}
		if rep, err := scrub.New(reg.Parts()).Last(ctx); err == nil {
			metric("stowage_scrub_last_blobs", "gauge", "Blobs checked by the last scrub, by outcome.")
			for _, kv := range [][2]any{{"ok", rep.OK}, {"degraded", rep.Degraded}, {"lost", rep.Lost}} {
				fmt.Fprintf(&b, "stowage_scrub_last_blobs%s %d\n", label("outcome", kv[0].(string)), kv[1])
			}
			metric("stowage_scrub_last_repaired_copies", "gauge", "Copies the last scrub rewrote from a good copy.")
			fmt.Fprintf(&b, "stowage_scrub_last_repaired_copies %d\n", rep.Repaired)
		}
		if keys != nil {
			if st, err := keys.Status(ctx); err == nil {
				metric("stowage_encryption_data_keys", "gauge", "Data keys wrapped by each key-encryption key version.")
				sort.Slice(st.DataKeys, func(i, j int) bool { return st.DataKeys[i].Version < st.DataKeys[j].Version })
				for _, d := range st.DataKeys {
					cur := "false"
					if d.KeyVersion == st.Current {
						cur = "true"
					}
					fmt.Fprintf(&b, "stowage_encryption_data_keys%s %d\n", label("key", d.ID, "version", fmt.Sprint(d.Version), "current", cur), d.Count)
				}
			}
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		fmt.Fprint(w, b.String())
	})
}

func usageTotals(ctx context.Context, db stowage.DB) (count, bytes int64, err error) {
	err = db.View(ctx, func(tx stowage.Tx) error {
		count, bytes, err = tx.Usage().BlobTotals()
		return err
	})
	return
}
