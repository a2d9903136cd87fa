package bench

import (
	"fmt"
	"slices"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	"github.com/lockstep-sched/lockstep/pkg/podgroup"
	"github.com/lockstep-sched/lockstep/pkg/sandbox/cluster"
	"github.com/lockstep-sched/lockstep/pkg/sandbox/workload"
)

// Shape is what each member of a gang (or an ordinary pod) requests.
type Shape struct {
	Members  int
	CPUMilli int64
	Memory   int64
}

// Scenario is one workload on one simulated cluster, run once per
// scheduler and arrival mode.
type Scenario struct {
	Name        string
	Description string
	Cluster     cluster.Spec
	// Topology creates a NodeResourceTopology per node and runs the
	// sandbox kubelet with its NUMA accounting, so that the NUMA zones each
	// pod got are known.
	Topology bool
	// Guaranteed sets limits equal to requests: only such pods with whole
	// CPUs get exclusive CPUs, and so a NUMA zone, from kubelet, and only
	// for them does a NUMA-aware scheduler have anything to decide.
	Guaranteed bool
	// Gangs are created in this order, one PodGroup each.
	Gangs []Shape
	// Ordinary pods belong to no gang; they are spread evenly among the
	// gangs in the creation order.
	Ordinary      int
	OrdinaryShape Shape
	// Interleave creates every PodGroup first, then the members round
	// robin (member 0 of every gang, member 1, ...), as competing jobs
	// submitted together reach the API server.
	Interleave bool
	// Churn deletes a gang's pods Hold after it is fully bound, in gang
	// creation order, so that waiting gangs get room; the run then ends
	// when every gang has been complete once.
	Churn bool
	Hold  time.Duration
	// Budget bounds the run, from the scheduler's start; the options'
	// RunTimeout when zero.
	Budget time.Duration
	// OnlyModes, when set, are the only arrival modes the scenario runs
	// in.
	OnlyModes []Mode
	// MayWait is set where a complete placement exists but depends on
	// the order kubelet admits pods in: a scheduler that never sends
	// kubelet a pod it rejects may leave gangs waiting (never partial).
	MayWait bool
}

// largestGang is the size of the scenario's largest gang.
func (s Scenario) largestGang() int {
	most := 0
	for _, g := range s.Gangs {
		most = max(most, g.Members)
	}
	return most
}

// RunsIn reports whether the scenario runs in mode.
func (s Scenario) RunsIn(mode Mode) bool {
	return len(s.OnlyModes) == 0 || slices.Contains(s.OnlyModes, mode)
}

// Pods counts every pod of the scenario.
func (s Scenario) Pods() int {
	n := s.Ordinary
	for _, g := range s.Gangs {
		n += g.Members
	}
	return n
}

// Sizes scale the scenarios; the flags of lockstep-bench set them.
type Sizes struct {
	SmallNodes, SmallGangs, SmallMembers                int
	LargeNodes, LargeGangs, LargeMembers                int
	CompetingNodes, CompetingGangs, CompetingMembers    int
	CompetingBudget, CompetingHold                      time.Duration
	MixedNodes, MixedGangs, MixedMembers, MixedOrdinary int
	TopologyNodes, TopologyRacks, TopologyGangs         int
	ClusterNodes, ClusterGangs, ClusterMembers          int
	// PairNodes is the NUMA pairs scenario's cluster, which its gangs
	// fill exactly; even.
	PairNodes int
}

// DefaultSizes take a few minutes per scenario on two cores.
func DefaultSizes() Sizes {
	return Sizes{
		SmallNodes: 1000, SmallGangs: 250, SmallMembers: 8,
		LargeNodes: 300, LargeGangs: 3, LargeMembers: 300,
		// 18 nodes of 32 CPUs hold 4.5 gangs of 16 x 8 CPUs: never all
		// twelve, and never a whole number of them.
		CompetingNodes: 18, CompetingGangs: 12, CompetingMembers: 16,
		CompetingBudget: 90 * time.Second, CompetingHold: time.Second,
		MixedNodes: 200, MixedGangs: 60, MixedMembers: 8, MixedOrdinary: 1000,
		TopologyNodes: 64, TopologyRacks: 8, TopologyGangs: 24,
		ClusterNodes: 5000, ClusterGangs: 1250, ClusterMembers: 8,
		PairNodes: 16,
	}
}

