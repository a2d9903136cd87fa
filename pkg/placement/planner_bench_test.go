package placement

import (
	"github.com/lockstep-sched/lockstep/pkg/numa"

	"fmt"
	"testing"

	v1 "k8s.io/api/core/v1"
	st "k8s.io/kubernetes/pkg/scheduler/testing"
)

// benchCluster builds n nodes of 32 CPU; every third node already runs a
// pod of 4-20 CPU, so free room is uneven as in a busy cluster.
func benchCluster(n int) []Node {
	nodes := make([]Node, n)
	for i := range nodes {
		var pods []*v1.Pod
		if i%3 == 0 {
			pods = append(pods, st.MakePod().Name(fmt.Sprintf("busy-%d", i)).
				Req(map[v1.ResourceName]string{v1.ResourceCPU: fmt.Sprint(4 + i%5*4), v1.ResourceMemory: "8Gi"}).Obj())
		}
		nodes[i] = node(fmt.Sprintf("node-%05d", i), "32", "128Gi", pods...)
	}
	return nodes
}

func BenchmarkPlanGang(b *testing.B) {
	for _, tc := range []struct {
		nodes, gang int
	}{{1000, 8}, {1000, 256}, {5000, 8}, {5000, 256}} {
		b.Run(fmt.Sprintf("nodes=%d/gang=%d", tc.nodes, tc.gang), func(b *testing.B) {
			req := Request{Nodes: benchCluster(tc.nodes), Members: members("w", tc.gang, "4", "8Gi"), Needed: tc.gang}
			used := planLoop(b, req)
			// 8 members of 4 CPU fill one 32-CPU node.
			ideal := (tc.gang*4 + 31) / 32
			b.ReportMetric(float64(used), "nodes/gang")
			b.ReportMetric(float64(ideal), "ideal-nodes/gang")
		})
	}
}

// benchTopology labels nodes with 5 zones and racks of 40 nodes, and gives
// each node two NUMA zones of 16 CPU under single-numa-node.
func benchTopology(n int) []Node {
	nodes := benchCluster(n)
	for i := range nodes {
		name := nodes[i].Info.Node().Name
		nodes[i].Info.Node().Labels = map[string]string{
			zoneKey:          fmt.Sprintf("zone-%d", i%5),
			rackKey:          fmt.Sprintf("rack-%03d", i/40),
			v1.LabelHostname: name,
		}
		free := nodes[i].Free.MilliCPU / 1000
		nodes[i].NUMA = &numa.Node{Policy: numa.PolicySingleNUMANode, Scope: numa.ScopePod, Names: []string{"node-0", "node-1"},
			Capacity: []int64{16, 16}, Free: []int64{min(16, free), max(0, free-16)}}
	}
	return nodes
}

func BenchmarkPlanGangTopology(b *testing.B) {
	for _, gang := range []int{8, 256} {
		b.Run(fmt.Sprintf("nodes=5000/levels=3/numa/gang=%d", gang), func(b *testing.B) {
			req := Request{Nodes: benchTopology(5000), Members: exclusive(members("w", gang, "4", "8Gi")), Needed: gang, Levels: levels}
			b.ReportAllocs()
			var p *Plan
			for b.Loop() {
				var f *Failure
				if p, f = PlanGang(req); f != nil {
					b.Fatal(f)
				}
			}
			racks := map[string]bool{}
			zonesPerPod := 0
			for mi, ni := range p.NodeOf {
				racks[req.Nodes[ni].Info.Node().Labels[rackKey]] = true
				zonesPerPod = max(zonesPerPod, len(p.ZonesOf[mi]))
			}
			b.ReportMetric(float64(len(p.NodesUsed)), "nodes/gang")
			b.ReportMetric(float64((gang*4+31)/32), "ideal-nodes/gang")
			b.ReportMetric(float64(len(racks)), "racks/gang")
			b.ReportMetric(float64(zonesPerPod), "max-numa-zones/pod")
		})
	}
}

// BenchmarkPlanGangWholeNodes plans a gang whose members each take a whole
// node (8 GPUs), the shape of large training jobs: as many nodes are opened
// as there are members.
func BenchmarkPlanGangWholeNodes(b *testing.B) {
	const gpu = v1.ResourceName("nvidia.com/gpu")
	nodes := benchCluster(5000)
	for i := range nodes {
		nodes[i].Free.Scalar = map[v1.ResourceName]int64{gpu: 8}
	}
	ms := members("w", 256, "4", "8Gi")
	for i := range ms {
		ms[i].Request.Scalar = map[v1.ResourceName]int64{gpu: 8}
	}
	req := Request{Nodes: nodes, Members: ms, Needed: len(ms)}
	b.Run("nodes=5000/gang=256", func(b *testing.B) {
		b.ReportMetric(float64(planLoop(b, req)), "nodes/gang")
	})
}

// planLoop plans req for the benchmark's iterations and returns the nodes
// the plan uses.
func planLoop(b *testing.B, req Request) int {
	b.ReportAllocs()
	var used int
	for b.Loop() {
		p, f := PlanGang(req)
		if f != nil {
			b.Fatal(f)
		}
		used = len(p.NodesUsed)
	}
	return used
}
