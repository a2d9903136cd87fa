package placement

import (
	"github.com/lockstep-sched/lockstep/pkg/numa"
	"slices"

	"fmt"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
)

const (
	zoneKey = "topology.kubernetes.io/zone"
	rackKey = "topology.kubernetes.io/rack"
)

var levels = []string{zoneKey, rackKey, v1.LabelHostname}

// rackedNode is a node in a rack and zone, with some CPU already used.
func rackedNode(name, zone, rack string, cpu, usedCPU int) Node {
	var pods []*v1.Pod
	if usedCPU > 0 {
		pods = append(pods, podWithCPU("used-"+name, usedCPU))
	}
	n := node(name, fmt.Sprint(cpu), "256Gi", pods...)
	n.Info.Node().Labels = map[string]string{zoneKey: zone, rackKey: rack, v1.LabelHostname: name}
	return n
}

func podWithCPU(name string, cpu int) *v1.Pod {
	return members(name, 1, fmt.Sprint(cpu), "1Gi")[0].Pod
}

func racksOf(req Request, p *Plan) map[string]int {
	out := map[string]int{}
	for _, ni := range p.NodeOf {
		out[req.Nodes[ni].Info.Node().Labels[rackKey]]++
	}
	return out
}

func TestPlanChoosesTightestRackThatHoldsTheGang(t *testing.T) {
	var nodes []Node
	// r1: 4 nodes x 16 CPU, 32 CPU used: 32 free. r2: 4 empty nodes: 64 free.
	for i := range 4 {
		nodes = append(nodes, rackedNode(fmt.Sprintf("r1-n%d", i), "z1", "r1", 16, 8))
		nodes = append(nodes, rackedNode(fmt.Sprintf("r2-n%d", i), "z1", "r2", 16, 0))
	}
	req := Request{Nodes: nodes, Members: members("w", 8, "4", "1Gi"), Needed: 8, Levels: levels}
	p, f := PlanGang(req)
	if f != nil {
		t.Fatal(f)
	}
	if got := racksOf(req, p); got["r1"] != 8 {
		t.Fatalf("want the 32-CPU gang in the rack it fills exactly (r1), leaving r2's big hole: %v", got)
	}
	if p.Domain.Level != rackKey || p.Domain.Value != "r1" {
		t.Fatalf("want domain rack r1, got %+v", p.Domain)
	}
}

func TestPlanWidensLevelByLevel(t *testing.T) {
	var nodes []Node
	// Two racks of 2 x 8 CPU in zone z1; a gang of 24 CPU fits neither rack
	// but fits the zone. Zone z2 is bigger and must stay untouched.
	for i := range 2 {
		nodes = append(nodes, rackedNode(fmt.Sprintf("a%d", i), "z1", "ra", 8, 0))
		nodes = append(nodes, rackedNode(fmt.Sprintf("b%d", i), "z1", "rb", 8, 0))
	}
	for i := range 8 {
		nodes = append(nodes, rackedNode(fmt.Sprintf("c%d", i), "z2", fmt.Sprintf("rc%d", i), 8, 0))
	}
	req := Request{Nodes: nodes, Members: members("w", 6, "4", "1Gi"), Needed: 6, Levels: levels}
	p, f := PlanGang(req)
	if f != nil {
		t.Fatal(f)
	}
	if p.Domain.Level != zoneKey || p.Domain.Value != "z1" {
		t.Fatalf("want the gang widened to zone z1, got %+v (racks %v)", p.Domain, racksOf(req, p))
	}
}

func TestPlanRequiredLevelBoundsTheSearch(t *testing.T) {
	var nodes []Node
	for i := range 2 {
		nodes = append(nodes, rackedNode(fmt.Sprintf("a%d", i), "z1", "ra", 8, 0))
		nodes = append(nodes, rackedNode(fmt.Sprintf("b%d", i), "z1", "rb", 8, 0))
	}
	req := Request{Nodes: nodes, Members: members("w", 6, "4", "1Gi"), Needed: 6, Levels: levels, Required: rackKey}
	_, f := PlanGang(req)
	if f == nil {
		t.Fatal("a gang of 24 CPU cannot fit one rack of 16")
	}
	if msg := f.Error(); !strings.Contains(msg, "no single rack of the 2 holds the gang") || !strings.Contains(msg, "only 4 of the 6") {
		t.Fatalf("message does not explain: %q", msg)
	}
	// Without the bound, the zone holds it.
	req.Required = ""
	if _, f := PlanGang(req); f != nil {
		t.Fatal(f)
	}
}

func TestPlanPreferredLevelIsTriedFirst(t *testing.T) {
	var nodes []Node
	// One node could hold the whole gang, but the preferred level is rack:
	// the tightest rack wins even though it needs two nodes.
	nodes = append(nodes, rackedNode("big", "z1", "r1", 32, 0))
	nodes = append(nodes, rackedNode("s0", "z1", "r2", 8, 0), rackedNode("s1", "z1", "r2", 8, 0))
	req := Request{Nodes: nodes, Members: members("w", 4, "4", "1Gi"), Needed: 4, Levels: levels, Preferred: rackKey}
	p, f := PlanGang(req)
	if f != nil {
		t.Fatal(f)
	}
	if got := racksOf(req, p); got["r2"] != 4 {
		t.Fatalf("want the tightest rack r2, got %v", got)
	}
}

