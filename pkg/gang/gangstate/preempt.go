package gangstate

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/lockstep-sched/lockstep/pkg/placement"
	"github.com/lockstep-sched/lockstep/pkg/podgroup"
)

// Gang preemption. A gang that does not fit may evict pods of lower
// priority, but only if its quorum then fits, and only whole units: an
// ordinary pod, or every bound member of another gang, so that no victim
// gang is left partial. Units a PodDisruptionBudget protects are not
// taken; a gang whose members say preemptionPolicy: Never takes none; a
// gang that would not fit even with every lower-priority pod gone takes
// none. The fewest and least important units are chosen: lowest priority
// first, then smallest, then youngest. The room they free is held for the
// gang by the head-of-queue reservation, which the gang holds as the
// highest-ranked gang waiting.

// Budgets counts pods to evict together against the PodDisruptionBudgets
// that select them.
type Budgets interface {
	Tally() BudgetTally
}

// BudgetTally reports whether pods may be evicted too, with those added
// before, and adds them if so.
type BudgetTally interface {
	Add(pods []*v1.Pod) bool
}

// Eviction is a victim to evict and the reason the Events give.
type Eviction struct {
	Pod *v1.Pod
	// Unit names the victim unit: once one of its pods is refused, the
	// rest of it is left alone, so that no victim gang is left partial.
	Unit string
	// Preemptor is the gang that takes the victim's room, and Preemption
	// which of its preemptions this is.
	Preemptor  string
	Preemption uint64
	Message    string
}

// preemption is what a gang evicted and waits to see go.
type preemption struct {
	id uint64
	// all are the victims; victims those the informer has not seen go.
	all, victims sets.Set[types.UID]
	// claim is the room, per node, the gang's plan takes once the victims
	// are gone: held from every other pod and gang meanwhile, so that
	// what the victims free is not taken by another (which would make the
	// gang preempt again).
	claim map[string]placement.Resources
	// until bounds the wait: a victim that does not go (its eviction
	// refused, a node that never confirms) must not hold the gang for ever.
	until time.Time
	// room is each victim's node and request: the claim is held net of
	// what victims still there occupy, which no one else can use anyway.
	room map[types.UID]victimRoom
}

type victimRoom struct {
	node    string
	request placement.Resources
}

// heldClaim is the room of a claim others may not use: what the plan
// takes on each node, less what victims still there occupy.
func (p *preemption) heldClaim() map[string]placement.Resources {
	out := make(map[string]placement.Resources, len(p.claim))
	for node, req := range p.claim {
		out[node] = req
	}
	for uid, r := range p.room {
		if !p.victims.Has(uid) {
			continue
		}
		if cur, ok := out[r.node]; ok {
			cur.Sub(&r.request)
			out[r.node] = cur.AtLeastZero()
		}
	}
	return out
}

// victimUnit is what preemption takes whole.
type victimUnit struct {
	key      string
	gang     bool
	pods     []*v1.Pod
	nodes    []string
	priority int32
	// started is the unit's newest start: the youngest go first.
	started time.Time
}

// maxPrune bounds how many chosen units are tried without, one by one:
// each try is a plan, made under the cache's lock.
const maxPrune = 16

