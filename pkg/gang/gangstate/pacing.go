package gangstate

import (
	"slices"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/lockstep-sched/lockstep/pkg/podgroup"
)

// Bind pacing. Following a plan costs a member one Filter call, so Lockstep
// releases gangs far faster than an apiserver binds pods: without a bound,
// hundreds of bindings are in flight at once, the apiserver completes them
// in no particular order, and the members of one gang bind seconds apart.
// A gang whose quorum is assumed is therefore released only while the
// members released before it and not bound yet number fewer than the bind
// budget; otherwise it waits in a FIFO, its members held at Permit, and
// goes as bindings complete. A gang larger than the budget goes once fewer
// than the budget are binding: it overlaps the tail of the gang before it,
// and big gangs are not bound one after the other.
//
// Ordinary pods' bindings compete with a gang's at the apiserver just the
// same: a thousand of them bound among the gangs spread each gang's
// bindings over hundreds of milliseconds. So an ordinary pod at Permit is
// one unit of the budget: it goes at once when nothing waits in line and
// the budget has room, and otherwise waits in line behind the gangs before
// it, as a gang does.
//
// A binding counts until its pod's PostBind (the apiserver answered) or,
// when PostBind is not enabled, until the informer shows the pod bound.

// lineEntry is one unit waiting for the bind budget: a gang whose quorum
// is assumed, or an ordinary pod.
type lineEntry struct {
	gang string
	pod  types.UID
}

// ordinaryLineWait bounds an ordinary pod's wait in line at Permit. The
// line moves as bindings complete; should it not, the pod goes back to the
// queue and is scheduled again, rather than hold its room for good.
const ordinaryLineWait = 30 * time.Second

// bindingLocked counts released members and ordinary pods whose binding
// has not completed yet.
func (c *Cache) bindingLocked() int {
	n := c.ordinaryBinding
	for _, g := range c.gangs {
		if g.phase != Binding || g.plan == nil {
			continue
		}
		for _, s := range g.plan.slots {
			if s.state == slotAssumed && !s.answered {
				n++
			}
		}
	}
	return n
}

// assumedIn counts a gang's assumed members, which its release lets go.
func assumedIn(g *gang) int {
	n := 0
	if g.plan != nil {
		for _, s := range g.plan.slots {
			if s.state == slotAssumed {
				n++
			}
		}
	}
	return n
}

// mayReleaseLocked reports whether a gang whose quorum is assumed may be
// released now: it is first in line and the bind budget has room for it.
func (c *Cache) mayReleaseLocked(g *gang) bool {
	if c.cfg.BindBudget <= 0 {
		return true
	}
	for _, e := range c.line {
		if e.gang == g.key {
			break
		}
		if c.inLineLocked(e) {
			return false // an earlier unit goes first
		}
	}
	binding, n := c.bindingLocked(), assumedIn(g)
	if n > c.cfg.BindBudget {
		return binding < c.cfg.BindBudget
	}
	return binding+n <= c.cfg.BindBudget
}

// inLineLocked reports whether a unit in line still waits there.
func (c *Cache) inLineLocked(e lineEntry) bool {
	if e.pod != "" {
		binding, ok := c.ordinary[e.pod]
		return ok && !binding
	}
	g, ok := c.gangs[e.gang]
	return ok && g.ready
}

// quorumAssumedLocked lets a planned gang whose quorum became assumed
// without another Permit (minMember lowered) go, under the bind budget
// like any other: released now, or put in line.
func (c *Cache) quorumAssumedLocked(g *gang, eff *Effects) {
	if g.phase != Planned || g.ready {
		return // not planned, or in line already
	}
	if !c.mayReleaseLocked(g) {
		c.holdLocked(g)
		return
	}
	c.releaseGangLocked(g, "", eff)
}

// holdLocked puts a gang whose quorum is assumed in line for release.
func (c *Cache) holdLocked(g *gang) {
	if !g.ready {
		g.ready = true
		// An entry left from an earlier turn (its plan dropped) must not
		// keep the gang's old place.
		c.line = slices.DeleteFunc(c.line, func(e lineEntry) bool { return e.gang == g.key })
		c.line = append(c.line, lineEntry{gang: g.key})
	}
}

// releaseReadyLocked releases the units in line while the budget allows.
func (c *Cache) releaseReadyLocked(eff *Effects) {
	for len(c.line) > 0 {
		e := c.line[0]
		if e.pod != "" {
			if !c.inLineLocked(e) {
				c.line = c.line[1:]
				continue
			}
			if c.bindingLocked() >= c.cfg.BindBudget {
				return
			}
			c.line = c.line[1:]
			c.ordinary[e.pod] = true
			c.ordinaryBinding++
			eff.Allow = append(eff.Allow, e.pod)
			continue
		}
		g, ok := c.gangs[e.gang]
		if !ok || !g.ready || g.phase != Planned {
			if ok {
				g.ready = false
			}
			c.line = c.line[1:]
			continue
		}
		if !c.mayReleaseLocked(g) {
			return
		}
		c.line = c.line[1:]
		c.releaseGangLocked(g, "", eff)
	}
}

// PermitOrdinary lets an ordinary pod go to binding when nothing waits in
// line and the bind budget has room, and otherwise puts it in line.
func (c *Cache) PermitOrdinary(pod *v1.Pod) PermitDecision {
	if c.cfg.BindBudget <= 0 {
		return PermitDecision{Allow: true}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// A pod scheduled again after a failed binding starts afresh.
	c.forgetOrdinaryLocked(pod.UID)
	waiting := slices.ContainsFunc(c.line, c.inLineLocked)
	if !waiting && c.bindingLocked() < c.cfg.BindBudget {
		c.ordinary[pod.UID] = true
		c.ordinaryBinding++
		return PermitDecision{Allow: true}
	}
	c.ordinary[pod.UID] = false
	c.line = append(c.line, lineEntry{pod: pod.UID})
	return PermitDecision{Wait: ordinaryLineWait, Reason: "waiting for the bindings before it (bind budget)"}
}

// OrdinaryDone records that an ordinary pod no longer binds: its binding
// completed or failed, or it is gone. The units in line behind it may go.
func (c *Cache) OrdinaryDone(pod *v1.Pod) Effects {
	var eff Effects
	if c.cfg.BindBudget <= 0 {
		return eff
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.forgetOrdinaryLocked(pod.UID) {
		c.releaseReadyLocked(&eff)
	}
	return eff
}

// forgetOrdinaryLocked drops an ordinary pod from pacing and reports
// whether it was there. A pod waiting in line is skipped when the line
// reaches it.
func (c *Cache) forgetOrdinaryLocked(uid types.UID) bool {
	binding, ok := c.ordinary[uid]
	if !ok {
		return false
	}
	if binding {
		c.ordinaryBinding--
	}
	delete(c.ordinary, uid)
	return true
}

// PostBind records that the apiserver bound a pod: its binding no longer
// counts against the budget, and the units in line may go. The informer
// shows it bound later.
func (c *Cache) PostBind(pod *v1.Pod) Effects {
	key := podgroup.KeyOf(pod)
	if key == "" {
		return c.OrdinaryDone(pod)
	}
	var eff Effects
	c.mu.Lock()
	defer c.mu.Unlock()
	g, ok := c.gangs[key]
	if !ok || g.plan == nil {
		return eff
	}
	if s := g.plan.slots[pod.UID]; s != nil && s.state == slotAssumed && !s.answered {
		s.answered = true
		c.releaseReadyLocked(&eff)
	}
	return eff
}
