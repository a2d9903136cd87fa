package placement

import (
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
			b.ReportAllocs()
			var used int
			for b.Loop() {
				p, f := PlanGang(req)
				if f != nil {
					b.Fatal(f)
				}
				used = len(p.NodesUsed)
			}
			// 8 members of 4 CPU fill one 32-CPU node.
			ideal := (tc.gang*4 + 31) / 32
			b.ReportMetric(float64(used), "nodes/gang")
			b.ReportMetric(float64(ideal), "ideal-nodes/gang")
		})
	}
}