func TestPlanSkipsLevelsNoNodeCarries(t *testing.T) {
	req := Request{
		Nodes:   []Node{node("a", "8", "8Gi"), node("b", "8", "8Gi")},
		Members: members("w", 4, "4", "1Gi"), Needed: 4, Levels: levels,
	}
	p, f := PlanGang(req)
	if f != nil {
		t.Fatal(f)
	}
	if p.Domain.Level != "" || len(p.NodesUsed) != 2 {
		t.Fatalf("unlabelled nodes are planned as one cluster: %+v", p)
	}
}

// numaNode is a node with two NUMA zones of zoneCPUs each, under a policy.
func numaNode(name string, zoneCPUs int64, policy numa.Policy, zoneUsed ...int64) Node {
	n := node(name, fmt.Sprint(2*zoneCPUs), "64Gi")
	n.NUMA = &numa.Node{Policy: policy, Scope: numa.ScopePod, Names: []string{"node-0", "node-1"},
		Capacity: []int64{zoneCPUs, zoneCPUs}, Free: []int64{zoneCPUs, zoneCPUs}}
	for i, used := range zoneUsed {
		n.NUMA.Free[i] -= used
	}
	return n
}

func exclusive(ms []Member) []Member {
	for i := range ms {
		d := numa.Demand{{CPUs: ms[i].Request.MilliCPU / 1000}}
		ms[i].NUMA = &numa.Needs{Container: d, Pod: d}
	}
	return ms
}

// Kubelet's single-numa-node policy admits a Guaranteed pod with integer CPU
// only if one NUMA zone can hold all of its CPUs.
func TestPlanSingleNUMANodeEmulatesKubeletAdmission(t *testing.T) {
	// Node free CPU 10 in total, but 5 per zone: a 6-CPU pod fits the node
	// and no zone.
	tight := numaNode("tight", 8, numa.PolicySingleNUMANode, 3, 3)
	roomy := numaNode("roomy", 8, numa.PolicySingleNUMANode)
	req := Request{Nodes: []Node{tight, roomy}, Members: exclusive(members("w", 2, "6", "1Gi")), Needed: 2}
	p, f := PlanGang(req)
	if f != nil {
		t.Fatal(f)
	}
	for mi, ni := range p.NodeOf {
		if req.Nodes[ni].Info.Node().Name != "roomy" {
			t.Fatalf("member %d placed on %s where kubelet would reject it", mi, req.Nodes[ni].Info.Node().Name)
		}
		if len(p.ZonesOf[mi]) != 1 {
			t.Fatalf("member %d must take one zone, got %v", mi, p.ZonesOf[mi])
		}
	}
	if p.ZonesOf[0][0] == p.ZonesOf[1][0] {
		t.Fatal("two 6-CPU pods cannot share an 8-CPU zone")
	}

	// A node takes exactly as many such pods as its zones hold: a third
	// 6-CPU member fits nowhere although "roomy" has 4 CPU left in total.
	req.Members = exclusive(members("w", 3, "6", "1Gi"))
	req.Needed = 3
	_, f = PlanGang(req)
	if f == nil || f.Reasons[ReasonNUMA] == 0 {
		t.Fatalf("want a NUMA refusal, got %+v", f)
	}
}

// Kubelet picks the lowest numbered zone with room, whatever order the pods
// come in: a plan must hold for every order, not just its own.
func TestPlanHoldsWhateverOrderKubeletAdmitsIn(t *testing.T) {
	// Two 12-CPU and two 4-CPU pods fill two 16-CPU zones exactly, but if
	// kubelet admits the small ones first they share zone 0 and the second
	// large one fits nowhere. One node cannot take all four.
	big := exclusive(members("big", 2, "12", "1Gi"))
	small := exclusive(members("small", 2, "4", "1Gi"))
	req := Request{
		Nodes:   []Node{numaNode("a", 16, numa.PolicySingleNUMANode), numaNode("b", 16, numa.PolicySingleNUMANode)},
		Members: append(big, small...), Needed: 4,
	}
	p, f := PlanGang(req)
	if f != nil {
		t.Fatal(f)
	}
	perNode := map[int][]numa.Demand{}
	for mi, ni := range p.NodeOf {
		perNode[ni] = append(perNode[ni], req.Members[mi].NUMA.Pod)
	}
	if len(perNode) != 2 {
		t.Fatalf("the four pods must be spread over both nodes, got %v", perNode)
	}
	for ni, ds := range perNode {
		n := req.Nodes[ni].NUMA
		if !numa.Safe(n.Policy, n.Capacity, n.Free, ds) {
			t.Fatalf("node %d gets %v, which kubelet may reject", ni, ds)
		}
	}
	// The pods kubelet has yet to admit count as well.
	req.Nodes = req.Nodes[:1]
	req.Nodes[0].NUMA.Pending = []numa.Demand{{{CPUs: 12}}, {{CPUs: 4}}, {{CPUs: 4}}}
	req.Members, req.Needed = big[:1], 1
	if _, f := PlanGang(req); f == nil || f.Reasons[ReasonNUMA] == 0 {
		t.Fatalf("the pending pods fill the node exactly only in some orders; want a NUMA refusal, got %+v", f)
	}
	req.Nodes[0].NUMA.Pending = req.Nodes[0].NUMA.Pending[:2]
	if _, f := PlanGang(req); f != nil {
		t.Fatalf("one 12-CPU and one 4-CPU pod pending leave room for another 12 in any order: %v", f)
	}
}

