package bench

import (
	"github.com/lockstep-sched/lockstep/pkg/controlplane"
	"math"
	"slices"
	"time"

	"github.com/lockstep-sched/lockstep/pkg/sandbox/report"
)

// Metrics are one scheduler's figures for one scenario and arrival mode
// (design brief, section 5). Figures that a run cannot define, such as the
// latency of gangs when none completed, are nil.
type Metrics struct {
	Pods      int `json:"pods"`
	PodsBound int `json:"podsBound"`

	// A gang is complete once minMember of its members have been bound
	// (in the competing scenario they are deleted afterwards), partial
	// when some but fewer are bound at the end, waiting when none are.
	Gangs                   int `json:"gangs"`
	GangsComplete           int `json:"gangsComplete"`
	GangsPartial            int `json:"gangsPartial"`
	GangsWaiting            int `json:"gangsWaiting"`
	PodsBoundInPartialGangs int `json:"podsBoundInPartialGangs"`

	// BindThroughput is pods bound per second, first bind to last.
	BindThroughput *float64 `json:"bindThroughputPodsPerSecond"`
	// Makespan is from the start of measurement (the scheduler's start
	// when every pod existed first, the first creation when they arrive)
	// to the last bind.
	MakespanSeconds *float64 `json:"makespanSeconds"`

	// GangLatency is, per complete gang, from its first member's creation
	// (or the start of measurement, when later) to its minMember-th bind.
	GangLatencyP50Ms *float64 `json:"gangLatencyP50Ms"`
	GangLatencyP99Ms *float64 `json:"gangLatencyP99Ms"`
	// BindSkew is, per complete gang, the minMember-th bind minus the
	// first.
	BindSkewP50Ms *float64 `json:"bindSkewP50Ms"`
	BindSkewP99Ms *float64 `json:"bindSkewP99Ms"`
	BindSkewMaxMs *float64 `json:"bindSkewMaxMs"`
	// BindSkewAPI is the same skew with each bind timed when the
	// apiserver answered it (at the counting proxy in front of it), not
	// when a watch delivered the bound pod: what the scheduler did,
	// without the watch's delivery in a busy process. To 0.1 ms.
	BindSkewAPIP50Ms *float64 `json:"bindSkewAPIP50Ms"`
	BindSkewAPIP99Ms *float64 `json:"bindSkewAPIP99Ms"`
	BindSkewAPIMaxMs *float64 `json:"bindSkewAPIMaxMs"`
	// BindSkewSent is the same for when the scheduler sent the bindings
	// (they reached the proxy): the scheduler's own part of the skew,
	// before the apiserver's.
	BindSkewSentP50Ms *float64 `json:"bindSkewSentP50Ms"`
	BindSkewSentP99Ms *float64 `json:"bindSkewSentP99Ms"`

	// Placement of complete gangs: nodes used against the ideal
	// ceil(gang request / node size), and racks used.
	NodesPerGang      *float64 `json:"nodesPerGangMean"`
	IdealNodesPerGang *float64 `json:"idealNodesPerGangMean"`
	NodesOverIdeal    *float64 `json:"nodesOverIdealMean"`
	GangsOnIdeal      int      `json:"gangsOnIdealNodeCount"`
	RacksPerGang      *float64 `json:"racksPerGangMean"`
	RacksPerGangMax   *float64 `json:"racksPerGangMax"`

	// NUMA zones per bound pod whose zones are known (topology scenario).
	NUMAZonesPerPod     *float64 `json:"numaZonesPerPodMean"`
	PodsAcrossNUMAZones *float64 `json:"podsAcrossNUMAZones"`
	// PodsRejected are the pods the sandbox's kubelet refused at
	// admission (TopologyAffinityError): bound, and never run.
	PodsRejected *float64 `json:"podsRejectedByKubelet"`
	// NUMAStrandedCPUs are the free CPUs left in zones that hold pods, too
	// few for the smallest pinned pod of the scenario, once it ended.
	NUMAStrandedCPUs *float64 `json:"numaStrandedCPUs"`

	// Ordinary pods, from creation (or the start of measurement) to bind.
	OrdinaryPods         int      `json:"ordinaryPods"`
	OrdinaryBound        int      `json:"ordinaryBound"`
	OrdinaryLatencyP50Ms *float64 `json:"ordinaryLatencyP50Ms"`
	OrdinaryLatencyP99Ms *float64 `json:"ordinaryLatencyP99Ms"`

	// API writes the scheduler made during the run, through a counting
	// proxy: bindings, pod status patches (conditions, nominated nodes),
	// Events, and the sum per pod bound.
	APIBinds          int64    `json:"apiBinds"`
	APIPodStatus      int64    `json:"apiPodStatusWrites"`
	APIEvents         int64    `json:"apiEvents"`
	APIOtherWrites    int64    `json:"apiOtherWrites"`
	APIWritesPerPod   *float64 `json:"apiWritesPerPodBound"`
	PodStatusesPerPod *float64 `json:"podStatusWritesPerPodBound"`

	// SchedulerPeakRSSMiB is the scheduler process's peak resident memory
	// (VmHWM), when it ran as a child process.
	SchedulerPeakRSSMiB *float64 `json:"schedulerPeakRSSMiB,omitempty"`

	// Ended says why the run stopped: EndAllBound, EndAllComplete,
	// EndStalled or EndBudget.
	Ended           string  `json:"ended"`
	DurationSeconds float64 `json:"durationSeconds"`
}

