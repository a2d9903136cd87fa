// Package gang is Lockstep's gang-scheduling plugin. It holds the pods of a
// PodGroup until the whole gang fits, plans the whole gang at the first
// member's PreFilter, has every member follow the plan in its own cycle, and
// releases all members to binding in one step at Permit.
package gang

import (
	"context"
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/lockstep-sched/lockstep/pkg/placement"
	"github.com/lockstep-sched/lockstep/pkg/podgroup"
	"github.com/lockstep-sched/lockstep/pkg/topology"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
)

// Name is the plugin's name in the registry and in scheduler configurations.
const Name = "LockstepGang"

const stateKey fwk.StateKey = Name

// Gang implements the extension points; the state lives in the manager that
// all profiles of the scheduler share.
type Gang struct {
	handle fwk.Handle
	m      *manager
}

var (
	_ fwk.QueueSortPlugin   = &Gang{}
	_ fwk.PreEnqueuePlugin  = &Gang{}
	_ fwk.PreFilterPlugin   = &Gang{}
	_ fwk.FilterPlugin      = &Gang{}
	_ fwk.PostFilterPlugin  = &Gang{}
	_ fwk.ReservePlugin     = &Gang{}
	_ fwk.PermitPlugin      = &Gang{}
	_ fwk.EnqueueExtensions = &Gang{}
)

// Name returns the plugin's name.
func (pl *Gang) Name() string { return Name }

// cycleState carries what PreFilter decided to the pod's later extension
// points in the same cycle.
type cycleState struct {
	gangKey string
	// plannedNode is the node the plan gave this member, "" if none.
	plannedNode string
	// held is the room per node this pod may not use.
	held    map[string]placement.Resources
	request placement.Resources
	// numa is what the pod needs from one NUMA zone, nil if nothing.
	numa *placement.Resources
}

func (s *cycleState) Clone() fwk.StateData { return s }

func readState(cs fwk.CycleState) *cycleState {
	d, err := cs.Read(stateKey)
	if err != nil {
		return nil
	}
	s, _ := d.(*cycleState)
	return s
}

// Less keeps a gang's members together in the queue: priority, then the age
// of the gang (its PodGroup) or of the ordinary pod, then the gang key, then
// the member's name.
func (pl *Gang) Less(a, b fwk.QueuedEntityInfo) bool {
	pa, pb := podOf(a), podOf(b)
	if pa == nil || pb == nil {
		pa1, pb1 := a.GetPriority(), b.GetPriority()
		return pa1 > pb1 || (pa1 == pb1 && a.GetTimestamp().Before(b.GetTimestamp()))
	}
	ra, rb := pl.queueRank(pa, a), pl.queueRank(pb, b)
	if ra.priority != rb.priority {
		return ra.priority > rb.priority
	}
	// PodGroup creation times have whole seconds; compare everyone at that
	// resolution, so a gang does not jump ahead of pods queued later in the
	// same second only because its time was truncated.
	sa, sb := ra.created.Truncate(time.Second), rb.created.Truncate(time.Second)
	if !sa.Equal(sb) {
		return sa.Before(sb)
	}
	gangA, gangB := podgroup.KeyOf(pa) != "", podgroup.KeyOf(pb) != ""
	if gangA != gangB {
		// Within one second an ordinary pod goes first: it costs one cycle,
		// and gang members stay together.
		return !gangA
	}
	if !gangA {
		if ta, tb := a.GetTimestamp(), b.GetTimestamp(); !ta.Equal(tb) {
			return ta.Before(tb)
		}
	}
	if ra.key != rb.key {
		return ra.key < rb.key
	}
	return pa.Name < pb.Name
}

func podOf(e fwk.QueuedEntityInfo) *v1.Pod {
	if pi, ok := e.(interface{ GetPodInfo() fwk.PodInfo }); ok && pi.GetPodInfo() != nil {
		return pi.GetPodInfo().GetPod()
	}
	return nil
}

