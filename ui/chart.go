package ui

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/gc"
	"github.com/stowage/stowage/usage"
	"github.com/stowage/stowage/usage/history"
)

// Charts are drawn here, on the server, as SVG elements the templates
// write out (chart.html): no script draws them.

type svgChart struct {
	W, H   int
	Bars   []svgBar
	Lines  []svgLine
	Dots   []svgDot
	Labels []svgText
	Empty  bool
	Title  string
}

type svgBar struct {
	X, Y, W, H float64
	Class      string
	Title      string
}

type svgLine struct {
	Points string
	Class  string
}

type svgDot struct {
	X, Y  float64
	Class string
	Title string
}

type svgText struct {
	X, Y   float64
	Text   string
	Anchor string // start, middle, end
	Class  string
}

const (
	barLabelW = 220.0
	barAreaW  = 520.0
	barRowH   = 22.0
)

type stacked struct {
	label          string
	unique, shared int64
}

func stackedBars(title string, rows []stacked) svgChart {
	c := svgChart{W: int(barLabelW + barAreaW + 110), H: int(barRowH*float64(len(rows)) + 30), Title: title}
	if len(rows) == 0 {
		c.Empty, c.H = true, 40
		return c
	}
	var max int64
	for _, r := range rows {
		max = maxI(max, r.unique+r.shared)
	}
	scale := func(n int64) float64 {
		if max == 0 {
			return 0
		}
		return barAreaW * float64(n) / float64(max)
	}
	for i, r := range rows {
		y := float64(i)*barRowH + 4
		label := r.label
		if len(label) > 32 {
			label = "…" + label[len(label)-31:]
		}
		c.Labels = append(c.Labels, svgText{X: barLabelW - 8, Y: y + 14, Text: label, Anchor: "end"})
		uw := scale(r.unique)
		c.Bars = append(c.Bars, svgBar{X: barLabelW, Y: y, W: uw, H: barRowH - 6, Class: "unique",
			Title: fmt.Sprintf("%s: unique %s bytes (freed if deleted)", r.label, commas(r.unique))})
		c.Bars = append(c.Bars, svgBar{X: barLabelW + uw, Y: y, W: scale(r.shared), H: barRowH - 6, Class: "shared",
			Title: fmt.Sprintf("%s: shared %s bytes (also used elsewhere)", r.label, commas(r.shared))})
		c.Labels = append(c.Labels, svgText{X: barLabelW + uw + scale(r.shared) + 6, Y: y + 14, Text: humanBytes(r.unique + r.shared), Class: "value"})
	}
	legendY := float64(len(rows))*barRowH + 20
	c.Bars = append(c.Bars, svgBar{X: barLabelW, Y: legendY - 10, W: 12, H: 12, Class: "unique"},
		svgBar{X: barLabelW + 150, Y: legendY - 10, W: 12, H: 12, Class: "shared"})
	c.Labels = append(c.Labels, svgText{X: barLabelW + 18, Y: legendY, Text: "unique"}, svgText{X: barLabelW + 168, Y: legendY, Text: "shared"})
	return c
}

func spaceBars(top []usage.RepositorySpace) svgChart {
	rows := make([]stacked, 0, len(top))
	for _, r := range top {
		rows = append(rows, stacked{r.Name, r.UniqueBytes, r.SharedBytes})
	}
	return stackedBars("Repositories by space: unique and shared bytes", rows)
}

func manifestBars(ms []manifestRow) svgChart {
	var rows []stacked
	for _, m := range ms {
		if len(rows) == overviewTop {
			break
		}
		label := shortDigest(m.Digest)
		if len(m.Tags) > 0 {
			label = strings.Join(m.Tags, ",")
		}
		rows = append(rows, stacked{label, m.UniqueBytes, m.Shared})
	}
	return stackedBars("Images by space: unique and shared bytes", rows)
}

