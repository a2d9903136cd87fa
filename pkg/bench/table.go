package bench

import (
	"fmt"
	"io"
	"math"
	"strings"
)

// Comparison is one scenario in one arrival mode, run by both schedulers.
type Comparison struct {
	Scenario    string `json:"scenario"`
	Mode        Mode   `json:"mode"`
	Description string `json:"description"`
	Cluster     string `json:"cluster"`
	// ArrivalRate is the pods per second of the arriving mode.
	ArrivalRate float64 `json:"arrivalRatePodsPerSecond,omitempty"`
	Lockstep    Metrics `json:"lockstep"`
	Default     Metrics `json:"default"`
	// Coscheduling is scheduler-plugins' Coscheduling, when the bench was
	// given its binary.
	Coscheduling *Metrics `json:"coscheduling,omitempty"`
	// Ratios are lockstep / default by metric name, where both are
	// defined and the default's is not zero.
	Ratios map[string]float64 `json:"ratios"`
	// RatiosCoscheduling are lockstep / coscheduling, likewise.
	RatiosCoscheduling map[string]float64 `json:"ratiosVsCoscheduling,omitempty"`
	// BindFloorMs, for scenarios of big gangs, is how long the apiserver
	// takes to bind a gang's worth of pods sent at once with no scheduler:
	// the least bind skew any scheduler can reach.
	BindFloorMs *float64 `json:"bindFloorMs,omitempty"`
	// FloorMembers is the gang size the floor was measured for.
	FloorMembers int `json:"floorMembers,omitempty"`
}

type kind int

const (
	count kind = iota
	perSecond
	seconds
	millis
	average
)

// row is one line of a comparison table.
type row struct {
	label string
	key   string // the metric's JSON name
	kind  kind
	get   func(*Metrics) *float64
}

func num(i int) *float64 { return val(float64(i)) }

