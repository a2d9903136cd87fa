package gangstate

import (
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/lockstep-sched/lockstep/pkg/placement"
	"github.com/lockstep-sched/lockstep/pkg/podgroup"
)

// headLocked returns the gang at the head of the queue among those waiting
// for room, ending its reservation when it has held it for its timeout.
func (c *Cache) headLocked(now time.Time, eff *Effects) *gang {
	if !c.cfg.HeadEnabled {
		return nil
	}
	for {
		var head *gang
		for _, g := range c.gangs {
			if !g.blocked || now.Before(g.coolUntil) {
				continue
			}
			if head == nil || g.rank.before(head.rank) {
				head = g
			}
		}
		if head == nil {
			return nil
		}
		if head.headSince.IsZero() {
			since := now
			head.headSince = since
			key := head.key
			head.headTimer = c.afterFunc(head.timeout, func() {
				c.run(func(eff *Effects) { c.headExpiredLocked(key, since, eff) })
			})
		}
		if now.Sub(head.headSince) < head.timeout {
			// A previous head that lost its place keeps no reservation.
			for _, g := range c.gangs {
				if g != head && len(g.reserve) > 0 {
					c.forgetHeadLocked(g)
					c.epoch++
				}
			}
			return head
		}
		c.cfg.Logger.V(2).Info("Head-of-queue reservation timed out", "gang", head.key, "timeout", head.timeout)
		eff.onPodGroup(head.pg, v1.EventTypeWarning, "ReservationTimedOut",
			fmt.Sprintf("gang could not be placed within %s; released the room it reserved and lets younger gangs go first for as long", head.timeout))
		c.forgetHeadLocked(head)
		head.coolUntil = now.Add(head.timeout)
		c.epoch++
	}
}

// headExpiredLocked runs when a head's reservation times out: no cluster
// event may come to run a cycle that would notice.
func (c *Cache) headExpiredLocked(key string, since time.Time, eff *Effects) {
	g, ok := c.gangs[key]
	if !ok || !g.headSince.Equal(since) {
		return
	}
	c.headLocked(since.Add(g.timeout), eff)
	c.releaseLocked(eff)
}

// forgetHeadLocked drops a gang's reservation and its head timer.
func (c *Cache) forgetHeadLocked(g *gang) {
	g.reserve, g.headSince = nil, time.Time{}
	if g.headTimer != nil {
		g.headTimer.Stop()
		g.headTimer = nil
	}
}

// refreshHeadLocked recomputes the head gang's reservation against the
// current snapshot, so room that frees goes to the head before any younger
// pod can take it, and wakes the head's members when it now fits.
func (c *Cache) refreshHeadLocked(nodes []fwk.NodeInfo, snap snapshot, now time.Time, eff *Effects) {
	head := c.headLocked(now, eff)
	if head == nil {
		return
	}
	key := snapshotKey{generation: snap.generation, nodes: len(nodes), epoch: c.epoch}
	if head.reserve != nil && head.reserveKey == key {
		return
	}
	cen := c.censusLocked(head)
	needed := head.minMember() - cen.scheduled
	required, _, err := podgroup.TopologyConstraints(head.pg, c.cfg.Levels)
	if needed <= 0 || len(cen.pending) == 0 || err != nil {
		head.blocked = false
		c.forgetHeadLocked(head)
		return
	}
	req := placement.Request{
		Nodes:    c.anchored(c.planNodes(nodes, c.heldLocked(head.key, head.rank, now), false), required, cen),
		Members:  membersOf(cen.pending, head.avoidNow(now)),
		Options:  c.cfg.Placement,
		Levels:   c.cfg.Levels,
		Required: required,
	}
	first := head.reserve == nil
	head.reserve = map[string]placement.Resources{}
	head.reserveKey = key
	plan, _ := placement.PlanGang(req)
	if plan == nil {
		// Not even one member fits any domain: nothing to reserve yet.
		return
	}
	for mi, ni := range plan.NodeOf {
		node := req.Nodes[ni].Info.Node().Name
		cur := head.reserve[node]
		cur.Add(&req.Members[mi].Request)
		head.reserve[node] = cur
	}
	if first {
		c.cfg.Logger.V(2).Info("Head of queue reserves room", "gang", head.key, "held", len(plan.NodeOf), "needed", needed)
		eff.onPodGroup(head.pg, v1.EventTypeNormal, "Reserving", fmt.Sprintf(
			"first in line: reserving room as it frees, %d of %d needed members' worth held on %d nodes, for up to %s",
			len(plan.NodeOf), needed, len(plan.NodesUsed), head.timeout))
	}
	if len(plan.NodeOf) >= needed {
		for _, p := range cen.pending {
			eff.activate(p)
		}
	}
}
