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
	// NUMA is what the member needs from one NUMA zone when kubelet would
	// give it exclusive CPUs (Guaranteed, integer CPU); nil otherwise.
	NUMA *Resources
}

// Zone is a NUMA zone of a node and the room left in it.
type Zone struct {
	Name string
	Free Resources
}

// Node is a node as a plan sees it: its object and the room a plan may use,
// which the caller has already reduced by what other gangs hold.
type Node struct {
	Info fwk.NodeInfo
	Free Resources
	// Zones are the node's NUMA zones when known (NodeResourceTopology).
	Zones []Zone
	// SingleNUMA is set when kubelet's Topology Manager policy is
	// single-numa-node: a member with a NUMA need must fit one zone.
	SingleNUMA bool
}

// Request asks for a plan.
type Request struct {
	Nodes   []Node
	Members []Member
	// Needed is how many members must be placed for the plan to count; the
	// others (elastic extras) are placed when room allows. Zero asks for a
	// partial plan: as many members as fit (a head-of-queue reservation).
	Needed  int
	Options Options
	// Levels are topology label keys, widest first (zone, rack, hostname).
	// The gang goes to the narrowest domain that holds it.
	Levels []string
	// Preferred is the level to try first ("" for the narrowest), Required
	// the widest level the gang may span ("" for the whole cluster).
	Preferred, Required string
}

// Domain is the topology domain a plan lies in; empty for the whole cluster.
type Domain struct {
	Level, Value string
}

func (d Domain) String() string {
	if d.Level == "" {
		return "the cluster"
	}
	return shortLevel(d.Level) + " " + d.Value
}

// shortLevel turns topology.kubernetes.io/rack into rack for messages.
func shortLevel(level string) string {
	if i := strings.LastIndex(level, "/"); i >= 0 {
		return level[i+1:]
	}
	return level
}

// Plan says which node each placed member goes to.
type Plan struct {
	// NodeOf maps a member's index in Request.Members to a node index in
	// Request.Nodes; members left out (extras that did not fit) are absent.
	NodeOf map[int]int
	// ZonesOf names the NUMA zones each member takes, for members with a
	// NUMA need on nodes whose zones are known.
	ZonesOf map[int][]string
	// NodesUsed lists the node indices the plan uses, in the order opened.
	NodesUsed []int
	Domain    Domain
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
	// Required is set when the gang must fit one domain of this level.
	Required string
	Domains  int
}

