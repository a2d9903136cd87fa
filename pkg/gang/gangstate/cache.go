// Package gangstate is the one owner of Lockstep's gang state. Every gang
// lives in a Cache behind a single lock, in an explicit lifecycle phase,
// and changes only through the Cache's named transitions, which the
// plugin's extension points and informer handlers call. A transition
// decides under the lock and returns Effects (allow, reject, activate,
// Events) that the caller carries out after the lock is released.
package gangstate

import (
	"fmt"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	"github.com/lockstep-sched/lockstep/pkg/numa"
	"github.com/lockstep-sched/lockstep/pkg/placement"
	"github.com/lockstep-sched/lockstep/pkg/podgroup"
)

// GangIndex indexes pods by gang key in the scheduler's pod informer.
const GangIndex = "lockstep.io/gang"

// IndexByGang is the pod informer index function for GangIndex.
func IndexByGang(obj any) ([]string, error) {
	pod, ok := obj.(*v1.Pod)
	if !ok {
		return nil, nil
	}
	if key := podgroup.KeyOf(pod); key != "" {
		return []string{key}, nil
	}
	return nil, nil
}

// PermitGrace is how much longer than the gang's own deadline a member is
// told to wait at Permit: the cache's deadline timer must reject waiting
// members first, all together, so that the framework's per-pod timers never
// reject one member while the others are being allowed.
const PermitGrace = 30 * time.Second

// Zones tells the planner nodes' NUMA zones.
type Zones interface {
	// NodeOf returns a node's zones with the room left and the pods
	// kubelet has yet to admit there; nil when it publishes none.
	NodeOf(node string) *numa.Node
	// EmptyNodeOf returns a node's zones as if it ran nothing.
	EmptyNodeOf(node string) *numa.Node
}

// Config is what a Cache needs from its scheduler.
type Config struct {
	Clock clock.WithDelayedExecution
	// Pods is the scheduler's pod informer indexer, indexed by GangIndex.
	Pods cache.Indexer
	// Schedulers are the profile names of this scheduler.
	Schedulers     sets.Set[string]
	DefaultTimeout time.Duration
	HeadEnabled    bool
	Levels         []string
	Placement      placement.Options
	Zones          Zones
	// BindBudget bounds the released members binding at once; 0: no bound.
	BindBudget int
	// Preemption lets a gang that does not fit evict pods of lower
	// priority (preempt.go); Budgets, when set, keeps the
	// PodDisruptionBudgets of those it would take.
	Preemption bool
	Budgets    Budgets
	// Apply carries out the effects of transitions that timers start.
	Apply func(Effects)
	// Logger logs transitions.
	Logger klog.Logger
}

// Cache holds every gang of one scheduler. It is safe for concurrent use.
type Cache struct {
	cfg Config

	mu    sync.Mutex
	gangs map[string]*gang
	// parked are ordinary pods refused room held for gangs, woken when held
	// room is released.
	parked map[types.UID]*v1.Pod
	// epoch changes whenever held room changes, so that cached verdicts of
	// failed planning attempts are not reused across such changes.
	epoch uint64
	// freed counts changes that may have freed room (pods deleted or
	// finished, nodes added or changed) and freedAt is the last: the head
	// of the queue recomputes its reservation after them, not after every
	// assume, which only takes room it does not hold.
	freed   uint64
	freedAt time.Time
	planID  uint64
	// line lists, in order, the gangs and ordinary pods waiting for the
	// bind budget (pacing.go).
	line []lineEntry
	// ordinary holds the ordinary pods that pacing knows: true while
	// binding, false while waiting in line; ordinaryBinding counts the
	// first.
	ordinary        map[types.UID]bool
	ordinaryBinding int
}

// New returns an empty cache.
func New(cfg Config) *Cache {
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.Apply == nil {
		cfg.Apply = func(Effects) {}
	}
	if cfg.Schedulers == nil {
		cfg.Schedulers = sets.New[string]()
	}
	return &Cache{cfg: cfg, gangs: map[string]*gang{}, parked: map[types.UID]*v1.Pod{}, ordinary: map[types.UID]bool{}}
}