// Why a run ended.
const (
	EndAllBound    = "all pods bound"
	EndAllComplete = "every gang completed"
	EndStalled     = "stalled"
	EndBudget      = "time budget spent"
)

// measure computes the metrics of what the recorder saw. origin is the
// start of measurement.
func measure(run report.Run, origin time.Time) Metrics {
	s := report.Summarize(run)
	m := Metrics{Pods: s.PodsTotal, PodsBound: s.PodsBound, Gangs: len(s.Gangs), OrdinaryPods: s.OrdinaryPods}
	if s.Throughput > 0 {
		m.BindThroughput = val(s.Throughput)
	}

	since := func(created, at time.Time) float64 { return ms(at.Sub(later(created, origin))) }
	firstCreated := map[string]time.Time{}
	var lastBind time.Time
	var zones, split, withZones, rejected int
	var ordinary []float64
	for _, p := range run.Pods {
		if k := p.GangKey(); k != "" {
			if t, ok := firstCreated[k]; !ok || p.Created.Before(t) {
				firstCreated[k] = p.Created
			}
		}
		if p.Bound.IsZero() {
			continue
		}
		if p.Rejected != "" {
			rejected++
		}
		lastBind = later(lastBind, p.Bound)
		if n := len(p.NUMAZones); n > 0 {
			withZones++
			zones += n
			if n > 1 {
				split++
			}
		}
		if p.Gang == "" {
			m.OrdinaryBound++
			ordinary = append(ordinary, since(p.Created, p.Bound))
		}
	}
	if !lastBind.IsZero() {
		m.MakespanSeconds = val(lastBind.Sub(origin).Seconds())
	}
	if withZones > 0 {
		m.NUMAZonesPerPod = val(float64(zones) / float64(withZones))
		m.PodsAcrossNUMAZones = val(float64(split))
	}
	if withZones > 0 || rejected > 0 {
		m.PodsRejected = val(float64(rejected))
	}
	m.OrdinaryLatencyP50Ms, m.OrdinaryLatencyP99Ms = percentiles(ordinary)

	var latency, skew, nodes, ideal, over, racks []float64
	for _, g := range s.Gangs {
		switch {
		case g.Bound >= g.MinMember:
			m.GangsComplete++
		case g.Bound > 0:
			m.GangsPartial++
			m.PodsBoundInPartialGangs += g.Bound
			continue
		default:
			m.GangsWaiting++
			continue
		}
		latency = append(latency, since(firstCreated[g.Key()], g.QuorumBind))
		skew = append(skew, ms(g.Skew))
		nodes = append(nodes, float64(g.Nodes))
		ideal = append(ideal, float64(g.IdealNodes))
		if g.IdealNodes > 0 {
			over = append(over, float64(g.Nodes)/float64(g.IdealNodes))
		}
		if g.Nodes <= g.IdealNodes {
			m.GangsOnIdeal++
		}
		racks = append(racks, float64(g.Racks))
	}
	m.GangLatencyP50Ms, m.GangLatencyP99Ms = percentiles(latency)
	m.BindSkewP50Ms, m.BindSkewP99Ms = percentiles(skew)
	m.BindSkewMaxMs = maximum(skew)
	m.NodesPerGang, m.IdealNodesPerGang, m.NodesOverIdeal = mean(nodes), mean(ideal), mean(over)
	m.RacksPerGang, m.RacksPerGangMax = mean(racks), maximum(racks)
	return m
}

