package ui

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/auth"
	"github.com/stowage/stowage/gc"
	"github.com/stowage/stowage/mgmt"
	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/scrub"
	"github.com/stowage/stowage/usage"
	"github.com/stowage/stowage/usage/history"
	"github.com/stowage/stowage/usage/rank"
)

// ---- overview ----

type overviewData struct {
	Usage       usage.Usage
	Top         []usage.RepositorySpace
	More        int
	Bars        svgChart
	Growth      svgChart
	Days        []history.Day
	Quotas      stowage.QuotaReport
	LimitBar    svgChart
	Retention   *policy.Run
	GC          *gc.Report
	GCAt        time.Time
	Scrub       *scrub.Report
	Storage     *mgmt.TopologyStatus
	Replication any
	HasRepl     bool
}

// overviewTop is how many repositories the space picture shows.
const overviewTop = 15

func (h *Handler) overview(v *view) error {
	// The registry's usage: GET /api/v1/usage (metadata/read on every repository).
	if err := h.allow(v.id, http.MethodGet, "/api/v1/usage"); err != nil {
		return err
	}
	ctx := v.ctx()
	// The totals the database keeps and the largest repositories: the
	// same cost at any size.
	rep := usage.New(h.reg)
	u, err := rep.Totals(ctx)
	if err != nil {
		return err
	}
	d := overviewData{Usage: u}
	top, err := rep.Largest(ctx, overviewTop)
	if err != nil {
		return err
	}
	d.More = max(0, int(u.Repositories)-len(top))
	d.Top = top
	d.Bars = spaceBars(top)
	if h.opts.History != nil {
		now := h.now()
		d.Days, err = h.opts.History.UsageDays(ctx, history.DayOf(now.AddDate(0, 0, -365)), history.DayOf(now), 366)
		if err != nil {
			return err
		}
		// Today's point is now's usage (the row is the last recording).
		today := history.Day{Day: history.DayOf(now), PhysicalBytes: u.PhysicalBytes, LogicalBytes: u.LogicalBytes}
		drawn := slices.Clone(d.Days)
		if n := len(drawn); n > 0 && drawn[n-1].Day == today.Day {
			drawn[n-1] = today
		} else {
			drawn = append(drawn, today)
		}
		d.Growth = growthChart(drawn)
	}
	if d.Quotas, err = h.reg.Quotas(ctx); err != nil {
		return err
	}
	d.Quotas.Repositories = slices.DeleteFunc(d.Quotas.Repositories, func(q stowage.Quota) bool { return !h.canList(v.id, q.Repository) })
	if d.Quotas.Registry.LimitBytes > 0 {
		d.LimitBar = gauge(d.Quotas.Registry.UsedBytes, d.Quotas.Registry.LimitBytes)
	}
	if h.opts.Policies != nil {
		if _, d.Retention, err = h.opts.Policies.Retention(ctx); err != nil {
			return err
		}
	}
	if h.opts.GC != nil {
		if rep, at, ok := h.opts.GC.Last(v.ctx()); ok {
			d.GC, d.GCAt = &rep, at
		}
	}
	if h.opts.Scrub != nil {
		if rep, err := h.opts.Scrub.Last(ctx); err == nil && rep.Started != "" {
			d.Scrub = &rep
		}
	}
	if h.opts.Topology != nil {
		st := h.opts.Topology.Status()
		d.Storage = &st
	}
	if h.opts.Replication != nil {
		d.HasRepl = true
		if d.Replication, err = h.opts.Replication(ctx); err != nil {
			d.Replication = "unavailable: " + errorMessage(err)
		}
	}
	v.render(http.StatusOK, "overview", "Overview", d)
	return nil
}

// ---- repositories ----

type reposData struct {
	Rows    []rank.Row
	Query   string
	Sort    string
	Next    string // the next page's URL; "" on the last
	First   bool
	Limit   int
	Sorting bool // sort by size and change time available
}

const (
	defaultPage = 50
	// scanBudget bounds the rows one listing request reads when it filters
	// out repositories the caller may not see (a token with a narrow scope
	// map in a big registry): then it shows what it found and a next link.
	scanBudget = 5000
)