// AddScheduler records another profile name of this scheduler: its pods are
// members this scheduler places.
func (c *Cache) AddScheduler(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cfg.Schedulers.Insert(name)
}

// Phase returns a gang's phase, Waiting for a gang the cache does not hold.
func (c *Cache) Phase(key string) Phase {
	c.mu.Lock()
	defer c.mu.Unlock()
	if g, ok := c.gangs[key]; ok {
		return g.phase
	}
	return Waiting
}

// gangFor returns the gang of a PodGroup, refreshed from it. A PodGroup
// deleted and created again under the same name is a new gang.
func (c *Cache) gangFor(pg *v1alpha1.PodGroup, eff *Effects) *gang {
	key := podgroup.KeyOfGroup(pg)
	g, ok := c.gangs[key]
	if ok && g.uid != "" && pg.UID != "" && g.uid != pg.UID {
		c.dropPlanLocked(g, fmt.Sprintf("PodGroup %s was replaced", key), eff)
		c.endPreemptionLocked(g, eff)
		c.dropHeadLocked(g, eff)
		ok = false
	}
	if !ok {
		g = &gang{key: key, namespace: pg.Namespace, name: pg.Name, phase: Waiting, assumed: map[types.UID]string{}}
		c.gangs[key] = g
	}
	g.uid, g.pg = pg.UID, pg
	timeout, capped := podgroup.Timeout(pg, c.cfg.DefaultTimeout)
	if capped && g.timeout != timeout {
		eff.onPodGroup(pg, v1.EventTypeWarning, "TimeoutCapped", fmt.Sprintf(
			"scheduleTimeoutSeconds %d is longer than the scheduler allows; using %s", *pg.Spec.ScheduleTimeoutSeconds, timeout))
	}
	g.timeout = timeout
	return g
}

// censusLocked counts a gang's members. It also forgets assumed members the
// informer now shows bound or gone, so each member counts once.
func (c *Cache) censusLocked(g *gang) census {
	cen := census{nodes: sets.New[string]()}
	objs, err := c.cfg.Pods.ByIndex(GangIndex, g.key)
	if err != nil {
		return cen
	}
	seen := sets.New[types.UID]()
	for _, o := range objs {
		pod, ok := o.(*v1.Pod)
		if !ok || podgroup.IsTerminal(pod) {
			continue
		}
		seen.Insert(pod.UID)
		switch {
		case podgroup.IsBound(pod) && pod.DeletionTimestamp != nil:
			// Going away (evicted, deleted): not a member to count on, nor
			// one to place.
		case podgroup.IsBound(pod):
			cen.scheduled++
			cen.nodes.Insert(pod.Spec.NodeName)
			delete(g.assumed, pod.UID)
			if g.plan != nil {
				if s := g.plan.slots[pod.UID]; s != nil {
					s.state = slotBound
				}
			}
		case pod.DeletionTimestamp != nil:
		case !c.cfg.Schedulers.Has(pod.Spec.SchedulerName):
			cen.foreign = append(cen.foreign, pod.Name)
		case podgroup.IsGated(pod):
			cen.gated++
		default:
			if _, assumed := g.assumed[pod.UID]; !assumed {
				cen.pending = append(cen.pending, pod)
			}
		}
	}
	for uid, node := range g.assumed {
		if !seen.Has(uid) {
			delete(g.assumed, uid)
			continue
		}
		cen.scheduled++
		cen.nodes.Insert(node)
	}
	return cen
}

