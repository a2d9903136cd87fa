package gangstate

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	"github.com/lockstep-sched/lockstep/pkg/podgroup"
)

// Reserve records a member assumed onto a node.
func (c *Cache) Reserve(pod *v1.Pod, node string) {
	key := podgroup.KeyOf(pod)
	c.mu.Lock()
	defer c.mu.Unlock()
	g, ok := c.gangs[key]
	if !ok {
		return
	}
	g.assumed[pod.UID] = node
	if g.plan != nil {
		if s := g.plan.slots[pod.UID]; s != nil && s.state == slotPlanned {
			s.state, s.answered = slotAssumed, false
		}
	}
}

// Unreserve undoes Reserve. A member of the current plan that fails before
// the quorum was released fails the whole attempt: the members waiting are
// rejected so that nothing stays held. A released member whose binding
// failed keeps its place: its room is held again and it is retried at once.
// An Unreserve for a member the current plan does not hold as assumed (a
// member rejected when an earlier plan was dropped) changes nothing else.
func (c *Cache) Unreserve(pod *v1.Pod) Effects {
	var eff Effects
	key := podgroup.KeyOf(pod)
	c.mu.Lock()
	defer c.mu.Unlock()
	g, ok := c.gangs[key]
	if !ok {
		return eff
	}
	delete(g.assumed, pod.UID)
	if g.plan == nil {
		return eff
	}
	s := g.plan.slots[pod.UID]
	if s == nil || s.state != slotAssumed {
		return eff
	}
	switch g.phase {
	case Planned:
		s.state = slotPlanned // it is not waiting: nothing to reject
		c.cfg.Logger.V(2).Info("Gang member failed before quorum; releasing the gang", "gang", key, "pod", pod.Name)
		eff.onPodGroup(g.pg, v1.EventTypeWarning, "GangReleased", fmt.Sprintf("member %s could not be placed; released the members waiting", pod.Name))
		c.dropPlanLocked(g, fmt.Sprintf("gang %s released: member %s failed", key, pod.Name), &eff)
	case Binding:
		if !c.existsLocked(pod) {
			delete(g.plan.slots, pod.UID)
			c.bindingDoneLocked(g, &eff)
			c.releaseReadyLocked(&eff) // its place in the bind budget is free
			return eff
		}
		s.state = slotPlanned
		c.releaseReadyLocked(&eff)
		c.cfg.Logger.V(2).Info("Released gang member failed to bind; holding its place", "gang", key, "pod", pod.Name, "node", s.node)
		eff.onPodGroup(g.pg, v1.EventTypeWarning, "BindRetry", fmt.Sprintf(
			"member %s failed to bind to %s after the gang was released; its place is held and it is retried until %s",
			pod.Name, s.node, g.plan.deadline.UTC().Format(time.RFC3339)))
		eff.activate(pod)
	}
	return eff
}

// existsLocked reports whether the informer still has this pod, not being
// deleted.
func (c *Cache) existsLocked(pod *v1.Pod) bool {
	obj, ok, err := c.cfg.Pods.GetByKey(pod.Namespace + "/" + pod.Name)
	if err != nil || !ok {
		return false
	}
	p, ok := obj.(*v1.Pod)
	return ok && p.UID == pod.UID && p.DeletionTimestamp == nil
}

// PermitDecision is what Permit decided for one member.
type PermitDecision struct {
	// Allow lets the member go to binding now.
	Allow bool
	// Wait is how long it waits for its siblings when neither allowed nor
	// rejected.
	Wait time.Duration
	// Reject, when not empty, sends the member back to the queue.
	Reject string
	// Reason tells a waiting member why.
	Reason string
}