func (h *Handler) repositories(v *view) error {
	// Listing is the catalog's right (any authenticated caller), filtered to
	// what the caller may list, as GET /v2/_catalog is.
	if err := h.allow(v.id, http.MethodGet, "/v2/_catalog"); err != nil {
		return err
	}
	q := v.r.URL.Query()
	d := reposData{Query: q.Get("q"), Sort: q.Get("sort"), Limit: defaultPage, Sorting: h.opts.Rank != nil}
	if n, err := strconv.Atoi(q.Get("n")); err == nil && n > 0 && n <= rank.MaxLimit {
		d.Limit = n
	}
	order := rank.ByName
	switch d.Sort {
	case "size":
		order = rank.BySize
	case "updated":
		order = rank.ByUpdated
	default:
		d.Sort = "name"
	}
	if d.Query != "" && stowage.ValidateName(d.Query) != nil && stowage.ValidateName(d.Query+"a") != nil {
		return stowage.Errorf(stowage.CodeInvalidParameter, "search for the beginning of a repository name: lowercase letters, digits, '.', '_', '-' and '/'")
	}
	after, err := parseCursor(q.Get("after"))
	if err != nil {
		return err
	}
	d.First = after.Name == ""
	ctx := v.ctx()
	if h.opts.Rank == nil {
		order = rank.ByName
	}
	// A caller who may not list every repository gets the rows it may list:
	// read in bigger batches (filtered here), at most scanBudget rows per
	// page; the cursor is the last row looked at, so a page cut short by
	// the budget goes on where it stopped.
	batch := d.Limit
	if h.auth != nil && !v.id.CanAll(auth.MetadataRead) {
		batch = rank.MaxLimit
	}
	more, scanned := true, 0
	for more && len(d.Rows) < d.Limit && scanned < scanBudget {
		rows, err := h.page(ctx, rank.Query{Order: order, Prefix: d.Query, After: after, Limit: batch})
		if err != nil {
			return err
		}
		scanned += len(rows)
		more = len(rows) == batch
		for _, row := range rows {
			if len(d.Rows) == d.Limit {
				more = true
				break
			}
			after = row
			if h.canList(v.id, row.Name) {
				d.Rows = append(d.Rows, row)
			}
		}
	}
	if more {
		nq := v.r.URL.Query()
		nq.Set("after", formatCursor(after))
		d.Next = Prefix + "repositories?" + nq.Encode()
	}
	v.render(http.StatusOK, "repositories", "Repositories", d)
	return nil
}

// page reads one page of repositories: from the database's rank store, or
// (a database without one) by name through the catalog, with sizes from
// the usage report of each.
func (h *Handler) page(ctx context.Context, q rank.Query) ([]rank.Row, error) {
	if h.opts.Rank != nil {
		return h.opts.Rank.RepositoryPage(ctx, q)
	}
	names, err := h.reg.Catalog(ctx, q.After.Name, q.Limit)
	if err != nil {
		return nil, err
	}
	var out []rank.Row
	for _, n := range names {
		info, err := h.reg.RepositoryInfo(ctx, n)
		if err != nil {
			continue
		}
		out = append(out, rank.Row{Name: n, Updated: info.Updated, Tags: int64(info.Tags), Manifests: int64(info.Manifests)})
	}
	return out, nil
}

// A cursor is the last row of a page: the keys of every order.
func formatCursor(r rank.Row) string {
	b, _ := json.Marshal([]any{r.Name, r.RecordedBytes, r.Updated.UnixNano(), r.Unmeasured})
	return string(b)
}

func parseCursor(s string) (rank.Row, error) {
	if s == "" {
		return rank.Row{}, nil
	}
	var v []json.RawMessage
	var r rank.Row
	var ns int64
	if json.Unmarshal([]byte(s), &v) != nil || len(v) != 4 || json.Unmarshal(v[0], &r.Name) != nil ||
		json.Unmarshal(v[1], &r.RecordedBytes) != nil || json.Unmarshal(v[2], &ns) != nil || json.Unmarshal(v[3], &r.Unmeasured) != nil {
		return r, stowage.Errorf(stowage.CodePaginationInvalid, "the page link is not valid; start again from the first page")
	}
	r.Updated = time.Unix(0, ns)
	return r, nil
}

// ---- one repository ----

type manifestRow struct {
	usage.ManifestSpace
	Shared   int64
	Info     stowage.ManifestInfo
	Referrer bool // has a subject: a signature, SBOM, attestation…
	Platform string
}

