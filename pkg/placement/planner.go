package placement

import (
	"fmt"
	"sort"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	fwk "k8s.io/kube-scheduler/framework"
)

// Member is one pod of a gang waiting to be placed.
type Member struct {
	Pod     *v1.Pod
	Request Resources
	// Avoid lists nodes this member must not be planned on again: its full
	// Filter chain refused them after an earlier plan chose them.
	Avoid sets.Set[string]
}

// Node is a node as a plan sees it: its object and the room a plan may use,
// which the caller has already reduced by what other gangs hold.
type Node struct {
	Info fwk.NodeInfo
	Free Resources
}

// Request asks for a plan.
type Request struct {
	Nodes   []Node
	Members []Member
	// Needed is how many members must be placed for the plan to count; the
	// others (elastic extras) are placed when room allows.
	Needed  int
	Options Options
}

// Plan says which node each placed member goes to.
type Plan struct {
	// NodeOf maps a member's index in Request.Members to a node index in
	// Request.Nodes; members left out (extras that did not fit) are absent.
	NodeOf map[int]int
	// NodesUsed lists the node indices the plan uses, in the order opened.
	NodesUsed []int
}

// Failure explains why no plan exists.
type Failure struct {
	Needed, Placed int
	// Member is the first member that found no node, Request what it asks.
	Member  *v1.Pod
	Request Resources
	// Reasons counts why each node refused that member.
	Reasons map[string]int
	Nodes   int
}

func (f *Failure) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "only %d of the %d members needed can be placed at once", f.Placed, f.Needed)
	if f.Member != nil {
		fmt.Fprintf(&b, "; pod %s (%s) fits none of the %d nodes left", f.Member.Name, f.Request.String(), f.Nodes)
		if len(f.Reasons) > 0 {
			b.WriteString(": ")
			b.WriteString(formatReasons(f.Reasons))
		}
	}
	return b.String()
}

func formatReasons(reasons map[string]int) string {
	keys := make([]string, 0, len(reasons))
	for k := range reasons {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if reasons[keys[i]] != reasons[keys[j]] {
			return reasons[keys[i]] > reasons[keys[j]]
		}
		return keys[i] < keys[j]
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d %s", reasons[k], k)
	}
	return strings.Join(parts, ", ")
}

// PlanGang places a gang's members, largest first, onto as few nodes as it
// can: each member goes to a node the plan already uses when one has room
// (best fit, the fullest that still fits), and otherwise opens the node that
// takes the most of the members still to place, the tightest such node
// first, so that big holes stay free for big gangs. It is deterministic for
// the same input. The members' own scheduling cycles then check the full
// Filter chain on the planned nodes.
func PlanGang(req Request) (*Plan, *Failure) {
	n := len(req.Nodes)
	order := sortedBySize(req.Members)
	free := make([]Resources, n)
	for i := range req.Nodes {
		free[i] = req.Nodes[i].Free
	}
	nodeObj := func(i int) *v1.Node { return req.Nodes[i].Info.Node() }

	byKey := map[string]*constraints{}
	cons := make([]*constraints, len(req.Members))
	for i := range req.Members {
		k := constraintKey(req.Members[i].Pod, req.Members[i].Avoid)
		c, ok := byKey[k]
		if !ok {
			c = newConstraints(req.Members[i].Pod, req.Members[i].Avoid, n)
			byKey[k] = c
		}
		cons[i] = c
	}

	plan := &Plan{NodeOf: make(map[int]int, len(req.Members))}
	used := make([]bool, n)
	var failure *Failure
	placed := 0
	for pos, mi := range order {
		m := &req.Members[mi]
		c := cons[mi]
		best := -1
		var bestLeft Resources
		// A node the plan already uses: the one left fullest.
		for _, ni := range plan.NodesUsed {
			if !c.admits(ni, nodeObj(ni), req.Options) || !free[ni].Fits(&m.Request) {
				continue
			}
			left := free[ni]
			left.Sub(&m.Request)
			if best < 0 || tighter(&left, &bestLeft) {
				best, bestLeft = ni, left
			}
		}
		if best < 0 {
			best = openNode(req, free, used, cons, order[pos:], nodeObj)
		}
		if best < 0 {
			if failure == nil {
				failure = diagnose(req, free, used, c, m)
			}
			if placed+len(order)-pos-1 < req.Needed {
				failure.Needed, failure.Placed = req.Needed, placed
				return nil, failure
			}
			continue
		}
		if !used[best] {
			used[best] = true
			plan.NodesUsed = append(plan.NodesUsed, best)
		}
		free[best].Sub(&m.Request)
		plan.NodeOf[mi] = best
		placed++
	}
	if placed < req.Needed {
		if failure == nil {
			failure = &Failure{}
		}
		failure.Needed, failure.Placed = req.Needed, placed
		return nil, failure
	}
	return plan, nil
}

