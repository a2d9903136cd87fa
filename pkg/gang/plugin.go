// Package gang is Lockstep's gang-scheduling plugin. It holds the pods of a
// PodGroup until the whole gang fits, plans the whole gang at the first
// member's PreFilter, has every member follow the plan in its own cycle, and
// releases all members to binding in one step at Permit.
//
// The extension points are thin adapters over the gang cache
// (pkg/gang/gangstate), which alone owns gang state: each call hands the
// cache what the framework said, and carries out what the cache decided
// once the cache's lock is released.
package gang

import (
	"context"
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	"github.com/lockstep-sched/lockstep/pkg/gang/gangstate"
	"github.com/lockstep-sched/lockstep/pkg/numa"
	"github.com/lockstep-sched/lockstep/pkg/placement"
	"github.com/lockstep-sched/lockstep/pkg/podgroup"
)

// Name is the plugin's name in the registry and in scheduler configurations.
const Name = "LockstepGang"

const stateKey fwk.StateKey = Name

// Gang implements the extension points of one profile; the state lives in
// what the scheduler's profiles share.
type Gang struct {
	s *shared
}

var (
	_ fwk.QueueSortPlugin   = &Gang{}
	_ fwk.PreEnqueuePlugin  = &Gang{}
	_ fwk.PreFilterPlugin   = &Gang{}
	_ fwk.FilterPlugin      = &Gang{}
	_ fwk.PostFilterPlugin  = &Gang{}
	_ fwk.ReservePlugin     = &Gang{}
	_ fwk.PermitPlugin      = &Gang{}
	_ fwk.PostBindPlugin    = &Gang{}
	_ fwk.EnqueueExtensions = &Gang{}
)

// Name returns the plugin's name.
func (pl *Gang) Name() string { return Name }

// cycleState carries what PreFilter decided to the pod's later extension
// points in the same cycle.
type cycleState struct {
	// plannedNode is the node the plan gave this member, "" if none.
	plannedNode string
	// nodes, when not nil, are the only nodes the pod may go to.
	nodes sets.Set[string]
	// held is the room per node this pod may not use.
	held    map[string]placement.Resources
	request placement.Resources
	// numa is what the pod asks of kubelet's CPU manager, nil if it gets
	// no exclusive CPUs.
	numa *numa.Needs
}

func (s *cycleState) Clone() fwk.StateData { return s }

func readState(cs fwk.CycleState) (*cycleState, error) {
	d, err := cs.Read(stateKey)
	if err != nil {
		return nil, fmt.Errorf("reading %q from cycle state: %w", stateKey, err)
	}
	s, ok := d.(*cycleState)
	if !ok {
		return nil, fmt.Errorf("%+v cannot be converted to the gang cycle state", d)
	}
	return s, nil
}

// podGroupOf returns a member's PodGroup, or the status to refuse it with.
func (pl *Gang) podGroupOf(pod *v1.Pod) (*v1alpha1.PodGroup, *fwk.Status) {
	pg, err := pl.s.groups.of(pod)
	if err == nil && pg != nil {
		return pg, nil
	}
	name := podgroup.NameOf(pod) + podgroup.UpstreamNameOf(pod)
	msg := fmt.Sprintf("waiting for PodGroup %s/%s (%s) to exist", pod.Namespace, name, apiOf(pod))
	if err != nil && !apierrors.IsNotFound(err) {
		msg = fmt.Sprintf("cannot read PodGroup %s/%s (%s): %v", pod.Namespace, name, apiOf(pod), err)
	}
	pl.s.events.pod(pod, v1.EventTypeWarning, "PodGroupNotFound", msg)
	return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, msg)
}

// PreEnqueue keeps a gang's pods out of the active queue until the PodGroup
// exists and at least minMember members exist, so no cycle is spent on a
// gang that cannot start.
func (pl *Gang) PreEnqueue(ctx context.Context, pod *v1.Pod) *fwk.Status {
	if podgroup.KeyOf(pod) == "" {
		return nil
	}
	pg, status := pl.podGroupOf(pod)
	if status != nil {
		return status
	}
	if msg := pl.s.membersMissing(klog.FromContext(ctx), pg); msg != "" && !podgroup.IsGated(pod) {
		return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, msg)
	}
	// A gated pod is held by the SchedulingGates plugin; it is counted
	// once its gates are gone.
	return nil
}

// PreFilter plans the whole gang at its first member and has every member
// follow the plan. For every pod it also records the room held for others.
func (pl *Gang) PreFilter(ctx context.Context, cs fwk.CycleState, pod *v1.Pod, nodes []fwk.NodeInfo) (*fwk.PreFilterResult, *fwk.Status) {
	needs := numa.NeedsOf(pod)
	if needs != nil && !pl.s.topo.Ready() {
		// Just started: the zones are not all known yet. The pod goes
		// again once they are.
		pl.s.cache.Park(pod)
		return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, waitingForZones)
	}
	var v gangstate.Verdict
	var eff gangstate.Effects
	if podgroup.KeyOf(pod) == "" {
		v, eff = pl.s.cache.PreFilterOrdinary(pod, nodes)
	} else {
		pg, status := pl.podGroupOf(pod)
		if status != nil {
			return nil, status
		}
		v, eff = pl.s.cache.PreFilter(pod, pg, nodes)
	}
	pl.s.apply(klog.FromContext(ctx), eff)
	if v.Code != fwk.Success {
		return nil, fwk.NewStatus(v.Code, v.Reason)
	}
	st := &cycleState{plannedNode: v.Node, nodes: v.Nodes, held: v.Held, request: placement.PodRequest(pod), numa: needs}
	cs.Write(stateKey, st)
	switch {
	case v.Node != "":
		return &fwk.PreFilterResult{NodeNames: sets.New(v.Node)}, nil
	case v.Nodes != nil:
		return &fwk.PreFilterResult{NodeNames: v.Nodes}, nil
	case len(st.held) == 0 && st.numa == nil:
		// Nothing to check per node.
		return nil, fwk.NewStatus(fwk.Skip)
	}
	return nil, nil
}