func (pl *Gang) queueRank(pod *v1.Pod, e fwk.QueuedEntityInfo) rank {
	if key := podgroup.KeyOf(pod); key != "" {
		r := rank{priority: e.GetPriority(), created: pod.CreationTimestamp.Time, key: key}
		if pg, err := pl.m.pgLister.PodGroups(pod.Namespace).Get(podgroup.NameOf(pod)); err == nil {
			r.created = pg.CreationTimestamp.Time
		}
		return r
	}
	// An ordinary pod's age is its own, as a gang's is its PodGroup's: the
	// queue time would put every pod that existed before a restart behind
	// every gang created before it.
	created := pod.CreationTimestamp.Time
	if created.IsZero() || e.GetTimestamp().Truncate(time.Second).Before(created) {
		created = e.GetTimestamp()
	}
	return rank{priority: e.GetPriority(), created: created, key: pod.Namespace + "/" + pod.Name}
}

// gangRank is the rank of a gang outside the queue, for reservations.
func (pl *Gang) gangRank(pod *v1.Pod, pg *v1alpha1.PodGroup) rank {
	r := podRank(pod)
	r.created, r.key = pg.CreationTimestamp.Time, podgroup.Key(pg.Namespace, pg.Name)
	return r
}

// PreEnqueue keeps a gang's pods out of the active queue until the PodGroup
// exists and at least minMember members exist, so no cycle is spent on a
// gang that cannot start.
func (pl *Gang) PreEnqueue(ctx context.Context, pod *v1.Pod) *fwk.Status {
	name := podgroup.NameOf(pod)
	if name == "" {
		return nil
	}
	pg, err := pl.m.pgLister.PodGroups(pod.Namespace).Get(name)
	if err != nil {
		msg := fmt.Sprintf("waiting for PodGroup %s/%s to exist", pod.Namespace, name)
		if !apierrors.IsNotFound(err) {
			msg = fmt.Sprintf("cannot read PodGroup %s/%s: %v", pod.Namespace, name, err)
		}
		pl.m.events.pod(pod, v1.EventTypeWarning, "PodGroupNotFound", msg)
		return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, msg)
	}
	if msg := pl.m.membersMissing(pg); msg != "" && !podgroup.IsGated(pod) {
		return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, msg)
	}
	// A gated pod is held by the SchedulingGates plugin; it is counted
	// once its gates are gone.
	return nil
}

