package placement

import (
	"github.com/lockstep-sched/lockstep/pkg/numa"

	"fmt"
	"maps"
	"math/rand"
	"reflect"
	"slices"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	st "k8s.io/kubernetes/pkg/scheduler/testing"
)

const gpuResource = v1.ResourceName("example.com/gpu")

// randomRequest builds a small cluster with racks and zones, NUMA zones,
// taints, GPUs and uneven free room, and a gang of a few member shapes, some
// with NUMA needs, node selectors, tolerations or nodes to avoid.
func randomRequest(r *rand.Rand) Request {
	var req Request
	for i := range 1 + r.Intn(40) {
		name := fmt.Sprintf("n%02d", i)
		n := st.MakeNode().Name(name).Obj()
		n.Labels = map[string]string{v1.LabelHostname: name}
		if r.Intn(10) != 0 {
			n.Labels[zoneKey] = fmt.Sprintf("z%d", r.Intn(3))
			n.Labels[rackKey] = fmt.Sprintf("r%d", r.Intn(6))
		}
		if r.Intn(4) == 0 {
			n.Labels["pool"] = "gpu"
		}
		if r.Intn(10) == 0 {
			n.Spec.Taints = []v1.Taint{{Key: "dedicated", Value: "x", Effect: v1.TaintEffectNoSchedule}}
		}
		n.Spec.Unschedulable = r.Intn(20) == 0
		ni := framework.NewNodeInfo()
		ni.SetNode(n)
		node := Node{Info: ni, Free: Resources{
			MilliCPU: int64(r.Intn(17)) * 2000, Memory: int64(r.Intn(9)) << 30, Pods: int64(r.Intn(12)),
		}}
		if r.Intn(3) == 0 {
			node.Free.Scalar = map[v1.ResourceName]int64{gpuResource: int64(r.Intn(9))}
		}
		if r.Intn(3) == 0 {
			z := &numa.Node{Policy: []numa.Policy{numa.PolicySingleNUMANode, numa.PolicyRestricted, numa.PolicyBestEffort}[r.Intn(3)], Scope: numa.ScopePod}
			for i := range 1 + r.Intn(3) {
				z.Names = append(z.Names, fmt.Sprintf("node-%d", i))
				z.Capacity = append(z.Capacity, 16)
				z.Free = append(z.Free, int64(r.Intn(9))*2)
			}
			if r.Intn(3) == 0 {
				z.Pending = []numa.Demand{{{CPUs: 1 + int64(r.Intn(6))}}}
			}
			node.NUMA = z
		}
		req.Nodes = append(req.Nodes, node)
	}
	type shape struct {
		res                     Resources
		numa, sel, tol, avoided bool
	}
	var shapes []shape
	for range 1 + r.Intn(3) {
		sh := shape{res: Resources{MilliCPU: int64(1+r.Intn(8)) * 1000, Memory: int64(r.Intn(4)) << 30, Pods: 1},
			numa: r.Intn(2) == 0, sel: r.Intn(6) == 0, tol: r.Intn(6) == 0, avoided: r.Intn(6) == 0}
		if r.Intn(4) == 0 {
			sh.res.Scalar = map[v1.ResourceName]int64{gpuResource: int64(1 + r.Intn(4))}
		}
		shapes = append(shapes, sh)
	}
	for i := range r.Intn(30) {
		sh := shapes[r.Intn(len(shapes))]
		p := st.MakePod().Namespace("ns").Name(fmt.Sprintf("m-%02d", i)).UID(fmt.Sprint(i)).Obj()
		if sh.sel {
			p.Spec.NodeSelector = map[string]string{"pool": "gpu"}
		}
		if sh.tol {
			p.Spec.Tolerations = []v1.Toleration{{Key: "dedicated", Operator: v1.TolerationOpExists}}
		}
		m := Member{Pod: p, Request: sh.res}
		if sh.avoided {
			m.Avoid = sets.New(fmt.Sprintf("n%02d", r.Intn(len(req.Nodes))))
		}
		if sh.numa {
			d := numa.Demand{{CPUs: sh.res.MilliCPU / 1000}}
			m.NUMA = &numa.Needs{Container: d, Pod: d}
		}
		req.Members = append(req.Members, m)
	}
	switch r.Intn(4) {
	case 0:
		req.Needed = 0
	case 1:
		req.Needed = r.Intn(len(req.Members) + 1)
	default:
		req.Needed = len(req.Members)
	}
	if r.Intn(4) != 0 {
		req.Levels = levels
		all := []string{"", zoneKey, rackKey, v1.LabelHostname}
		req.Preferred, req.Required = all[r.Intn(len(all))], all[r.Intn(len(all))]
	}
	return req
}

// snapshot deep-copies the room a request offers, to tell whether a plan
// wrote to it.
func snapshot(req Request) []Node {
	out := slices.Clone(req.Nodes)
	for i := range out {
		out[i].Free.Scalar = maps.Clone(out[i].Free.Scalar)
		out[i].NUMA = out[i].NUMA.Clone()
	}
	return out
}