// TinySizes run every scenario in seconds, for the smoke test.
func TinySizes() Sizes {
	return Sizes{
		SmallNodes: 20, SmallGangs: 6, SmallMembers: 4,
		LargeNodes: 12, LargeGangs: 2, LargeMembers: 24,
		// 3 nodes of 32 CPUs hold 1.5 gangs of 8 x 8 CPUs.
		CompetingNodes: 3, CompetingGangs: 4, CompetingMembers: 8,
		CompetingBudget: 40 * time.Second, CompetingHold: 200 * time.Millisecond,
		MixedNodes: 10, MixedGangs: 4, MixedMembers: 4, MixedOrdinary: 16,
		// Room to spare: the smoke run checks that both place everything.
		TopologyNodes: 16, TopologyRacks: 4, TopologyGangs: 5,
		ClusterNodes: 40, ClusterGangs: 10, ClusterMembers: 4,
		PairNodes: 4,
	}
}

// Validate says which size is out of range.
func (z Sizes) Validate() error {
	for name, v := range map[string]int{
		"small-nodes": z.SmallNodes, "small-gangs": z.SmallGangs, "small-members": z.SmallMembers,
		"large-nodes": z.LargeNodes, "large-gangs": z.LargeGangs, "large-members": z.LargeMembers,
		"competing-nodes": z.CompetingNodes, "competing-gangs": z.CompetingGangs, "competing-members": z.CompetingMembers,
		"mixed-nodes": z.MixedNodes, "mixed-gangs": z.MixedGangs, "mixed-members": z.MixedMembers,
		"topology-nodes": z.TopologyNodes, "topology-racks": z.TopologyRacks, "topology-gangs": z.TopologyGangs,
		"large-cluster-nodes": z.ClusterNodes, "large-cluster-gangs": z.ClusterGangs, "large-cluster-members": z.ClusterMembers,
		"numa-pairs-nodes": z.PairNodes,
	} {
		if v < 1 {
			return fmt.Errorf("%s must be at least 1, not %d", name, v)
		}
	}
	if z.MixedOrdinary < 0 {
		return fmt.Errorf("mixed-ordinary must not be negative, not %d", z.MixedOrdinary)
	}
	if z.PairNodes%2 != 0 {
		return fmt.Errorf("numa-pairs-nodes must be even, not %d", z.PairNodes)
	}
	if z.TopologyRacks > z.TopologyNodes {
		return fmt.Errorf("topology-racks (%d) must not exceed topology-nodes (%d)", z.TopologyRacks, z.TopologyNodes)
	}
	if z.CompetingBudget <= 0 || z.CompetingHold < 0 {
		return fmt.Errorf("competing-budget must be positive and competing-hold not negative")
	}
	return nil
}

// Scenario names, in the order they run.
const (
	SmallGangs = "small-gangs"
	LargeGangs = "large-gangs"
	Competing  = "competing"
	Mixed      = "mixed"
	Topology   = "topology"
	// LargeCluster is small gangs at five times the small-gangs scale.
	LargeCluster = "large-cluster"
	// NUMAPairs fills NUMA zones exactly with pairs of pinned pods.
	NUMAPairs = "numa-pairs"
)

// ScenarioNames lists every scenario.
var ScenarioNames = []string{SmallGangs, LargeGangs, Competing, Mixed, Topology, NUMAPairs, LargeCluster}

const gi = int64(1) << 30

// node is the simulated node of every scenario: 32 CPUs, 128Gi.
func node(nodes, racks, numaZones int) cluster.Spec {
	racks = max(1, min(racks, nodes))
	return cluster.Spec{
		Nodes: nodes, CPUsPerNode: 32, MemoryPerNode: *resource.NewQuantity(128*gi, resource.BinarySI),
		NUMAZones: numaZones, Racks: racks, Zones: max(1, min(2, racks)),
	}
}

// pairs alternates n gangs of 4 x 12 CPUs with n of 4 x 4 CPUs.
func pairs(n int) []Shape {
	var out []Shape
	for range n {
		out = append(out, Shape{Members: 4, CPUMilli: 12000, Memory: 24 * gi}, Shape{Members: 4, CPUMilli: 4000, Memory: 8 * gi})
	}
	return out
}