var rows = []row{
	{"gangs complete", "gangsComplete", count, func(m *Metrics) *float64 { return num(m.GangsComplete) }},
	{"gangs partial", "gangsPartial", count, func(m *Metrics) *float64 { return num(m.GangsPartial) }},
	{"gangs waiting", "gangsWaiting", count, func(m *Metrics) *float64 { return num(m.GangsWaiting) }},
	{"pods bound in partial gangs", "podsBoundInPartialGangs", count, func(m *Metrics) *float64 { return num(m.PodsBoundInPartialGangs) }},
	{"pods bound", "podsBound", count, func(m *Metrics) *float64 { return num(m.PodsBound) }},
	{"bind throughput (pods/s)", "bindThroughputPodsPerSecond", perSecond, func(m *Metrics) *float64 { return m.BindThroughput }},
	{"makespan (start to last bind)", "makespanSeconds", seconds, func(m *Metrics) *float64 { return m.MakespanSeconds }},
	{"gang latency p50", "gangLatencyP50Ms", millis, func(m *Metrics) *float64 { return m.GangLatencyP50Ms }},
	{"gang latency p99", "gangLatencyP99Ms", millis, func(m *Metrics) *float64 { return m.GangLatencyP99Ms }},
	{"bind skew p50", "bindSkewP50Ms", millis, func(m *Metrics) *float64 { return m.BindSkewP50Ms }},
	{"bind skew p99", "bindSkewP99Ms", millis, func(m *Metrics) *float64 { return m.BindSkewP99Ms }},
	{"bind skew max", "bindSkewMaxMs", millis, func(m *Metrics) *float64 { return m.BindSkewMaxMs }},
	{"bind skew p50, apiserver's answers", "bindSkewAPIP50Ms", millis, func(m *Metrics) *float64 { return m.BindSkewAPIP50Ms }},
	{"bind skew p99, apiserver's answers", "bindSkewAPIP99Ms", millis, func(m *Metrics) *float64 { return m.BindSkewAPIP99Ms }},
	{"bind skew max, apiserver's answers", "bindSkewAPIMaxMs", millis, func(m *Metrics) *float64 { return m.BindSkewAPIMaxMs }},
	{"bind skew p50, bindings sent", "bindSkewSentP50Ms", millis, func(m *Metrics) *float64 { return m.BindSkewSentP50Ms }},
	{"bind skew p99, bindings sent", "bindSkewSentP99Ms", millis, func(m *Metrics) *float64 { return m.BindSkewSentP99Ms }},
	{"nodes per gang (mean)", "nodesPerGangMean", average, func(m *Metrics) *float64 { return m.NodesPerGang }},
	{"ideal nodes per gang (mean)", "idealNodesPerGangMean", average, func(m *Metrics) *float64 { return m.IdealNodesPerGang }},
	{"nodes / ideal (mean)", "nodesOverIdealMean", average, func(m *Metrics) *float64 { return m.NodesOverIdeal }},
	{"gangs on the ideal node count", "gangsOnIdealNodeCount", count, func(m *Metrics) *float64 { return num(m.GangsOnIdeal) }},
	{"racks per gang (mean)", "racksPerGangMean", average, func(m *Metrics) *float64 { return m.RacksPerGang }},
	{"racks per gang (max)", "racksPerGangMax", count, func(m *Metrics) *float64 { return m.RacksPerGangMax }},
	{"NUMA zones per pod (mean)", "numaZonesPerPodMean", average, func(m *Metrics) *float64 { return m.NUMAZonesPerPod }},
	{"pods across NUMA zones", "podsAcrossNUMAZones", count, func(m *Metrics) *float64 { return m.PodsAcrossNUMAZones }},
	{"pods rejected by kubelet (TopologyAffinityError)", "podsRejectedByKubelet", count, func(m *Metrics) *float64 { return m.PodsRejected }},
	{"NUMA zone CPUs stranded (fewer than the smallest pinned pod)", "numaStrandedCPUs", count, func(m *Metrics) *float64 { return m.NUMAStrandedCPUs }},
	{"API writes per pod bound", "apiWritesPerPodBound", average, func(m *Metrics) *float64 { return m.APIWritesPerPod }},
	{"pod status writes per pod bound", "podStatusWritesPerPodBound", average, func(m *Metrics) *float64 { return m.PodStatusesPerPod }},
	{"scheduler peak RSS (MiB)", "schedulerPeakRSSMiB", average, func(m *Metrics) *float64 { return m.SchedulerPeakRSSMiB }},
	{"ordinary pods bound", "ordinaryBound", count, func(m *Metrics) *float64 { return num(m.OrdinaryBound) }},
	{"ordinary pod latency p50", "ordinaryLatencyP50Ms", millis, func(m *Metrics) *float64 { return m.OrdinaryLatencyP50Ms }},
	{"ordinary pod latency p99", "ordinaryLatencyP99Ms", millis, func(m *Metrics) *float64 { return m.OrdinaryLatencyP99Ms }},
}

// shown leaves out rows that mean nothing in a scenario: NUMA without
// NodeResourceTopology, ordinary pods where there are none.
func (c *Comparison) shown(r row) bool {
	switch r.key {
	case "numaZonesPerPodMean", "podsAcrossNUMAZones", "podsRejectedByKubelet", "numaStrandedCPUs":
		return c.Lockstep.NUMAZonesPerPod != nil || c.Default.NUMAZonesPerPod != nil
	case "schedulerPeakRSSMiB":
		return c.Lockstep.SchedulerPeakRSSMiB != nil
	case "ordinaryBound", "ordinaryLatencyP50Ms", "ordinaryLatencyP99Ms":
		return c.Lockstep.OrdinaryPods > 0 || c.Default.OrdinaryPods > 0
	}
	return true
}

// sides are the schedulers of the comparison, in column order.
func (c *Comparison) sides() (names []string, metrics []*Metrics) {
	names, metrics = []string{"lockstep", "default"}, []*Metrics{&c.Lockstep, &c.Default}
	if c.Coscheduling != nil {
		names, metrics = append(names, "coscheduling"), append(metrics, c.Coscheduling)
	}
	return names, metrics
}

