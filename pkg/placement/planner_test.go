package placement

import (
	"fmt"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	st "k8s.io/kubernetes/pkg/scheduler/testing"
)

func node(name string, cpu, mem string, pods ...*v1.Pod) Node {
	n := st.MakeNode().Name(name).Capacity(map[v1.ResourceName]string{
		v1.ResourceCPU: cpu, v1.ResourceMemory: mem, v1.ResourcePods: "110",
	}).Obj()
	ni := framework.NewNodeInfo(pods...)
	ni.SetNode(n)
	return Node{Info: ni, Free: FreeOf(ni)}
}

func members(prefix string, count int, cpu, mem string) []Member {
	out := make([]Member, count)
	for i := range out {
		p := st.MakePod().Namespace("ns").Name(fmt.Sprintf("%s-%d", prefix, i)).UID(fmt.Sprintf("%s-%d", prefix, i)).
			Req(map[v1.ResourceName]string{v1.ResourceCPU: cpu, v1.ResourceMemory: mem}).Obj()
		out[i] = Member{Pod: p, Request: PodRequest(p)}
	}
	return out
}

func nodesOf(req Request, p *Plan) map[string]int {
	out := map[string]int{}
	for _, ni := range p.NodeOf {
		out[req.Nodes[ni].Info.Node().Name]++
	}
	return out
}

func TestPlanPacksOntoFewestNodes(t *testing.T) {
	req := Request{
		Nodes: []Node{
			node("a", "16", "64Gi"), node("b", "16", "64Gi"), node("c", "16", "64Gi"), node("d", "16", "64Gi"),
		},
		Members: members("w", 8, "4", "8Gi"),
		Needed:  8,
	}
	p, f := PlanGang(req)
	if f != nil {
		t.Fatalf("unexpected failure: %v", f)
	}
	got := nodesOf(req, p)
	if len(got) != 2 {
		t.Fatalf("want the 8x4-CPU gang on 2 nodes of 16 CPU, got %v", got)
	}
	for n, c := range got {
		if c != 4 {
			t.Errorf("node %s got %d members, want 4", n, c)
		}
	}
}

func TestPlanPrefersTightestNodeThatHoldsTheGang(t *testing.T) {
	busy := st.MakePod().Name("busy").Req(map[v1.ResourceName]string{v1.ResourceCPU: "8"}).Obj()
	req := Request{
		Nodes:   []Node{node("big", "32", "64Gi"), node("tight", "16", "64Gi", busy), node("exact", "8", "64Gi")},
		Members: members("w", 2, "4", "1Gi"),
		Needed:  2,
	}
	p, f := PlanGang(req)
	if f != nil {
		t.Fatal(f)
	}
	got := nodesOf(req, p)
	// "exact" and "tight" both have 8 CPU free; both hold the whole gang and
	// leave 0 CPU: the name breaks the tie. "big" must stay untouched.
	if got["big"] != 0 || len(got) != 1 {
		t.Fatalf("want the gang on one fully used node, got %v", got)
	}
	if got["exact"] != 2 {
		t.Fatalf("want the deterministic tie-break to pick 'exact', got %v", got)
	}
}

func TestPlanRejectsWhenOnlySumOfFreeRoomFits(t *testing.T) {
	// 4 nodes with 3 CPU free each: 12 CPU free in total, but members of 4
	// CPU fit nowhere. A summed-capacity check would wrongly admit the gang.
	req := Request{
		Nodes:   []Node{node("a", "3", "8Gi"), node("b", "3", "8Gi"), node("c", "3", "8Gi"), node("d", "3", "8Gi")},
		Members: members("w", 3, "4", "1Gi"),
		Needed:  3,
	}
	_, f := PlanGang(req)
	if f == nil {
		t.Fatal("want a failure, got a plan")
	}
	if f.Placed != 0 || f.Needed != 3 || f.Reasons["Insufficient cpu"] != 4 {
		t.Fatalf("unexpected diagnosis %+v", f)
	}
	if msg := f.Error(); !strings.Contains(msg, "only 0 of the 3 members") || !strings.Contains(msg, "4 Insufficient cpu") {
		t.Fatalf("message does not explain: %q", msg)
	}
}

