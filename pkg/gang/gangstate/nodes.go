package gangstate

import (
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/lockstep-sched/lockstep/pkg/numa"
	"github.com/lockstep-sched/lockstep/pkg/placement"
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
func (c *Cache) planNodes(nodes []fwk.NodeInfo, held map[string]placement.Resources, asEmpty bool) []placement.Node {
	out := make([]placement.Node, 0, len(nodes))
	for _, ni := range nodes {
		if ni.Node() == nil {
			continue
		}
		name := ni.Node().Name
		n := placement.Node{Info: ni}
		switch {
		case asEmpty:
			n.Free = placement.CapacityOf(ni)
			if c.cfg.Zones != nil {
				n.NUMA = c.cfg.Zones.EmptyNodeOf(name)
			}
		default:
			n.Free = placement.FreeOf(ni)
			if h, ok := held[name]; ok {
				n.Free.Sub(&h)
			}
			if c.cfg.Zones != nil {
				n.NUMA = c.cfg.Zones.NodeOf(name)
			}
		}
		out = append(out, n)
	}
	return out
}

func membersOf(pods []*v1.Pod, avoid map[types.UID]sets.Set[string]) []placement.Member {
	out := make([]placement.Member, len(pods))
	for i, p := range pods {
		out[i] = placement.Member{Pod: p, Request: placement.PodRequest(p), Avoid: avoid[p.UID], NUMA: numa.NeedsOf(p)}
	}
	return out
}

// domainOf returns the values the nodes of scheduled members carry for a
// required topology level. A gang that must fit one domain is anchored
// there once members are placed: after a restart, and for members beyond
// the quorum.
func domainOf(nodes []fwk.NodeInfo, level string, scheduledOn sets.Set[string]) sets.Set[string] {
	values := sets.New[string]()
	if level == "" || scheduledOn.Len() == 0 {
		return values
	}
	for _, ni := range nodes {
		if n := ni.Node(); n != nil && scheduledOn.Has(n.Name) {
			if v, ok := n.Labels[level]; ok {
				values.Insert(v)
			}
		}
	}
	return values
}

// anchored keeps the plan nodes in the required domain the gang's
// scheduled members are in; all nodes when it has none placed.
func (c *Cache) anchored(nodes []placement.Node, required string, cen census) []placement.Node {
	if required == "" || cen.nodes.Len() == 0 {
		return nodes
	}
	infos := make([]fwk.NodeInfo, len(nodes))
	for i := range nodes {
		infos[i] = nodes[i].Info
	}
	values := domainOf(infos, required, cen.nodes)
	if values.Len() == 0 {
		return nodes
	}
	out := nodes[:0:0]
	for _, n := range nodes {
		if values.Has(n.Info.Node().Labels[required]) {
			out = append(out, n)
		}
	}
	return out
}

// nodesIn returns the names of nodes whose level label has one of values.
func nodesIn(nodes []fwk.NodeInfo, level string, values sets.Set[string]) sets.Set[string] {
	out := sets.New[string]()
	for _, ni := range nodes {
		if n := ni.Node(); n != nil && values.Has(n.Labels[level]) {
			out.Insert(n.Name)
		}
	}
	return out
}
