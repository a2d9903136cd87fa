package gang

import (
	"sync"

	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
	fwk "k8s.io/kube-scheduler/framework"
)

var (
	gangNodes = metrics.NewHistogram(&metrics.HistogramOpts{
		Subsystem:      "lockstep",
		Name:           "gang_nodes",
		Help:           "Nodes a gang was placed on, at its release to binding.",
		Buckets:        metrics.ExponentialBuckets(1, 2, 10),
		StabilityLevel: metrics.ALPHA,
	})
	gangNodesOverIdeal = metrics.NewHistogram(&metrics.HistogramOpts{
		Subsystem:      "lockstep",
		Name:           "gang_nodes_over_ideal",
		Help:           "Nodes a gang was placed on divided by the fewest that could hold its CPU, ceil(gang CPU / node CPU).",
		Buckets:        []float64{1, 1.1, 1.25, 1.5, 2, 3, 4},
		StabilityLevel: metrics.ALPHA,
	})
	registerMetrics sync.Once
)

// observePlacement records how many nodes a released gang uses, and that
// against the ideal for its CPU, the largest node it uses giving the size.
func observePlacement(h fwk.Handle, nodes sets.Set[string], gangMilliCPU int64) {
	registerMetrics.Do(func() { legacyregistry.MustRegister(gangNodes, gangNodesOverIdeal) })
	gangNodes.Observe(float64(nodes.Len()))
	var nodeCPU int64
	for name := range nodes {
		if ni, err := h.SnapshotSharedLister().NodeInfos().Get(name); err == nil {
			nodeCPU = max(nodeCPU, ni.GetAllocatable().GetMilliCPU())
		}
	}
	if nodeCPU == 0 || gangMilliCPU == 0 {
		return
	}
	ideal := (gangMilliCPU + nodeCPU - 1) / nodeCPU
	gangNodesOverIdeal.Observe(float64(nodes.Len()) / float64(ideal))
}