// apiSkew sets the BindSkewAPI and BindSkewSent figures from the counting
// proxy's timing of each binding, by "namespace/name": per complete gang
// whose bound members were all timed there, the minMember-th bind minus
// the first.
func (m *Metrics) apiSkew(run report.Run, binds map[string]controlplane.BindTiming) {
	s := report.Summarize(run)
	sent, answered := map[string][]time.Time{}, map[string][]time.Time{}
	untimed := map[string]bool{}
	for _, p := range run.Pods {
		k := p.GangKey()
		if k == "" || p.Bound.IsZero() {
			continue
		}
		if t, ok := binds[p.Namespace+"/"+p.Name]; ok {
			sent[k] = append(sent[k], t.Sent)
			answered[k] = append(answered[k], t.Answered)
		} else {
			untimed[k] = true
		}
	}
	skews := func(times map[string][]time.Time) []float64 {
		var out []float64
		for _, g := range s.Gangs {
			t := times[g.Key()]
			if g.Bound < g.MinMember || untimed[g.Key()] || len(t) < g.MinMember {
				continue
			}
			slices.SortFunc(t, time.Time.Compare)
			out = append(out, tenthsOfMs(t[g.MinMember-1].Sub(t[0])))
		}
		return out
	}
	a := skews(answered)
	m.BindSkewAPIP50Ms, m.BindSkewAPIP99Ms = percentiles(a)
	m.BindSkewAPIMaxMs = maximum(a)
	m.BindSkewSentP50Ms, m.BindSkewSentP99Ms = percentiles(skews(sent))
}

// tenthsOfMs is a duration in milliseconds to 0.1 ms, the resolution at
// which the proxy's clock still means something.
func tenthsOfMs(d time.Duration) float64 {
	return float64(d.Round(100*time.Microsecond).Microseconds()) / 1000
}

// val is a defined figure.
func val(f float64) *float64 { return &f }

// ms is a duration in whole milliseconds, the resolution at which the
// watch observes binds: finer digits would be noise, and a ratio against a
// skew of 0.02ms would only amplify it.
func ms(d time.Duration) float64 { return float64(d.Round(time.Millisecond).Milliseconds()) }

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// percentiles returns the nearest-rank p50 and p99, nil for no values.
func percentiles(v []float64) (p50, p99 *float64) {
	if len(v) == 0 {
		return nil, nil
	}
	s := slices.Clone(v)
	slices.Sort(s)
	rank := func(p float64) *float64 {
		i := int(math.Ceil(p/100*float64(len(s)))) - 1
		return val(s[max(0, min(i, len(s)-1))])
	}
	return rank(50), rank(99)
}

func mean(v []float64) *float64 {
	if len(v) == 0 {
		return nil
	}
	var sum float64
	for _, x := range v {
		sum += x
	}
	return val(sum / float64(len(v)))
}

func maximum(v []float64) *float64 {
	if len(v) == 0 {
		return nil
	}
	return val(slices.Max(v))
}

// countAPI records the scheduler's API writes.
func (m *Metrics) countAPI(counts map[string]int64) {
	m.APIBinds = counts[controlplane.RequestBind]
	m.APIPodStatus = counts[controlplane.RequestPodStatus]
	m.APIEvents = counts[controlplane.RequestEvent]
	m.APIOtherWrites = counts[controlplane.RequestOtherWrite]
	if m.PodsBound > 0 {
		writes := m.APIBinds + m.APIPodStatus + m.APIEvents + m.APIOtherWrites
		m.APIWritesPerPod = val(float64(writes) / float64(m.PodsBound))
		m.PodStatusesPerPod = val(float64(m.APIPodStatus) / float64(m.PodsBound))
	}
}
