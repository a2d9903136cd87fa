package gangstate

import (
	"time"

	v1 "k8s.io/api/core/v1"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	"github.com/lockstep-sched/lockstep/pkg/podgroup"
)

// rank orders gangs and pods in the queue: higher priority first, then older,
// then by key so that equal ranks still have one order. A gang's age is its
// PodGroup's; an ordinary pod's is its own.
type rank struct {
	priority int32
	created  time.Time
	key      string
}

// before reports whether r is served before o.
func (r rank) before(o rank) bool {
	if r.priority != o.priority {
		return r.priority > o.priority
	}
	if !r.created.Equal(o.created) {
		return r.created.Before(o.created)
	}
	return r.key < o.key
}

func podRank(pod *v1.Pod) rank {
	return rank{priority: corev1helpers.PodPriority(pod), created: pod.CreationTimestamp.Time, key: pod.Namespace + "/" + pod.Name}
}

// gangPriority is a gang's priority: its upstream PodGroup's when that
// sets one, else its member's.
func gangPriority(pod *v1.Pod, pg *v1alpha1.PodGroup) int32 {
	if p, ok := podgroup.GroupPriority(pg); ok {
		return p
	}
	return corev1helpers.PodPriority(pod)
}