// heldLocked sums, per node, the room that pods of rank r in gang gangKey
// ("" for ordinary pods) may not use: other gangs' planned members not yet
// assumed, the head's reservation when the head outranks r, and the room
// preemptors claimed.
//
// planning is set for a gang's own plan and the members following it: only
// then may a gang that may preempt use room a lower gang claimed (its head
// reservation and members beyond its quorum may not).
func (c *Cache) heldLocked(gangKey string, r rank, now time.Time, planning bool) map[string]placement.Resources {
	var held map[string]placement.Resources
	add := func(node string, req placement.Resources) {
		if held == nil {
			held = map[string]placement.Resources{}
		}
		cur := held[node]
		cur.Add(&req)
		held[node] = cur
	}
	asker := c.gangs[gangKey]
	for key, g := range c.gangs {
		if key == gangKey {
			continue
		}
		// A plan past its deadline holds nothing, even before its timer ran.
		if g.plan != nil && now.Before(g.plan.deadline) {
			for _, s := range g.plan.slots {
				if s.held() {
					add(s.node, s.request)
				}
			}
		}
		claiming := g.preempting != nil && now.Before(g.preempting.until)
		if len(g.reserve) > 0 && g.rank.before(r) && !claiming {
			for node, req := range g.reserve {
				add(node, req)
			}
		}
		// A preemptor's claim is held from every pod and gang but a gang
		// of higher priority that may preempt (it would take the room
		// back anyway): the room it freed by evicting must not make it
		// evict again for another.
		if claiming && !(planning && asker != nil && asker.mayPreempt && r.priority > g.rank.priority) {
			for node, req := range g.preempting.heldClaim() {
				add(node, req)
			}
		}
	}
	return held
}

// dropPlanLocked ends a gang's plan before its quorum was released: its
// members waiting at Permit are rejected (and no longer count as assumed,
// so a stale Unreserve of theirs cannot fail a newer plan), its pending
// members are woken to plan again, and the room it held is released.
func (c *Cache) dropPlanLocked(g *gang, reason string, eff *Effects) {
	if g.plan == nil {
		return
	}
	for uid, s := range g.plan.slots {
		if s.state == slotAssumed {
			eff.reject(uid, reason)
			delete(g.assumed, uid)
		}
		if s.state != slotBound {
			eff.activate(s.pod)
		}
	}
	if g.plan.timer != nil {
		g.plan.timer.Stop()
	}
	g.plan, g.ready = nil, false
	if g.phase == Planned {
		g.phase = Waiting
	}
	c.releaseLocked(eff)
	c.releaseReadyLocked(eff)
}

// releaseLocked wakes the pods that room held in memory kept out: the
// pending members of gangs waiting for room, and ordinary pods refused
// reserved room.
func (c *Cache) releaseLocked(eff *Effects) {
	c.epoch++
	for _, g := range c.gangs {
		if !g.blocked && !g.awaitingAgent {
			continue
		}
		objs, _ := c.cfg.Pods.ByIndex(GangIndex, g.key)
		for _, o := range objs {
			if pod, ok := o.(*v1.Pod); ok && !podgroup.IsBound(pod) {
				eff.activate(pod)
			}
		}
	}
	for uid, pod := range c.parked {
		eff.activate(pod)
		delete(c.parked, uid)
	}
}

// wakeGangLocked activates a gang's unbound pods.
func (c *Cache) wakeGangLocked(key string, eff *Effects) {
	objs, _ := c.cfg.Pods.ByIndex(GangIndex, key)
	for _, o := range objs {
		if pod, ok := o.(*v1.Pod); ok && !podgroup.IsBound(pod) {
			eff.activate(pod)
		}
	}
}

// afterFunc runs f on its own goroutine when d has passed. A fake clock
// runs timer callbacks while holding its own lock, so the callback must not
// wait for the cache's lock there.
func (c *Cache) afterFunc(d time.Duration, f func()) clock.Timer {
	return c.cfg.Clock.AfterFunc(d, func() { go f() })
}

// run runs a transition started by a timer and carries out its effects.
func (c *Cache) run(f func(eff *Effects)) {
	var eff Effects
	c.mu.Lock()
	f(&eff)
	c.mu.Unlock()
	if !eff.Empty() {
		c.cfg.Apply(eff)
	}
}