// PreFilter plans the whole gang at its first member and has every member
// follow the plan. For every pod it also records the room held for others.
func (pl *Gang) PreFilter(ctx context.Context, cs fwk.CycleState, pod *v1.Pod, nodes []fwk.NodeInfo) (*fwk.PreFilterResult, *fwk.Status) {
	logger := klog.FromContext(ctx)
	now := pl.m.clock.Now()
	snap := snapshotOf(nodes)
	st := &cycleState{gangKey: podgroup.KeyOf(pod), request: placement.PodRequest(pod), numa: topology.NUMANeed(pod)}

	// Room that freed goes to the head of the queue before anyone younger
	// can plan with it.
	pl.m.mu.Lock()
	wake := pl.refreshHeadLocked(logger, nodes, snap, now)
	pl.m.mu.Unlock()
	pl.m.activate(logger, wake)

	if st.gangKey == "" {
		pl.m.mu.Lock()
		st.held = pl.m.heldLocked("", podRank(pod))
		pl.m.mu.Unlock()
		return pl.finishPreFilter(cs, st, nil)
	}

	pg, err := pl.m.pgLister.PodGroups(pod.Namespace).Get(podgroup.NameOf(pod))
	if err != nil {
		return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, fmt.Sprintf("PodGroup %s not found", st.gangKey))
	}
	min := podgroup.MinMember(pg)
	r := pl.gangRank(pod, pg)

	pl.m.mu.Lock()
	g := pl.m.gangFor(pg)
	g.rank, g.timeout = r, podgroup.Timeout(pg, pl.m.defaultTimeout)
	c := pl.m.censusLocked(g)
	if g.released || c.scheduled >= min {
		// The gang has started: members beyond the quorum go as they come.
		g.released = true
		st.held = pl.m.heldLocked(st.gangKey, r)
		pl.m.mu.Unlock()
		return pl.finishPreFilter(cs, st, nil)
	}

	if g.plan != nil && now.After(g.plan.expires) {
		logger.V(2).Info("Gang plan expired before quorum", "gang", g.key)
		waiting := pl.m.failLocked(g)
		wake := pl.m.releaseLocked()
		pl.m.mu.Unlock()
		pl.m.rejectWaiting(waiting, "gang plan expired before all members were placed")
		pl.m.activate(logger, wake)
		pl.m.mu.Lock()
		c = pl.m.censusLocked(g)
	}
	if g.plan != nil {
		node, ok := g.plan.nodeOf[pod.UID]
		st.held = pl.m.heldLocked(st.gangKey, r)
		pl.m.mu.Unlock()
		if !ok {
			// An extra member arrived while the plan's members are placed:
			// it goes once the gang has started.
			return nil, fwk.NewStatus(fwk.Unschedulable, "waiting for the gang to start; this member is beyond the planned quorum")
		}
		st.plannedNode = node
		return pl.finishPreFilter(cs, st, &fwk.PreFilterResult{NodeNames: sets.New(node)})
	}

	required, preferred, terr := podgroup.TopologyConstraints(pg, pl.m.levels)
	if terr != nil {
		pl.m.mu.Unlock()
		pl.m.events.podGroupObj(pg, v1.EventTypeWarning, "InvalidTopology", terr.Error())
		return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, terr.Error())
	}
	needed := min - c.scheduled
	if len(c.pending) < needed {
		pl.m.mu.Unlock()
		return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable,
			fmt.Sprintf("%d/%d members exist", c.exist(), min))
	}
	key := snapshotKey{generation: snap.generation, nodes: len(nodes), epoch: pl.m.epoch, pending: len(c.pending)}
	if g.failStatus != nil && g.failKey == key {
		status := g.failStatus
		pl.m.mu.Unlock()
		return nil, status
	}

	held := pl.m.heldLocked(st.gangKey, r)
	req := placement.Request{
		Nodes: pl.m.planNodes(nodes, held, false), Members: pl.m.membersOf(c.pending, g.avoid), Needed: needed, Options: pl.m.placementOpts,
		Levels: pl.m.levels, Required: required, Preferred: preferred,
	}
	plan, failure := placement.PlanGang(req)
	if failure != nil {
		status, wake := pl.gangUnplaceableLocked(logger, g, pg, req, failure, nodes, snap, now)
		g.failKey, g.failStatus = key, status
		pl.m.mu.Unlock()
		pl.m.activate(logger, wake)
		return nil, status
	}

	g.plan = &gangPlan{
		nodeOf:  make(map[types.UID]string, len(plan.NodeOf)),
		request: make(map[types.UID]placement.Resources, len(plan.NodeOf)),
		zonesOf: make(map[types.UID][]string, len(plan.ZonesOf)),
		nodes:   len(plan.NodesUsed),
		domain:  plan.Domain,
		expires: now.Add(g.timeout),
	}
	wake = map[string]*v1.Pod{}
	for mi, ni := range plan.NodeOf {
		m := req.Members[mi]
		g.plan.nodeOf[m.Pod.UID] = req.Nodes[ni].Info.Node().Name
		g.plan.request[m.Pod.UID] = m.Request
		if z, ok := plan.ZonesOf[mi]; ok {
			g.plan.zonesOf[m.Pod.UID] = z
		}
		if m.Pod.UID != pod.UID {
			wake[m.Pod.Namespace+"/"+m.Pod.Name] = m.Pod
		}
	}
	wasBlocked := g.blocked
	g.blocked, g.reserve, g.headSince, g.failStatus = false, nil, time.Time{}, nil
	node, inPlan := g.plan.nodeOf[pod.UID]
	st.held = held
	pl.m.mu.Unlock()

	logger.V(2).Info("Planned gang", "gang", g.key, "members", len(plan.NodeOf), "needed", needed,
		"domain", plan.Domain.String(), "nodes", len(plan.NodesUsed), "plan", g.plan.nodeOf, "numaZones", g.plan.zonesOf)
	if wasBlocked {
		pl.m.events.podGroupObj(pg, v1.EventTypeNormal, "Planned", fmt.Sprintf("room found for %d members on %d nodes", len(plan.NodeOf), len(plan.NodesUsed)))
	}
	// Bring the other members forward so the plan is held as briefly as possible.
	pl.m.activate(logger, wake)
	if !inPlan {
		return nil, fwk.NewStatus(fwk.Unschedulable, "waiting for the gang to start; this member is beyond the planned quorum")
	}
	st.plannedNode = node
	return pl.finishPreFilter(cs, st, &fwk.PreFilterResult{NodeNames: sets.New(node)})
}

