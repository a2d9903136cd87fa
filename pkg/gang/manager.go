package gang

import (
	"fmt"
	"maps"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/utils/clock"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
	pglisters "sigs.k8s.io/scheduler-plugins/pkg/generated/listers/scheduling/v1alpha1"

	"github.com/lockstep-sched/lockstep/pkg/placement"
	"github.com/lockstep-sched/lockstep/pkg/podgroup"
	"github.com/lockstep-sched/lockstep/pkg/topology"
)

// gangIndex indexes pods by gang key in the scheduler's pod informer.
const gangIndex = "lockstep.io/gang"

// assumedPod is a member the scheduler has assumed onto a node (Reserve) and
// not yet seen bound in the informer.
type assumedPod struct {
	name, node string
}

// gangPlan is a whole-gang placement that members follow one cycle each. The
// capacity of members not yet assumed is held against everyone else.
type gangPlan struct {
	nodeOf  map[types.UID]string
	request map[types.UID]placement.Resources
	zonesOf map[types.UID][]string
	nodes   int
	domain  placement.Domain
	expires time.Time
}

// snapshotKey identifies what a planning attempt saw, so that the other
// members of a gang that just failed are refused without planning again
// until something changed.
type snapshotKey struct {
	generation int64
	nodes      int
	epoch      uint64
	pending    int
}

// gangState is everything the scheduler holds for one gang.
type gangState struct {
	key, namespace, name string
	uid                  types.UID

	plan    *gangPlan
	assumed map[types.UID]assumedPod
	// released is set once the quorum was reached: from then on members go
	// as they come, even after the first ones finished (elastic gangs).
	released bool
	// avoid lists, per member, nodes where the member's full Filter chain
	// failed although the plan chose them; replanning skips them.
	avoid map[types.UID]sets.Set[string]

	// blocked is set while the gang waits for room; rank orders blocked
	// gangs to find the head of the queue.
	blocked   bool
	rank      rank
	timeout   time.Duration
	headSince time.Time
	coolUntil time.Time
	// reserve is the head's reservation: room it holds per node as it frees.
	reserve    map[string]placement.Resources
	reserveKey snapshotKey

	failKey    snapshotKey
	failStatus *fwk.Status
}

// manager is the state shared by every profile of one scheduler instance:
// the profiles share nodes, so plans and reservations must be seen by all.
type manager struct {
	mu     sync.Mutex
	gangs  map[string]*gangState
	epoch  uint64
	parked map[types.UID]*v1.Pod

	clock          clock.WithDelayedExecution
	handle         fwk.Handle
	pgLister       pglisters.PodGroupLister
	podIndexer     cache.Indexer
	events         *eventer
	schedulers     sets.Set[string]
	defaultTimeout time.Duration
	headEnabled    bool
	placementOpts  placement.Options
	levels         []string
	topo           *topology.Tracker
}

var (
	managersMu sync.Mutex
	// managers maps a scheduler's informer factory to its manager. Profiles
	// of one scheduler share the factory; a restarted scheduler in the same
	// process (as in tests) gets a new one, and so fresh state.
	managers = map[informers.SharedInformerFactory]*manager{}
)

func (m *manager) gang(key, namespace, name string) *gangState {
	g, ok := m.gangs[key]
	if !ok {
		g = &gangState{key: key, namespace: namespace, name: name, assumed: map[types.UID]assumedPod{}}
		m.gangs[key] = g
	}
	return g
}

// gangFor returns the state of a PodGroup's gang. A PodGroup deleted and
// created again under the same name is a new gang: its UID differs, and
// the old state (a started gang lets members go freely) must not carry over.
func (m *manager) gangFor(pg *v1alpha1.PodGroup) *gangState {
	g := m.gang(podgroup.Key(pg.Namespace, pg.Name), pg.Namespace, pg.Name)
	if g.uid != pg.UID {
		if g.uid != "" {
			*g = gangState{key: g.key, namespace: g.namespace, name: g.name, assumed: g.assumed}
		}
		g.uid = pg.UID
	}
	return g
}

// membersMissing reports, and records as an Event, why a gang that has not
// started cannot start yet for want of members; "" when enough exist.
func (m *manager) membersMissing(pg *v1alpha1.PodGroup) string {
	m.mu.Lock()
	g := m.gangFor(pg)
	c := m.censusLocked(g)
	released := g.released
	m.mu.Unlock()
	if len(c.foreign) > 0 {
		m.events.podGroupObj(pg, v1.EventTypeWarning, "ForeignMembers", fmt.Sprintf(
			"%d member(s) name another scheduler and are not placed by this one: %v", len(c.foreign), c.foreign))
	}
	min := podgroup.MinMember(pg)
	if released || c.exist() >= min {
		return ""
	}
	msg := fmt.Sprintf("%d/%d members exist", c.exist(), min)
	if c.gated > 0 {
		msg += fmt.Sprintf(" (%d more scheduling-gated)", c.gated)
	}
	m.events.podGroupObj(pg, v1.EventTypeNormal, "WaitingForMembers", msg)
	return msg
}