// Permit holds members until the quorum is assumed, then lets them all go
// in one step.
func (c *Cache) Permit(pod *v1.Pod, pg *v1alpha1.PodGroup) (PermitDecision, Effects) {
	var eff Effects
	c.mu.Lock()
	defer c.mu.Unlock()
	g, ok := c.gangs[podgroup.KeyOf(pod)]
	if !ok || (pg.UID != "" && g.uid != pg.UID) {
		return PermitDecision{Reject: "the gang's state was reset while this member was placed"}, eff
	}
	cen := c.censusLocked(g)
	if g.phase == Binding || cen.scheduled >= g.minMember() {
		if g.phase == Planned {
			if !c.mayReleaseLocked(g) {
				c.holdLocked(g)
				return PermitDecision{Wait: g.plan.deadline.Sub(c.cfg.Clock.Now()) + PermitGrace,
					Reason: "quorum placed; waiting for earlier gangs' bindings"}, eff
			}
			c.releaseGangLocked(g, pod.UID, &eff)
		}
		return PermitDecision{Allow: true}, eff
	}
	var s *slot
	if g.plan != nil {
		s = g.plan.slots[pod.UID]
	}
	if s == nil || s.state != slotAssumed {
		return PermitDecision{Reject: "the gang's plan ended before its quorum was placed"}, eff
	}
	wait := g.plan.deadline.Sub(c.cfg.Clock.Now())
	if wait <= 0 {
		return PermitDecision{Reject: "gang plan expired before the quorum was placed"}, eff
	}
	return PermitDecision{Wait: wait + PermitGrace, Reason: fmt.Sprintf("waiting for %d/%d members to be placed", cen.scheduled, g.minMember())}, eff
}

// releaseGangLocked moves a planned gang whose quorum is assumed to
// Binding and allows every member waiting at Permit.
func (c *Cache) releaseGangLocked(g *gang, current types.UID, eff *Effects) {
	nodes := sets.New[string]()
	var milliCPU int64
	var members []types.UID
	for uid, s := range g.plan.slots {
		milliCPU += s.request.MilliCPU
		if s.state == slotAssumed || s.state == slotBound {
			nodes.Insert(s.node)
			members = append(members, uid)
		}
		if s.state == slotAssumed && uid != current {
			eff.Allow = append(eff.Allow, uid)
		}
	}
	g.phase, g.ready = Binding, false
	g.blocked, g.avoid, g.failVerdict = false, nil, nil
	// Members whose binding fails get the gang's whole timeout from now to
	// bind, with their places held.
	g.plan.deadline = c.cfg.Clock.Now().Add(g.timeout)
	if g.plan.timer != nil {
		g.plan.timer.Stop()
	}
	// A new id: the planned deadline's timer may already be running, and
	// must find its plan gone.
	c.planID++
	g.plan.id = c.planID
	key, id := g.key, g.plan.id
	g.plan.timer = c.afterFunc(g.timeout, func() { c.run(func(eff *Effects) { c.planExpiredLocked(key, id, eff) }) })
	c.forgetHeadLocked(g)
	where := ""
	if g.plan.domain.Level != "" {
		where = " in " + g.plan.domain.String()
	}
	c.cfg.Logger.V(2).Info("Gang quorum reached; releasing members to bind", "gang", g.key, "members", len(members), "nodes", nodes.Len(), "domain", where)
	eff.onPodGroup(g.pg, v1.EventTypeNormal, "Placed", fmt.Sprintf("placed %d pods on %d nodes%s: %s",
		len(members), nodes.Len(), where, assignments(g.plan.slots)))
	eff.Placed = &Placement{Nodes: nodes, MilliCPU: milliCPU, NodeMilliCPU: g.plan.nodeMilliCPU, Members: members}
	// Members beyond the quorum that were refused while it waited may go
	// now, as members of a started gang: wake them rather than leave them
	// to their back-off, which may outlast a short job.
	for _, p := range c.pendingBeyondPlanLocked(g) {
		eff.activate(p)
	}
	c.bindingDoneLocked(g, eff)
}

// pendingBeyondPlanLocked lists the gang's unbound members its plan has no
// place for.
func (c *Cache) pendingBeyondPlanLocked(g *gang) []*v1.Pod {
	var out []*v1.Pod
	objs, _ := c.cfg.Pods.ByIndex(GangIndex, g.key)
	for _, o := range objs {
		if pod, ok := o.(*v1.Pod); ok && !podgroup.IsBound(pod) && !podgroup.IsTerminal(pod) && g.plan.slots[pod.UID] == nil {
			out = append(out, pod)
		}
	}
	return out
}

// bindingDoneLocked moves a Binding gang to Running once no planned member
// is left unbound.
func (c *Cache) bindingDoneLocked(g *gang, eff *Effects) {
	if g.phase != Binding || g.plan == nil {
		return
	}
	for _, s := range g.plan.slots {
		if s.state != slotBound {
			return
		}
	}
	c.toRunningLocked(g, eff)
}

