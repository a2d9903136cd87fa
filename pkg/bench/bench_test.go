package bench

import (
	"bytes"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	v1qos "k8s.io/kubernetes/pkg/apis/core/v1/helper/qos"

	"github.com/lockstep-sched/lockstep/pkg/controlplane"
	"github.com/lockstep-sched/lockstep/pkg/podgroup"
	"github.com/lockstep-sched/lockstep/pkg/sandbox/report"
)

func TestObjectsOrder(t *testing.T) {
	s := Scenario{Name: "x", Gangs: repeat(2, Shape{Members: 2, CPUMilli: 1000, Memory: gi})}
	names := func(s Scenario) string {
		var out []string
		for _, o := range s.objects("ns", "lockstep") {
			if o.Pod != nil && o.Pod.Spec.SchedulerName != "lockstep" {
				t.Errorf("%s: schedulerName %q", o.Pod.Name, o.Pod.Spec.SchedulerName)
			}
			out = append(out, o.Ref())
		}
		return strings.Join(out, " ")
	}
	if got, want := names(s), "PodGroup/gang-000 Pod/gang-000-000 Pod/gang-000-001 PodGroup/gang-001 Pod/gang-001-000 Pod/gang-001-001"; got != want {
		t.Errorf("gang by gang:\n got %s\nwant %s", got, want)
	}
	s.Interleave = true
	if got, want := names(s), "PodGroup/gang-000 PodGroup/gang-001 Pod/gang-000-000 Pod/gang-001-000 Pod/gang-000-001 Pod/gang-001-001"; got != want {
		t.Errorf("interleaved:\n got %s\nwant %s", got, want)
	}
	s.Interleave = false
	s.Ordinary = 3
	s.OrdinaryShape = Shape{Members: 1, CPUMilli: 500, Memory: gi}
	objs := s.objects("ns", "default-scheduler")
	if len(objs) != 2+4+3 {
		t.Fatalf("%d objects, want 9", len(objs))
	}
	// One ordinary pod after the first gang, two after the second.
	if got, want := names(s), "PodGroup/gang-000 Pod/gang-000-000 Pod/gang-000-001 Pod/pod-0000 PodGroup/gang-001 Pod/gang-001-000 Pod/gang-001-001 Pod/pod-0001 Pod/pod-0002"; got != want {
		t.Errorf("mixed:\n got %s\nwant %s", got, want)
	}
	for _, o := range objs {
		if o.Pod != nil && strings.HasPrefix(o.Pod.Name, "gang-") && podgroup.NameOf(o.Pod) == "" {
			t.Errorf("member %s has no PodGroup label", o.Pod.Name)
		}
		if o.Pod != nil && o.Pod.Spec.Containers[0].Resources.Limits != nil {
			t.Errorf("pod %s has limits", o.Pod.Name)
		}
	}
	s.Guaranteed = true
	for _, o := range s.objects("ns", "lockstep") {
		if o.Pod == nil {
			continue
		}
		if qos := v1qos.GetPodQOS(o.Pod); qos != v1.PodQOSGuaranteed {
			t.Errorf("pod %s: QoS %s, want Guaranteed", o.Pod.Name, qos)
		}
	}
}

func TestScenariosFitTheirClusters(t *testing.T) {
	for _, z := range []Sizes{DefaultSizes(), TinySizes()} {
		if err := z.Validate(); err != nil {
			t.Fatal(err)
		}
		for _, s := range Scenarios(z) {
			if err := s.Cluster.Validate(); err != nil {
				t.Errorf("%s: %v", s.Name, err)
			}
			var cpu int64
			for _, g := range s.Gangs {
				cpu += int64(g.Members) * g.CPUMilli
			}
			cpu += int64(s.Ordinary) * s.OrdinaryShape.CPUMilli
			room := int64(s.Cluster.Nodes*s.Cluster.CPUsPerNode) * 1000
			// Only the competing scenario asks for more than there is.
			if over := cpu > room; over != s.Churn {
				t.Errorf("%s: requests %dm CPU of %dm", s.Name, cpu, room)
			}
		}
	}
}