// finishPreFilter stores the cycle state; when nothing is held against the
// pod, Filter has nothing to check and is skipped.
func (pl *Gang) finishPreFilter(cs fwk.CycleState, st *cycleState, res *fwk.PreFilterResult) (*fwk.PreFilterResult, *fwk.Status) {
	cs.Write(stateKey, st)
	if len(st.held) == 0 && st.plannedNode == "" && st.numa == nil {
		return res, fwk.NewStatus(fwk.Skip)
	}
	return res, nil
}

// gangUnplaceableLocked answers a failed plan: a gang that could not fit
// even an empty cluster is refused outright; one that only lacks free room
// waits, and may become the head of the queue that reserves room.
func (pl *Gang) gangUnplaceableLocked(logger klog.Logger, g *gangState, pg *v1alpha1.PodGroup, req placement.Request, failure *placement.Failure, nodes []fwk.NodeInfo, snap snapshot, now time.Time) (*fwk.Status, map[string]*v1.Pod) {
	empty := req
	empty.Nodes = pl.m.planNodes(nodes, nil, true)
	if _, never := placement.PlanGang(empty); never != nil {
		g.blocked, g.reserve = false, nil
		msg := "gang can never fit this cluster as it is: " + never.Error()
		logger.V(2).Info("Gang cannot fit the cluster", "gang", g.key, "reason", never.Error())
		pl.m.events.podGroupObj(pg, v1.EventTypeWarning, "Unschedulable", msg)
		return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, msg), nil
	}
	if !g.blocked {
		g.blocked, g.coolUntil = true, time.Time{}
	}
	msg := "gang does not fit yet: " + failure.Error()
	logger.V(3).Info("Gang waits for room", "gang", g.key, "reason", failure.Error())
	pl.m.events.podGroupObj(pg, v1.EventTypeNormal, "WaitingForRoom", msg)
	wake := pl.refreshHeadLocked(logger, nodes, snap, now)
	return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, msg), wake
}

// refreshHeadLocked recomputes the head gang's reservation against the
// current snapshot, so room that frees goes to the head before any younger
// pod can take it. It returns the head's members to wake when the head now
// fits.
func (pl *Gang) refreshHeadLocked(logger klog.Logger, nodes []fwk.NodeInfo, snap snapshot, now time.Time) map[string]*v1.Pod {
	m := pl.m
	head := m.headLocked(logger, now)
	if head == nil {
		return nil
	}
	key := snapshotKey{generation: snap.generation, nodes: len(nodes), epoch: m.epoch}
	if head.reserve != nil && head.reserveKey == key {
		return nil
	}
	pg, err := m.pgLister.PodGroups(head.namespace).Get(head.name)
	if err != nil {
		head.blocked, head.reserve = false, nil
		return nil
	}
	c := m.censusLocked(head)
	needed := podgroup.MinMember(pg) - c.scheduled
	if needed <= 0 || len(c.pending) == 0 {
		head.blocked, head.reserve = false, nil
		return nil
	}
	required, _, err := podgroup.TopologyConstraints(pg, m.levels)
	if err != nil {
		head.blocked, head.reserve = false, nil
		return nil
	}
	req := placement.Request{
		Nodes:    m.planNodes(nodes, m.heldLocked(head.key, head.rank), false),
		Members:  m.membersOf(c.pending, head.avoid),
		Options:  m.placementOpts,
		Levels:   m.levels,
		Required: required,
	}
	plan, _ := placement.PlanGang(req)
	first := head.reserve == nil
	head.reserve = map[string]placement.Resources{}
	for mi, ni := range plan.NodeOf {
		node := req.Nodes[ni].Info.Node().Name
		cur := head.reserve[node]
		cur.Add(&req.Members[mi].Request)
		head.reserve[node] = cur
	}
	head.reserveKey = key
	if first {
		msg := fmt.Sprintf("first in line: reserving room as it frees, %d of %d needed members' worth held on %d nodes, for up to %s",
			len(plan.NodeOf), needed, len(plan.NodesUsed), head.timeout)
		logger.V(2).Info("Head of queue reserves room", "gang", head.key, "held", len(plan.NodeOf), "needed", needed)
		m.events.podGroupObj(pg, v1.EventTypeNormal, "Reserving", msg)
	}
	if len(plan.NodeOf) < needed {
		return nil
	}
	wake := make(map[string]*v1.Pod, len(c.pending))
	for _, p := range c.pending {
		wake[p.Namespace+"/"+p.Name] = p
	}
	return wake
}