// reportMembers announces a gang's member count when a gated member
// arrives.
func (m *manager) reportMembers(pod *v1.Pod) {
	if pg, err := m.pgLister.PodGroups(pod.Namespace).Get(podgroup.NameOf(pod)); err == nil {
		m.membersMissing(pg)
	}
}

// census is a count of a gang's members as the scheduler sees them.
type census struct {
	// scheduled members: bound in the informer or assumed by the scheduler.
	scheduled int
	// pending members this scheduler will place: unbound, unassumed, ungated.
	pending []*v1.Pod
	gated   int
	// foreign members name a scheduler that is not this one.
	foreign []string
}

func (c census) exist() int { return c.scheduled + len(c.pending) }

// censusLocked counts a gang's members. It also forgets assumed members the
// informer now shows bound or gone, so each member counts once.
func (m *manager) censusLocked(g *gangState) census {
	var c census
	objs, err := m.podIndexer.ByIndex(gangIndex, g.key)
	if err != nil {
		return c
	}
	seen := sets.New[types.UID]()
	for _, o := range objs {
		pod, ok := o.(*v1.Pod)
		if !ok || podgroup.IsTerminal(pod) {
			continue
		}
		seen.Insert(pod.UID)
		switch {
		case podgroup.IsBound(pod):
			c.scheduled++
			delete(g.assumed, pod.UID)
		case pod.DeletionTimestamp != nil:
		case !m.schedulers.Has(pod.Spec.SchedulerName):
			c.foreign = append(c.foreign, pod.Name)
		case podgroup.IsGated(pod):
			c.gated++
		default:
			if _, assumed := g.assumed[pod.UID]; !assumed {
				c.pending = append(c.pending, pod)
			}
		}
	}
	for uid := range g.assumed {
		if !seen.Has(uid) {
			delete(g.assumed, uid)
			continue
		}
		c.scheduled++
	}
	return c
}

// heldLocked sums, per node, the room that pods of rank r in gang gangKey
// ("" for ordinary pods) may not use: the not yet assumed members of other
// gangs' plans, and the head's reservation when the head outranks r.
func (m *manager) heldLocked(gangKey string, r rank) map[string]placement.Resources {
	var held map[string]placement.Resources
	add := func(node string, req placement.Resources) {
		if held == nil {
			held = map[string]placement.Resources{}
		}
		cur := held[node]
		cur.Add(&req)
		held[node] = cur
	}
	for key, g := range m.gangs {
		if key == gangKey {
			continue
		}
		if g.plan != nil {
			for uid, node := range g.plan.nodeOf {
				if _, done := g.assumed[uid]; !done {
					add(node, g.plan.request[uid])
				}
			}
		}
		if len(g.reserve) > 0 && g.rank.before(r) {
			for node, req := range g.reserve {
				add(node, req)
			}
		}
	}
	return held
}

// headLocked returns the gang at the head of the queue among those waiting
// for room, expiring its reservation when it has held it for its timeout.
func (m *manager) headLocked(logger klog.Logger, now time.Time) *gangState {
	if !m.headEnabled {
		return nil
	}
	for {
		var head *gangState
		for _, g := range m.gangs {
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
			head.headSince = now
			m.expireLater(logger, head.key, now, head.timeout)
		}
		if now.Sub(head.headSince) < head.timeout {
			// A previous head that lost its place keeps no reservation.
			for _, g := range m.gangs {
				if g != head && len(g.reserve) > 0 {
					g.reserve, g.headSince = nil, time.Time{}
					m.epoch++
				}
			}
			return head
		}
		logger.V(2).Info("Head-of-queue reservation timed out", "gang", head.key, "timeout", head.timeout)
		m.events.podGroup(head.namespace, head.name, v1.EventTypeWarning, "ReservationTimedOut",
			fmt.Sprintf("gang could not be placed within %s; released the room it reserved and lets younger gangs go first for as long", head.timeout))
		head.reserve, head.headSince = nil, time.Time{}
		head.coolUntil = now.Add(head.timeout)
		m.epoch++
	}
}

// expireLater wakes the scheduler when a head's reservation times out: no
// cluster event may come to run a cycle that would notice.
func (m *manager) expireLater(logger klog.Logger, key string, since time.Time, timeout time.Duration) {
	m.clock.AfterFunc(timeout, func() {
		m.mu.Lock()
		g, ok := m.gangs[key]
		if !ok || !g.headSince.Equal(since) {
			m.mu.Unlock()
			return
		}
		// The deadline itself, not the clock: a fake clock runs this
		// callback while holding its own lock.
		m.headLocked(logger, since.Add(timeout))
		wake := m.releaseLocked()
		m.mu.Unlock()
		m.activate(logger, wake)
	})
}