func TestPlanFailsWhenOneMemberTooMany(t *testing.T) {
	req := Request{
		Nodes:   []Node{node("a", "8", "8Gi"), node("b", "8", "8Gi")},
		Members: members("w", 5, "4", "1Gi"),
		Needed:  5,
	}
	_, f := PlanGang(req)
	if f == nil || f.Placed != 4 {
		t.Fatalf("want 4 of 5 placed then failure, got %+v", f)
	}
	if f.Reasons["node(s) already full with this gang's members"] != 2 {
		t.Fatalf("want the refusal blamed on the gang's own members, got %v", f.Reasons)
	}
}

func TestPlanPlacesExtrasOnlyWhenRoomAllows(t *testing.T) {
	req := Request{
		Nodes:   []Node{node("a", "8", "8Gi"), node("b", "8", "8Gi")},
		Members: members("w", 6, "4", "1Gi"),
		Needed:  3,
	}
	p, f := PlanGang(req)
	if f != nil {
		t.Fatal(f)
	}
	if len(p.NodeOf) != 4 {
		t.Fatalf("want the 3 needed plus 1 extra that fits, got %d placed", len(p.NodeOf))
	}
}

func TestPlanHonoursStaticPredicates(t *testing.T) {
	tainted := node("tainted", "64", "64Gi")
	tainted.Info.Node().Spec.Taints = []v1.Taint{{Key: "dedicated", Value: "infra", Effect: v1.TaintEffectNoSchedule}}
	cordoned := node("cordoned", "64", "64Gi")
	cordoned.Info.Node().Spec.Unschedulable = true
	labelled := node("gpu", "8", "64Gi")
	labelled.Info.Node().Labels = map[string]string{"pool": "gpu"}
	plain := node("plain", "64", "64Gi")

	ms := members("w", 2, "4", "1Gi")
	for _, m := range ms {
		m.Pod.Spec.NodeSelector = map[string]string{"pool": "gpu"}
	}
	req := Request{Nodes: []Node{tainted, cordoned, plain, labelled}, Members: ms, Needed: 2}
	p, f := PlanGang(req)
	if f != nil {
		t.Fatal(f)
	}
	if got := nodesOf(req, p); got["gpu"] != 2 {
		t.Fatalf("want both members on the only matching node, got %v", got)
	}

	// Without the selector, taint and cordon still exclude two nodes.
	ms = members("v", 3, "32", "1Gi")
	req = Request{Nodes: []Node{tainted, cordoned, node("small", "8", "8Gi")}, Members: ms, Needed: 3}
	_, f = PlanGang(req)
	if f == nil {
		t.Fatal("want failure")
	}
	if f.Reasons[ReasonTaint] != 1 || f.Reasons[ReasonUnschedulable] != 1 || f.Reasons["Insufficient cpu"] != 1 {
		t.Fatalf("want one refusal of each kind, got %v", f.Reasons)
	}
}

func TestPlanIsDeterministic(t *testing.T) {
	var nodes []Node
	for i := range 50 {
		nodes = append(nodes, node(fmt.Sprintf("n%02d", i), fmt.Sprint(8+i%5*4), "64Gi"))
	}
	req := Request{Nodes: nodes, Members: members("w", 20, "3", "1Gi"), Needed: 20}
	first, f := PlanGang(req)
	if f != nil {
		t.Fatal(f)
	}
	for range 5 {
		again, _ := PlanGang(req)
		for mi, ni := range first.NodeOf {
			if again.NodeOf[mi] != ni {
				t.Fatalf("member %d moved from node %d to %d", mi, ni, again.NodeOf[mi])
			}
		}
	}
}

func TestPlanDoesNotMutateInput(t *testing.T) {
	req := Request{Nodes: []Node{node("a", "8", "8Gi")}, Members: members("w", 2, "4", "1Gi"), Needed: 2}
	before := req.Nodes[0].Free
	if _, f := PlanGang(req); f != nil {
		t.Fatal(f)
	}
	if req.Nodes[0].Free.MilliCPU != before.MilliCPU {
		t.Fatal("planner changed the caller's free room")
	}
}
