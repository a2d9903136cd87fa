package report

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"
	"time"
)

//go:embed report.html.tmpl
var pageTemplate string

var tmpl = template.Must(template.New("report").Parse(pageTemplate))

// legendGangs is the most gangs the map's legend names one by one.
const legendGangs = 20

// ordinaryColor is the colour of pods of no gang.
const ordinaryColor = "#9e9e9e"

// page is what the template renders; every number is computed here so
// that the template only lays things out.
type page struct {
	Generated string
	Cluster   string
	Totals    []string
	Errors    []string
	Gangs     []gangRow
	Legend    []legendItem
	// LegendNote stands for the gangs' legend when they are too many.
	LegendNote string
	Zones      []zoneView
	// Detailed is set when every rack's nodes are shown at once; on a
	// bigger cluster each rack shows its strip, and its nodes on demand.
	Detailed bool
	Timeline timeline
}

type gangRow struct {
	Name, Color, Size, Wait, Skew, Nodes, Racks, NUMA, Phase, Note string
}

type legendItem struct{ Name, Color string }

// WriteHTML writes the report page: summary, placement map and timeline,
// with its CSS and SVG inline so the file stands alone.
func WriteHTML(w io.Writer, run Run, s Summary) error {
	colors := gangColors(s.Gangs)
	p := page{
		Generated: run.End.Format(time.RFC1123),
		Cluster:   run.Cluster,
		Totals:    Totals(s),
		Errors:    run.Errors,
		Zones:     placementMap(run, colors),
		Detailed:  len(run.Nodes) <= detailedNodes,
		Timeline:  buildTimeline(run, s, colors),
	}
	for _, g := range s.Gangs {
		row := gangRow{
			Name: g.Key(), Color: colors[g.Key()],
			Size: fmt.Sprintf("%d/%d", g.Pods, g.MinMember),
			Wait: "-", Skew: "-", Nodes: "-", Racks: "-",
			NUMA: numaRange(g), Phase: g.Phase,
		}
		if g.Bound > 0 {
			row.Wait, row.Skew = Seconds(g.Wait), Millis(g.Skew)
			row.Nodes = fmt.Sprintf("%d (ideal %d)", g.Nodes, g.IdealNodes)
			row.Racks = fmt.Sprint(g.Racks)
		}
		if g.RequiredTopology != "" {
			row.Note = "must fit one " + g.RequiredTopology + " domain"
		}
		p.Gangs = append(p.Gangs, row)
		if len(s.Gangs) <= legendGangs {
			p.Legend = append(p.Legend, legendItem{Name: g.Key(), Color: colors[g.Key()]})
		}
	}
	if len(s.Gangs) > legendGangs {
		p.LegendNote = "each gang's colour is beside its name in the table above; click a name to find the gang"
	}
	if s.OrdinaryPods > 0 {
		p.Legend = append(p.Legend, legendItem{Name: "ordinary pods", Color: ordinaryColor})
	}
	return tmpl.Execute(w, p)
}

// okabeIto is Okabe and Ito's palette, told apart with the common forms
// of colour blindness (black left out: it marks binds).
var okabeIto = []string{"#e69f00", "#56b4e9", "#009e73", "#f0e442", "#0072b2", "#d55e00", "#cc79a7"}

// gangColors gives each gang a distinct colour: Okabe and Ito's for the
// first seven, then hues a golden angle apart (no palette tells dozens of
// colours apart for everyone; the gang's name is on every box's tooltip).
func gangColors(gangs []GangSummary) map[string]string {
	out := map[string]string{}
	for i, g := range gangs {
		if i < len(okabeIto) {
			out[g.Key()] = okabeIto[i]
			continue
		}
		hue := math.Mod(float64(i)*137.508+200, 360)
		out[g.Key()] = hslHex(hue, 0.62, 0.52)
	}
	return out
}

// hslHex converts HSL to #rrggbb; html/template lets hex colours into
// style attributes, not functions like hsl().
func hslHex(h, s, l float64) string {
	c := (1 - math.Abs(2*l-1)) * s
	x := c * (1 - math.Abs(math.Mod(h/60, 2)-1))
	m := l - c/2
	var r, g, b float64
	switch {
	case h < 60:
		r, g, b = c, x, 0
	case h < 120:
		r, g, b = x, c, 0
	case h < 180:
		r, g, b = 0, c, x
	case h < 240:
		r, g, b = 0, x, c
	case h < 300:
		r, g, b = x, 0, c
	default:
		r, g, b = c, 0, x
	}
	to := func(v float64) int { return int(math.Round((v + m) * 255)) }
	return fmt.Sprintf("#%02x%02x%02x", to(r), to(g), to(b))
}