// Filter refuses nodes whose free room is held for other gangs, and nodes
// whose kubelet would reject the pod for want of one NUMA zone with room.
func (pl *Gang) Filter(ctx context.Context, cs fwk.CycleState, pod *v1.Pod, ni fwk.NodeInfo) *fwk.Status {
	st := readState(cs)
	if st == nil || ni.Node() == nil {
		return nil
	}
	if st.numa != nil {
		if zones, single := pl.m.topo.ZonesOf(ni.Node().Name); single && len(zones) > 0 {
			if _, ok := topology.Choose(zones, true, st.numa); !ok {
				return fwk.NewStatus(fwk.Unschedulable, placement.ReasonNUMA)
			}
		}
	}
	held, ok := st.held[ni.Node().Name]
	if !ok {
		return nil
	}
	free := placement.FreeOf(ni)
	free.Sub(&held)
	if name := free.Insufficient(&st.request); name != "" {
		return fwk.NewStatus(fwk.Unschedulable, fmt.Sprintf("%s on this node is held for a gang being placed", name))
	}
	return nil
}

// PreFilterExtensions is not needed: the held room does not depend on the
// pods preemption would add or remove.
func (pl *Gang) PreFilterExtensions() fwk.PreFilterExtensions { return nil }

// PostFilter runs when no node fits. A member that followed a plan found its
// node no longer fits: the plan is dropped, the members waiting for it are
// released, and the gang replans avoiding that node for this member.
func (pl *Gang) PostFilter(ctx context.Context, cs fwk.CycleState, pod *v1.Pod, _ fwk.NodeToStatusReader) (*fwk.PostFilterResult, *fwk.Status) {
	logger := klog.FromContext(ctx)
	st := readState(cs)
	if podgroup.KeyOf(pod) == "" {
		if st != nil && len(st.held) > 0 {
			pl.m.mu.Lock()
			if pl.m.parked == nil {
				pl.m.parked = map[types.UID]*v1.Pod{}
			}
			pl.m.parked[pod.UID] = pod
			pl.m.mu.Unlock()
		}
		return nil, fwk.NewStatus(fwk.Unschedulable)
	}
	if st != nil && st.plannedNode != "" {
		pl.m.mu.Lock()
		g, ok := pl.m.gangs[st.gangKey]
		var waiting []types.UID
		var wake map[string]*v1.Pod
		if ok {
			if g.avoid == nil {
				g.avoid = map[types.UID]sets.Set[string]{}
			}
			if g.avoid[pod.UID] == nil {
				g.avoid[pod.UID] = sets.New[string]()
			}
			g.avoid[pod.UID].Insert(st.plannedNode)
			waiting = pl.m.failLocked(g)
			wake = pl.m.releaseLocked()
			wake[pod.Namespace+"/"+pod.Name] = pod
		}
		pl.m.mu.Unlock()
		msg := fmt.Sprintf("planned node %s no longer fits member %s; replanning the gang", st.plannedNode, pod.Name)
		logger.V(2).Info("Gang plan broken", "gang", st.gangKey, "pod", klog.KObj(pod), "node", st.plannedNode)
		pl.m.events.podGroup(pod.Namespace, podgroup.NameOf(pod), v1.EventTypeNormal, "Replanning", msg)
		pl.m.rejectWaiting(waiting, msg)
		pl.m.activate(logger, wake)
	}
	// Preempting victims for one member would not place the gang.
	return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, "gang members are not placed by preemption")
}

// Reserve records an assumed member, and the NUMA zones a pod with
// exclusive CPUs takes.
func (pl *Gang) Reserve(ctx context.Context, cs fwk.CycleState, pod *v1.Pod, node string) *fwk.Status {
	if need := topology.NUMANeed(pod); need != nil {
		if zones, single := pl.m.topo.ZonesOf(node); len(zones) > 0 {
			if chosen, ok := topology.Choose(zones, single, need); ok {
				pl.m.topo.Assign(node, pod.UID, chosen)
				klog.FromContext(ctx).V(2).Info("NUMA zones reserved", "pod", klog.KObj(pod), "node", node, "zones", chosen)
			}
		}
	}
	key := podgroup.KeyOf(pod)
	if key == "" {
		return nil
	}
	pl.m.mu.Lock()
	g := pl.m.gang(key, pod.Namespace, podgroup.NameOf(pod))
	g.assumed[pod.UID] = assumedPod{name: pod.Name, node: node}
	pl.m.mu.Unlock()
	return nil
}

