package placement

import (
	"cmp"
	"container/heap"
	"fmt"
	"slices"
	"sort"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/lockstep-sched/lockstep/pkg/numa"
)

// Member is one pod of a gang waiting to be placed.
type Member struct {
	Pod     *v1.Pod
	Request Resources
	// Avoid lists nodes this member must not be planned on again: its full
	// Filter chain refused them after an earlier plan chose them.
	Avoid sets.Set[string]
	// NUMA is what the member asks of kubelet's CPU manager when it gets
	// exclusive CPUs (Guaranteed, whole CPUs); nil otherwise.
	NUMA *numa.Needs
}

// Node is a node as a plan sees it: its object and the room a plan may use,
// which the caller has already reduced by what other gangs hold.
type Node struct {
	Info fwk.NodeInfo
	Free Resources
	// NUMA is the node's NUMA zones and the pods kubelet has yet to admit
	// there, when known (NodeResourceTopology); the plan only puts a
	// member where kubelet admits it whatever the order. Read only.
	NUMA *numa.Node
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
	// FillHoles puts members with exclusive CPUs into NUMA zones already in
	// use before whole ones, even on more nodes: for small pinned pods
	// while larger ones wait, which need whole zones.
	FillHoles bool
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
	// ZonesOf names the NUMA zones kubelet gives each member with a NUMA
	// need on a node whose zones are known, if it admits the node's pods
	// in plan order (other orders are safe too, in other zones).
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
	var largest *domain // the roomiest domain skipped without planning
	domains := 0
	for _, level := range levels {
		if level == "" {
			return p.planWithin(p.all(), Domain{})
		}
		groups := p.domainsOf(level)
		domains = len(groups)
		if p.req.FillHoles && level != p.req.Required && singleNodes(groups) {
			// One node per domain would keep the gang off the holes.
			continue
		}
		plan, f, skipped := p.planLevel(level, groups)
		if plan != nil {
			return plan, nil
		}
		// Across levels the first failure that placed the most wins, as
		// does the first roomiest skipped domain.
		if f != nil && (bestFailure == nil || f.Placed > bestFailure.Placed) {
			bestFailure = f
		}
		if skipped != nil && (largest == nil || skipped.freeCPU > largest.freeCPU) {
			largest = skipped
		}
	}
	if bestFailure == nil && largest != nil {
		// Every domain was too small to try: explain with the roomiest.
		_, bestFailure = p.planWithin(largest.nodes, Domain{})
	}
	if bestFailure == nil {
		bestFailure = &Failure{Needed: req.Needed}
	}
	if req.Required != "" {
		bestFailure.Required, bestFailure.Domains = req.Required, domains
	}
	return nil, bestFailure
}

// planner holds what every domain attempt shares: member order, the runs of
// alike members along it, the per-node verdicts of their static predicates,
// and buffers that each attempt reuses.
type planner struct {
	req   Request
	order []int
	cons  []*constraints
	// objs caches each node's object: Info.Node() is an interface call, and
	// the hot loops ask for it per node per member. names caches their names
	// next to each other, as the best-fit tie-break compares them a lot
	// among alike nodes.
	objs  []*v1.Node
	names []string
	// runs group consecutive members of order alike in request and
	// constraints; runAt maps a position in order to its run.
	runs  []run
	runAt []int
	// need is what the Needed largest members request together, cpuAll the
	// CPU all members request: bounds that let whole domains be skipped.
	need   Resources
	cpuAll int64
	// index numbers a level's label values; see domainsOf.
	index map[string]int32
	// scratch is the running state of the current attempt; its buffers
	// are reused across domains.
	scratch placing
}