func (f *Failure) Error() string {
	var b strings.Builder
	if f.Required != "" {
		fmt.Fprintf(&b, "no single %s of the %d holds the gang; in the best one ", shortLevel(f.Required), f.Domains)
	}
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

// PlanGang places a gang's members, largest first. It looks for the
// narrowest topology domain that holds the whole gang, from the preferred
// level outwards up to the required one, and among the domains of a level
// that hold it takes the one left with the least room (best fit), so big
// holes stay free for big gangs. Inside the domain it packs onto as few
// nodes as it can: each member goes to a node the plan already uses when
// one has room (the fullest that still fits, preferring one NUMA zone), and
// otherwise opens the node that takes the most of the members still to
// place, the tightest such node first. It is deterministic for the same
// input. The members' own scheduling cycles then run the full Filter chain
// on the planned nodes.
func PlanGang(req Request) (*Plan, *Failure) {
	p := newPlanner(req)
	levels := p.levels()
	if len(levels) == 0 {
		return p.planWithin(p.all(), Domain{})
	}
	var bestFailure *Failure
	var largest []int // the roomiest domain skipped without planning
	var largestFree int64
	domains := 0
	for _, level := range levels {
		if level == "" {
			plan, f := p.planWithin(p.all(), Domain{})
			if plan != nil {
				return plan, nil
			}
			return nil, f
		}
		var best *Plan
		var bestLeft int64
		groups := p.domainsOf(level)
		domains = len(groups)
		for _, d := range groups {
			if req.Needed > 0 && !p.mayHold(d.nodes) {
				if f := p.freeCPU(d.nodes); largest == nil || f > largestFree {
					largest, largestFree = d.nodes, f
				}
				continue
			}
			plan, f := p.planWithin(d.nodes, Domain{Level: level, Value: d.value})
			if plan == nil {
				if bestFailure == nil || f.Placed > bestFailure.Placed {
					bestFailure = f
				}
				continue
			}
			left := p.roomLeft(d.nodes, plan)
			if best == nil || (req.Needed == 0 && len(plan.NodeOf) > len(best.NodeOf)) ||
				(len(plan.NodeOf) == len(best.NodeOf) && left < bestLeft) {
				best, bestLeft = plan, left
			}
		}
		if best != nil {
			return best, nil
		}
	}
	if bestFailure == nil && largest != nil {
		// Every domain was too small to try: explain with the roomiest.
		_, bestFailure = p.planWithin(largest, Domain{})
	}
	if bestFailure == nil {
		bestFailure = &Failure{Needed: req.Needed}
	}
	if req.Required != "" {
		bestFailure.Required, bestFailure.Domains = req.Required, domains
	}
	return nil, bestFailure
}

// planner holds what every domain attempt shares: member order and the
// per-node verdicts of their static predicates.
type planner struct {
	req   Request
	order []int
	cons  []*constraints
}

func newPlanner(req Request) *planner {
	p := &planner{req: req, order: sortedBySize(req.Members), cons: make([]*constraints, len(req.Members))}
	byKey := map[string]*constraints{}
	for i := range req.Members {
		k := constraintKey(req.Members[i].Pod, req.Members[i].Avoid)
		c, ok := byKey[k]
		if !ok {
			c = newConstraints(req.Members[i].Pod, req.Members[i].Avoid, len(req.Nodes))
			byKey[k] = c
		}
		p.cons[i] = c
	}
	return p
}

func (p *planner) node(i int) *v1.Node { return p.req.Nodes[i].Info.Node() }

func (p *planner) all() []int {
	out := make([]int, len(p.req.Nodes))
	for i := range out {
		out[i] = i
	}
	return out
}

// levels lists the levels to try, narrowest first from the preferred one,
// ending with "" (the whole cluster) unless a level is required. Levels no
// node carries are skipped.
func (p *planner) levels() []string {
	if p.req.Needed == 0 {
		// A partial plan holds as much as fits: within the required level's
		// domains, else anywhere.
		if p.req.Required != "" {
			return []string{p.req.Required}
		}
		return []string{""}
	}
	var present []string
	for _, l := range p.req.Levels {
		for i := range p.req.Nodes {
			if _, ok := p.node(i).Labels[l]; ok {
				present = append(present, l)
				break
			}
		}
	}
	start := len(present) - 1
	for i, l := range present {
		if l == p.req.Preferred {
			start = i
		}
	}
	var out []string
	for i := start; i >= 0; i-- {
		out = append(out, present[i])
		if present[i] == p.req.Required {
			return out
		}
	}
	if p.req.Required != "" {
		// The required level is not carried by any node: nothing holds
		// the gang. Returning it keeps the failure worded by level.
		return append(out[:0], p.req.Required)
	}
	return append(out, "")
}

type domain struct {
	value string
	nodes []int
}

// domainsOf groups nodes by their value of a level label, sorted by value.
func (p *planner) domainsOf(level string) []domain {
	byValue := map[string][]int{}
	for i := range p.req.Nodes {
		if v, ok := p.node(i).Labels[level]; ok {
			byValue[v] = append(byValue[v], i)
		}
	}
	out := make([]domain, 0, len(byValue))
	for v, nodes := range byValue {
		out = append(out, domain{value: v, nodes: nodes})
	}
	sort.Slice(out, func(a, b int) bool { return out[a].value < out[b].value })
	return out
}

// mayHold is a cheap necessary condition: the domain's summed free room
// covers the members that must be placed.
func (p *planner) mayHold(nodes []int) bool {
	var free, need Resources
	for _, ni := range nodes {
		free.MilliCPU += max(p.req.Nodes[ni].Free.MilliCPU, 0)
		free.Memory += max(p.req.Nodes[ni].Free.Memory, 0)
		free.Pods += max(p.req.Nodes[ni].Free.Pods, 0)
	}
	for i, mi := range p.order {
		if i >= p.req.Needed {
			break
		}
		r := p.req.Members[mi].Request
		need.MilliCPU += r.MilliCPU
		need.Memory += r.Memory
		need.Pods += r.Pods
	}
	return need.MilliCPU <= free.MilliCPU && need.Memory <= free.Memory && need.Pods <= free.Pods
}

func (p *planner) freeCPU(nodes []int) int64 {
	var free int64
	for _, ni := range nodes {
		free += p.req.Nodes[ni].Free.MilliCPU
	}
	return free
}

// roomLeft is the CPU a domain has left once the plan is placed.
func (p *planner) roomLeft(nodes []int, plan *Plan) int64 {
	var left int64
	for _, ni := range nodes {
		left += p.req.Nodes[ni].Free.MilliCPU
	}
	for mi := range plan.NodeOf {
		left -= p.req.Members[mi].Request.MilliCPU
	}
	return left
}

// placing is one attempt's running state: room left per node and zone,
// indexed by position in nodes (the domain), so a one-node domain costs
// one node's worth of memory, not the cluster's.
type placing struct {
	*planner
	nodes []int
	local map[int]int // node index in the request -> position in nodes
	free  []Resources
	zones [][]Resources
	used  []bool
}

func (p *planner) planWithin(nodes []int, dom Domain) (*Plan, *Failure) {
	req := p.req
	s := &placing{planner: p, nodes: nodes, local: make(map[int]int, len(nodes)), free: make([]Resources, len(nodes)), zones: make([][]Resources, len(nodes)), used: make([]bool, len(nodes))}
	for li, ni := range nodes {
		s.free[li] = req.Nodes[ni].Free
		s.local[ni] = li
	}
	plan := &Plan{NodeOf: make(map[int]int, len(req.Members)), Domain: dom}
	var failure *Failure
	placed := 0
	for pos, mi := range p.order {
		m := &req.Members[mi]
		c := p.cons[mi]
		best, bestZone := -1, -1
		var bestLeft Resources
		// A node the plan already uses: one NUMA zone first, then the one
		// left fullest.
		for _, ni := range plan.NodesUsed {
			li := s.local[ni]
			if !c.admits(ni, p.node(ni), req.Options) {
				continue
			}
			ok, zone := s.fits(li, m)
			if !ok {
				continue
			}
			left := s.free[li]
			left.Sub(&m.Request)
			oneZone, bestOne := zone >= 0, bestZone >= 0
			if best < 0 || (oneZone && !bestOne) || (oneZone == bestOne && tighter(&left, &bestLeft)) {
				best, bestZone, bestLeft = li, zone, left
			}
		}
		if best < 0 {
			best = s.openNode(p.order[pos:])
		}
		if best < 0 {
			if failure == nil {
				failure = s.diagnose(c, m)
			}
			if req.Needed > 0 && placed+len(p.order)-pos-1 < req.Needed {
				failure.Needed, failure.Placed = req.Needed, placed
				return nil, failure
			}
			continue
		}
		if !s.used[best] {
			s.used[best] = true
			plan.NodesUsed = append(plan.NodesUsed, nodes[best])
		}
		if zones := s.take(best, m); len(zones) > 0 {
			if plan.ZonesOf == nil {
				plan.ZonesOf = map[int][]string{}
			}
			plan.ZonesOf[mi] = zones
		}
		plan.NodeOf[mi] = nodes[best]
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

// zonesOf returns the running room of a node's NUMA zones, copied from the
// request on first use.
func (s *placing) zonesOf(li int) []Resources {
	ni := s.nodes[li]
	if s.zones[li] == nil && len(s.req.Nodes[ni].Zones) > 0 {
		z := make([]Resources, len(s.req.Nodes[ni].Zones))
		for i, zone := range s.req.Nodes[ni].Zones {
			z[i] = zone.Free
		}
		s.zones[li] = z
	}
	return s.zones[li]
}

// fits reports whether member m fits the domain's li-th node now, and the
// single NUMA zone it would take (-1 when it needs none, or spans zones).
func (s *placing) fits(li int, m *Member) (bool, int) {
	if !s.free[li].Fits(&m.Request) {
		return false, -1
	}
	ni := s.nodes[li]
	zones := s.zonesOf(li)
	if m.NUMA == nil || len(zones) == 0 {
		return true, -1
	}
	if z := bestZone(zones, m.NUMA); z >= 0 {
		return true, z
	}
	// Kubelet would refuse the pod (TopologyAffinityError) where it must fit
	// one zone and none has room; elsewhere it spans zones.
	return !s.req.Nodes[ni].SingleNUMA, -1
}

// bestZone is the zone left with the least CPU that still fits need, or -1.
func bestZone(zones []Resources, need *Resources) int {
	best := -1
	for i := range zones {
		if !zoneFits(&zones[i], need) {
			continue
		}
		if best < 0 || zones[i].MilliCPU < zones[best].MilliCPU {
			best = i
		}
	}
	return best
}

// zoneFits checks CPU and memory; a zone that does not report memory
// carries a huge value for it.
func zoneFits(zone, need *Resources) bool {
	return need.MilliCPU <= zone.MilliCPU && need.Memory <= zone.Memory
}

// take places m on the domain's li-th node and returns the NUMA zones it
// takes.
func (s *placing) take(li int, m *Member) []string {
	s.free[li].Sub(&m.Request)
	zones := s.zonesOf(li)
	if m.NUMA == nil || len(zones) == 0 {
		return nil
	}
	names := s.req.Nodes[s.nodes[li]].Zones
	if z := bestZone(zones, m.NUMA); z >= 0 {
		zones[z].Sub(m.NUMA)
		return []string{names[z].Name}
	}
	// Span zones, the roomiest first, so the pod touches as few as it can.
	order := make([]int, len(zones))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return zones[order[a]].MilliCPU > zones[order[b]].MilliCPU })
	cpu, mem := m.NUMA.MilliCPU, m.NUMA.Memory
	var out []string
	for _, z := range order {
		if cpu <= 0 && mem <= 0 {
			break
		}
		c, mm := min(cpu, max(zones[z].MilliCPU, 0)), min(mem, max(zones[z].Memory, 0))
		if c == 0 && mm == 0 {
			continue
		}
		zones[z].MilliCPU -= c
		zones[z].Memory -= mm
		cpu, mem = cpu-c, mem-mm
		out = append(out, names[z].Name)
	}
	return out
}

// openNode picks the unused node that takes the longest run of the members
// still to place, breaking ties by the least room left (best fit), then by
// name. It returns -1 when no unused node takes the first of them.
func (s *placing) openNode(rest []int) int {
	req := s.req
	runs := runsOf(req.Members, s.cons, rest)
	first := &req.Members[rest[0]]
	best, bestRun := -1, 0
	var bestLeft Resources
	for li, ni := range s.nodes {
		if s.used[li] || !s.cons[rest[0]].admits(ni, s.node(ni), req.Options) {
			continue
		}
		if ok, _ := s.fits(li, first); !ok {
			continue
		}
		left := s.free[li]
		run := 0
		for _, r := range runs {
			if !r.cons.admits(ni, s.node(ni), req.Options) {
				break
			}
			k := min(int64(r.count), left.copies(r.req))
			numa := r.numa != nil && len(req.Nodes[ni].Zones) > 0
			if numa && req.Nodes[ni].SingleNUMA {
				k = min(k, zoneCopies(s.zonesOf(li), r.numa))
			}
			left.subTimes(r.req, k)
			run += int(k)
			if int(k) < r.count || numa {
				// Zones are not tracked across runs: stop at the first one
				// that needs them.
				break
			}
		}
		better := best < 0 || run > bestRun ||
			(run == bestRun && (tighter(&left, &bestLeft) ||
				(!tighter(&bestLeft, &left) && s.node(ni).Name < s.node(s.nodes[best]).Name)))
		if better {
			best, bestRun, bestLeft = li, run, left
		}
	}
	return best
}

// zoneCopies is how many members needing need fit the zones, each in one.
func zoneCopies(zones []Resources, need *Resources) int64 {
	var n int64
	for i := range zones {
		c := Resources{MilliCPU: need.MilliCPU, Memory: need.Memory}
		n += zones[i].copies(&c)
	}
	return n
}

// run is a stretch of consecutive members with the same request and
// constraints: a node takes as many of them as its room divides into, so
// one division replaces a fit check per member.
type run struct {
	req   *Resources
	numa  *Resources
	cons  *constraints
	count int
}

func runsOf(members []Member, cons []*constraints, rest []int) []run {
	var runs []run
	for _, mi := range rest {
		m := &members[mi]
		if n := len(runs); n > 0 && runs[n-1].cons == cons[mi] && sameRequest(runs[n-1].req, &m.Request) && sameNUMA(runs[n-1].numa, m.NUMA) {
			runs[n-1].count++
			continue
		}
		runs = append(runs, run{req: &m.Request, numa: m.NUMA, cons: cons[mi], count: 1})
	}
	return runs
}

func sameNUMA(a, b *Resources) bool {
	if a == nil || b == nil {
		return a == b
	}
	return sameRequest(a, b)
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
func (s *placing) diagnose(c *constraints, m *Member) *Failure {
	f := &Failure{Member: m.Pod, Request: m.Request, Reasons: map[string]int{}, Nodes: len(s.nodes)}
	for li, ni := range s.nodes {
		if !c.admits(ni, s.node(ni), s.req.Options) {
			f.Reasons[c.reason[ni]]++
			continue
		}
		if name := s.free[li].Insufficient(&m.Request); name != "" {
			if s.used[li] {
				f.Reasons["node(s) already full with this gang's members"]++
			} else {
				f.Reasons["Insufficient "+string(name)]++
			}
			continue
		}
		if ok, _ := s.fits(li, m); !ok {
			f.Reasons[ReasonNUMA]++
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