// Unreserve undoes Reserve. A member that fails before the gang reached its
// quorum fails the whole attempt: its waiting siblings are rejected so that
// nothing stays held.
func (pl *Gang) Unreserve(ctx context.Context, cs fwk.CycleState, pod *v1.Pod, node string) {
	pl.m.topo.Forget(pod.UID)
	key := podgroup.KeyOf(pod)
	if key == "" {
		return
	}
	logger := klog.FromContext(ctx)
	pl.m.mu.Lock()
	g, ok := pl.m.gangs[key]
	if !ok {
		pl.m.mu.Unlock()
		return
	}
	delete(g.assumed, pod.UID)
	if g.released {
		pl.m.mu.Unlock()
		return
	}
	hadPlan := g.plan != nil
	waiting := pl.m.failLocked(g)
	wake := pl.m.releaseLocked()
	pl.m.mu.Unlock()
	if hadPlan {
		logger.V(2).Info("Gang member failed before quorum; releasing the gang", "gang", key, "pod", klog.KObj(pod))
		pl.m.events.podGroup(pod.Namespace, podgroup.NameOf(pod), v1.EventTypeWarning, "GangReleased",
			fmt.Sprintf("member %s could not be placed; released the %d members waiting", pod.Name, len(waiting)))
	}
	pl.m.rejectWaiting(waiting, fmt.Sprintf("gang %s released: member %s failed", key, pod.Name))
	pl.m.activate(logger, wake)
}

// Permit holds members until the quorum is assumed, then lets them all go in
// one step.
func (pl *Gang) Permit(ctx context.Context, cs fwk.CycleState, pod *v1.Pod, node string) (*fwk.Status, time.Duration) {
	key := podgroup.KeyOf(pod)
	if key == "" {
		return nil, 0
	}
	logger := klog.FromContext(ctx)
	pg, err := pl.m.pgLister.PodGroups(pod.Namespace).Get(podgroup.NameOf(pod))
	if err != nil {
		return fwk.NewStatus(fwk.Unschedulable, fmt.Sprintf("PodGroup %s not found", key)), 0
	}
	pl.m.mu.Lock()
	g := pl.m.gangFor(pg)
	if g.released {
		pl.m.mu.Unlock()
		return nil, 0
	}
	c := pl.m.censusLocked(g)
	min := podgroup.MinMember(pg)
	if c.scheduled >= min {
		nodes := sets.New[string]()
		for _, a := range g.assumed {
			nodes.Insert(a.node)
		}
		var gangCPU int64
		if g.plan != nil {
			for _, r := range g.plan.request {
				gangCPU += r.MilliCPU
			}
		}
		where := ""
		if g.plan != nil && g.plan.domain.Level != "" {
			where = " in " + g.plan.domain.String()
		}
		uids := pl.m.releaseGangLocked(g)
		pl.m.mu.Unlock()
		logger.V(2).Info("Gang quorum reached; releasing members to bind", "gang", key, "members", len(uids), "nodes", nodes.Len(), "domain", where)
		pl.m.events.podGroupObj(pg, v1.EventTypeNormal, "Placed", fmt.Sprintf("placed %d pods on %d nodes%s", len(uids), nodes.Len(), where))
		pl.m.observePlacement(nodes, gangCPU)
		pl.m.allowWaiting(uids)
		return nil, 0
	}
	wait := g.timeout
	if g.plan != nil {
		wait = g.plan.expires.Sub(pl.m.clock.Now())
	}
	pl.m.mu.Unlock()
	if wait <= 0 {
		return fwk.NewStatus(fwk.Unschedulable, "gang plan expired before the quorum was placed"), 0
	}
	return fwk.NewStatus(fwk.Wait, fmt.Sprintf("waiting for %d/%d members to be placed", c.scheduled, min)), wait
}

// New builds the plugin from its args.
func New(ctx context.Context, obj runtime.Object, h fwk.Handle) (fwk.Plugin, error) {
	m, err := managerFor(ctx, obj, h)
	if err != nil {
		return nil, err
	}
	return &Gang{handle: h, m: m}, nil
}
