package gang

import (
	"context"

	v1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/util"

	"github.com/lockstep-sched/lockstep/pkg/podgroup"
)

// EventsToRegister lists the cluster changes that can make a waiting gang
// (or a pod refused held room) schedulable, each with a hint that skips
// changes that cannot help this pod.
func (pl *Gang) EventsToRegister(_ context.Context) ([]fwk.ClusterEventWithHint, error) {
	return []fwk.ClusterEventWithHint{
		// A new or ungated member can complete the quorum.
		{Event: fwk.ClusterEvent{Resource: fwk.UnscheduledPod, ActionType: fwk.Add | fwk.UpdatePodSchedulingGatesEliminated}, QueueingHintFn: pl.sameGangPod},
		// This pod's own gates going away.
		{Event: fwk.ClusterEvent{Resource: fwk.TargetPod, ActionType: fwk.UpdatePodSchedulingGatesEliminated}, QueueingHintFn: pl.always},
		// A member bound elsewhere (after a restart, or by the gang's start)
		// counts toward the quorum and lets extra members go.
		{Event: fwk.ClusterEvent{Resource: fwk.AssignedPod, ActionType: fwk.Add}, QueueingHintFn: pl.sameGangPod},
		// Room frees when pods go away or shrink.
		{Event: fwk.ClusterEvent{Resource: fwk.AssignedPod, ActionType: fwk.Delete | fwk.UpdatePodScaleDown}, QueueingHintFn: pl.roomFreed},
		// Nodes that appear, grow, or change labels or taints may hold the gang.
		{Event: fwk.ClusterEvent{Resource: fwk.Node, ActionType: fwk.Add | fwk.UpdateNodeAllocatable | fwk.UpdateNodeLabel | fwk.UpdateNodeTaint}, QueueingHintFn: pl.nodeChanged},
		// PodGroup changes are not registered here: the scheduler would
		// watch them with a dynamic informer and wait for it to sync at
		// start, hanging forever on a cluster without the CRD. The plugin's
		// own PodGroup informer wakes the gang's pods instead (manager.go).
	}, nil
}

func (pl *Gang) sameGangPod(logger klog.Logger, pod *v1.Pod, oldObj, newObj any) (fwk.QueueingHint, error) {
	_, p, err := util.As[*v1.Pod](oldObj, newObj)
	if err != nil {
		return fwk.Queue, err
	}
	key := podgroup.KeyOf(pod)
	if key != "" && key == podgroup.KeyOf(p) {
		logger.V(5).Info("Member of the same gang changed", "pod", klog.KObj(pod), "member", klog.KObj(p))
		return fwk.Queue, nil
	}
	return fwk.QueueSkip, nil
}

// roomFreed queues on any pod leaving or shrinking: the room may be what
// the gang, or the head's reservation blocking it, was waiting for.
func (pl *Gang) roomFreed(logger klog.Logger, pod *v1.Pod, oldObj, newObj any) (fwk.QueueingHint, error) {
	return fwk.Queue, nil
}

func (pl *Gang) always(klog.Logger, *v1.Pod, any, any) (fwk.QueueingHint, error) {
	return fwk.Queue, nil
}

func (pl *Gang) nodeChanged(logger klog.Logger, pod *v1.Pod, oldObj, newObj any) (fwk.QueueingHint, error) {
	_, n, err := util.As[*v1.Node](oldObj, newObj)
	if err != nil {
		return fwk.Queue, err
	}
	if n.Spec.Unschedulable && oldObj != nil {
		// A node being cordoned never helps.
		if o, ok := oldObj.(*v1.Node); ok && o.Spec.Unschedulable {
			return fwk.QueueSkip, nil
		}
	}
	return fwk.Queue, nil
}