// waitingForZones is why a pod with exclusive CPUs waits while the nodes'
// NodeResourceTopology objects are being listed.
const waitingForZones = "waiting for the nodes' NodeResourceTopology objects to be listed: this pod gets exclusive CPUs, and a NUMA zone"

// PreFilterExtensions is not needed: the held room does not depend on the
// pods preemption would add or remove.
func (pl *Gang) PreFilterExtensions() fwk.PreFilterExtensions { return nil }

// Filter refuses nodes other than a member's planned node (a pod may carry
// a nominated node from an earlier leader), nodes outside a started gang's
// required domain, nodes whose free room is held for other gangs, and nodes
// whose kubelet would reject the pod for want of one NUMA zone with room.
func (pl *Gang) Filter(ctx context.Context, cs fwk.CycleState, pod *v1.Pod, ni fwk.NodeInfo) *fwk.Status {
	st, err := readState(cs)
	if err != nil {
		return fwk.AsStatus(err)
	}
	node := ni.Node()
	if node == nil {
		return fwk.NewStatus(fwk.Error, "node not found")
	}
	if st.plannedNode != "" && node.Name != st.plannedNode {
		return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, fmt.Sprintf("the gang's plan places this member on %s", st.plannedNode))
	}
	if st.nodes != nil && !st.nodes.Has(node.Name) {
		return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, "outside the topology domain the gang is placed in")
	}
	if st.numa != nil {
		// Kubelet must admit the pod whatever the order it admits it in
		// among the pods bound there and not yet counted.
		if z := pl.s.topo.NodeOf(node.Name); z != nil && z.Policy.Rejects() && !z.Fits(nil, st.numa.For(z.Scope)) {
			return fwk.NewStatus(fwk.Unschedulable, placement.ReasonNUMA)
		}
	}
	held, ok := st.held[node.Name]
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

// PostFilter runs when no node fits. An ordinary pod refused held room is
// parked, to be woken when the room is released. A member whose planned
// node no longer fits breaks the plan, and the gang replans. Gang members
// never preempt: victims for one member would not place the gang.
func (pl *Gang) PostFilter(ctx context.Context, cs fwk.CycleState, pod *v1.Pod, _ fwk.NodeToStatusReader) (*fwk.PostFilterResult, *fwk.Status) {
	st, err := readState(cs)
	if podgroup.KeyOf(pod) == "" {
		if err == nil && len(st.held) > 0 {
			pl.s.cache.Park(pod)
		}
		return nil, fwk.NewStatus(fwk.Unschedulable)
	}
	if err == nil && st.plannedNode != "" {
		klog.FromContext(ctx).V(2).Info("Gang plan broken", "pod", klog.KObj(pod), "node", st.plannedNode)
		pl.s.apply(klog.FromContext(ctx), pl.s.cache.FilterRefused(pod, st.plannedNode))
	}
	return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, "gang members are not placed by preemption")
}

// Reserve records an assumed member, and a pod with exclusive CPUs as one
// its node's kubelet has yet to admit.
func (pl *Gang) Reserve(ctx context.Context, cs fwk.CycleState, pod *v1.Pod, node string) *fwk.Status {
	// Until kubelet admits it, the pod counts on the node's zones.
	pl.s.topo.Assume(node, pod)
	if podgroup.KeyOf(pod) != "" {
		pl.s.cache.Reserve(pod, node)
	}
	return nil
}

// Unreserve undoes Reserve; what a failed member means for its gang is the
// cache's to decide.
func (pl *Gang) Unreserve(ctx context.Context, cs fwk.CycleState, pod *v1.Pod, node string) {
	pl.s.topo.Forget(pod.UID)
	if podgroup.KeyOf(pod) != "" {
		pl.s.apply(klog.FromContext(ctx), pl.s.cache.Unreserve(pod))
		return
	}
	pl.s.apply(klog.FromContext(ctx), pl.s.cache.OrdinaryDone(pod))
}

// PostBind tells the bind budget that a binding completed, as soon as the
// apiserver answered rather than when the informer shows it (which it
// still does without this extension point enabled).
func (pl *Gang) PostBind(ctx context.Context, _ fwk.CycleState, pod *v1.Pod, _ string) {
	pl.s.apply(klog.FromContext(ctx), pl.s.cache.PostBind(pod))
}

// Permit holds members until the quorum is assumed, then lets them all go in
// one step.
func (pl *Gang) Permit(ctx context.Context, cs fwk.CycleState, pod *v1.Pod, node string) (*fwk.Status, time.Duration) {
	if podgroup.KeyOf(pod) == "" {
		// Ordinary pods take their turn under the bind budget too.
		if d := pl.s.cache.PermitOrdinary(pod); !d.Allow {
			return fwk.NewStatus(fwk.Wait, d.Reason), d.Wait
		}
		return nil, 0
	}
	pg, status := pl.podGroupOf(pod)
	if status != nil {
		return fwk.NewStatus(fwk.Unschedulable, status.Message()), 0
	}
	d, eff := pl.s.cache.Permit(pod, pg)
	pl.s.apply(klog.FromContext(ctx), eff)
	switch {
	case d.Allow:
		return nil, 0
	case d.Reject != "":
		return fwk.NewStatus(fwk.Unschedulable, d.Reject), 0
	}
	return fwk.NewStatus(fwk.Wait, d.Reason), d.Wait
}
