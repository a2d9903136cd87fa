package gangstate

import (
	"fmt"
	"slices"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	fwk "k8s.io/kube-scheduler/framework"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	"github.com/lockstep-sched/lockstep/pkg/numa"
	"github.com/lockstep-sched/lockstep/pkg/placement"
	"github.com/lockstep-sched/lockstep/pkg/podgroup"
)

// Verdict is what PreFilter decided for one pod, for the rest of its cycle.
type Verdict struct {
	// Code is Success, Unschedulable or UnschedulableAndUnresolvable.
	Code   fwk.Code
	Reason string
	// Node is the node the gang's plan gives the pod; "" when none.
	Node string
	// Nodes, when not nil, are the only nodes the pod may go to (a started
	// gang anchored to its required topology domain).
	Nodes sets.Set[string]
	// Held is the room per node this pod may not use.
	Held map[string]placement.Resources
}

func refuse(code fwk.Code, format string, args ...any) Verdict {
	return Verdict{Code: code, Reason: fmt.Sprintf(format, args...)}
}

// beyondQuorum is the reason given to a member the current plan has no
// place for: it goes once the gang has started.
const beyondQuorum = "waiting for the gang to start; this member is beyond the planned quorum"

// PreFilterOrdinary returns the verdict for a pod without a PodGroup: the
// room held for gangs that it may not use.
func (c *Cache) PreFilterOrdinary(pod *v1.Pod, nodes []fwk.NodeInfo) (Verdict, Effects) {
	var eff Effects
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.cfg.Clock.Now()
	c.refreshHeadLocked(nodes, now, &eff)
	r := rank{priority: corev1helpers.PodPriority(pod), created: pod.CreationTimestamp.Time, key: pod.Namespace + "/" + pod.Name}
	return Verdict{Held: c.heldLocked("", r, now, false)}, eff
}

// PreFilter decides for a gang member: follow the gang's plan, go as an
// extra member of a started gang, plan the whole gang now, or wait.
func (c *Cache) PreFilter(pod *v1.Pod, pg *v1alpha1.PodGroup, nodes []fwk.NodeInfo) (Verdict, Effects) {
	var eff Effects
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.cfg.Clock.Now()
	c.refreshHeadLocked(nodes, now, &eff)

	g := c.gangFor(pg, &eff)
	priority := gangPriority(pod, pg)
	if _, set := podgroup.GroupPriority(pg); !set && g.rank.key == g.key && g.rank.priority > priority {
		// Members may differ (an MPI launcher and its workers): the gang
		// ranks as its highest seen, whichever member's cycle this is, or
		// the head would change hands at every cycle.
		priority = g.rank.priority
	}
	g.rank = rank{priority: priority, created: pg.CreationTimestamp.Time, key: g.key}
	cen := c.censusLocked(g)
	required, preferred, terr := podgroup.TopologyConstraints(pg, c.cfg.Levels)
	if terr != nil {
		eff.onPodGroup(pg, v1.EventTypeWarning, "InvalidTopology", terr.Error())
		eff.Attempt = &Attempt{Profile: pod.Spec.SchedulerName, Result: ResultError}
		return refuse(fwk.UnschedulableAndUnresolvable, "%s", terr.Error()), eff
	}
	if g.phase == Planned && cen.scheduled >= g.minMember() {
		// The quorum is there without another Permit (minMember was
		// lowered): let the waiting members go.
		c.quorumAssumedLocked(g, &eff)
	}
	if g.plan != nil && g.phase == Binding {
		if s := g.plan.slots[pod.UID]; s != nil && s.state == slotPlanned {
			// A released member whose binding failed gets its place back.
			return c.follow(g, s, now), eff
		}
		return c.startedLocked(g, cen, required, nodes, now), eff
	}
	if g.phase == Planned && g.ready && cen.scheduled >= g.minMember() {
		// The quorum waits at Permit for the bind budget: the gang has not
		// started, and its members must be let go together.
		if s := g.plan.slots[pod.UID]; s != nil && s.state == slotPlanned {
			return c.follow(g, s, now), eff
		}
		return refuse(fwk.Unschedulable, beyondQuorum), eff
	}
	if cen.scheduled >= g.minMember() {
		if g.phase != Running {
			c.toRunningLocked(g, &eff)
		}
		return c.startedLocked(g, cen, required, nodes, now), eff
	}
	if g.phase == Running {
		c.cfg.Logger.V(2).Info("Gang fell below its quorum", "gang", g.key, "scheduled", cen.scheduled, "minMember", g.minMember())
		eff.onPodGroup(pg, v1.EventTypeWarning, "BelowQuorum", fmt.Sprintf(
			"%d of %d members left; new members are placed as a gang again", cen.scheduled, g.minMember()))
		g.phase = Waiting
	}
	if g.plan != nil && !now.Before(g.plan.deadline) {
		c.dropPlanLocked(g, "gang plan expired before all members were placed", &eff)
		cen = c.censusLocked(g)
	}
	if g.plan != nil {
		if s := g.plan.slots[pod.UID]; s != nil && s.state == slotPlanned {
			return c.follow(g, s, now), eff
		}
		return refuse(fwk.Unschedulable, beyondQuorum), eff
	}
	return c.planLocked(g, pod, cen, nodes, now, required, preferred, &eff), eff
}

