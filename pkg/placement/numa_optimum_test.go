package placement

import (
	"fmt"
	"math/rand"
	"slices"
	"testing"

	"github.com/lockstep-sched/lockstep/pkg/numa"
)

// optimum finds, by trying every assignment of members to nodes, the fewest
// nodes a gang can take with every node's pods admitted by kubelet in any
// order; 0 when no assignment works.
func optimum(req Request) int {
	best := 0
	assign := make([]int, len(req.Members))
	var try func(mi int)
	try = func(mi int) {
		if mi == len(req.Members) {
			perNode := map[int][]numa.Demand{}
			cpu := map[int]int64{}
			for m, ni := range assign {
				d := req.Members[m].NUMA.For(req.Nodes[ni].NUMA.Scope)
				perNode[ni] = append(perNode[ni], d)
				cpu[ni] += req.Members[m].Request.MilliCPU
			}
			for ni, ds := range perNode {
				z := req.Nodes[ni].NUMA
				if cpu[ni] > req.Nodes[ni].Free.MilliCPU || !numa.Safe(z.Policy, z.Capacity, z.Free, append(slices.Clone(z.Pending), ds...)) {
					return
				}
			}
			if best == 0 || len(perNode) < best {
				best = len(perNode)
			}
			return
		}
		for ni := range req.Nodes {
			assign[mi] = ni
			try(mi + 1)
		}
	}
	try(0)
	return best
}

// TestPlanAgainstOptimumOnNUMANodes compares the planner with an exact
// optimum on small random cases: nodes of 2 or 4 zones, some pods already
// waiting for kubelet, gangs mixing several pod sizes. The planner must
// find a plan whenever one exists, and the test reports how far its node
// count is from the fewest.
func TestPlanAgainstOptimumOnNUMANodes(t *testing.T) {
	r := rand.New(rand.NewSource(11))
	sizes := []int64{2, 4, 6, 8, 12}
	var cases, feasible, missed, extraNodes, optimal int
	for cases < 1500 {
		zones := []int{2, 4}[r.Intn(2)]
		zoneCPUs := int64(16)
		if zones == 4 {
			zoneCPUs = 8
		}
		policy := []numa.Policy{numa.PolicySingleNUMANode, numa.PolicyRestricted}[r.Intn(2)]
		var req Request
		for i := range 2 + r.Intn(3) {
			n := numaNode(fmt.Sprintf("n%d", i), zoneCPUs, policy)
			n.NUMA.Names, n.NUMA.Capacity, n.NUMA.Free = nil, nil, nil
			for z := range zones {
				n.NUMA.Names = append(n.NUMA.Names, fmt.Sprintf("node-%d", z))
				n.NUMA.Capacity = append(n.NUMA.Capacity, zoneCPUs)
				n.NUMA.Free = append(n.NUMA.Free, zoneCPUs-int64(r.Intn(int(zoneCPUs)/2+1)))
			}
			n.Free.MilliCPU = int64(zones) * zoneCPUs * 1000
			for range r.Intn(3) {
				n.NUMA.Pending = append(n.NUMA.Pending, numa.Demand{{CPUs: sizes[r.Intn(2)]}})
			}
			req.Nodes = append(req.Nodes, n)
		}
		count := 2 + r.Intn(4)
		for i := range count {
			cpu := sizes[r.Intn(len(sizes))]
			if cpu > zoneCPUs {
				cpu = zoneCPUs
			}
			req.Members = append(req.Members, exclusive(members(fmt.Sprintf("m%d", i), 1, fmt.Sprint(cpu), "1Gi"))...)
		}
		req.Needed = count
		cases++
		best := optimum(req)
		plan, _ := PlanGang(req)
		switch {
		case best == 0 && plan != nil:
			t.Fatalf("case %d: the planner found a plan where no safe one exists: %v", cases, plan.NodeOf)
		case best == 0:
			continue
		}
		feasible++
		if plan == nil {
			missed++
			t.Logf("case %d: a plan on %d nodes exists, the planner found none: nodes %v, members %v", cases, best, describeNodes(req), describeMembers(req))
			continue
		}
		if len(plan.NodesUsed) == best {
			optimal++
		}
		extraNodes += len(plan.NodesUsed) - best
	}
	t.Logf("%d cases, %d with a safe plan: the planner found %d of them (%d with the fewest nodes), %d nodes more than the optimum in all",
		cases, feasible, feasible-missed, optimal, extraNodes)
	if feasible < 300 {
		t.Fatalf("only %d of %d cases could be placed: too few to compare", feasible, cases)
	}
	if missed > feasible/50 {
		t.Fatalf("the planner missed %d of %d placeable gangs", missed, feasible)
	}
}

func describeNodes(req Request) []string {
	var out []string
	for _, n := range req.Nodes {
		out = append(out, fmt.Sprintf("%s free %v pending %v", n.NUMA.Policy, n.NUMA.Free, n.NUMA.Pending))
	}
	return out
}

func describeMembers(req Request) []int64 {
	var out []int64
	for _, m := range req.Members {
		out = append(out, m.NUMA.Pod.CPUs())
	}
	return out
}