func podTitle(p Pod) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s/%s", p.Namespace, p.Name)
	if p.Gang != "" {
		fmt.Fprintf(&b, " (gang %s)", p.Gang)
	}
	fmt.Fprintf(&b, "\ncpu %gm, NUMA %s", float64(p.CPUMilli), strings.Join(p.NUMAZones, "+"))
	if !p.Running.IsZero() && !p.Finished.IsZero() {
		fmt.Fprintf(&b, "\nran %s", Seconds(p.Finished.Sub(p.Running)))
	}
	return b.String()
}

// timeline is an SVG bar chart: one row per gang, time left to right.
type timeline struct {
	Width, Height, Left, ChartWidth int
	Rows                            []timelineRow
	Ticks                           []tick
	AxisY                           int
	// Legend names the phases the bars draw.
	Legend []legendItem
}

// Timeline phases and the colours of those not drawn in the gang's own.
const (
	waitingColor = "#c8c8c8"
	bindingColor = "#202020"
)

type timelineRow struct {
	Label    string
	Y, TextY int
	Segments []segment
}

type segment struct {
	X, W          float64
	Fill, Opacity string
	Title         string
}

type tick struct {
	X     float64
	Label string
}

const (
	rowHeight  = 22
	labelWidth = 230
	chartWidth = 720
)

func buildTimeline(run Run, s Summary, colors map[string]string) timeline {
	total := run.End.Sub(run.Start)
	if total <= 0 {
		total = time.Second
	}
	scale := func(t time.Time) float64 {
		if t.IsZero() {
			t = run.End
		}
		return float64(labelWidth) + float64(chartWidth)*t.Sub(run.Start).Seconds()/total.Seconds()
	}
	tl := timeline{Left: labelWidth, ChartWidth: chartWidth, Width: labelWidth + chartWidth + 20, Legend: []legendItem{
		{Name: "waiting (PodGroup created to first bind)", Color: waitingColor},
		{Name: "binding (first to minMember-th bind)", Color: bindingColor},
	}}
	for i, g := range s.Gangs {
		y := 10 + i*rowHeight
		row := timelineRow{Label: g.Key(), Y: y, TextY: y + 14}
		add := func(from, to time.Time, fill, opacity, what string) {
			if from.IsZero() {
				return
			}
			x0, x1 := scale(from), scale(to)
			w := math.Max(x1-x0, 1.5)
			title := fmt.Sprintf("%s: %s, %s to %s", g.Key(), what,
				Seconds(from.Sub(run.Start)), Seconds(orEnd(to, run.End).Sub(run.Start)))
			row.Segments = append(row.Segments, segment{X: x0, W: w, Fill: fill, Opacity: opacity, Title: title})
		}
		color := colors[g.Key()]
		add(g.Created, firstOf(g.FirstBind, g.Finished), waitingColor, "1", "waiting")
		add(g.FirstBind, firstOf(g.QuorumBind, g.FirstBind), bindingColor, "1", "binding (first to minMember-th bind)")
		add(g.QuorumBind, firstOf(g.Running, g.Finished), color, "0.4", "placed, starting")
		add(g.Running, g.Finished, color, "1", "running")
		tl.Rows = append(tl.Rows, row)
	}
	tl.AxisY = 10 + len(s.Gangs)*rowHeight + 4
	tl.Height = tl.AxisY + 40
	step := tickStep(total)
	for t := time.Duration(0); t <= total; t += step {
		tl.Ticks = append(tl.Ticks, tick{X: scale(run.Start.Add(t)), Label: fmt.Sprintf("%gs", t.Seconds())})
	}
	return tl
}

// tickStep picks a round step giving at most about ten ticks.
func tickStep(total time.Duration) time.Duration {
	for _, s := range []time.Duration{time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second,
		15 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute} {
		if total/s <= 10 {
			return s
		}
	}
	return 10 * time.Minute
}

// firstOf returns a unless it is zero, else b.
func firstOf(a, b time.Time) time.Time {
	if a.IsZero() {
		return b
	}
	return a
}

func orEnd(t, end time.Time) time.Time {
	if t.IsZero() {
		return end
	}
	return t
}