// follow sends a member to its planned node.
func (c *Cache) follow(g *gang, s *slot, now time.Time) Verdict {
	return Verdict{Node: s.node, Held: c.heldLocked(g.key, g.rank, now, true)}
}

// startedLocked lets a member of a started gang go as it comes, inside the
// gang's required domain.
func (c *Cache) startedLocked(g *gang, cen census, required string, nodes []fwk.NodeInfo, now time.Time) Verdict {
	v := Verdict{Held: c.heldLocked(g.key, g.rank, now, false)}
	if values := domainOf(nodes, required, cen.nodes); values.Len() > 0 {
		v.Nodes = nodesIn(nodes, required, values)
	}
	return v
}

// toRunningLocked marks a gang started, ending whatever it held.
func (c *Cache) toRunningLocked(g *gang, eff *Effects) {
	if g.plan != nil {
		if g.plan.timer != nil {
			g.plan.timer.Stop()
		}
		g.plan = nil
		c.releaseLocked(eff)
	}
	g.phase, g.ready = Running, false
	g.blocked, g.avoid, g.failVerdict = false, nil, nil
	c.endPreemptionLocked(g, eff)
	c.dropHeadLocked(g, eff)
	c.releaseReadyLocked(eff)
}

// planLocked plans the whole gang against the cycle's nodes.
func (c *Cache) planLocked(g *gang, pod *v1.Pod, cen census, nodes []fwk.NodeInfo, now time.Time, required, preferred string, eff *Effects) Verdict {
	needed := g.minMember() - cen.scheduled
	if len(cen.pending) < needed {
		return refuse(fwk.UnschedulableAndUnresolvable, "%d/%d members exist", cen.exist(), g.minMember())
	}
	key := snapshotKey{generation: snapshotOf(nodes).generation, nodes: len(nodes), epoch: c.epoch, pending: len(cen.pending)}
	if g.failVerdict != nil && g.failKey == key {
		return *g.failVerdict
	}
	// Before the held room: a claim is not held from a gang that may
	// preempt its claimant.
	g.mayPreempt = c.cfg.Preemption && !podgroup.GroupNeverPreempts(g.pg) && !slices.ContainsFunc(cen.pending, neverPreempts)
	held := c.heldLocked(g.key, g.rank, now, true)
	req := placement.Request{
		Nodes:   c.anchored(c.planNodes(nodes, held, false), required, cen),
		Members: membersOf(cen.pending, g.avoidNow(now)), Needed: needed, Options: c.cfg.Placement,
		Levels: c.cfg.Levels, Required: required, Preferred: preferred,
	}
	req.FillHoles = c.largerPinnedWaitLocked(g, req.Members)
	g.profile = pod.Spec.SchedulerName
	// Timed by the wall clock: it measures work, whatever clock the cache
	// keeps.
	start := time.Now()
	attempt := func(result string) {
		eff.Attempt = &Attempt{Profile: g.profile, Result: result, Duration: time.Since(start)}
	}
	p, failure := placement.PlanGang(req)
	if failure != nil {
		before := g.preempting
		v := c.unplaceableLocked(g, req, failure, nodes, now, eff)
		g.failKey, g.failVerdict = key, &v
		c.retryWhenExclusionsEndLocked(g, now)
		if g.preempting != nil && g.preempting != before {
			attempt(ResultWaitingOnPreemption)
		} else {
			attempt(ResultUnschedulable)
		}
		return v
	}
	if v, wait := c.waitForAgentLocked(g, req, p, now, eff); wait {
		g.failKey, g.failVerdict = key, &v
		attempt(ResultUnschedulable)
		return v
	}
	c.adoptLocked(g, req, p, needed, now, eff)
	attempt(ResultScheduled)
	s := g.plan.slots[pod.UID]
	if s == nil {
		return refuse(fwk.Unschedulable, beyondQuorum)
	}
	return Verdict{Node: s.node, Held: held}
}

