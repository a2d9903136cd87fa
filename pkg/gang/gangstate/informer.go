package gangstate

import (
	"fmt"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	"github.com/lockstep-sched/lockstep/pkg/podgroup"
)

// Members is a count of a gang's members for PreEnqueue.
type Members struct {
	// Exist counts members scheduled or pending; Gated those held by
	// scheduling gates; Foreign names members of another scheduler.
	Exist, Gated int
	Foreign      []string
	// Started is set once the gang's quorum has been released or bound.
	Started bool
}

// Members counts a PodGroup's members.
func (c *Cache) Members(pg *v1alpha1.PodGroup) (Members, Effects) {
	var eff Effects
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.gangFor(pg, &eff)
	cen := c.censusLocked(g)
	started := g.phase == Binding || cen.scheduled >= g.minMember()
	return Members{Exist: cen.exist(), Gated: cen.gated, Foreign: cen.foreign, Started: started}, eff
}

// PodGroupAdded wakes the gang's pods waiting for their PodGroup.
func (c *Cache) PodGroupAdded(pg *v1alpha1.PodGroup) Effects {
	var eff Effects
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gangFor(pg, &eff)
	c.wakeGangLocked(podgroup.KeyOfGroup(pg), &eff)
	return eff
}

// PodGroupUpdated wakes the gang when a change may help it (a lower
// minMember, changed placement annotations), and lets waiting members go,
// in line, when a lowered minMember is now met.
func (c *Cache) PodGroupUpdated(old, pg *v1alpha1.PodGroup) Effects {
	var eff Effects
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.gangFor(pg, &eff)
	annotations := podgroup.PlacementAnnotationsChanged(old, pg)
	if pg.Spec.MinMember < old.Spec.MinMember || annotations {
		g.failVerdict = nil
		c.wakeGangLocked(g.key, &eff)
	}
	if g.phase != Planned {
		return eff
	}
	if annotations || pg.Spec.MinMember > old.Spec.MinMember {
		// The plan may break the new topology constraints, or hold too few
		// members for the new quorum: plan again.
		c.dropPlanLocked(g, fmt.Sprintf("PodGroup %s changed; planning the gang again", g.key), &eff)
		return eff
	}
	if cen := c.censusLocked(g); pg.Spec.MinMember < old.Spec.MinMember && cen.scheduled >= g.minMember() {
		c.cfg.Logger.V(2).Info("Quorum met after minMember was lowered", "gang", g.key, "minMember", pg.Spec.MinMember)
		c.quorumAssumedLocked(g, &eff)
	}
	return eff
}

// PodGroupDeleted releases everything a deleted PodGroup's gang held; key
// is the gang's (podgroup.KeyOfGroup), uid the deleted object's. A gang
// already known by a PodGroup created again under the same name is not
// the deleted one's, and stays.
func (c *Cache) PodGroupDeleted(key string, uid types.UID) Effects {
	var eff Effects
	c.mu.Lock()
	defer c.mu.Unlock()
	g, ok := c.gangs[key]
	if !ok || (uid != "" && g.uid != "" && g.uid != uid) {
		return eff
	}
	c.dropPlanLocked(g, fmt.Sprintf("PodGroup %s was deleted", key), &eff)
	if g.plan != nil && g.plan.timer != nil {
		g.plan.timer.Stop()
	}
	c.forgetHeadLocked(g)
	delete(c.gangs, key)
	c.releaseLocked(&eff)
	// Its pods wait again, saying they wait for their PodGroup.
	c.wakeGangLocked(key, &eff)
	c.cfg.Logger.V(2).Info("PodGroup deleted; released its gang", "gang", key)
	return eff
}

// PodBound records a member the informer shows bound.
func (c *Cache) PodBound(pod *v1.Pod) Effects {
	var eff Effects
	c.mu.Lock()
	defer c.mu.Unlock()
	g, ok := c.gangs[podgroup.KeyOf(pod)]
	if !ok {
		return eff
	}
	delete(g.assumed, pod.UID)
	if g.plan == nil {
		return eff
	}
	if s := g.plan.slots[pod.UID]; s != nil {
		s.state = slotBound
		c.quorumBoundLocked(g, &eff)
	}
	if g.phase == Planned && c.censusLocked(g).scheduled >= g.minMember() {
		// Bound by someone else (a scheduler that led before this one):
		// its members waiting at Permit need no other.
		c.quorumAssumedLocked(g, &eff)
	}
	c.bindingDoneLocked(g, &eff)
	c.releaseReadyLocked(&eff)
	return eff
}