// releaseLocked returns the pods to wake because room held in memory was
// released: the pending members of gangs waiting for room, and ordinary pods
// that were refused reserved room.
func (m *manager) releaseLocked() map[string]*v1.Pod {
	m.epoch++
	wake := map[string]*v1.Pod{}
	for _, g := range m.gangs {
		if !g.blocked {
			continue
		}
		objs, _ := m.podIndexer.ByIndex(gangIndex, g.key)
		for _, o := range objs {
			if pod, ok := o.(*v1.Pod); ok && !podgroup.IsBound(pod) {
				wake[pod.Namespace+"/"+pod.Name] = pod
			}
		}
	}
	for uid, pod := range m.parked {
		wake[pod.Namespace+"/"+pod.Name] = pod
		delete(m.parked, uid)
	}
	return wake
}

// failLocked drops a gang's plan and returns the members waiting at Permit,
// to be rejected by the caller once the lock is released (rejecting calls
// back into Unreserve).
func (m *manager) failLocked(g *gangState) []types.UID {
	var waiting []types.UID
	for uid := range g.assumed {
		waiting = append(waiting, uid)
	}
	g.plan = nil
	return waiting
}

// rejectWaiting rejects members waiting at Permit.
func (m *manager) rejectWaiting(uids []types.UID, msg string) {
	for _, uid := range uids {
		if wp := m.handle.GetWaitingPod(uid); wp != nil {
			wp.Reject(Name, msg)
		}
	}
}

func (m *manager) activate(logger klog.Logger, pods map[string]*v1.Pod) {
	if len(pods) > 0 {
		m.handle.Activate(logger, pods)
	}
}

// onPodGroupAdd wakes a gang's pods waiting for their PodGroup. The
// scheduler's own PodGroup event may come before this informer has the
// object, so waking them from here closes that race.
func (m *manager) onPodGroupAdd(logger klog.Logger, pg *v1alpha1.PodGroup) {
	m.wakeGang(logger, pg.Namespace, pg.Name)
}

// wakeGang moves a gang's unbound pods to the active queue, where PreEnqueue
// and PreFilter look at them again.
func (m *manager) wakeGang(logger klog.Logger, namespace, name string) {
	objs, _ := m.podIndexer.ByIndex(gangIndex, podgroup.Key(namespace, name))
	wake := map[string]*v1.Pod{}
	for _, o := range objs {
		if pod, ok := o.(*v1.Pod); ok && !podgroup.IsBound(pod) {
			wake[pod.Namespace+"/"+pod.Name] = pod
		}
	}
	m.activate(logger, wake)
}

// onPodGroupUpdate wakes the gang when a change may help it (a lower
// minMember, new topology annotations), and lets waiting members go when a
// lowered minMember is now met.
func (m *manager) onPodGroupUpdate(logger klog.Logger, old, pg *v1alpha1.PodGroup) {
	if pg.Spec.MinMember < old.Spec.MinMember || !maps.Equal(pg.Annotations, old.Annotations) {
		m.wakeGang(logger, pg.Namespace, pg.Name)
	}
	m.mu.Lock()
	g, ok := m.gangs[podgroup.Key(pg.Namespace, pg.Name)]
	if !ok || g.released || len(g.assumed) == 0 {
		m.mu.Unlock()
		return
	}
	c := m.censusLocked(g)
	if c.scheduled < podgroup.MinMember(pg) {
		m.mu.Unlock()
		return
	}
	uids := m.releaseGangLocked(g)
	m.mu.Unlock()
	logger.V(2).Info("Quorum met after minMember changed", "gang", g.key, "minMember", pg.Spec.MinMember)
	m.allowWaiting(uids)
}

// releaseGangLocked marks the quorum reached and returns the members to allow.
func (m *manager) releaseGangLocked(g *gangState) []types.UID {
	g.released = true
	g.plan = nil
	g.blocked = false
	g.reserve, g.headSince = nil, time.Time{}
	g.avoid = nil
	g.failStatus = nil
	uids := make([]types.UID, 0, len(g.assumed))
	for uid := range g.assumed {
		uids = append(uids, uid)
	}
	return uids
}

func (m *manager) allowWaiting(uids []types.UID) {
	for _, uid := range uids {
		if wp := m.handle.GetWaitingPod(uid); wp != nil {
			wp.Allow(Name)
		}
	}
}

// onPodGroupDelete releases everything a deleted PodGroup's gang held.
func (m *manager) onPodGroupDelete(logger klog.Logger, namespace, name string) {
	key := podgroup.Key(namespace, name)
	m.mu.Lock()
	g, ok := m.gangs[key]
	if !ok {
		m.mu.Unlock()
		return
	}
	waiting := m.failLocked(g)
	delete(m.gangs, key)
	wake := m.releaseLocked()
	m.mu.Unlock()
	logger.V(2).Info("PodGroup deleted; released its gang", "gang", key, "waiting", len(waiting))
	m.rejectWaiting(waiting, fmt.Sprintf("PodGroup %s was deleted", key))
	m.activate(logger, wake)
	// Its pods wait again, saying they wait for their PodGroup.
	m.wakeGang(logger, namespace, name)
}
