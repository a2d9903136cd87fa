package gang

import (
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/lockstep-sched/lockstep/pkg/placement"
	"github.com/lockstep-sched/lockstep/pkg/topology"
)

// snapshot summarises a cycle's node infos. The scheduler stamps every node
// info change with a fresh, ever-growing generation, so the highest
// generation and the node count change whenever the snapshot does.
type snapshot struct {
	generation int64
}

func snapshotOf(nodes []fwk.NodeInfo) snapshot {
	var s snapshot
	for _, ni := range nodes {
		if g := ni.GetGeneration(); g > s.generation {
			s.generation = g
		}
	}
	return s
}

// planNodes turns node infos into the planner's view: free room less what
// is held for others, or, with asEmpty, the whole allocatable room (to tell
// "does not fit yet" from "can never fit"); NUMA zones where nodes publish
// them.
func (m *manager) planNodes(nodes []fwk.NodeInfo, held map[string]placement.Resources, asEmpty bool) []placement.Node {
	out := make([]placement.Node, 0, len(nodes))
	for _, ni := range nodes {
		if ni.Node() == nil {
			continue
		}
		name := ni.Node().Name
		n := placement.Node{Info: ni}
		if asEmpty {
			n.Free = placement.CapacityOf(ni)
			n.Zones, n.SingleNUMA = m.topo.CapacityOf(name)
		} else {
			n.Free = placement.FreeOf(ni)
			if h, ok := held[name]; ok {
				n.Free.Sub(&h)
			}
			n.Zones, n.SingleNUMA = m.topo.ZonesOf(name)
		}
		out = append(out, n)
	}
	return out
}

func (m *manager) membersOf(pods []*v1.Pod, avoid map[types.UID]sets.Set[string]) []placement.Member {
	out := make([]placement.Member, len(pods))
	for i, p := range pods {
		out[i] = placement.Member{Pod: p, Request: placement.PodRequest(p), Avoid: avoid[p.UID], NUMA: topology.NUMANeed(p)}
	}
	return out
}