// retryWhenExclusionsEndLocked has a gang whose plan failed try again when
// the first node it avoids, or victim unit it may not take, is allowed
// again: its failure is cached until the cluster changes, and an
// exclusion ending changes nothing the cluster would tell of.
func (c *Cache) retryWhenExclusionsEndLocked(g *gang, now time.Time) {
	at := g.exclusionsEnd(now)
	pending := !g.retryAt.IsZero() && now.Before(g.retryAt)
	if at.IsZero() || (pending && !at.Before(g.retryAt)) {
		return // nothing ends, or a retry already comes first
	}
	g.retryAt = at
	key := g.key
	c.afterFunc(at.Sub(now), func() {
		c.run(func(eff *Effects) {
			g, ok := c.gangs[key]
			if !ok || !g.retryAt.Equal(at) {
				return
			}
			g.retryAt, g.failVerdict = time.Time{}, nil
			c.wakeGangLocked(key, eff)
		})
	})
}

// largerPinnedWaitLocked reports whether other gangs wait with members that
// pin more CPUs than any of members: whole NUMA zones are theirs to take,
// and the gang should go into zones already in use first.
func (c *Cache) largerPinnedWaitLocked(g *gang, members []placement.Member) bool {
	var own int64
	for i := range members {
		if members[i].NUMA == nil {
			continue
		}
		own = max(own, members[i].NUMA.Pod.CPUs())
	}
	if own == 0 {
		return false
	}
	for key, other := range c.gangs {
		if key == g.key || other.neverFits || other.phase != Waiting && other.phase != Planned {
			continue
		}
		if c.pinnedLocked(other) > own {
			return true
		}
	}
	return false
}

// pinnedLocked is the most CPUs one of a gang's unbound pods pins to a
// NUMA zone, recomputed only when its pods changed in number (gang pods
// are alike, and this runs for every gang at every pinned gang's plan).
func (c *Cache) pinnedLocked(g *gang) int64 {
	objs, _ := c.cfg.Pods.ByIndex(GangIndex, g.key)
	if len(objs) == g.pinnedPods {
		return g.pinned
	}
	g.pinned, g.pinnedPods = 0, len(objs)
	for _, o := range objs {
		if pod, ok := o.(*v1.Pod); ok && !podgroup.IsBound(pod) {
			if n := numa.NeedsOf(pod); n != nil {
				g.pinned = max(g.pinned, n.Pod.CPUs())
			}
		}
	}
	return g.pinned
}

// maxAgentWait bounds how long a gang waits for node agents to count the
// pods kubelet has yet to admit: they publish within a second or two of a
// change, and a gang must not wait long on one that does not.
const maxAgentWait = 3 * time.Second

// waitForAgentLocked holds back a plan that takes whole NUMA zones where,
// once the node agents have counted the pods kubelet has yet to admit, the
// gang would go into room those pods leave: until they are counted no one
// can tell which zones they take, and a whole zone taken now is lost to
// the larger pods that need one. It waits at most maxAgentWait, woken as
// pods are counted.
func (c *Cache) waitForAgentLocked(g *gang, req placement.Request, p *placement.Plan, now time.Time, eff *Effects) (Verdict, bool) {
	g.awaitingAgent = false
	if !req.FillHoles || !placement.Pending(req) || (!g.agentWaitUntil.IsZero() && !now.Before(g.agentWaitUntil)) {
		return Verdict{}, false
	}
	counted := placement.Counted(req)
	later, f := placement.PlanGang(counted)
	if f != nil {
		return Verdict{}, false
	}
	whole, wholeLater := placement.WholeZones(req, p), placement.WholeZones(counted, later)
	if wholeLater >= whole {
		return Verdict{}, false
	}
	if g.agentWaitUntil.IsZero() {
		g.agentWaitUntil = now.Add(maxAgentWait)
		key := g.key
		c.afterFunc(maxAgentWait, func() {
			c.run(func(eff *Effects) {
				if g, ok := c.gangs[key]; ok && g.awaitingAgent {
					g.failVerdict = nil
					c.wakeGangLocked(key, eff)
				}
			})
		})
	}
	g.awaitingAgent = true
	msg := fmt.Sprintf("waiting up to %s for node agents to count the pods kubelet has yet to admit: the gang would then take %d whole NUMA zones, not %d, and leave them to larger pods waiting",
		maxAgentWait, wholeLater, whole)
	c.cfg.Logger.V(2).Info("Gang waits for node agents", "gang", g.key, "wholeZonesNow", whole, "wholeZonesThen", wholeLater)
	eff.onPodGroup(g.pg, v1.EventTypeNormal, "WaitingForNodeAgent", msg)
	return refuse(fwk.Unschedulable, "%s", msg), true
}

