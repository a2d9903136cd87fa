package gang

import (
	"sync"

	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"

	"github.com/lockstep-sched/lockstep/pkg/gang/gangstate"
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

// ensureMetrics registers the metrics once, when the first gang is placed.
func ensureMetrics() {
	registerMetrics.Do(func() { legacyregistry.MustRegister(gangNodes, gangNodesOverIdeal) })
}

// observePlacement records how many nodes a released gang uses, and that
// against the ideal for its CPU, the largest node it uses giving the size.
func observePlacement(p *gangstate.Placement) {
	ensureMetrics()
	gangNodes.Observe(float64(p.Nodes.Len()))
	if p.NodeMilliCPU <= 0 || p.MilliCPU <= 0 {
		return
	}
	ideal := (p.MilliCPU + p.NodeMilliCPU - 1) / p.NodeMilliCPU
	gangNodesOverIdeal.Observe(float64(p.Nodes.Len()) / float64(ideal))
}