// FilterRefused runs when a member's full Filter chain refused the node its
// plan gave it. Before the quorum was released, the plan is dropped and the
// gang replans avoiding that node for this member for a while. A released
// member that no longer fits its held node goes on as a member of a started
// gang.
func (c *Cache) FilterRefused(pod *v1.Pod, node string) Effects {
	var eff Effects
	c.mu.Lock()
	defer c.mu.Unlock()
	g, ok := c.gangs[podgroup.KeyOf(pod)]
	if !ok || g.plan == nil {
		return eff
	}
	if s := g.plan.slots[pod.UID]; s == nil || s.node != node {
		return eff
	}
	msg := fmt.Sprintf("planned node %s no longer fits member %s; replanning the gang", node, pod.Name)
	eff.onPodGroup(g.pg, v1.EventTypeNormal, "Replanning", msg)
	eff.activate(pod)
	if g.phase == Binding {
		delete(g.plan.slots, pod.UID)
		c.bindingDoneLocked(g, &eff)
		c.releaseLocked(&eff)
		return eff
	}
	c.avoidLocked(g, pod.UID, node, c.cfg.Clock.Now())
	c.dropPlanLocked(g, msg, &eff)
	return eff
}

// avoidLocked keeps a member's next plans off a node for the gang's
// timeout.
func (c *Cache) avoidLocked(g *gang, uid types.UID, node string, now time.Time) {
	if g.avoid == nil {
		g.avoid = map[types.UID]map[string]time.Time{}
	}
	if g.avoid[uid] == nil {
		g.avoid[uid] = map[string]time.Time{}
	}
	g.avoid[uid][node] = now.Add(g.timeout)
}

// Park records an ordinary pod refused room held for gangs, to wake it when
// that room is released.
func (c *Cache) Park(pod *v1.Pod) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.parked[pod.UID] = pod
}

// planExpiredLocked ends a plan at its deadline. Before the quorum was
// released, every waiting member is rejected at once and the gang plans
// again. After, the room still held for members that failed to bind is
// released, and the gang is reported incomplete if it is.
func (c *Cache) planExpiredLocked(key string, id uint64, eff *Effects) {
	g, ok := c.gangs[key]
	if !ok || g.plan == nil || g.plan.id != id {
		return
	}
	switch g.phase {
	case Planned:
		if g.ready {
			// Its quorum is placed and only the bind budget held it.
			c.releaseGangLocked(g, "", eff)
			return
		}
		c.cfg.Logger.V(2).Info("Gang plan expired before quorum", "gang", key)
		eff.onPodGroup(g.pg, v1.EventTypeWarning, "PlanExpired", fmt.Sprintf(
			"the quorum was not placed within %s; released the members waiting and planning again", g.timeout))
		c.dropPlanLocked(g, "gang plan expired before all members were placed", eff)
	case Binding:
		var missing []string
		for _, s := range g.plan.slots {
			if s.state != slotBound {
				missing = append(missing, s.pod.Name)
			}
		}
		cen := c.censusLocked(g)
		if cen.scheduled < g.minMember() {
			eff.onPodGroup(g.pg, v1.EventTypeWarning, "GangIncomplete", fmt.Sprintf(
				"only %d of %d members are placed: %v did not bind within %s", cen.scheduled, g.minMember(), missing, g.timeout))
		}
		c.toRunningLocked(g, eff)
	}
}

// maxAssignmentsLen keeps the Placed Event's member list under the Event
// API's 1 KiB message limit.
const maxAssignmentsLen = 800

// assignments lists the members on each node ("node-a: w-0, w-1; node-b:
// w-2"), nodes and members sorted, cut short with a count of the rest. With
// per-pod Scheduled Events off, this is where a user finds every member's
// node in one place.
func assignments(slots map[types.UID]*slot) string {
	byNode := map[string][]string{}
	for _, s := range slots {
		if s.state == slotAssumed || s.state == slotBound {
			byNode[s.node] = append(byNode[s.node], s.pod.Name)
		}
	}
	left := 0
	for _, names := range byNode {
		left += len(names)
	}
	var b strings.Builder
	for i, n := range slices.Sorted(maps.Keys(byNode)) {
		names := byNode[n]
		slices.Sort(names)
		sep := n + ": "
		if i > 0 {
			sep = "; " + sep
		}
		for _, name := range names {
			if b.Len()+len(sep)+len(name) > maxAssignmentsLen {
				fmt.Fprintf(&b, " ... and %d more", left)
				return b.String()
			}
			b.WriteString(sep)
			b.WriteString(name)
			sep = ", "
			left--
		}
	}
	return b.String()
}