func TestMeasure(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	run := report.Run{
		Nodes: []report.Node{
			{Name: "n1", Rack: "r1", CPUs: 4, Memory: 8 * gi},
			{Name: "n2", Rack: "r2", CPUs: 4, Memory: 8 * gi},
		},
		Gangs: []report.Gang{
			{Namespace: "ns", Name: "a", MinMember: 2, Created: at(0)},
			{Namespace: "ns", Name: "b", MinMember: 2, Created: at(0)},
			{Namespace: "ns", Name: "c", MinMember: 2, Created: at(0)},
		},
		Pods: []report.Pod{
			// a: complete on two nodes in two racks, though one would do.
			{Namespace: "ns", Name: "a-0", Gang: "a", CPUMilli: 2000, Created: at(0), Bound: at(1000), Node: "n1", NUMAZones: []string{"z0"}},
			{Namespace: "ns", Name: "a-1", Gang: "a", CPUMilli: 2000, Created: at(10), Bound: at(1030), Node: "n2", NUMAZones: []string{"z0", "z1"}},
			// b: partial.
			{Namespace: "ns", Name: "b-0", Gang: "b", CPUMilli: 2000, Created: at(0), Bound: at(1100), Node: "n1"},
			{Namespace: "ns", Name: "b-1", Gang: "b", CPUMilli: 2000, Created: at(0)},
			// c: waiting.
			{Namespace: "ns", Name: "c-0", Gang: "c", CPUMilli: 2000, Created: at(0)},
			{Namespace: "ns", Name: "c-1", Gang: "c", CPUMilli: 2000, Created: at(0)},
			// An ordinary pod created after the origin.
			{Namespace: "ns", Name: "p", CPUMilli: 100, Created: at(600), Bound: at(1200), Node: "n2"},
		},
	}
	m := measure(run, at(500))
	if m.Pods != 7 || m.PodsBound != 4 || m.Gangs != 3 || m.GangsComplete != 1 || m.GangsPartial != 1 || m.GangsWaiting != 1 || m.PodsBoundInPartialGangs != 1 {
		t.Errorf("counts: %+v", m)
	}
	check := func(name string, got *float64, want float64) {
		t.Helper()
		if got == nil || math.Abs(*got-want) > 1e-9 {
			t.Errorf("%s = %v, want %v", name, deref(got), want)
		}
	}
	check("throughput", m.BindThroughput, 4/0.2)
	check("makespan", m.MakespanSeconds, 0.7)
	// From the origin, which is later than the gang's first creation.
	check("gang latency p50", m.GangLatencyP50Ms, 530)
	check("gang latency p99", m.GangLatencyP99Ms, 530)
	check("skew p50", m.BindSkewP50Ms, 30)
	check("skew max", m.BindSkewMaxMs, 30)
	check("nodes", m.NodesPerGang, 2)
	check("ideal", m.IdealNodesPerGang, 1)
	check("nodes/ideal", m.NodesOverIdeal, 2)
	check("racks", m.RacksPerGang, 2)
	check("NUMA zones", m.NUMAZonesPerPod, 1.5)
	check("split", m.PodsAcrossNUMAZones, 1)
	check("ordinary p50", m.OrdinaryLatencyP50Ms, 600)
	if m.GangsOnIdeal != 0 || m.OrdinaryPods != 1 || m.OrdinaryBound != 1 {
		t.Errorf("gangs on ideal %d, ordinary %d/%d", m.GangsOnIdeal, m.OrdinaryBound, m.OrdinaryPods)
	}

	empty := measure(report.Run{}, t0)
	if empty.BindThroughput != nil || empty.GangLatencyP50Ms != nil || empty.NodesPerGang != nil || empty.NUMAZonesPerPod != nil {
		t.Errorf("figures of an empty run should be undefined: %+v", empty)
	}
}