// preemptLocked decides whether a gang that does not fit preempts, and
// carries it out through eff; ok reports that the verdict is the
// preemption's (it preempts, or waits for its victims to go).
func (c *Cache) preemptLocked(g *gang, req placement.Request, nodes []fwk.NodeInfo, now time.Time, eff *Effects) (v Verdict, ok bool) {
	if p := g.preempting; p != nil {
		// Until the victims are gone from the snapshot too, their room is
		// not free yet: choosing again now would take more.
		left := max(p.victims.Len(), inSnapshot(nodes, p.all))
		if left > 0 && now.Before(p.until) {
			return refuse(fwk.Unschedulable, "waiting for %d preempted pods to go", left), true
		}
		if left > 0 {
			eff.onPodGroup(g.pg, v1.EventTypeWarning, "PreemptionTimedOut", fmt.Sprintf(
				"%d preempted pods did not go within %s; choosing again", left, g.timeout))
		}
		c.endPreemptionLocked(g, eff)
	}
	if !g.mayPreempt {
		return Verdict{}, false
	}
	eligible, blocked, going := c.victimUnitsLocked(g, nodes, now)
	if len(eligible)+len(blocked) == 0 {
		return Verdict{}, false
	}
	// Units under one budget may exceed it together: keep, in order of
	// preference, those the budgets allow with the ones kept before.
	var dropped []*victimUnit
	if c.cfg.Budgets != nil {
		var kept []*victimUnit
		together := c.cfg.Budgets.Tally()
		for _, u := range eligible {
			if together.Add(u.pods) {
				kept = append(kept, u)
			} else {
				dropped = append(dropped, u)
			}
		}
		eligible = kept
	}
	index := make(map[string]int, len(req.Nodes))
	for i := range req.Nodes {
		index[req.Nodes[i].Info.Node().Name] = i
	}
	try := func(units []*victimUnit) *placement.Plan {
		r := req
		r.Nodes = slices.Clone(req.Nodes)
		// Pods of lower priority already terminating free their room
		// without being taken.
		for _, u := range append(slices.Clone(units), going) {
			for i, p := range u.pods {
				if ni, ok := index[u.nodes[i]]; ok {
					add := placement.PodRequest(p)
					r.Nodes[ni].Free.Add(&add)
				}
			}
		}
		p, _ := placement.PlanGang(r)
		return p
	}
	if try(nil) != nil {
		// Pods already terminating make room enough: wait for them.
		return refuse(fwk.Unschedulable, "waiting for %d terminating pods of lower priority to go", len(going.pods)), true
	}
	if try(eligible) == nil {
		blocked = append(dropped, blocked...)
		if len(blocked) > 0 && try(append(slices.Clone(eligible), blocked...)) != nil {
			eff.onPodGroup(g.pg, v1.EventTypeNormal, "PreemptionBlocked", fmt.Sprintf(
				"the gang would fit in place of pods of lower priority, but a PodDisruptionBudget protects %s", describeUnits(blocked, 5)))
		}
		return Verdict{}, false
	}
	// The fewest of the least important: the shortest prefix that fits,
	// then only units on the nodes that plan uses, then each unit dropped
	// that the gang fits without, most important first.
	k := sort.Search(len(eligible), func(k int) bool { return try(eligible[:k+1]) != nil }) + 1
	chosen := eligible[:min(k, len(eligible))]
	if try(chosen) == nil {
		chosen = eligible // the planner is not monotone in room
	}
	if p := try(chosen); p != nil {
		used := sets.New[string]()
		for _, ni := range p.NodesUsed {
			used.Insert(req.Nodes[ni].Info.Node().Name)
		}
		var touching []*victimUnit
		for _, u := range chosen {
			if slices.ContainsFunc(u.nodes, used.Has) {
				touching = append(touching, u)
			}
		}
		if try(touching) != nil {
			chosen = touching
		}
	}
	chosen = slices.Clone(chosen)
	for i, tried := len(chosen)-1, 0; i >= 0 && tried < maxPrune; i, tried = i-1, tried+1 {
		without := slices.Delete(slices.Clone(chosen), i, i+1)
		if try(without) != nil {
			chosen = without
		}
	}
	plan := try(chosen)
	if plan == nil || len(chosen) == 0 {
		return Verdict{}, false // cannot happen: try(eligible) fits
	}

	c.planID++
	id := c.planID
	victims := sets.New[types.UID]()
	room := map[types.UID]victimRoom{}
	msg := fmt.Sprintf("preempted by gang %s (priority %d) to place its %d members", g.key, g.rank.priority, len(req.Members))
	for _, u := range chosen {
		for i, p := range u.pods {
			victims.Insert(p.UID)
			room[p.UID] = victimRoom{node: u.nodes[i], request: placement.PodRequest(p)}
			eff.Evict = append(eff.Evict, Eviction{Pod: p, Unit: u.key, Preemptor: g.key, Preemption: id, Message: msg})
		}
	}
	claim := map[string]placement.Resources{}
	for mi, ni := range plan.NodeOf {
		node := req.Nodes[ni].Info.Node().Name
		cur := claim[node]
		cur.Add(&req.Members[mi].Request)
		claim[node] = cur
	}
	p := &preemption{id: id, all: victims.Clone(), victims: victims, claim: claim, room: room, until: now.Add(g.timeout)}
	g.preempting = p
	// Its head reservation would hold the same room twice.
	c.forgetHeadLocked(g)
	c.epoch++
	// No cluster event may come when the wait ends (evictions refused):
	// wake the gang then to choose again.
	key := g.key
	c.afterFunc(g.timeout, func() {
		c.run(func(eff *Effects) {
			if g, ok := c.gangs[key]; ok && g.preempting == p {
				c.endPreemptionLocked(g, eff)
				c.wakeGangLocked(key, eff)
			}
		})
	})
	c.cfg.Logger.V(2).Info("Gang preempts", "gang", g.key, "priority", g.rank.priority, "units", len(chosen), "pods", victims.Len())
	text := fmt.Sprintf("preempting %d pods of lower priority (%s) to place the gang", victims.Len(), describeUnits(chosen, 8))
	eff.onPodGroup(g.pg, v1.EventTypeNormal, "Preempting", text)
	for _, u := range chosen {
		if !u.gang {
			continue
		}
		if vg, ok := c.gangs[u.key]; ok {
			eff.onPodGroup(vg.pg, v1.EventTypeWarning, "Preempted", fmt.Sprintf(
				"all %d bound members %s", len(u.pods), msg))
		}
	}
	return refuse(fwk.Unschedulable, "%s", text), true
}

