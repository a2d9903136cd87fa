package gang

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
	"k8s.io/component-base/metrics/testutil"

	"github.com/lockstep-sched/lockstep/manifests"
	"github.com/lockstep-sched/lockstep/pkg/gang/gangstate"
)

// A released gang's nodes are measured against the fewest nodes its CPU
// needs, sized by the nodes of its plan as the scheduling cycle saw them:
// effects are applied from informer handlers and timers too, which must
// not read the cycle's snapshot.
func TestPlacementMetrics(t *testing.T) {
	ensureMetrics()
	h := newHarness(t, node("n1", "4"), node("n2", "4"), node("n3", "4"))
	count := func() uint64 {
		n, err := testutil.GetHistogramMetricCount(gangNodesOverIdeal.ObserverMetric)
		if err != nil {
			return 0
		}
		return n
	}
	sum := func() float64 {
		v, _ := testutil.GetHistogramMetricValue(gangNodesOverIdeal.ObserverMetric)
		return v
	}
	count0, sum0 := count(), sum()
	// 3 × 2 CPUs on nodes of 4: two nodes at best, and the plan uses two.
	pods := h.gang("g", 3, 3, "2")
	for _, p := range pods {
		h.schedule(p)
	}
	h.waitEvent("Placed")
	if got := count() - count0; got != 1 {
		t.Fatalf("gang_nodes_over_ideal observed %d times, want 1", got)
	}
	if got := sum() - sum0; got != 1 {
		t.Errorf("gang_nodes_over_ideal = %v, want 1 (2 nodes for 6 CPUs on nodes of 4)", got)
	}
}

// The gang metrics a dashboard reads: planning attempts by result (named
// as kube-scheduler's pod-group metrics), the time from a PodGroup's
// creation to its quorum bound and the skew of its binds, the gangs
// waiting by reason and the room held in memory.
func TestGangMetrics(t *testing.T) {
	ensureMetrics()
	h := newHarness(t, node("n1", "4"), node("n2", "4"))
	attempts := func(result string) float64 {
		v, _ := testutil.GetCounterMetricValue(podGroupAttempts.WithLabelValues(result, "lockstep"))
		return v
	}
	started := func() uint64 {
		n, _ := testutil.GetHistogramMetricCount(gangSchedulingDuration.WithLabelValues("lockstep").(metrics.ObserverMetric))
		return n
	}
	scheduled0, unschedulable0, started0 := attempts(gangstate.ResultScheduled), attempts(gangstate.ResultUnschedulable), started()

	// A gang of two: one planning attempt, and while its second member
	// is not placed yet its place (2 CPUs) is held by the plan.
	pods := h.gang("g", 2, 2, "2")
	if _, s := h.schedule(pods[0]); !s.IsWait() {
		t.Fatalf("first member: %v", s)
	}
	if got := attempts(gangstate.ResultScheduled) - scheduled0; got != 1 {
		t.Fatalf("%v scheduled attempts, want 1", got)
	}
	if got := gathered(t, "lockstep_held_cpu_cores", "holder", gangstate.HeldByPlan); got != 2 {
		t.Errorf("held by plans: %v cores, want 2", got)
	}
	if got := gathered(t, "lockstep_gangs_waiting", "reason", gangstate.WaitPlacing); got != 1 {
		t.Errorf("gangs placing: %v, want 1", got)
	}
	node, _ := h.schedule(pods[1])
	if got := attempts(gangstate.ResultScheduled) - scheduled0; got != 1 {
		t.Fatalf("the member following the plan counted as an attempt: %v", got)
	}
	h.bind(pods[0], node)
	h.bind(pods[1], node)
	h.waitFor("the gang's start measured", func() bool { return started() == started0+1 })

	// A gang wider than the cluster: an unschedulable attempt; one short
	// of members: no attempt, and counted as waiting for members.
	big := h.gang("big", 2, 2, "8")
	h.schedule(big[0])
	if got := attempts(gangstate.ResultUnschedulable) - unschedulable0; got != 1 {
		t.Errorf("%v unschedulable attempts, want 1", got)
	}
	short := h.gang("short", 3, 1, "1")
	h.schedule(short[0])
	if got := gathered(t, "lockstep_gangs_waiting", "reason", gangstate.WaitMembers); got != 1 {
		t.Errorf("gangs waiting for members: %v, want 1", got)
	}
	if got := gathered(t, "lockstep_gangs_waiting", "reason", gangstate.WaitNeverFits); got != 1 {
		t.Errorf("gangs that never fit: %v, want 1", got)
	}
}

// gathered is the value of the series of name whose label has value, as
// the process's /metrics would show it.
func gathered(t *testing.T, name, label, value string) float64 {
	t.Helper()
	families, err := legacyregistry.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatalf("no series %s{%s=%q}", name, label, value)
	return 0
}

// Every metric the shipped Grafana dashboard queries is one the plugin
// exports, and every metric the plugin exports is on the dashboard; the
// names listed are the registered ones.
func TestDashboardReadsExportedMetrics(t *testing.T) {
	ensureMetrics()
	exported := sets.New(metricNames()...)
	for _, m := range []interface{ FQName() string }{gangNodes, gangNodesOverIdeal, podGroupAttempts, podGroupAttemptDuration, gangSchedulingDuration, gangBindSkew} {
		if !exported.Has(m.FQName()) {
			t.Errorf("metric %s is not in metricNames", m.FQName())
		}
	}
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	for _, d := range []*metrics.Desc{gangsWaitingDesc, heldCPUDesc} {
		m := fqName.FindStringSubmatch(d.String())
		if m == nil || !exported.Has(m[1]) {
			t.Errorf("metric %s is not in metricNames", d.String())
		}
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(manifests.Dashboard, &dash); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	name := regexp.MustCompile(`\b(lockstep|scheduler_podgroup)_[a-z_]+`)
	used := sets.New[string]()
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q queries nothing", p.Title)
		}
		for _, target := range p.Targets {
			for _, n := range name.FindAllString(target.Expr, -1) {
				for _, suffix := range []string{"_bucket", "_count", "_sum"} {
					if base, ok := strings.CutSuffix(n, suffix); ok && exported.Has(base) {
						n = base
					}
				}
				if !exported.Has(n) {
					t.Errorf("panel %q queries %s, which the plugin does not export", p.Title, n)
				}
				used.Insert(n)
			}
		}
	}
	if missing := exported.Difference(used); missing.Len() > 0 {
		t.Errorf("metrics not on the dashboard: %v", sets.List(missing))
	}
}