type repoData struct {
	Name       string
	Info       stowage.RepositoryInfo
	Usage      usage.RepositoryDetail
	Tags       []stowage.TagRecord
	Manifests  []manifestRow
	Referrers  []manifestRow
	Truncated  int
	CanDelete  bool
	CanLock    bool
	Bars       svgChart
	QuotaBytes int64
}

// maxRows bounds the manifests one repository page lists.
const maxRows = 500

func (h *Handler) repository(v *view) error {
	name := v.r.URL.Query().Get("name")
	if err := stowage.ValidateName(name); err != nil {
		return err
	}
	// What GET /api/v1/usage/<name> needs: metadata/read on it.
	if err := h.allow(v.id, http.MethodGet, "/api/v1/usage/"+name); err != nil {
		return err
	}
	ctx := v.ctx()
	d := repoData{Name: name}
	var err error
	if d.Info, err = h.reg.RepositoryInfo(ctx, name); err != nil {
		return err
	}
	if d.Usage, err = usage.New(h.reg).Repository(ctx, name); err != nil {
		return err
	}
	if d.Tags, err = h.reg.TagInfos(ctx, name); err != nil {
		return err
	}
	infos, err := h.reg.ManifestInfos(ctx, name)
	if err != nil {
		return err
	}
	byDigest := map[stowage.Digest]stowage.ManifestInfo{}
	for _, i := range infos {
		byDigest[i.Digest] = i
	}
	for _, m := range d.Usage.PerManifest {
		info, ok := byDigest[m.Digest]
		if !ok {
			continue // list-locked
		}
		row := manifestRow{ManifestSpace: m, Shared: m.Size - m.UniqueBytes, Info: info, Referrer: info.Subject != ""}
		if info.OS != "" {
			row.Platform = info.OS + "/" + info.Architecture
		}
		if row.Referrer {
			d.Referrers = append(d.Referrers, row)
		} else {
			d.Manifests = append(d.Manifests, row)
		}
	}
	if n := len(d.Manifests); n > maxRows {
		d.Truncated = n - maxRows
		d.Manifests = d.Manifests[:maxRows]
	}
	if len(d.Referrers) > maxRows {
		d.Referrers = d.Referrers[:maxRows]
	}
	d.CanDelete = h.allow(v.id, http.MethodDelete, "/api/v1/repositories/"+name) == nil
	d.CanLock = h.allow(v.id, http.MethodPatch, "/api/v1/locks/"+name) == nil
	d.Bars = manifestBars(d.Manifests)
	v.render(http.StatusOK, "repository", name, d)
	return nil
}

// ---- one manifest ----

type layerRow struct {
	Digest    stowage.Digest
	Kind      string // config, layer, manifest (an index's child)
	MediaType string
	Size      int64
	SharedBy  []sharer
	More      bool // more visible sharers than shown
	// Hidden: other images the caller may not see use it too.
	Hidden bool
	// Unknown: the scan stopped (or could not run) before the answer was
	// complete: Checked sharing images were read.
	Unknown bool
	Checked int
}

type sharer struct {
	Repo     string
	Manifest stowage.Digest
}

type manifestData struct {
	Name      string
	Info      stowage.ManifestInfo
	Unique    int64
	Layers    []layerRow
	Referrers []stowage.Descriptor
	CanDelete bool
	CanLock   bool
	Locks     stowage.Locks
}

// sharersShown bounds the "also used by" list of a layer.
const sharersShown = 10

// sharerScanLimit bounds how many images that use a blob the manifest page
// reads to find sharersShown the caller may see (Options.SharerScanLimit).
const sharerScanLimit = 5000

// sharers fills l's "also used by": up to sharersShown other images that
// use l's blob and that the caller may see. It reads the images that use
// the blob in batches (in name order), filtering as it goes, until it has
// found one more than it shows or read them all, or read the scan limit.
// It never claims "only this image" unless that holds for the whole
// registry: hidden sharers are reported (Hidden), an incomplete scan too
// (Unknown).
func (h *Handler) sharers(ctx context.Context, id auth.Identity, name string, dg stowage.Digest, l *layerRow) error {
	if h.opts.Rank == nil {
		l.Unknown = true
		return nil
	}
	scanLimit := h.opts.SharerScanLimit
	if scanLimit <= 0 {
		scanLimit = sharerScanLimit
	}
	read := 0
	for limit := min(5*sharersShown, scanLimit); ; limit = min(4*limit, scanLimit) {
		// The store reads from the start: the rows already seen come first
		// again (name order), and only the new ones are looked at.
		holders, err := h.opts.Rank.SharedBy(ctx, l.Digest, limit)
		if err != nil {
			return err
		}
		for _, x := range holders[min(read, len(holders)):] {
			read++
			if x.Repo == name && x.Manifest == dg {
				continue
			}
			if !h.canList(id, x.Repo) {
				l.Hidden = true
				continue
			}
			if len(l.SharedBy) == sharersShown {
				l.More = true
				return nil
			}
			l.SharedBy = append(l.SharedBy, sharer{x.Repo, x.Manifest})
		}
		if len(holders) < limit {
			return nil // all of them read
		}
		if limit >= scanLimit {
			l.Unknown, l.Checked = true, read
			return nil
		}
	}
}

