package gang

import (
	"testing"

	"k8s.io/component-base/metrics/testutil"
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
