package placement

import "container/heap"

// domain is one value of a topology level and the nodes that carry it.
type domain struct {
	value string
	// nodes are indices in Request.Nodes, in increasing order.
	nodes []int
	// cpu, memory and pods sum the nodes' free room, counting only what
	// is positive, for mayHold; freeCPU sums their free CPU as it is, for
	// best fit.
	cpu, memory, pods int64
	freeCPU           int64
	// minLeft bounds from below the CPU any plan leaves the domain: its
	// free CPU less what all the members ask.
	minLeft int64
	// key orders the planning of a level's domains; see planLevel.
	key int64
}

// domainsOf groups nodes by their value of a level label. The domains come
// in no particular order: planLevel orders the ones it plans.
func (p *planner) domainsOf(level string) []domain {
	// Number the values first, so that the domains (as many as the nodes
	// at the hostname level) are allocated once rather than grown. The
	// index is sized for a value per node once and reused across levels:
	// growing a map to thousands of keys costs more than filling it.
	if p.index == nil {
		p.index = make(map[string]int32, len(p.objs))
	}
	index := p.index
	clear(index)
	of := make([]int32, len(p.objs)) // each node's domain, -1 for none
	for i := range p.objs {
		v, ok := p.label(i, level)
		if !ok {
			of[i] = -1
			continue
		}
		di, seen := index[v]
		if !seen {
			di = int32(len(index))
			index[v] = di
		}
		of[i] = di
	}
	sizes := make([]int, len(index))
	labelled := 0
	for _, di := range of {
		if di >= 0 {
			sizes[di]++
			labelled++
		}
	}
	// One array holds every domain's node list; each domain's part is
	// capped at its size so that appending fills it in place.
	out := make([]domain, len(index))
	flat := make([]int, labelled)
	at := 0
	for di, size := range sizes {
		out[di].nodes = flat[at : at : at+size]
		at += size
	}
	for i, di := range of {
		if di < 0 {
			continue
		}
		d := &out[di]
		d.nodes = append(d.nodes, i)
		d.addRoom(&p.req.Nodes[i].Free)
	}
	for v, di := range index {
		out[di].value = v
	}
	for di := range out {
		out[di].minLeft = out[di].freeCPU - p.cpuAll
	}
	return out
}

func (d *domain) addRoom(free *Resources) {
	d.cpu += max(free.MilliCPU, 0)
	d.memory += max(free.Memory, 0)
	d.pods += max(free.Pods, 0)
	d.freeCPU += free.MilliCPU
}

// mayHold is a cheap necessary condition: the domain's summed free room
// covers the members that must be placed.
func (p *planner) mayHold(d *domain) bool {
	return p.need.MilliCPU <= d.cpu && p.need.Memory <= d.memory && p.need.Pods <= d.pods
}

// candidate is a plan found in a domain and the CPU it leaves there.
type candidate struct {
	plan *Plan
	left int64
	dom  *domain
}

// planLevel plans the gang in the domains of one level. The best plan is
// the one leaving its domain the least CPU (best fit), ties going to the
// smallest domain value; a partial plan (Needed == 0) first places as many
// members as it can. Without a plan it returns the failure that placed the
// most members (ties to the smallest value), and the roomiest domain it
// skipped as too small to try.
//
// Domains are planned from the least room up, so that the first plan found
// usually is the best one and the rest of the level is skipped: a domain is
// only planned when its minLeft could still beat the best plan. When the
// gang has extras (0 < Needed < members) the plans may differ in how many
// extras they hold, and the first plan in value order sets that number (a
// plan holding a different number never replaces it): domains are then
// planned in value order, still skipping those that cannot beat the best.
func (p *planner) planLevel(level string, groups []domain) (*Plan, *Failure, *domain) {
	byValue := p.req.Needed > 0 && p.req.Needed < len(p.req.Members)
	var skipped *domain
	queue := make(domainQueue, 0, len(groups))
	for i := range groups {
		d := &groups[i]
		if p.req.Needed > 0 && !p.mayHold(d) {
			if skipped == nil || d.freeCPU > skipped.freeCPU || (d.freeCPU == skipped.freeCPU && d.value < skipped.value) {
				skipped = d
			}
			continue
		}
		if !byValue {
			d.key = d.minLeft
		}
		queue = append(queue, d)
	}
	heap.Init(&queue)
	var best *candidate
	var failure *Failure
	var failed *domain
	for queue.Len() > 0 {
		d := heap.Pop(&queue).(*domain)
		if !p.mayBeat(d, best) {
			if byValue {
				continue
			}
			break // the domains left have no less room than this one
		}
		plan, f := p.planWithin(d.nodes, Domain{Level: level, Value: d.value})
		if plan == nil {
			if failure == nil || f.Placed > failure.Placed || (f.Placed == failure.Placed && d.value < failed.value) {
				failure, failed = f, d
			}
			continue
		}
		c := &candidate{plan: plan, left: d.freeCPU - p.placedCPU(plan), dom: d}
		if p.beats(c, best) {
			best = c
		}
	}
	if best != nil {
		return best.plan, nil, nil
	}
	return nil, failure, skipped
}

// beats reports whether plan c is better than the best so far.
func (p *planner) beats(c, best *candidate) bool {
	if best == nil {
		return true
	}
	n, bestN := len(c.plan.NodeOf), len(best.plan.NodeOf)
	if p.req.Needed == 0 && n != bestN {
		return n > bestN
	}
	return n == bestN && (c.left < best.left || (c.left == best.left && c.dom.value < best.dom.value))
}

// mayBeat reports whether a plan in d could beat the best so far, from d's
// lower bound on the room left alone.
func (p *planner) mayBeat(d *domain, best *candidate) bool {
	if best == nil || (p.req.Needed == 0 && len(best.plan.NodeOf) < len(p.req.Members)) {
		return true
	}
	return d.minLeft < best.left || (d.minLeft == best.left && d.value < best.dom.value)
}

// placedCPU is the CPU the plan's members ask.
func (p *planner) placedCPU(plan *Plan) int64 {
	var cpu int64
	for mi := range plan.NodeOf {
		cpu += p.req.Members[mi].Request.MilliCPU
	}
	return cpu
}

// domainQueue hands out domains by key, then value. A heap rather than a
// sort: usually only the first domain or two are planned, and a level may
// have a domain per node.
type domainQueue []*domain

func (q domainQueue) Len() int { return len(q) }
func (q domainQueue) Less(i, j int) bool {
	if q[i].key != q[j].key {
		return q[i].key < q[j].key
	}
	return q[i].value < q[j].value
}
func (q domainQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *domainQueue) Push(x any)   { *q = append(*q, x.(*domain)) }
func (q *domainQueue) Pop() any {
	old := *q
	d := old[len(old)-1]
	*q = old[:len(old)-1]
	return d
}
