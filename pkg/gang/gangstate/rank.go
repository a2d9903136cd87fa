package gangstate

import (
	"time"

	v1 "k8s.io/api/core/v1"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
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