func newPlanner(req Request) *planner {
	p := &planner{req: req, order: sortedBySize(req.Members), cons: make([]*constraints, len(req.Members)),
		objs: make([]*v1.Node, len(req.Nodes)), names: make([]string, len(req.Nodes))}
	for i := range req.Nodes {
		if n := req.Nodes[i].Info.Node(); n != nil {
			p.objs[i], p.names[i] = n, n.Name
		}
	}
	byKey := map[string]*constraints{}
	for i := range req.Members {
		if i > 0 && samePredicates(&req.Members[i], &req.Members[i-1]) {
			p.cons[i] = p.cons[i-1]
			continue
		}
		k := constraintKey(req.Members[i].Pod, req.Members[i].Avoid)
		c, ok := byKey[k]
		if !ok {
			c = newConstraints(req.Members[i].Pod, req.Members[i].Avoid, len(req.Nodes))
			byKey[k] = c
		}
		p.cons[i] = c
	}
	p.runs, p.runAt = runsOf(req.Members, p.cons, p.order)
	for pos, mi := range p.order {
		r := &req.Members[mi].Request
		if pos < req.Needed {
			p.need.MilliCPU += r.MilliCPU
			p.need.Memory += r.Memory
			p.need.Pods += r.Pods
		}
		p.cpuAll += max(r.MilliCPU, 0)
	}
	p.scratch.planner = p
	return p
}

func (p *planner) node(i int) *v1.Node { return p.objs[i] }

