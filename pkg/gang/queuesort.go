package gang

import (
	"time"

	v1 "k8s.io/api/core/v1"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/lockstep-sched/lockstep/pkg/podgroup"
)

// queueKey orders pods in the queue: higher priority first, then older,
// then by key.
type queueKey struct {
	priority int32
	created  time.Time
	key      string
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
	ra, rb := pl.queueKey(pa, a), pl.queueKey(pb, b)
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

func (pl *Gang) queueKey(pod *v1.Pod, e fwk.QueuedEntityInfo) queueKey {
	if key := podgroup.KeyOf(pod); key != "" {
		r := queueKey{priority: e.GetPriority(), created: pod.CreationTimestamp.Time, key: key}
		if pg, err := pl.s.groups.of(pod); err == nil && pg != nil {
			r.created = pg.CreationTimestamp.Time
			if p, ok := podgroup.GroupPriority(pg); ok {
				r.priority = p
			}
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
	return queueKey{priority: e.GetPriority(), created: created, key: pod.Namespace + "/" + pod.Name}
}