// computeRatios fills Ratios.
func (c *Comparison) computeRatios() {
	c.Ratios = map[string]float64{}
	for _, r := range rows {
		if v, ok := ratio(r.get(&c.Lockstep), r.get(&c.Default)); ok {
			c.Ratios[r.key] = v
		}
	}
	if c.Coscheduling == nil {
		return
	}
	c.RatiosCoscheduling = map[string]float64{}
	for _, r := range rows {
		if v, ok := ratio(r.get(&c.Lockstep), r.get(c.Coscheduling)); ok {
			c.RatiosCoscheduling[r.key] = v
		}
	}
}

func ratio(l, d *float64) (float64, bool) {
	if l == nil || d == nil || *d == 0 {
		return 0, false
	}
	return *l / *d, true
}

// WriteTable prints the comparison: metric | lockstep | default | ratio,
// with a coscheduling column and a second ratio when it ran; names
// left-aligned and figures right-aligned.
func (c *Comparison) WriteTable(w io.Writer) error {
	title := fmt.Sprintf("== %s, %s", c.Scenario, c.Mode.Title())
	if c.Mode == Arriving {
		title += fmt.Sprintf(" at %g pods/s", c.ArrivalRate)
	}
	names, sides := c.sides()
	header := append([]string{"metric"}, names...)
	if c.Coscheduling == nil {
		header = append(header, "ratio")
	} else {
		header = append(header, "/default", "/cosched")
	}
	lines := [][]string{header}
	for _, r := range rows {
		if !c.shown(r) {
			continue
		}
		line := []string{r.label}
		for _, m := range sides {
			line = append(line, format(r.kind, r.get(m)))
		}
		for _, other := range sides[1:] {
			rs := "-"
			if v, ok := ratio(r.get(&c.Lockstep), r.get(other)); ok {
				rs = formatRatio(v)
			}
			line = append(line, rs)
		}
		lines = append(lines, line)
	}
	width := make([]int, len(header))
	for _, l := range lines {
		for i, cell := range l {
			width[i] = max(width[i], len(cell))
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s ==\n%s\ncluster: %s\n", title, c.Description, c.Cluster)
	for _, l := range lines {
		for i, cell := range l {
			switch {
			case i == 0:
				fmt.Fprintf(&b, "%-*s", width[i], cell)
			default:
				fmt.Fprintf(&b, "  %*s", width[i], cell)
			}
		}
		b.WriteString("\n")
	}
	var endings []string
	for i, m := range sides {
		endings = append(endings, names[i]+" "+ended(*m))
	}
	fmt.Fprintf(&b, "run ended: %s\n", strings.Join(endings, "; "))
	if c.BindFloorMs != nil {
		fmt.Fprintf(&b, "apiserver floor: binding %d pods sent at once, no scheduler, takes %s (first to last bind)\n",
			c.FloorMembers, format(millis, c.BindFloorMs))
	}
	if c.Coscheduling == nil {
		b.WriteString("ratio = lockstep / default\n\n")
	} else {
		b.WriteString("/default = lockstep / default; /cosched = lockstep / coscheduling\n\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func ended(m Metrics) string {
	return fmt.Sprintf("%s, %.1fs", m.Ended, m.DurationSeconds)
}

func format(k kind, v *float64) string {
	if v == nil {
		return "-"
	}
	x := *v
	switch k {
	case count:
		return fmt.Sprintf("%.0f", x)
	case perSecond:
		return fmt.Sprintf("%.1f", x)
	case seconds:
		return fmt.Sprintf("%.2fs", x)
	case millis:
		switch {
		case x >= 10000:
			return fmt.Sprintf("%.1fs", x/1000)
		case x >= 1000:
			return fmt.Sprintf("%.2fs", x/1000)
		case x < 10 && x != math.Trunc(x):
			return fmt.Sprintf("%.1fms", x)
		default:
			return fmt.Sprintf("%.0fms", x)
		}
	default:
		return fmt.Sprintf("%.2f", x)
	}
}

// formatRatio keeps two significant digits of small ratios, so that a
// skew a hundred times smaller does not print as 0.00.
func formatRatio(v float64) string {
	if v != 0 && v < 0.1 {
		return fmt.Sprintf("%.2g", v)
	}
	return fmt.Sprintf("%.2f", v)
}