// growthChart draws stored (physical) and logical bytes per day.
func growthChart(days []history.Day) svgChart {
	const left, top, w, h = 80.0, 10.0, 640.0, 180.0
	c := svgChart{W: int(left + w + 20), H: int(top + h + 40), Title: "Growth: stored and logical bytes per day"}
	if len(days) == 0 {
		c.Empty, c.H = true, 40
		return c
	}
	var max int64 = 1
	for _, d := range days {
		max = maxI(max, maxI(d.PhysicalBytes, d.LogicalBytes))
	}
	first, _ := time.Parse("2006-01-02", days[0].Day)
	last, _ := time.Parse("2006-01-02", days[len(days)-1].Day)
	span := last.Sub(first).Hours() / 24
	x := func(day string) float64 {
		t, _ := time.Parse("2006-01-02", day)
		if span == 0 {
			return left + w/2
		}
		return left + w*(t.Sub(first).Hours()/24)/span
	}
	y := func(n int64) float64 { return top + h - h*float64(n)/float64(max) }
	var phys, logi []string
	for _, d := range days {
		phys = append(phys, fmt.Sprintf("%.1f,%.1f", x(d.Day), y(d.PhysicalBytes)))
		logi = append(logi, fmt.Sprintf("%.1f,%.1f", x(d.Day), y(d.LogicalBytes)))
		c.Dots = append(c.Dots, svgDot{X: x(d.Day), Y: y(d.PhysicalBytes), Class: "physical", Title: d.Day + ": stored " + commas(d.PhysicalBytes) + " bytes"},
			svgDot{X: x(d.Day), Y: y(d.LogicalBytes), Class: "logical", Title: d.Day + ": logical " + commas(d.LogicalBytes) + " bytes"})
	}
	c.Lines = append(c.Lines, svgLine{Points: strings.Join(logi, " "), Class: "logical"}, svgLine{Points: strings.Join(phys, " "), Class: "physical"})
	// Axes: zero and the top value, the first and last day.
	c.Lines = append(c.Lines, svgLine{Points: fmt.Sprintf("%.0f,%.0f %.0f,%.0f %.0f,%.0f", left, top, left, top+h, left+w, top+h), Class: "axis"})
	c.Labels = append(c.Labels, svgText{X: left - 6, Y: top + 10, Text: humanBytes(max), Anchor: "end"},
		svgText{X: left - 6, Y: top + h, Text: "0", Anchor: "end"},
		svgText{X: left, Y: top + h + 16, Text: days[0].Day, Anchor: "start"},
		svgText{X: left + w, Y: top + h + 16, Text: days[len(days)-1].Day, Anchor: "end"},
		svgText{X: left + 10, Y: top + h + 34, Text: "— stored (physical)", Class: "physical"},
		svgText{X: left + 200, Y: top + h + 34, Text: "— logical (without dedup)", Class: "logical"})
	return c
}

// gauge draws used against a limit.
func gauge(used, limit int64) svgChart {
	const w = 520.0
	c := svgChart{W: int(w + 200), H: 34, Title: "Storage used against the limit"}
	frac := 0.0
	if limit > 0 {
		frac = min(float64(used)/float64(limit), 1)
	}
	class := "gauge"
	if frac >= 0.9 {
		class = "gauge full"
	}
	c.Bars = append(c.Bars, svgBar{X: 0, Y: 4, W: w, H: 20, Class: "track", Title: "limit " + commas(limit) + " bytes"},
		svgBar{X: 0, Y: 4, W: w * frac, H: 20, Class: class, Title: "used " + commas(used) + " bytes"})
	c.Labels = append(c.Labels, svgText{X: w + 8, Y: 19, Text: humanBytes(used) + " of " + humanBytes(limit) + " (" + percent(used, limit) + ")"})
	return c
}

func maxI(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// ---- the last garbage collection ----

// GCRecorder wraps the collector the server runs (scheduled and through
// POST /api/v1/gc) and records the last report, for the overview, in the
// metadata database (setting lastGCSetting, without its digest list), so
// it survives a restart and every node of a scale-out shows the last run
// of any of them. Without a database (before New attaches the registry's)
// it is kept in memory.
type GCRecorder struct {
	next interface {
		Collect(ctx context.Context, opts gc.Options) (gc.Report, error)
	}
	now  func() time.Time
	mu   sync.Mutex
	db   stowage.DB
	last gc.Report
	at   time.Time
}

// lastGCSetting is the setting the last collection's report is kept in.
const lastGCSetting = "ui-last-gc"

type lastGC struct {
	Report gc.Report `json:"report"`
	At     time.Time `json:"at"`
}

// RecordGC returns a collector that records the last report of c.
func RecordGC(c interface {
	Collect(ctx context.Context, opts gc.Options) (gc.Report, error)
}) *GCRecorder {
	return &GCRecorder{next: c, now: time.Now}
}

// attach makes g record in db.
func (g *GCRecorder) attach(db stowage.DB) {
	g.mu.Lock()
	g.db = db
	g.mu.Unlock()
}

// Collect runs a collection and records its report (dry runs are not).
func (g *GCRecorder) Collect(ctx context.Context, opts gc.Options) (gc.Report, error) {
	rep, err := g.next.Collect(ctx, opts)
	if err == nil && !opts.DryRun {
		at := g.now()
		g.mu.Lock()
		g.last, g.at = rep, at
		db := g.db
		g.mu.Unlock()
		if db != nil {
			rep.Digests = nil
			b, _ := json.Marshal(lastGC{rep, at.UTC()})
			// Only the overview reads it: a failure to record is not the
			// collection's.
			_ = db.Update(context.WithoutCancel(ctx), func(tx stowage.Tx) error {
				return tx.Settings().PutSetting(lastGCSetting, string(b), at)
			})
		}
	}
	return rep, err
}

// Last returns the last report, if any: the database's, else (none
// recorded there, or it does not answer) this process's.
func (g *GCRecorder) Last(ctx context.Context) (gc.Report, time.Time, bool) {
	g.mu.Lock()
	db, last, at := g.db, g.last, g.at
	g.mu.Unlock()
	if db != nil {
		var v string
		err := db.View(ctx, func(tx stowage.Tx) error {
			var err error
			v, err = tx.Settings().GetSetting(lastGCSetting)
			return err
		})
		var l lastGC
		if err == nil && json.Unmarshal([]byte(v), &l) == nil && !l.At.Before(at) {
			return l.Report, l.At, true
		}
	}
	return last, at, !at.IsZero()
}
