package gang

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/util"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

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
		// The PodGroup appearing, its minMember changing, or it going away
		// (its pods then wait, saying so).
		{Event: fwk.ClusterEvent{Resource: fwk.EventResource(podgroup.EventResource), ActionType: fwk.Add | fwk.Update | fwk.Delete}, QueueingHintFn: pl.podGroupChanged},
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

func (pl *Gang) podGroupChanged(logger klog.Logger, pod *v1.Pod, oldObj, newObj any) (fwk.QueueingHint, error) {
	obj := newObj
	if obj == nil {
		obj = oldObj
	}
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	pg, err := toPodGroup(obj)
	if err != nil {
		return fwk.Queue, err
	}
	if podgroup.KeyOf(pod) != podgroup.Key(pg.Namespace, pg.Name) {
		return fwk.QueueSkip, nil
	}
	if oldObj != nil && newObj != nil {
		if old, err := toPodGroup(oldObj); err == nil && old.Spec.MinMember < pg.Spec.MinMember {
			// A larger quorum never makes a waiting gang schedulable.
			return fwk.QueueSkip, nil
		}
	}
	return fwk.Queue, nil
}

// toPodGroup accepts both the typed object and the unstructured one the
// scheduler's dynamic informer delivers.
func toPodGroup(obj any) (*v1alpha1.PodGroup, error) {
	switch o := obj.(type) {
	case *v1alpha1.PodGroup:
		return o, nil
	case *unstructured.Unstructured:
		pg := &v1alpha1.PodGroup{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, pg); err != nil {
			return nil, err
		}
		return pg, nil
	default:
		return nil, fmt.Errorf("unexpected object of type %T", obj)
	}
}
