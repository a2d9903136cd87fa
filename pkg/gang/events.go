package gang

import (
	"sync"
	"sync/atomic"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"

	"github.com/lockstep-sched/lockstep/pkg/podgroup"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
)

// eventRepeat is how often the same message is repeated for the same
// object: every scheduling attempt of every member would otherwise emit one.
const eventRepeat = 30 * time.Second

// progressRepeat is how often a progress Event whose message changes with
// every arrival ("3/8 members exist") is recorded for the same object: a
// gang's members arriving together would otherwise write one Event each.
// The last message of a burst is recorded when the interval ends, so the
// newest count is always on display.
const progressRepeat = 5 * time.Second

// progressDelay is how long a progress Event waits before its first
// recording: the members of a gang created together arrive within it, and
// a gang that waits for nothing by then gets no Event at all (settle).
const progressDelay = 2 * time.Second

// eventer records Events on PodGroups and pods, dropping repeats of the same
// message within eventRepeat. It records core/v1 Events: the events.k8s.io
// recorder folds Events of the same subject and reason into a series that
// keeps its first note, which would leave "1/8 members exist" on display
// after the eighth member arrived.
type eventer struct {
	recorder record.EventRecorder
	clock    clock.WithDelayedExecution
	// standby, while set, drops every Event: a replica that does not lead
	// sees the same pods and PodGroups as the leader, and must write
	// nothing.
	standby *atomic.Bool

	mu   sync.Mutex
	last map[string]sent
	// pending holds, per key, the newest progress Event held back by
	// progressRepeat, recorded when the interval ends.
	pending map[string]heldEvent
}

type heldEvent struct {
	msg    string
	record func()
}

type sent struct {
	msg string
	at  time.Time
}

func newEventer(r record.EventRecorder, c clock.WithDelayedExecution, standby *atomic.Bool) *eventer {
	if standby == nil {
		standby = &atomic.Bool{}
	}
	return &eventer{recorder: r, clock: c, standby: standby, last: map[string]sent{}, pending: map[string]heldEvent{}}
}

// off reports whether Events are not recorded: none to record them with,
// or a replica that does not lead.
func (e *eventer) off() bool {
	return e.recorder == nil || e.standby.Load()
}

func (e *eventer) fresh(key, msg string) bool {
	return e.freshEvery(key, msg, 0)
}

// freshEvery is fresh, and also false for any message within every of the
// last one recorded under key.
func (e *eventer) freshEvery(key, msg string, every time.Duration) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.clock.Now()
	if s, ok := e.last[key]; ok && (s.msg == msg && now.Sub(s.at) < eventRepeat || now.Sub(s.at) < every) {
		return false
	}
	if len(e.last) > 10000 {
		// Bounded memory: forget everything rather than grow without end.
		e.last = map[string]sent{}
	}
	e.last[key] = sent{msg: msg, at: now}
	return true
}

// podGroupObj records an Event on a PodGroup.
func (e *eventer) podGroupObj(pg *v1alpha1.PodGroup, eventType, reason, msg string) {
	if e.off() || !e.fresh("pg/"+podgroup.KeyOfGroup(pg)+"/"+reason, msg) {
		return
	}
	e.recorder.Event(podgroup.Reference(pg), eventType, reason, msg)
}

// podGroupProgress records a progress Event on a PodGroup at most every
// progressRepeat, whatever its message.
func (e *eventer) podGroupProgress(pg *v1alpha1.PodGroup, eventType, reason, msg string) {
	if e.off() {
		return
	}
	key := progressKey(pg, reason)
	record := func() { e.recorder.Event(podgroup.Reference(pg), eventType, reason, msg) }
	if e.seen(key) && e.freshEvery(key, msg, progressRepeat) {
		record()
		return
	}
	e.holdBack(key, msg, record)
}

func progressKey(pg *v1alpha1.PodGroup, reason string) string {
	return "pg/" + podgroup.KeyOfGroup(pg) + "/" + reason
}

// seen reports whether an Event was recorded under key.
func (e *eventer) seen(key string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.last[key]
	return ok
}

// settle drops the progress Event held back for a PodGroup: what it
// reported no longer holds (the members it waited for exist).
func (e *eventer) settle(pg *v1alpha1.PodGroup, reason string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.pending, progressKey(pg, reason))
}

// holdBack keeps the newest progress Event under key and records it when
// progressRepeat has passed since the last one (progressDelay after the
// first), unless it was recorded already or settled meanwhile.
func (e *eventer) holdBack(key, msg string, record func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	last, recorded := e.last[key]
	if recorded && last.msg == msg {
		return
	}
	_, armed := e.pending[key]
	e.pending[key] = heldEvent{msg: msg, record: record}
	if armed {
		return
	}
	wait := progressDelay
	if recorded {
		wait = progressRepeat - e.clock.Since(last.at)
	}
	// A fake clock runs timer callbacks holding its own lock.
	e.clock.AfterFunc(wait, func() { go e.flush(key) })
}

// flush records the Event held back under key.
func (e *eventer) flush(key string) {
	e.mu.Lock()
	held, ok := e.pending[key]
	delete(e.pending, key)
	if ok {
		e.last[key] = sent{msg: held.msg, at: e.clock.Now()}
	}
	e.mu.Unlock()
	if ok {
		held.record()
	}
}

// pod records an Event on a pod.
func (e *eventer) pod(pod *v1.Pod, eventType, reason, msg string) {
	if e.off() || !e.fresh("pod/"+string(pod.UID)+"/"+reason, msg) {
		return
	}
	e.recorder.Event(pod, eventType, reason, msg)
}
