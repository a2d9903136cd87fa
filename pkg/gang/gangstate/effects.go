package gangstate

import (
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
)

// Effects is what a transition decided to do outside the cache: the caller
// carries it out after the cache's lock is released, so that no API call,
// Event or call into the framework (which may call back into the plugin)
// runs under the lock.
type Effects struct {
	// Allow lists members waiting at Permit to let go to binding.
	Allow []types.UID
	// Reject lists members waiting at Permit to send back to the queue.
	Reject []Rejection
	// Activate holds pods to move to the active queue, by namespace/name.
	Activate map[string]*v1.Pod
	// Events to record, on PodGroups or pods.
	Events []Event
	// Placed describes a gang released to binding, for metrics.
	Placed *Placement
	// Evict lists the victims of a gang's preemption.
	Evict []Eviction
	// Attempt is a planning attempt made, for metrics.
	Attempt *Attempt
	// Started is a gang whose quorum was just seen bound, for metrics.
	Started *Started
}

// Attempt is one attempt at placing a whole gang.
type Attempt struct {
	// Profile is the scheduler profile of the member whose cycle planned.
	Profile string
	// Result is "scheduled" (a plan), "unschedulable", "waiting_on_preemption"
	// (it evicted victims) or "error", as kube-scheduler's pod-group metrics
	// say.
	Result   string
	Duration time.Duration
}

// The results of an Attempt: the values kube-scheduler's
// scheduler_podgroup_schedule_attempts_total uses.
const (
	ResultScheduled           = "scheduled"
	ResultUnschedulable       = "unschedulable"
	ResultWaitingOnPreemption = "waiting_on_preemption"
	ResultError               = "error"
)

// Started measures a gang whose minMember-th member was seen bound.
type Started struct {
	Profile string
	// Latency is from the PodGroup's creation; Skew from its first
	// member's bind.
	Latency, Skew time.Duration
}

// Rejection is a waiting member to reject and why.
type Rejection struct {
	UID     types.UID
	Message string
}

// Event is an Event to record on a PodGroup (PodGroup set) or a pod (Pod
// set).
type Event struct {
	PodGroup *v1alpha1.PodGroup
	Pod      *v1.Pod
	Type     string
	Reason   string
	Message  string
}

// Placement is where a released gang went.
type Placement struct {
	Nodes    sets.Set[string]
	MilliCPU int64
	// NodeMilliCPU is the largest allocatable CPU of the nodes planned,
	// taken from the scheduling cycle's snapshot: only the cycle may read
	// it, and effects are applied from informer handlers and timers too.
	NodeMilliCPU int64
	// Members are the members the Placed Event names.
	Members []types.UID
}

// Empty reports whether there is nothing to do.
func (e *Effects) Empty() bool {
	return len(e.Allow) == 0 && len(e.Reject) == 0 && len(e.Activate) == 0 && len(e.Events) == 0 && e.Placed == nil &&
		len(e.Evict) == 0 && e.Attempt == nil && e.Started == nil
}

func (e *Effects) activate(pod *v1.Pod) {
	if e.Activate == nil {
		e.Activate = map[string]*v1.Pod{}
	}
	e.Activate[pod.Namespace+"/"+pod.Name] = pod
}

func (e *Effects) reject(uid types.UID, msg string) {
	e.Reject = append(e.Reject, Rejection{UID: uid, Message: msg})
}

func (e *Effects) onPodGroup(pg *v1alpha1.PodGroup, eventType, reason, msg string) {
	if pg != nil {
		e.Events = append(e.Events, Event{PodGroup: pg, Type: eventType, Reason: reason, Message: msg})
	}
}