// quorumBoundLocked measures a released gang once the members its plan
// needed for the quorum are seen bound: from its PodGroup's creation, and
// from its first member's bind.
func (c *Cache) quorumBoundLocked(g *gang, eff *Effects) {
	pl := g.plan
	if g.phase != Binding || pl.quorumBound {
		return
	}
	now := c.cfg.Clock.Now()
	if pl.firstBound.IsZero() {
		pl.firstBound = now
	}
	bound := 0
	for _, s := range pl.slots {
		if s.state == slotBound {
			bound++
		}
	}
	if bound < pl.needed {
		return
	}
	pl.quorumBound = true
	eff.Started = &Started{Profile: g.profile, Latency: now.Sub(g.pg.CreationTimestamp.Time), Skew: now.Sub(pl.firstBound)}
}

// PodDeleted forgets a member that is gone. A planned member that goes
// before the quorum was released breaks the plan: the gang plans again with
// the members it has. After the release, its held place is given up.
func (c *Cache) PodDeleted(pod *v1.Pod) Effects {
	var eff Effects
	c.mu.Lock()
	defer c.mu.Unlock()
	c.roomFreedLocked()
	delete(c.parked, pod.UID)
	c.victimGoneLocked(pod.UID, &eff)
	if c.forgetOrdinaryLocked(pod.UID) {
		c.releaseReadyLocked(&eff)
	}
	g, ok := c.gangs[podgroup.KeyOf(pod)]
	if !ok {
		return eff
	}
	delete(g.assumed, pod.UID)
	delete(g.avoid, pod.UID)
	if g.preempting != nil {
		// A preemptor whose members went below its quorum no longer
		// needs the room it claimed.
		if cen := c.censusLocked(g); cen.scheduled+len(cen.pending) < g.minMember() {
			c.endPreemptionLocked(g, &eff)
		}
	}
	if g.plan == nil || g.plan.slots[pod.UID] == nil {
		return eff
	}
	switch g.phase {
	case Planned:
		c.dropPlanLocked(g, fmt.Sprintf("member %s was deleted; planning the gang again", pod.Name), &eff)
	case Binding:
		delete(g.plan.slots, pod.UID)
		c.releaseLocked(&eff)
		c.bindingDoneLocked(g, &eff)
		c.releaseReadyLocked(&eff)
	}
	return eff
}

// RoomFreed records a change that may have freed room for the head of the
// queue: a pod finished, a node was added or changed. The scheduler's own
// events wake the pods that wait.
func (c *Cache) RoomFreed() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.roomFreedLocked()
}

// RoomChanged wakes what waits for room after a change the scheduler's
// events do not cover (NUMA zones).
func (c *Cache) RoomChanged() Effects {
	var eff Effects
	c.mu.Lock()
	defer c.mu.Unlock()
	c.roomFreedLocked()
	c.releaseLocked(&eff)
	return eff
}

// NodeLost runs when a node can no longer take the pods planned on it: it
// was deleted, cordoned, became NotReady, or got a taint that refuses
// pods (refuses says which). A plan not yet released that puts a refused
// member there is dropped, its members waiting at Permit are rejected, and
// the gang plans again without that node. A released member whose binding
// failed, waiting to bind there again, loses its place and goes as a member
// of a started gang. Members already let go to bind cannot be called back.
func (c *Cache) NodeLost(node, why string, refuses func(*v1.Pod) bool) Effects {
	var eff Effects
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.cfg.Clock.Now()
	for _, g := range c.gangs {
		if g.plan == nil {
			continue
		}
		var lost []*slot
		for _, s := range g.plan.slots {
			if s.node == node && s.state != slotBound && refuses(s.pod) {
				lost = append(lost, s)
			}
		}
		if len(lost) == 0 {
			continue
		}
		msg := fmt.Sprintf("node %s %s; planning the gang again without it", node, why)
		switch g.phase {
		case Planned:
			c.cfg.Logger.V(2).Info("Node of a gang's plan lost", "gang", g.key, "node", node, "why", why)
			eff.onPodGroup(g.pg, v1.EventTypeWarning, "NodeLost", msg)
			for _, s := range g.plan.slots {
				c.avoidLocked(g, s.pod.UID, node, now)
			}
			c.dropPlanLocked(g, msg, &eff)
		case Binding:
			for _, s := range lost {
				if s.state == slotPlanned {
					delete(g.plan.slots, s.pod.UID)
					eff.activate(s.pod)
				}
			}
			c.bindingDoneLocked(g, &eff)
			c.releaseLocked(&eff)
		}
	}
	return eff
}