// openNode picks the unused node that takes the longest run of the members
// still to place, breaking ties by the least room left (best fit), then by
// name. It returns -1 when no unused node takes the first of them.
func openNode(req Request, free []Resources, used []bool, cons []*constraints, rest []int, nodeObj func(int) *v1.Node) int {
	runs := runsOf(req.Members, cons, rest)
	first := &req.Members[rest[0]]
	best, bestRun := -1, 0
	var bestLeft Resources
	for ni := range req.Nodes {
		if used[ni] || !free[ni].Fits(&first.Request) || !cons[rest[0]].admits(ni, nodeObj(ni), req.Options) {
			continue
		}
		left := free[ni]
		run := 0
		for _, r := range runs {
			if !r.cons.admits(ni, nodeObj(ni), req.Options) {
				break
			}
			k := min(int64(r.count), left.copies(r.req))
			left.subTimes(r.req, k)
			run += int(k)
			if int(k) < r.count {
				break
			}
		}
		better := best < 0 || run > bestRun ||
			(run == bestRun && (tighter(&left, &bestLeft) ||
				(!tighter(&bestLeft, &left) && nodeObj(ni).Name < nodeObj(best).Name)))
		if better {
			best, bestRun, bestLeft = ni, run, left
		}
	}
	return best
}

// run is a stretch of consecutive members with the same request and
// constraints: a node takes as many of them as its room divides into, so
// one division replaces a fit check per member.
type run struct {
	req   *Resources
	cons  *constraints
	count int
}

func runsOf(members []Member, cons []*constraints, rest []int) []run {
	var runs []run
	for _, mi := range rest {
		m := &members[mi]
		if n := len(runs); n > 0 && runs[n-1].cons == cons[mi] && sameRequest(runs[n-1].req, &m.Request) {
			runs[n-1].count++
			continue
		}
		runs = append(runs, run{req: &m.Request, cons: cons[mi], count: 1})
	}
	return runs
}

func sameRequest(a, b *Resources) bool {
	if a.MilliCPU != b.MilliCPU || a.Memory != b.Memory || a.EphemeralStorage != b.EphemeralStorage || a.Pods != b.Pods || len(a.Scalar) != len(b.Scalar) {
		return false
	}
	for k, v := range a.Scalar {
		if b.Scalar[k] != v {
			return false
		}
	}
	return true
}

// tighter reports whether room a is smaller than room b: CPU first, as the
// resource gangs are sized by, then memory.
func tighter(a, b *Resources) bool {
	if a.MilliCPU != b.MilliCPU {
		return a.MilliCPU < b.MilliCPU
	}
	return a.Memory < b.Memory
}

// diagnose counts why each node refuses m. It only runs on failure, so the
// common path never formats a reason.
func diagnose(req Request, free []Resources, used []bool, c *constraints, m *Member) *Failure {
	f := &Failure{Member: m.Pod, Request: m.Request, Reasons: map[string]int{}, Nodes: len(req.Nodes)}
	for ni := range req.Nodes {
		node := req.Nodes[ni].Info.Node()
		if !c.admits(ni, node, req.Options) {
			f.Reasons[c.reason[ni]]++
			continue
		}
		if name := free[ni].Insufficient(&m.Request); name != "" {
			if used[ni] {
				f.Reasons["node(s) already full with this gang's members"]++
			} else {
				f.Reasons["Insufficient "+string(name)]++
			}
		}
	}
	return f
}

// sortedBySize orders members largest first (CPU, then memory), then by
// name, so the plan is the same for the same gang.
func sortedBySize(members []Member) []int {
	order := make([]int, len(members))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool {
		ra, rb := &members[order[a]].Request, &members[order[b]].Request
		if ra.MilliCPU != rb.MilliCPU {
			return ra.MilliCPU > rb.MilliCPU
		}
		if ra.Memory != rb.Memory {
			return ra.Memory > rb.Memory
		}
		return members[order[a]].Pod.Name < members[order[b]].Pod.Name
	})
	return order
}