// adoptLocked makes a plan the gang's: its room is held from now on, until
// its deadline, and the other members are brought forward so the plan is
// held as briefly as possible.
func (c *Cache) adoptLocked(g *gang, req placement.Request, p *placement.Plan, needed int, now time.Time, eff *Effects) {
	c.planID++
	pl := &plan{id: c.planID, slots: make(map[types.UID]*slot, len(p.NodeOf)), nodes: len(p.NodesUsed), domain: p.Domain, deadline: now.Add(g.timeout), needed: needed}
	for mi, ni := range p.NodeOf {
		m := req.Members[mi]
		info := req.Nodes[ni].Info
		pl.slots[m.Pod.UID] = &slot{pod: m.Pod, node: info.Node().Name, request: m.Request, zones: p.ZonesOf[mi]}
		pl.nodeMilliCPU = max(pl.nodeMilliCPU, info.GetAllocatable().GetMilliCPU())
		eff.activate(m.Pod)
	}
	key, id := g.key, pl.id
	pl.timer = c.afterFunc(g.timeout, func() { c.run(func(eff *Effects) { c.planExpiredLocked(key, id, eff) }) })
	if g.blocked {
		eff.onPodGroup(g.pg, v1.EventTypeNormal, "Planned", fmt.Sprintf("room found for %d members on %d nodes", len(p.NodeOf), len(p.NodesUsed)))
	}
	g.plan, g.phase = pl, Planned
	g.blocked, g.failVerdict = false, nil
	g.agentWaitUntil, g.awaitingAgent = time.Time{}, false
	g.neverFits = false
	g.preempting = nil
	c.forgetHeadLocked(g)
	c.epoch++
	if c.cfg.Logger.V(2).Enabled() {
		nodeOf := make(map[string]string, len(pl.slots))
		for _, s := range pl.slots {
			nodeOf[s.pod.Name] = s.node
		}
		c.cfg.Logger.V(2).Info("Planned gang", "gang", g.key, "members", len(p.NodeOf), "needed", needed,
			"domain", p.Domain.String(), "nodes", len(p.NodesUsed), "plan", nodeOf)
	}
}

// unplaceableLocked answers a failed plan: a gang that could not fit even
// an empty cluster is refused outright; one that only lacks free room
// waits, and may become the head of the queue that reserves room.
func (c *Cache) unplaceableLocked(g *gang, req placement.Request, failure *placement.Failure, nodes []fwk.NodeInfo, now time.Time, eff *Effects) Verdict {
	empty := req
	empty.Nodes = c.planNodes(nodes, nil, true)
	// Nodes a member avoids after a transient refusal do not make a gang
	// unplaceable for ever.
	empty.Members = membersOf(podsOf(req.Members), nil)
	_, never := placement.PlanGang(empty)
	g.neverFits = never != nil
	if never != nil {
		g.blocked = false
		c.dropHeadLocked(g, eff)
		msg := "gang can never fit this cluster as it is: " + never.Error()
		c.cfg.Logger.V(2).Info("Gang cannot fit the cluster", "gang", g.key, "reason", never.Error())
		eff.onPodGroup(g.pg, v1.EventTypeWarning, "Unschedulable", msg)
		return refuse(fwk.UnschedulableAndUnresolvable, "%s", msg)
	}
	if !g.blocked {
		g.blocked, g.coolUntil = true, time.Time{}
	}
	if c.cfg.Preemption {
		if v, ok := c.preemptLocked(g, req, nodes, now, eff); ok {
			c.refreshHeadLocked(nodes, now, eff)
			return v
		}
	}
	msg := "gang does not fit yet: " + failure.Error()
	c.cfg.Logger.V(3).Info("Gang waits for room", "gang", g.key, "reason", failure.Error())
	eff.onPodGroup(g.pg, v1.EventTypeNormal, "WaitingForRoom", msg)
	c.refreshHeadLocked(nodes, now, eff)
	return refuse(fwk.UnschedulableAndUnresolvable, "%s", msg)
}

func podsOf(members []placement.Member) []*v1.Pod {
	out := make([]*v1.Pod, len(members))
	for i := range members {
		out[i] = members[i].Pod
	}
	return out
}