// label returns node i's value of a topology label; a node without an
// object carries none.
func (p *planner) label(i int, level string) (string, bool) {
	n := p.objs[i]
	if n == nil {
		return "", false
	}
	v, ok := n.Labels[level]
	return v, ok
}

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
			if _, ok := p.label(i, l); ok {
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

// placing is one attempt's running state: room left per node and zone,
// indexed by position in nodes (the domain), so a one-node domain costs
// one node's worth of work, not the cluster's.
type placing struct {
	*planner
	nodes []int
	free  []Resources
	// zoneBuf holds the free CPUs of the zones of all the domain's nodes,
	// those of the li-th node at zoneAt[li] up to zoneAt[li+1], as kubelet
	// leaves them admitting the pending pods and the plan's in order; see
	// zones. planned[li] are the NUMA demands the plan put on the li-th
	// node.
	zoneBuf []int64
	zoneAt  []int
	planned [][]numa.Demand
	used    []bool
	// opened lists the positions of the nodes the plan uses, in the order
	// opened; roomy those of them that may still take members of run
	// roomyRun (see usedNodeFor).
	opened   []int
	roomy    []int
	roomyRun int
	// caps[li] is how many members of run capsRun the li-th node could take
	// while unused, or -1 when it takes none of them; maxCap is the most of
	// them; see loadCaps.
	caps    []int64
	capsRun int
	maxCap  int64
	// queue orders the nodes that take members of run queueRun; see
	// popRoomiest.
	queue    roomiestQueue
	queueRun int
}

// reset readies the scratch state for a domain: the room of its nodes and
// of their NUMA zones, copied from the request so that the plan never
// writes to the caller's values.
func (s *placing) reset(nodes []int) {
	n := len(nodes)
	s.nodes = nodes
	s.free = resize(s.free, n)
	s.used = resize(s.used, n)
	s.caps = resize(s.caps, n)
	s.opened, s.roomy = s.opened[:0], s.roomy[:0]
	s.capsRun, s.queueRun, s.roomyRun = -1, -1, -1
	s.planned = resize(s.planned, n)
	total := 0
	for li, ni := range nodes {
		s.free[li] = s.req.Nodes[ni].Free
		s.used[li] = false
		s.planned[li] = s.planned[li][:0]
		if z := s.req.Nodes[ni].NUMA; z != nil {
			total += len(z.Free)
		}
	}
	s.zoneBuf = resize(s.zoneBuf, total)
	s.zoneAt = resize(s.zoneAt, n+1)
	at := 0
	for li, ni := range nodes {
		s.zoneAt[li] = at
		z := s.req.Nodes[ni].NUMA
		if z == nil {
			continue
		}
		copy(s.zoneBuf[at:], z.Free)
		for _, d := range z.Pending {
			numa.Admit(z.Policy, z.Capacity, s.zoneBuf[at:at+len(z.Free)], d)
		}
		at += len(z.Free)
	}
	s.zoneAt[n] = at
}

// zones returns the free CPUs of the domain's li-th node's NUMA zones as
// the plan leaves them, in NUMA order; empty when they are not known.
func (s *placing) zones(li int) []int64 {
	return s.zoneBuf[s.zoneAt[li]:s.zoneAt[li+1]]
}

// numaOf returns the li-th node's NUMA model and what m asks of it; a nil
// demand when either is unknown or m gets no exclusive CPUs.
func (s *placing) numaOf(li int, m *Member) (*numa.Node, numa.Demand) {
	z := s.req.Nodes[s.nodes[li]].NUMA
	if z == nil || m.NUMA == nil || len(z.Free) == 0 {
		return nil, nil
	}
	return z, m.NUMA.For(z.Scope)
}

// resize returns buf with length n, reallocating only when it is too
// small. The contents are left for the caller to overwrite.
func resize[T any](buf []T, n int) []T {
	if cap(buf) < n {
		return make([]T, n)
	}
	return buf[:n]
}

func (p *planner) planWithin(nodes []int, dom Domain) (*Plan, *Failure) {
	req := p.req
	s := &p.scratch
	s.reset(nodes)
	plan := &Plan{NodeOf: make(map[int]int, len(req.Members)), Domain: dom}
	var failure *Failure
	placed := 0
	for pos, mi := range p.order {
		m := &req.Members[mi]
		c := p.cons[mi]
		best := s.usedNodeFor(pos)
		if best < 0 {
			best = s.openNode(pos)
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
			s.opened = append(s.opened, best)
			s.roomy = append(s.roomy, best)
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
	for _, li := range s.opened {
		plan.NodesUsed = append(plan.NodesUsed, nodes[li])
	}
	return plan, nil
}

// usedNodeFor picks, among the nodes the plan already uses, the one for
// the member at position pos: one that gives it a single NUMA zone first,
// then the one left fullest. It returns -1 when none has room.
//
// Room only shrinks, so a used node that cannot take a member cannot take
// the rest of its run either: it is dropped from roomy until the next run,
// which keeps a gang of one member per node linear rather than quadratic.
func (s *placing) usedNodeFor(pos int) int {
	mi := s.order[pos]
	m, c := &s.req.Members[mi], s.cons[mi]
	if ri := s.runAt[pos]; s.roomyRun != ri {
		s.roomyRun = ri
		s.roomy = append(s.roomy[:0], s.opened...)
	}
	best, bestZone := -1, -1
	roomy := s.roomy[:0]
	for _, li := range s.roomy {
		ni := s.nodes[li]
		if !c.admits(ni, s.node(ni), s.req.Options) {
			continue
		}
		ok, zone := s.fits(li, m)
		if !ok {
			continue
		}
		roomy = append(roomy, li)
		// m takes the same from whichever node: the one left fullest is
		// the one with the least room now.
		oneZone, bestOne := zone >= 0, bestZone >= 0
		if best < 0 || (oneZone && !bestOne) || (oneZone == bestOne && tighter(&s.free[li], &s.free[best])) {
			best, bestZone = li, zone
		}
	}
	s.roomy = roomy
	return best
}

// fits reports whether member m fits the domain's li-th node now, where
// kubelet admits it whatever the order it admits the node's pods in, and
// the single NUMA zone it would take in plan order (-1 when it needs none,
// or spans zones).
func (s *placing) fits(li int, m *Member) (bool, int) {
	if !s.free[li].Fits(&m.Request) {
		return false, -1
	}
	z, d := s.numaOf(li, m)
	if len(d) == 0 {
		return true, -1
	}
	if !z.Fits(s.planned[li], d) {
		return false, -1
	}
	if zone := numa.ZoneOf(z.Policy, z.Capacity, s.zones(li), d); zone >= 0 {
		return true, zone
	}
	sim := slices.Clone(s.zones(li))
	a := numa.Admit(z.Policy, z.Capacity, sim, d)
	if zones := a.Zones(); len(zones) == 1 {
		return true, zones[0]
	}
	return true, -1
}

// take places m on the domain's li-th node and returns the NUMA zones
// kubelet gives it in plan order.
func (s *placing) take(li int, m *Member) []string {
	s.free[li].Sub(&m.Request)
	z, d := s.numaOf(li, m)
	if len(d) == 0 {
		return nil
	}
	s.planned[li] = append(s.planned[li], d)
	a := numa.Admit(z.Policy, z.Capacity, s.zones(li), d)
	var out []string
	for _, i := range a.Zones() {
		out = append(out, z.Names[i])
	}
	return out
}

// openNode picks the unused node that takes the longest run of the members
// from position pos on, breaking ties by the least room left (best fit),
// then by name. It returns -1 when no unused node takes the member at pos.
//
// Two nodes that take equally many members take the same members (the runs
// are taken in order, each whole before the next), so their room left
// differs exactly as their free room does: the tie-break compares free
// room, which for an unused node never changes.
func (s *placing) openNode(pos int) int {
	ri := s.runAt[pos]
	s.loadCaps(ri)
	if s.req.FillHoles {
		if li := s.holeFor(pos); li >= 0 {
			return li
		}
	}
	if count := int64(s.runs[ri].end - pos); s.maxCap < count {
		// No node holds the rest of the run: each takes what it holds, so
		// the pick is the first in a fixed order, kept in a queue rather
		// than found by a pass over the domain per node opened (a gang of
		// one member per node would cost members x nodes).
		return s.popRoomiest(ri)
	}
	best, bestRun := -1, int64(0)
	for li := range s.nodes {
		if s.used[li] || s.caps[li] < 0 {
			continue
		}
		run := s.runOn(li, pos)
		if best < 0 || run > bestRun || (run == bestRun && s.tighterNode(li, best)) {
			best, bestRun = li, run
		}
	}
	return best
}

// loadCaps computes caps for the members of run ri: which unused nodes
// pass their predicates and fit one of them, and how many each could take.
// An unused node's room does not change, so one pass over the domain serves
// every node opened while the run lasts.
func (s *placing) loadCaps(ri int) {
	if s.capsRun == ri {
		return
	}
	s.capsRun, s.maxCap = ri, -1
	r := &s.runs[ri]
	for li, ni := range s.nodes {
		s.caps[li] = -1
		if s.used[li] || !r.cons.admits(ni, s.node(ni), s.req.Options) {
			continue
		}
		if ok, _ := s.fits(li, r.member); ok {
			s.caps[li] = s.copiesOn(li, r.member, &s.free[li])
			s.maxCap = max(s.maxCap, s.caps[li])
		}
	}
}

// holeFor picks, for FillHoles, the unused node where the member at pos
// goes into a NUMA zone already in use, the tightest such zone first;
// -1 when there is none.
func (s *placing) holeFor(pos int) int {
	m := &s.req.Members[s.order[pos]]
	best, bestFree := -1, int64(0)
	for li := range s.nodes {
		if s.used[li] || s.caps[li] < 1 {
			continue
		}
		z, d := s.numaOf(li, m)
		if len(d) == 0 || len(z.Allocatable) != len(z.Free) {
			continue
		}
		_, zone := s.fits(li, m)
		if zone < 0 {
			continue
		}
		free := s.zones(li)[zone]
		if free >= z.Allocatable[zone] {
			continue // a whole zone
		}
		if best < 0 || free < bestFree || (free == bestFree && s.tighterNode(li, best)) {
			best, bestFree = li, free
		}
	}
	return best
}

// singleNodes reports whether every domain is one node.
func singleNodes(groups []domain) bool {
	for i := range groups {
		if len(groups[i].nodes) > 1 {
			return false
		}
	}
	return true
}

// popRoomiest picks, among the unused nodes that take members of run ri,
// the one that takes the most, the tightest first; -1 when there is none.
// The queue is built on first use in a run; the node picked is opened.
func (s *placing) popRoomiest(ri int) int {
	q := &s.queue
	if s.queueRun != ri {
		s.queueRun = ri
		q.s, q.lis = s, slices.Grow(q.lis[:0], len(s.nodes))
		for li := range s.nodes {
			if !s.used[li] && s.caps[li] >= 0 {
				q.lis = append(q.lis, li)
			}
		}
		heap.Init(q)
	}
	for q.Len() > 0 {
		if li := q.pop(); !s.used[li] {
			return li
		}
	}
	return -1
}

// roomiestQueue orders nodes by how many members of the current run they
// take, most first, then tightest first: the order openNode picks in.
type roomiestQueue struct {
	s   *placing
	lis []int
}

func (q *roomiestQueue) Len() int { return len(q.lis) }
func (q *roomiestQueue) Less(i, j int) bool {
	a, b := q.lis[i], q.lis[j]
	if q.s.caps[a] != q.s.caps[b] {
		return q.s.caps[a] > q.s.caps[b]
	}
	return q.s.tighterNode(a, b)
}
func (q *roomiestQueue) Swap(i, j int) { q.lis[i], q.lis[j] = q.lis[j], q.lis[i] }
func (q *roomiestQueue) Push(x any)    { q.lis = append(q.lis, x.(int)) }
func (q *roomiestQueue) Pop() any {
	li := q.lis[len(q.lis)-1]
	q.lis = q.lis[:len(q.lis)-1]
	return li
}

// pop takes the top off as heap.Pop does, without boxing it in an
// interface (an allocation per node opened).
func (q *roomiestQueue) pop() int {
	li, last := q.lis[0], len(q.lis)-1
	q.lis[0] = q.lis[last]
	q.lis = q.lis[:last]
	if last > 0 {
		heap.Fix(q, 0)
	}
	return li
}

// copiesOn is how many members like m fit into room left of the li-th
// node, where kubelet admits them all whatever the order. The node is
// unused: the plan put nothing on it yet.
func (s *placing) copiesOn(li int, m *Member, left *Resources) int64 {
	k := left.copies(&m.Request)
	if z, d := s.numaOf(li, m); len(d) > 0 {
		k = z.Copies(nil, d, k)
	}
	return k
}

// runOn is how many of the members from position pos on the unused li-th
// node takes if opened now: as many of the first run as it holds, and when
// it holds all of them, on into the next runs. Zones are not tracked across
// runs, so it stops after the first run that needs them.
func (s *placing) runOn(li, pos int) int64 {
	first := s.runAt[pos]
	var left Resources
	var taken int64
	for ri := first; ri < len(s.runs); ri++ {
		r := &s.runs[ri]
		count := int64(r.end - max(r.start, pos))
		var k int64
		if ri == first {
			k = min(count, s.caps[li])
		} else {
			if !r.cons.admits(s.nodes[li], s.node(s.nodes[li]), s.req.Options) {
				break
			}
			k = min(count, s.copiesOn(li, r.member, &left))
		}
		taken += k
		if z, d := s.numaOf(li, r.member); k < count || len(d) > 0 && z != nil || ri == len(s.runs)-1 {
			break
		}
		if ri == first {
			left = s.free[li]
		}
		left.subTimes(&r.member.Request, k)
	}
	return taken
}

// tighterNode reports whether the unused node at a is a tighter fit than
// the one at b: less CPU free, then less memory, then the smaller name,
// then the earlier in the domain.
func (s *placing) tighterNode(a, b int) bool {
	fa, fb := &s.free[a], &s.free[b]
	if tighter(fa, fb) {
		return true
	}
	if tighter(fb, fa) {
		return false
	}
	if na, nb := s.names[s.nodes[a]], s.names[s.nodes[b]]; na != nb {
		return na < nb
	}
	return a < b
}

// run is a stretch of consecutive members (positions start to end in the
// member order) with the same request and constraints: a node takes as
// many of them as its room divides into, so one division replaces a fit
// check per member.
type run struct {
	member     *Member // the first; the others ask the same
	cons       *constraints
	start, end int
}

// runsOf splits the member order into runs, and maps each position to its
// run. The runs of the members still to place are a suffix of these, the
// first one shortened, so they are computed once per plan.
func runsOf(members []Member, cons []*constraints, order []int) ([]run, []int) {
	var runs []run
	runAt := make([]int, len(order))
	for pos, mi := range order {
		m := &members[mi]
		if n := len(runs); n > 0 {
			last := &runs[n-1]
			if last.cons == cons[mi] && sameRequest(&last.member.Request, &m.Request) && sameNUMA(last.member.NUMA, m.NUMA) {
				last.end = pos + 1
				runAt[pos] = n - 1
				continue
			}
		}
		runs = append(runs, run{member: m, cons: cons[mi], start: pos, end: pos + 1})
		runAt[pos] = len(runs) - 1
	}
	return runs, runAt
}

func sameNUMA(a, b *numa.Needs) bool {
	if a == nil || b == nil {
		return a == b
	}
	return slices.Equal(a.Container, b.Container) && slices.Equal(a.Pod, b.Pod)
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
	slices.SortStableFunc(order, func(a, b int) int {
		ra, rb := &members[a].Request, &members[b].Request
		if c := cmp.Compare(rb.MilliCPU, ra.MilliCPU); c != 0 {
			return c
		}
		if c := cmp.Compare(rb.Memory, ra.Memory); c != 0 {
			return c
		}
		return strings.Compare(members[a].Pod.Name, members[b].Pod.Name)
	})
	return order
}