func (h *Handler) manifest(v *view) error {
	q := v.r.URL.Query()
	name := q.Get("name")
	if err := stowage.ValidateName(name); err != nil {
		return err
	}
	dg, err := stowage.ParseDigest(q.Get("digest"))
	if err != nil {
		return err
	}
	// What GET /acr/v1/<name>/_manifests/<digest> needs: metadata/read.
	if err := h.allow(v.id, http.MethodGet, "/acr/v1/"+name+"/_manifests/"+string(dg)); err != nil {
		return err
	}
	ctx := v.ctx()
	d := manifestData{Name: name}
	if d.Info, err = h.reg.ManifestInfo(ctx, name, dg); err != nil {
		return err
	}
	d.Locks = d.Info.Locks
	if u, err := usage.New(h.reg).Repository(ctx, name); err == nil {
		for _, m := range u.PerManifest {
			if m.Digest == dg {
				d.Unique = m.UniqueBytes
			}
		}
	}
	kinds, types := h.describeRefs(ctx, name, dg)
	err = h.reg.DB().View(ctx, func(tx stowage.Tx) error {
		refs, err := tx.Manifests().ManifestRefs(name, dg)
		if err != nil {
			return err
		}
		for _, ref := range refs {
			l := layerRow{Digest: ref.Digest, Kind: kinds[ref.Digest], MediaType: types[ref.Digest]}
			if l.Kind == "" {
				l.Kind = string(ref.Kind)
			}
			if b, err := tx.Blobs().GetBlob(ref.Digest); err == nil {
				l.Size = b.Size
			} else if m, err := tx.Manifests().GetManifest(name, ref.Digest); err == nil {
				l.Size = m.Size
			}
			d.Layers = append(d.Layers, l)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i := range d.Layers {
		if err := h.sharers(ctx, v.id, name, dg, &d.Layers[i]); err != nil {
			return err
		}
	}
	if d.Referrers, err = h.reg.Referrers(ctx, name, dg, ""); err != nil {
		return err
	}
	d.CanDelete = h.allow(v.id, http.MethodDelete, "/api/v1/images/"+name+"@"+string(dg)) == nil
	d.CanLock = h.allow(v.id, http.MethodPatch, "/api/v1/locks/"+name+"@"+string(dg)) == nil
	v.render(http.StatusOK, "manifest", name+"@"+shortDigest(dg), d)
	return nil
}

// describeRefs reads the manifest to tell its config from its layers.
// It may fail (a read-locked manifest, a key unavailable): the page then
// shows what the database knows.
func (h *Handler) describeRefs(ctx context.Context, name string, dg stowage.Digest) (map[stowage.Digest]string, map[stowage.Digest]string) {
	kinds, types := map[stowage.Digest]string{}, map[stowage.Digest]string{}
	rec, body, err := h.reg.GetManifest(ctx, name, stowage.Reference{Digest: dg})
	if err != nil {
		return kinds, types
	}
	m, err := stowage.ParseManifest(rec.MediaType, body)
	if err != nil {
		return kinds, types
	}
	if m.Config != nil {
		kinds[m.Config.Digest], types[m.Config.Digest] = "config", m.Config.MediaType
	}
	for _, l := range m.Layers {
		kinds[l.Digest], types[l.Digest] = "layer", l.MediaType
	}
	for _, c := range m.Manifests {
		kinds[c.Digest], types[c.Digest] = "manifest", c.MediaType
	}
	return kinds, types
}

func (v *view) ctx() context.Context {
	ctx := v.r.Context()
	if v.h.auth != nil {
		ctx = withIdentity(ctx, v)
	}
	return ctx
}
