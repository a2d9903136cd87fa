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
			// A previous head that lost its place keeps no reservation,
			// nor its time as head: should it come back, its timeout
			// starts afresh.
			for _, g := range c.gangs {
				if g != head && (len(g.reserve) > 0 || !g.headSince.IsZero()) {
					c.dropHeadLocked(g, eff)
				}
			}
			return head
		}
		c.cfg.Logger.V(2).Info("Head-of-queue reservation timed out", "gang", head.key, "timeout", head.timeout)
		eff.onPodGroup(head.pg, v1.EventTypeWarning, "ReservationTimedOut",
			fmt.Sprintf("gang could not be placed within %s; released the room it reserved and lets younger gangs go first for as long", head.timeout))
		c.dropHeadLocked(head, eff)
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

// dropHeadLocked ends a gang's time as head. The room it reserved goes
// back to everyone: the pods kept out of it are woken, and verdicts
// reached while it was held are stale.
func (c *Cache) dropHeadLocked(g *gang, eff *Effects) {
	held := len(g.reserve) > 0
	c.forgetHeadLocked(g)
	if held {
		c.releaseLocked(eff)
	}
}

// forgetHeadLocked drops a gang's reservation and its head timer; the
// caller wakes whoever the room was kept from (dropHeadLocked), or keeps
// the room held otherwise.
func (c *Cache) forgetHeadLocked(g *gang) {
	g.reserve, g.headSince = nil, time.Time{}
	if g.headTimer != nil {
		g.headTimer.Stop()
		g.headTimer = nil
	}
}

// headRefresh bounds how long the head's reservation goes without being
// recomputed while the cluster changes, and how long after room was freed
// it keeps being recomputed at every change: the scheduler's snapshot may
// show a freed pod or a new node a little after the informer event told
// the cache.
const headRefresh = time.Second

// headStaleLocked reports whether the head's reservation must be
// recomputed. Planning the head costs a pass over every node; doing it for
// every pod's cycle would make a waiting big gang slow down everything
// else. Assumes only take room the head does not hold, so a reservation
// stays valid until room frees, held room changes (epoch) or nodes come and
// go, with a periodic recomputation for what the cache is not told of.
func (c *Cache) headStaleLocked(head *gang, key headKey, gen int64, now time.Time) bool {
	if head.reserveKey != key {
		return true
	}
	if gen == head.reservedGen {
		return false
	}
	return now.Sub(c.freedAt) < headRefresh || now.Sub(head.reservedAt) >= headRefresh
}

// roomFreedLocked records a change that may have freed room.
func (c *Cache) roomFreedLocked() {
	c.freed++
	c.freedAt = c.cfg.Clock.Now()
}

// refreshHeadLocked recomputes the head gang's reservation against the
// current snapshot, so room that frees goes to the head before any younger
// pod can take it, and wakes the head's members when it now fits.
func (c *Cache) refreshHeadLocked(nodes []fwk.NodeInfo, now time.Time, eff *Effects) {
	head := c.headLocked(now, eff)
	if head == nil {
		return
	}
	key := headKey{freed: c.freed, epoch: c.epoch, nodes: len(nodes)}
	gen := snapshotOf(nodes).generation
	if head.reserve != nil && !c.headStaleLocked(head, key, gen, now) {
		return
	}
	cen := c.censusLocked(head)
	needed := head.minMember() - cen.scheduled
	required, _, err := podgroup.TopologyConstraints(head.pg, c.cfg.Levels)
	if needed <= 0 || len(cen.pending) < needed || err != nil {
		// Placed, or too few members left to start (some deleted, or
		// minMember raised): no room is held for it.
		head.blocked = false
		c.dropHeadLocked(head, eff)
		return
	}
	req := placement.Request{
		Nodes:    c.anchored(c.planNodes(nodes, c.heldLocked(head.key, head.rank, now, false), false), required, cen),
		Members:  membersOf(cen.pending, head.avoidNow(now)),
		Options:  c.cfg.Placement,
		Levels:   c.cfg.Levels,
		Required: required,
	}
	first := head.reserve == nil
	head.reserve = map[string]placement.Resources{}
	head.reserveKey, head.reservedAt, head.reservedGen = key, now, gen
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