func repeat(n int, s Shape) []Shape {
	out := make([]Shape, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// smallestPinned is the fewest whole CPUs a pod of the scenario pins to a
// NUMA zone; 1 when none does.
func (s Scenario) smallestPinned() int64 {
	smallest := int64(0)
	if s.Guaranteed {
		for _, g := range append(slices.Clone(s.Gangs), s.OrdinaryShape) {
			if cpus := g.CPUMilli / 1000; g.CPUMilli%1000 == 0 && cpus > 0 && (smallest == 0 || cpus < smallest) {
				smallest = cpus
			}
		}
	}
	return max(smallest, 1)
}

// Scenarios builds every scenario at the given sizes.
func Scenarios(z Sizes) []Scenario {
	// Topology gangs cycle through shapes that fill 16-CPU NUMA zones
	// unevenly, so that where a member lands within a node matters.
	topoShapes := []Shape{
		{Members: 4, CPUMilli: 12000, Memory: 24 * gi},
		{Members: 8, CPUMilli: 6000, Memory: 12 * gi},
		{Members: 2, CPUMilli: 16000, Memory: 32 * gi},
		{Members: 16, CPUMilli: 3000, Memory: 6 * gi},
		{Members: 6, CPUMilli: 10000, Memory: 20 * gi},
	}
	var topo []Shape
	for i := range z.TopologyGangs {
		topo = append(topo, topoShapes[i%len(topoShapes)])
	}
	return []Scenario{{
		Name:        SmallGangs,
		Description: fmt.Sprintf("%d gangs of %d x 2 CPUs on %d nodes: throughput", z.SmallGangs, z.SmallMembers, z.SmallNodes),
		Cluster:     node(z.SmallNodes, z.SmallNodes/40, 1),
		Gangs:       repeat(z.SmallGangs, Shape{Members: z.SmallMembers, CPUMilli: 2000, Memory: 4 * gi}),
	}, {
		Name:        LargeGangs,
		Description: fmt.Sprintf("%d gangs of %d x 4 CPUs on %d nodes: release time and bind skew", z.LargeGangs, z.LargeMembers, z.LargeNodes),
		Cluster:     node(z.LargeNodes, z.LargeNodes/20, 1),
		Gangs:       repeat(z.LargeGangs, Shape{Members: z.LargeMembers, CPUMilli: 4000, Memory: 8 * gi}),
	}, {
		Name: Competing,
		Description: fmt.Sprintf("%d gangs of %d x 8 CPUs created interleaved on %d nodes that hold %.1f of them; a gang's pods are deleted %s after it is fully bound",
			z.CompetingGangs, z.CompetingMembers, z.CompetingNodes, float64(z.CompetingNodes*32)/float64(z.CompetingMembers*8), z.CompetingHold),
		Cluster:    node(z.CompetingNodes, z.CompetingNodes/6, 1),
		Gangs:      repeat(z.CompetingGangs, Shape{Members: z.CompetingMembers, CPUMilli: 8000, Memory: 16 * gi}),
		Interleave: true,
		Churn:      true, Hold: z.CompetingHold, Budget: z.CompetingBudget,
	}, {
		Name: Mixed,
		Description: fmt.Sprintf("%d gangs of %d x 4 CPUs and %d ordinary pods of 1 CPU, interleaved, on %d nodes",
			z.MixedGangs, z.MixedMembers, z.MixedOrdinary, z.MixedNodes),
		Cluster:       node(z.MixedNodes, z.MixedNodes/20, 1),
		Gangs:         repeat(z.MixedGangs, Shape{Members: z.MixedMembers, CPUMilli: 4000, Memory: 8 * gi}),
		Ordinary:      z.MixedOrdinary,
		OrdinaryShape: Shape{Members: 1, CPUMilli: 1000, Memory: 2 * gi},
	}, {
		Name: Topology,
		Description: fmt.Sprintf("%d gangs of Guaranteed pods of mixed shapes (4x12, 8x6, 2x16, 16x3, 6x10 CPUs) on %d nodes in %d racks, 2 NUMA zones of 16 CPUs each, single-numa-node",
			z.TopologyGangs, z.TopologyNodes, z.TopologyRacks),
		Cluster:    node(z.TopologyNodes, z.TopologyRacks, 2),
		Topology:   true,
		Guaranteed: true,
		Gangs:      topo,
	}, {
		Name: NUMAPairs,
		Description: fmt.Sprintf("%d gangs of 4 x 12 CPUs and %d of 4 x 4 CPUs, Guaranteed, created alternately, on %d nodes of 2 NUMA zones of 16 CPUs, single-numa-node: "+
			"they fill every zone with a 12 and a 4 exactly, if kubelet admits the large pods first", z.PairNodes/2, z.PairNodes/2, z.PairNodes),
		Cluster:    node(z.PairNodes, max(1, z.PairNodes/8), 2),
		Topology:   true,
		Guaranteed: true,
		Gangs:      pairs(z.PairNodes / 2),
		MayWait:    true,
	}, {
		Name:        LargeCluster,
		Description: fmt.Sprintf("%d gangs of %d x 2 CPUs on %d nodes, every pod pending: throughput at scale", z.ClusterGangs, z.ClusterMembers, z.ClusterNodes),
		Cluster:     node(z.ClusterNodes, z.ClusterNodes/40, 1),
		Gangs:       repeat(z.ClusterGangs, Shape{Members: z.ClusterMembers, CPUMilli: 2000, Memory: 4 * gi}),
		// Pods arriving at a fixed rate would measure the rate.
		OnlyModes: []Mode{Precreated},
	}}
}

// objects returns the scenario's PodGroups and pods for one run, in
// creation order, in namespace ns, for the scheduler schedulerName.
func (s Scenario) objects(ns, schedulerName string) []workload.Object {
	var out []workload.Object
	gangName := func(g int) string { return fmt.Sprintf("gang-%03d", g) }
	member := func(g, m int) workload.Object {
		name := gangName(g)
		return workload.Object{File: s.Name, Pod: pod(ns, fmt.Sprintf("%s-%03d", name, m), name, schedulerName, s.Gangs[g], s.Guaranteed)}
	}
	group := func(g int) workload.Object {
		return workload.Object{File: s.Name, PodGroup: &v1alpha1.PodGroup{
			ObjectMeta: metav1.ObjectMeta{Name: gangName(g), Namespace: ns},
			Spec:       v1alpha1.PodGroupSpec{MinMember: int32(s.Gangs[g].Members)},
		}}
	}
	ordinary := 0
	addOrdinary := func(upTo int) {
		for ; ordinary < upTo; ordinary++ {
			out = append(out, workload.Object{File: s.Name, Pod: pod(ns, fmt.Sprintf("pod-%04d", ordinary), "", schedulerName, s.OrdinaryShape, s.Guaranteed)})
		}
	}
	if s.Interleave {
		most := 0
		for g := range s.Gangs {
			out = append(out, group(g))
			most = max(most, s.Gangs[g].Members)
		}
		for m := range most {
			for g := range s.Gangs {
				if m < s.Gangs[g].Members {
					out = append(out, member(g, m))
				}
			}
		}
		addOrdinary(s.Ordinary)
		return out
	}
	for g := range s.Gangs {
		out = append(out, group(g))
		for m := range s.Gangs[g].Members {
			out = append(out, member(g, m))
		}
		addOrdinary(s.Ordinary * (g + 1) / len(s.Gangs))
	}
	addOrdinary(s.Ordinary)
	return out
}

func pod(ns, name, gang, schedulerName string, sh Shape, guaranteed bool) *v1.Pod {
	p := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1.PodSpec{
			SchedulerName: schedulerName,
			Containers: []v1.Container{{
				Name: "main", Image: "registry.invalid/bench",
				Resources: v1.ResourceRequirements{Requests: v1.ResourceList{
					v1.ResourceCPU:    *resource.NewMilliQuantity(sh.CPUMilli, resource.DecimalSI),
					v1.ResourceMemory: *resource.NewQuantity(sh.Memory, resource.BinarySI),
				}},
			}},
		},
	}
	if guaranteed {
		res := &p.Spec.Containers[0].Resources
		res.Limits = res.Requests.DeepCopy()
	}
	if gang != "" {
		p.Labels = map[string]string{podgroup.Label: gang}
	}
	return p
}