// TestPlanRespectsRoomOnRandomInputs checks what every plan must hold,
// whatever the input: no node or NUMA zone gets more than its free room,
// every member passes its node's static predicates, the gang stays in the
// domain it names, the input is left untouched, and the same input gives the
// same plan.
func TestPlanRespectsRoomOnRandomInputs(t *testing.T) {
	r := rand.New(rand.NewSource(42))
	planned := 0
	for iter := range 3000 {
		if checkPlan(t, iter, randomRequest(r)) {
			planned++
		}
	}
	if planned < 500 {
		t.Fatalf("only %d of the random cases produced a plan: the generator needs tuning", planned)
	}
}

// checkPlan plans req and checks the plan; false when there is none.
func checkPlan(t *testing.T, iter int, req Request) bool {
	t.Helper()
	before := snapshot(req)
	plan, f := PlanGang(req)
	if !reflect.DeepEqual(before, req.Nodes) {
		t.Fatalf("case %d: the plan changed the request's nodes", iter)
	}
	if plan == nil {
		if f == nil || f.Placed >= f.Needed && f.Needed > 0 {
			t.Fatalf("case %d: no plan and no failure that explains it: %+v", iter, f)
		}
		return false
	}
	if len(plan.NodeOf) < req.Needed {
		t.Fatalf("case %d: %d members placed, %d needed", iter, len(plan.NodeOf), req.Needed)
	}
	checkRoom(t, iter, req, plan)
	checkPredicatesAndDomain(t, iter, req, plan)
	again, _ := PlanGang(req)
	if !reflect.DeepEqual(plan, again) {
		t.Fatalf("case %d: the same input planned twice differs:\n%+v\n%+v", iter, plan, again)
	}
	return true
}

// FuzzPlanGang checks the same properties on clusters and gangs drawn from
// the fuzzer's seeds: random nodes, taints, zones, NUMA zones and members.
func FuzzPlanGang(f *testing.F) {
	for _, seed := range []int64{0, 1, 42, 1 << 40, -7} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, seed int64) {
		checkPlan(t, 0, randomRequest(rand.New(rand.NewSource(seed))))
	})
}

func checkRoom(t *testing.T, iter int, req Request, plan *Plan) {
	t.Helper()
	taken := make([]Resources, len(req.Nodes))
	// Where kubelet may reject for alignment, every order kubelet may admit
	// a node's pods in must work.
	onNode := map[int][]numa.Demand{}
	for mi, ni := range plan.NodeOf {
		m := &req.Members[mi]
		taken[ni].Add(&m.Request)
		if z := req.Nodes[ni].NUMA; z != nil && m.NUMA != nil {
			onNode[ni] = append(onNode[ni], m.NUMA.For(z.Scope))
		}
	}
	for ni, ds := range onNode {
		z := req.Nodes[ni].NUMA
		if !numa.Safe(z.Policy, z.Capacity, z.Free, append(slices.Clone(z.Pending), ds...)) {
			t.Fatalf("case %d: node %d (%s, free %v, pending %v) given %v, which kubelet may reject", iter, ni, z.Policy, z.Free, z.Pending, ds)
		}
	}
	for _, ni := range plan.NodesUsed {
		free := req.Nodes[ni].Free
		if name := free.Insufficient(&taken[ni]); name != "" {
			t.Fatalf("case %d: node %d given more %s than it has: %s of %s", iter, ni, name, taken[ni].String(), free.String())
		}
	}
}

func checkPredicatesAndDomain(t *testing.T, iter int, req Request, plan *Plan) {
	t.Helper()
	used := map[int]bool{}
	for mi, ni := range plan.NodeOf {
		used[ni] = true
		m := &req.Members[mi]
		node := req.Nodes[ni].Info.Node()
		c := newConstraints(m.Pod, m.Avoid, len(req.Nodes))
		if !c.admits(ni, node, req.Options) {
			t.Fatalf("case %d: member %d planned on %s, which refuses it: %s", iter, mi, node.Name, c.reason[ni])
		}
		if plan.Domain.Level != "" && node.Labels[plan.Domain.Level] != plan.Domain.Value {
			t.Fatalf("case %d: member %d on %s, outside %s", iter, mi, node.Name, plan.Domain)
		}
	}
	if len(plan.NodesUsed) != len(used) {
		t.Fatalf("case %d: NodesUsed %v, members on %d nodes", iter, plan.NodesUsed, len(used))
	}
	for _, ni := range plan.NodesUsed {
		if !used[ni] {
			t.Fatalf("case %d: NodesUsed lists node %d, which holds no member", iter, ni)
		}
	}
	if req.Required != "" {
		// The gang must lie within one domain of the required level or a
		// narrower one.
		if plan.Domain.Level == "" || slices.Index(req.Levels, plan.Domain.Level) < slices.Index(req.Levels, req.Required) {
			t.Fatalf("case %d: required %s, planned in %s", iter, shortLevel(req.Required), plan.Domain)
		}
	}
}