// neverPreempts reports whether a member's preemptionPolicy is Never.
func neverPreempts(p *v1.Pod) bool {
	pp := p.Spec.PreemptionPolicy
	return pp != nil && *pp == v1.PreemptNever
}

// endPreemptionLocked ends a gang's wait for its victims and lets go of
// its claim: the pods and gangs it held room from are woken.
func (c *Cache) endPreemptionLocked(g *gang, eff *Effects) {
	if g.preempting == nil {
		return
	}
	g.preempting = nil
	g.failVerdict = nil
	c.releaseLocked(eff)
}

// EvictionRefused ends preemption id of a gang, one of whose victims could
// not be evicted, and has it choose afresh. With avoid (the pod refused its
// eviction itself: a PodDisruptionBudget, RBAC), the gang does not choose
// that unit again within its timeout; other errors (the apiserver busy, a
// deadline) say nothing about the unit. A refusal that comes after the
// preemption ended changes nothing.
func (c *Cache) EvictionRefused(preemptor string, id uint64, unit string, avoid bool) Effects {
	var eff Effects
	c.mu.Lock()
	defer c.mu.Unlock()
	g, ok := c.gangs[preemptor]
	if !ok || g.preempting == nil || g.preempting.id != id {
		return eff
	}
	if avoid {
		if g.refusedUnits == nil {
			g.refusedUnits = map[string]time.Time{}
		}
		g.refusedUnits[unit] = c.cfg.Clock.Now().Add(g.timeout)
	}
	c.endPreemptionLocked(g, &eff)
	c.wakeGangLocked(g.key, &eff)
	return eff
}