func TestAPISkew(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(us int) time.Time { return t0.Add(time.Duration(us) * time.Microsecond) }
	gang := func(name string, min int) report.Gang {
		return report.Gang{Namespace: "ns", Name: name, MinMember: min, Created: t0}
	}
	member := func(gang string, i int) report.Pod {
		// Watched much later and further apart than the apiserver answered.
		return report.Pod{Namespace: "ns", Name: fmt.Sprintf("%s-%d", gang, i), Gang: gang, CPUMilli: 1000,
			Created: t0, Bound: at(100000 + 50000*i), Node: "n1"}
	}
	run := report.Run{
		Nodes: []report.Node{{Name: "n1", Rack: "r1", CPUs: 64, Memory: 8 * gi}},
		// a: quorum 2 of 3, the extra member bound much later; b: one
		// member not timed at the proxy; c: partial.
		Gangs: []report.Gang{gang("a", 2), gang("b", 2), gang("c", 2)},
		Pods: []report.Pod{member("a", 0), member("a", 1), member("a", 2), member("b", 0), member("b", 1),
			member("c", 0), {Namespace: "ns", Name: "c-1", Gang: "c", Created: t0}},
	}
	// Sent 500us before each answer, but a-1's answer took 1.5 ms.
	timing := func(answered int) controlplane.BindTiming {
		return controlplane.BindTiming{Sent: at(answered - 500), Answered: at(answered)}
	}
	binds := map[string]controlplane.BindTiming{
		"ns/a-0": timing(2000), "ns/a-1": timing(770), "ns/a-2": timing(90000),
		"ns/b-0": timing(1000), "ns/c-0": timing(1000),
	}
	a1 := binds["ns/a-1"]
	a1.Sent = at(-730)
	binds["ns/a-1"] = a1
	var m Metrics
	m.apiSkew(run, binds)
	for name, got := range map[string]*float64{"p50": m.BindSkewAPIP50Ms, "p99": m.BindSkewAPIP99Ms, "max": m.BindSkewAPIMaxMs} {
		// Only a counts: 2000us - 770us, to 0.1 ms.
		if got == nil || *got != 1.2 {
			t.Errorf("apiserver skew %s = %v, want 1.2", name, deref(got))
		}
	}
	for name, got := range map[string]*float64{"p50": m.BindSkewSentP50Ms, "p99": m.BindSkewSentP99Ms} {
		// 1500us - (-730us).
		if got == nil || *got != 2.2 {
			t.Errorf("sent skew %s = %v, want 2.2", name, deref(got))
		}
	}
	var none Metrics
	none.apiSkew(run, nil)
	if none.BindSkewAPIP99Ms != nil {
		t.Errorf("with no bind timed, the apiserver skew should be undefined, got %v", *none.BindSkewAPIP99Ms)
	}
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

func TestPercentiles(t *testing.T) {
	var v []float64
	for i := 1; i <= 200; i++ {
		v = append(v, float64(i))
	}
	p50, p99 := percentiles(v)
	if *p50 != 100 || *p99 != 198 {
		t.Errorf("p50 %v p99 %v, want 100 and 198", *p50, *p99)
	}
	p50, p99 = percentiles([]float64{7})
	if *p50 != 7 || *p99 != 7 {
		t.Errorf("one value: %v %v", *p50, *p99)
	}
}

func TestTable(t *testing.T) {
	c := Comparison{
		Scenario: "competing", Mode: Arriving, ArrivalRate: 200, Description: "d", Cluster: "c",
		Lockstep: Metrics{Gangs: 4, GangsComplete: 4, PodsBound: 32, BindThroughput: val(30), BindSkewMaxMs: val(3), Ended: EndAllComplete},
		Default:  Metrics{Gangs: 4, GangsPartial: 4, PodsBound: 12, PodsBoundInPartialGangs: 12, BindThroughput: val(300), Ended: EndStalled},
	}
	c.computeRatios()
	if got := c.Ratios["bindThroughputPodsPerSecond"]; got != 0.1 {
		t.Errorf("throughput ratio %v", got)
	}
	if got, ok := c.Ratios["podsBoundInPartialGangs"]; !ok || got != 0 {
		t.Errorf("partial ratio %v %v", got, ok)
	}
	if _, ok := c.Ratios["bindSkewMaxMs"]; ok {
		t.Error("a ratio against an undefined figure")
	}
	var b bytes.Buffer
	if err := c.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	lines := strings.Split(out, "\n")
	if lines[0] != "== competing, pods arriving at 200 pods/s ==" {
		t.Errorf("title %q", lines[0])
	}
	// The last three fields of a row are lockstep, default and ratio.
	cells := map[string][]string{}
	for _, l := range lines {
		if f := strings.Fields(l); len(f) > 3 {
			cells[strings.Join(f[:len(f)-3], " ")] = f[len(f)-3:]
		}
	}
	for label, want := range map[string]string{
		"metric":                      "lockstep default ratio",
		"pods bound in partial gangs": "0 12 0.00",
		"bind throughput (pods/s)":    "30.0 300.0 0.10",
		"bind skew max":               "3ms - -",
	} {
		if got := strings.Join(cells[label], " "); got != want {
			t.Errorf("row %q = %q, want %q\n%s", label, got, want, out)
		}
	}
	if !strings.Contains(out, "run ended: lockstep every gang completed, 0.0s; default stalled, 0.0s\n") {
		t.Errorf("no end line:\n%s", out)
	}
	if strings.Contains(out, "NUMA") || strings.Contains(out, "ordinary") {
		t.Errorf("rows that mean nothing here:\n%s", out)
	}
}