func TestPlanPrefersOneZoneWithoutAlignmentPolicy(t *testing.T) {
	// best-effort: kubelet admits a pod across zones, but one zone is
	// better, and kubelet takes the lowest numbered zone that holds it.
	n := numaNode("n", 8, numa.PolicyBestEffort, 4, 0)
	req := Request{Nodes: []Node{n}, Members: exclusive(members("w", 1, "6", "1Gi")), Needed: 1}
	p, f := PlanGang(req)
	if f != nil {
		t.Fatal(f)
	}
	if z := p.ZonesOf[0]; len(z) != 1 || z[0] != "node-1" {
		t.Fatalf("want the zone with room for all 6 CPUs, got %v", z)
	}
	// Two of them: the second spans zones (10 CPU left over 2 zones).
	req.Members = exclusive(members("w", 2, "6", "1Gi"))
	req.Needed = 2
	req.Nodes[0].Free.MilliCPU = 16000
	p, f = PlanGang(req)
	if f != nil {
		t.Fatal(f)
	}
	spans := 0
	for _, z := range p.ZonesOf {
		if len(z) > 1 {
			spans++
		}
	}
	if spans != 1 {
		t.Fatalf("want exactly one member spanning zones, got %v", p.ZonesOf)
	}
}

func TestPartialPlanHoldsWhatFits(t *testing.T) {
	req := Request{Nodes: []Node{node("a", "8", "8Gi"), node("b", "4", "8Gi")}, Members: members("w", 5, "4", "1Gi"), Needed: 0}
	p, f := PlanGang(req)
	if f != nil {
		t.Fatal(f)
	}
	if len(p.NodeOf) != 3 {
		t.Fatalf("a partial plan holds the 3 members that fit, got %d", len(p.NodeOf))
	}
}

// FillHoles puts small pinned pods into zones in use before whole ones,
// even on more nodes; Counted and WholeZones say what waiting for the node
// agent would buy.
func TestFillHolesPrefersZonesInUse(t *testing.T) {
	withAlloc := func(n Node) Node {
		n.NUMA.Allocatable = slices.Clone(n.NUMA.Capacity)
		return n
	}
	// a and b run a 12-CPU pod in each zone, counted; c is empty.
	a := withAlloc(numaNode("a", 16, numa.PolicySingleNUMANode, 12, 12))
	b := withAlloc(numaNode("b", 16, numa.PolicySingleNUMANode, 12, 12))
	c := withAlloc(numaNode("c", 16, numa.PolicySingleNUMANode))
	req := Request{Nodes: []Node{a, b, c}, Members: exclusive(members("s", 4, "4", "1Gi")), Needed: 4}
	for i := range req.Nodes {
		req.Nodes[i].Free.MilliCPU = (req.Nodes[i].NUMA.Free[0] + req.Nodes[i].NUMA.Free[1]) * 1000
	}
	p, f := PlanGang(req)
	if f != nil || len(p.NodesUsed) != 1 || req.Nodes[p.NodesUsed[0]].Info.Node().Name != "c" || WholeZones(req, p) != 1 {
		t.Fatalf("without FillHoles the gang takes one node, c, and one whole zone: %+v %v", p, f)
	}
	req.FillHoles = true
	p, f = PlanGang(req)
	if f != nil || WholeZones(req, p) != 0 {
		t.Fatalf("FillHoles puts the four pods beside the large ones: %+v %v", p, f)
	}
	if got := nodesOf(req, p); got["a"] != 2 || got["b"] != 2 {
		t.Fatalf("want two on a and two on b, got %v", got)
	}

	// Not counted yet: a and b each take one more 4-CPU pod safely, so
	// the plan needs a whole zone of c; once counted it would need none.
	for _, n := range []*Node{&req.Nodes[0], &req.Nodes[1]} {
		n.NUMA = n.NUMA.Clone()
		n.NUMA.Free = []int64{16, 16}
		n.NUMA.Pending = []numa.Demand{{{CPUs: 12}}, {{CPUs: 12}}}
	}
	p, f = PlanGang(req)
	if f != nil || WholeZones(req, p) != 1 {
		t.Fatalf("with the large pods pending, one whole zone: %+v %v", p, f)
	}
	counted := Counted(req)
	later, f := PlanGang(counted)
	if f != nil || WholeZones(counted, later) != 0 || len(req.Nodes[0].NUMA.Pending) != 2 {
		t.Fatalf("once counted, none, and req is left as it was: %+v %v", later, f)
	}
}