// victimUnitsLocked collects the units of lower priority than g bound on
// nodes: eligible ones in the order preemption takes them, and those a
// PodDisruptionBudget protects.
func (c *Cache) victimUnitsLocked(g *gang, nodes []fwk.NodeInfo, now time.Time) (eligible, blocked []*victimUnit, going *victimUnit) {
	units := map[string]*victimUnit{}
	tooHigh := sets.New[string]()
	going = &victimUnit{}
	// Victims of another gang's preemption free room that gang claims,
	// unless g may take a claim (it is of higher priority): counting them
	// as going would credit g with room held for the other.
	claimed := sets.New[types.UID]()
	for _, og := range c.gangs {
		if og != g && og.preempting != nil && now.Before(og.preempting.until) && g.rank.priority <= og.rank.priority {
			claimed = claimed.Union(og.preempting.victims)
		}
	}
	for unit, until := range g.refusedUnits {
		if !now.Before(until) {
			delete(g.refusedUnits, unit)
		}
	}
	for _, ni := range nodes {
		if ni.Node() == nil {
			continue
		}
		for _, pi := range ni.GetPods() {
			p := pi.GetPod()
			if p.Spec.NodeName == "" {
				continue
			}
			if p.DeletionTimestamp != nil || !c.listedLocked(p) {
				// Going, or gone by the informer: its room frees, unless
				// another gang claims it, or the pod is stuck: still there
				// a gang's timeout past its grace period (a node that
				// never confirms, a finalizer), it is not waited for.
				stuck := p.DeletionTimestamp != nil && now.After(p.DeletionTimestamp.Add(g.timeout))
				if corev1helpers.PodPriority(p) < g.rank.priority && !claimed.Has(p.UID) && !stuck {
					going.pods = append(going.pods, p)
					going.nodes = append(going.nodes, ni.Node().Name)
				}
				continue
			}
			key, gangMember := podgroup.KeyOf(p), true
			if key == "" {
				key, gangMember = "pod/"+p.Namespace+"/"+p.Name, false
			}
			if key == g.key {
				continue
			}
			prio := corev1helpers.PodPriority(p)
			if vg, ok := c.gangs[key]; ok && gangMember && vg.pg != nil {
				// A victim gang's priority is its upstream PodGroup's
				// when that sets one, for every member alike.
				prio = gangPriority(p, vg.pg)
			}
			if prio >= g.rank.priority {
				tooHigh.Insert(key)
				continue
			}
			u := units[key]
			if u == nil {
				u = &victimUnit{key: key, gang: gangMember, priority: prio}
				units[key] = u
			}
			u.pods = append(u.pods, p)
			u.nodes = append(u.nodes, ni.Node().Name)
			u.priority = max(u.priority, prio)
			if s := p.Status.StartTime; s != nil && s.After(u.started) {
				u.started = s.Time
			}
		}
	}
	for key, u := range units {
		if tooHigh.Has(key) {
			continue // a gang with a member of higher priority is not taken whole
		}
		if vg, ok := c.gangs[key]; ok && u.gang && (vg.phase == Planned || vg.phase == Binding) {
			continue // being placed: its members are not all bound yet
		}
		if until, refused := g.refusedUnits[key]; refused && now.Before(until) {
			continue // its eviction was refused a moment ago
		}
		if c.cfg.Budgets != nil && !c.cfg.Budgets.Tally().Add(u.pods) {
			blocked = append(blocked, u)
			continue
		}
		eligible = append(eligible, u)
	}
	order := func(a, b *victimUnit) int {
		return cmp.Or(
			cmp.Compare(a.priority, b.priority),
			cmp.Compare(len(a.pods), len(b.pods)),
			b.started.Compare(a.started),
			strings.Compare(a.key, b.key),
		)
	}
	slices.SortFunc(eligible, order)
	slices.SortFunc(blocked, order)
	return eligible, blocked, going
}

// listedLocked reports whether the informer still has the pod.
func (c *Cache) listedLocked(p *v1.Pod) bool {
	obj, ok, err := c.cfg.Pods.GetByKey(p.Namespace + "/" + p.Name)
	if err != nil || !ok {
		return false
	}
	cur, isPod := obj.(*v1.Pod)
	return isPod && cur.UID == p.UID
}

// inSnapshot counts the pods of uids the nodes still hold.
func inSnapshot(nodes []fwk.NodeInfo, uids sets.Set[types.UID]) int {
	n := 0
	for _, ni := range nodes {
		for _, pi := range ni.GetPods() {
			if uids.Has(pi.GetPod().UID) {
				n++
			}
		}
	}
	return n
}

// describeUnits names up to n units for a message.
func describeUnits(units []*victimUnit, n int) string {
	var parts []string
	for i, u := range units {
		if i == n {
			parts = append(parts, fmt.Sprintf("and %d more", len(units)-n))
			break
		}
		if u.gang {
			parts = append(parts, fmt.Sprintf("gang %s (%d pods, priority %d)", u.key, len(u.pods), u.priority))
		} else {
			parts = append(parts, fmt.Sprintf("pod %s (priority %d)", strings.TrimPrefix(u.key, "pod/"), u.priority))
		}
	}
	return strings.Join(parts, ", ")
}

// victimGoneLocked notes a pod that went: a gang waiting for its victims
// is woken once they all have.
func (c *Cache) victimGoneLocked(uid types.UID, eff *Effects) {
	for _, g := range c.gangs {
		if g.preempting == nil || !g.preempting.victims.Has(uid) {
			continue
		}
		g.preempting.victims.Delete(uid)
		if g.preempting.victims.Len() == 0 {
			g.failVerdict = nil
			c.wakeGangLocked(g.key, eff)
		}
	}
}
