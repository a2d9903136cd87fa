package gangstate

// Why a gang that has not started waits, as Stats counts it.
const (
	// WaitMembers: fewer members exist than minMember.
	WaitMembers = "members"
	// WaitRoom: the members exist and do not fit yet.
	WaitRoom = "room"
	// WaitNeverFits: the gang could not fit even an empty cluster.
	WaitNeverFits = "never_fits"
	// WaitPreemption: it evicted victims and waits for them to go.
	WaitPreemption = "preemption"
	// WaitPlacing: it has a plan, and its members are being placed.
	WaitPlacing = "placing"
	// WaitBindBudget: its quorum is placed and waits for the bind budget.
	WaitBindBudget = "bind_budget"
)

// Holders of room held in memory, as Stats counts it.
const (
	// HeldByPlan: plans' places not yet taken by their members.
	HeldByPlan = "plan"
	// HeldByHead: the head of the queue's reservation.
	HeldByHead = "head"
	// HeldByPreemption: the room preemptions claim for their gangs.
	HeldByPreemption = "preemption"
)

// Stats is a summary of the cache for metrics, read at scrape time.
type Stats struct {
	// Waiting counts the gangs that have not started, by why they wait.
	Waiting map[string]int
	// HeldMilliCPU is the CPU held from other pods, by holder.
	HeldMilliCPU map[string]int64
}

// Stats summarizes the gangs the cache holds.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.cfg.Clock.Now()
	st := Stats{
		Waiting:      map[string]int{WaitMembers: 0, WaitRoom: 0, WaitNeverFits: 0, WaitPreemption: 0, WaitPlacing: 0, WaitBindBudget: 0},
		HeldMilliCPU: map[string]int64{HeldByPlan: 0, HeldByHead: 0, HeldByPreemption: 0},
	}
	for _, g := range c.gangs {
		switch g.phase {
		case Planned:
			if g.ready {
				st.Waiting[WaitBindBudget]++
			} else {
				st.Waiting[WaitPlacing]++
			}
		case Waiting:
			switch {
			case g.preempting != nil:
				st.Waiting[WaitPreemption]++
			case c.censusLocked(g).exist() < g.minMember():
				st.Waiting[WaitMembers]++
			case g.neverFits:
				st.Waiting[WaitNeverFits]++
			default:
				st.Waiting[WaitRoom]++
			}
		}
		if g.plan != nil && now.Before(g.plan.deadline) {
			for _, s := range g.plan.slots {
				if s.held() {
					st.HeldMilliCPU[HeldByPlan] += s.request.MilliCPU
				}
			}
		}
		for _, r := range g.reserve {
			st.HeldMilliCPU[HeldByHead] += r.MilliCPU
		}
		if p := g.preempting; p != nil && now.Before(p.until) {
			for _, r := range p.heldClaim() {
				st.HeldMilliCPU[HeldByPreemption] += r.MilliCPU
			}
		}
	}
	return st
}
