package gang

import (
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"

	"github.com/lockstep-sched/lockstep/apis/config"
	"github.com/lockstep-sched/lockstep/pkg/podgroup"
)

// scheduledReason and bindingAction are how kube-scheduler records a pod's
// successful binding (schedule_one.go).
const (
	scheduledReason = "Scheduled"
	bindingAction   = "Binding"
)

// Recorders wraps the scheduler's Event recorder factory (one recorder per
// profile) so that, in profiles whose ScheduledEvents is PodGroup, a gang
// member's Scheduled Event is not recorded: the gang's Placed Event on its
// PodGroup names every member's node instead. An Event is an API write: per
// member it would nearly double what a gang costs the apiserver, and
// compete with the gang's own bindings. Every other Event passes through.
func (f *Factory) Recorders(next func(profile string) events.EventRecorderLogger) func(profile string) events.EventRecorderLogger {
	return func(profile string) events.EventRecorderLogger {
		return &memberEventFilter{next: next(profile), profile: profile, f: f}
	}
}

type memberEventFilter struct {
	next    events.EventRecorderLogger
	profile string
	f       *Factory
}

func (r *memberEventFilter) Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any) {
	if reason == scheduledReason && action == bindingAction && r.perGang(regarding) {
		return
	}
	r.next.Eventf(regarding, related, eventtype, reason, action, note, args...)
}

func (r *memberEventFilter) WithLogger(logger klog.Logger) events.EventRecorderLogger {
	return &memberEventFilter{next: r.next.WithLogger(logger), profile: r.profile, f: r.f}
}

// perGang reports whether obj is a gang member whose placement its
// PodGroup's Placed Event reported. Members placed one by one after their
// gang started were in no Placed Event, and keep their own.
func (r *memberEventFilter) perGang(obj runtime.Object) bool {
	if setting, ok := r.f.scheduledEvents.Load(r.profile); !ok || setting.(config.ScheduledEvents) != config.ScheduledEventsPodGroup {
		return false
	}
	pod, ok := obj.(*v1.Pod)
	return ok && podgroup.KeyOf(pod) != "" && r.f.placed.take(pod.UID)
}

// placedMembers are the members named in a Placed Event whose Scheduled
// Event has not come yet.
type placedMembers struct {
	mu   sync.Mutex
	uids map[types.UID]struct{}
}

func (p *placedMembers) add(uids []types.UID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.uids == nil {
		p.uids = map[types.UID]struct{}{}
	}
	for _, uid := range uids {
		p.uids[uid] = struct{}{}
	}
}

// take reports whether uid was placed, and forgets it.
func (p *placedMembers) take(uid types.UID) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.uids[uid]
	delete(p.uids, uid)
	return ok
}
