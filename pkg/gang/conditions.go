package gang

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	schedulingv1beta1 "k8s.io/api/scheduling/v1beta1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
	pgclientset "sigs.k8s.io/scheduler-plugins/pkg/generated/clientset/versioned"

	"github.com/lockstep-sched/lockstep/pkg/podgroup"
)

// conditionOf maps what the gang core said of an upstream PodGroup to its
// PodGroupInitiallyScheduled condition, as kube-scheduler keeps it: true
// once the quorum is placed, false with the reason while the gang cannot
// be placed. ok is false for what says neither.
func conditionOf(reason string) (status metav1.ConditionStatus, condReason string, ok bool) {
	switch reason {
	case "Placed":
		return metav1.ConditionTrue, "Scheduled", true
	case "WaitingForRoom", "Unschedulable", "WaitingForMembers", "WaitingForNodeAgent", "PlanExpired", "ReservationTimedOut":
		return metav1.ConditionFalse, schedulingv1beta1.PodGroupReasonUnschedulable, true
	case "InvalidTopology":
		return metav1.ConditionFalse, schedulingv1beta1.PodGroupReasonSchedulerError, true
	}
	return "", "", false
}

// conditionRepeat is how often a false condition's message is rewritten
// when only the message changed ("3/8 members exist", then "4/8"): every
// attempt of every member would otherwise patch the PodGroup. The newest
// message is written when the interval ends.
const conditionRepeat = 5 * time.Second

// conditions writes the PodGroupInitiallyScheduled condition of upstream
// PodGroups from a queue, one write per change, never from the scheduling
// cycle: it keeps the newest condition wanted per PodGroup.
type conditions struct {
	client  kubernetes.Interface
	groups  *groups
	clock   clock.WithDelayedExecution
	standby *atomic.Bool
	queue   workqueue.TypedRateLimitingInterface[string]

	mu   sync.Mutex
	want map[string]wanted
	// wrote is when each PodGroup's condition was last written.
	wrote map[string]time.Time
	// scheduled are the PodGroups, by UID, whose condition was made true:
	// it stays so, whatever the informer still shows.
	scheduled map[string]types.UID

	// For scheduler-plugins PodGroups, which have no conditions, the same
	// news goes into the lockstep.io/waiting annotation (waiting.go).
	pgClient pgclientset.Interface
	waiting  map[string]wantedWaiting
	// waitSince is when each gang began to wait, until it is placed.
	waitSince map[string]time.Time
}

type wanted struct {
	namespace, name string
	uid             types.UID
	generation      int64
	cond            metav1.Condition
}

func newConditions(client kubernetes.Interface, pgClient pgclientset.Interface, g *groups, c clock.WithDelayedExecution, standby *atomic.Bool) *conditions {
	return &conditions{
		client: client, pgClient: pgClient, groups: g, clock: c, standby: standby,
		waiting: map[string]wantedWaiting{}, waitSince: map[string]time.Time{},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "lockstep-podgroup-conditions"}),
		want:      map[string]wanted{},
		wrote:     map[string]time.Time{},
		scheduled: map[string]types.UID{},
	}
}

// note records what the gang core said of a PodGroup; only upstream
// PodGroups, and only reasons that say whether it is scheduled, matter.
func (w *conditions) note(pg *v1alpha1.PodGroup, reason, msg string) {
	if w == nil || w.standby.Load() {
		return
	}
	if !podgroup.IsUpstream(pg) {
		w.noteWaiting(pg, reason, msg)
		return
	}
	status, condReason, ok := conditionOf(reason)
	if !ok {
		return
	}
	key := podgroup.KeyOfGroup(pg)
	w.mu.Lock()
	if prev, ok := w.want[key]; ok && prev.uid == pg.UID && prev.cond.Status == metav1.ConditionTrue || w.scheduled[key] == pg.UID {
		// True is terminal: a gang that fell below its quorum later does
		// not make it false, nor may a later attempt hide it.
		w.mu.Unlock()
		return
	}
	w.want[key] = wanted{namespace: pg.Namespace, name: pg.Name, uid: pg.UID, generation: pg.Generation,
		cond: metav1.Condition{Type: schedulingv1beta1.PodGroupInitiallyScheduled, Status: status, Reason: condReason, Message: msg}}
	w.mu.Unlock()
	w.queue.Add(key)
}

// run writes conditions until ctx ends.
func (w *conditions) run(ctx context.Context) {
	go func() {
		<-ctx.Done()
		w.queue.ShutDown()
	}()
	for {
		key, quit := w.queue.Get()
		if quit {
			return
		}
		write := w.write
		if w.isWaitingKey(key) {
			write = w.writeWaiting
		}
		err := write(ctx, key)
		switch {
		case err == nil:
			w.queue.Forget(key)
		case ctx.Err() == nil:
			klog.FromContext(ctx).V(2).Info("Retrying the PodGroup condition", "podGroup", key, "err", err)
			w.queue.AddRateLimited(key)
		}
		w.queue.Done(key)
	}
}

// write patches one PodGroup's condition when it differs from what the
// object shows. Once true it stays true: the API makes it terminal.
func (w *conditions) write(ctx context.Context, key string) error {
	w.mu.Lock()
	want, ok := w.want[key]
	delete(w.want, key)
	last := w.wrote[key]
	if ok && w.scheduled[key] == want.uid && want.cond.Status != metav1.ConditionTrue {
		ok = false // true already, or on its way: it stays true
	}
	if ok && want.cond.Status == metav1.ConditionTrue {
		// Marked before the patch, so that a false noted meanwhile is
		// dropped; a failed patch is retried from want.
		w.scheduled[key] = want.uid
	}
	w.mu.Unlock()
	if !ok || w.standby.Load() {
		return nil
	}
	cur, uid, found := w.groups.condition(key)
	if !found || uid != want.uid {
		return nil // gone, or replaced by a PodGroup of the same name
	}
	now := w.clock.Now()
	c := want.cond
	if cur != nil {
		if cur.Status == metav1.ConditionTrue {
			return nil
		}
		if cur.Status == c.Status && cur.Reason == c.Reason {
			if cur.Message == c.Message {
				return nil
			}
			if wait := conditionRepeat - now.Sub(last); wait > 0 {
				w.keep(key, want)
				w.after(key, wait)
				return nil
			}
		}
	}
	c.ObservedGeneration = want.generation
	c.LastTransitionTime = metav1.NewTime(now)
	if cur != nil && cur.Status == c.Status {
		c.LastTransitionTime = cur.LastTransitionTime
	}
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"uid": want.uid},
		"status":   map[string]any{"conditions": []metav1.Condition{c}},
	})
	if err != nil {
		return fmt.Errorf("encoding the condition: %w", err)
	}
	_, err = w.client.SchedulingV1beta1().PodGroups(want.namespace).Patch(ctx, want.name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) || apierrors.IsInvalid(err) {
		// Deleted, or replaced: a new object's uid differs, and the
		// apiserver refuses the patch as changing an immutable field.
		return nil
	}
	if err != nil {
		w.keep(key, want)
		return fmt.Errorf("patching PodGroup %s/%s status: %w", want.namespace, want.name, err)
	}
	w.mu.Lock()
	w.wrote[key] = now
	w.mu.Unlock()
	return nil
}

// preempted sets an upstream PodGroup's DisruptionTarget condition, True
// with reason PreemptionByScheduler, as kube-scheduler does for the
// PodGroups its preemption takes: the gang is about to be evicted whole.
// It is written directly, once per preemption, by the goroutine that
// evicts.
func (w *conditions) preempted(ctx context.Context, pg *v1alpha1.PodGroup, msg string) error {
	if w == nil || !podgroup.IsUpstream(pg) || w.standby.Load() {
		return nil
	}
	c := metav1.Condition{Type: schedulingv1beta1.DisruptionTarget, Status: metav1.ConditionTrue,
		Reason: schedulingv1beta1.PodGroupReasonPreemptionByScheduler, Message: msg,
		ObservedGeneration: pg.Generation, LastTransitionTime: metav1.NewTime(w.clock.Now())}
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"uid": pg.UID},
		"status":   map[string]any{"conditions": []metav1.Condition{c}},
	})
	if err != nil {
		return fmt.Errorf("encoding the condition: %w", err)
	}
	_, err = w.client.SchedulingV1beta1().PodGroups(pg.Namespace).Patch(ctx, pg.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsInvalid(err) {
		return fmt.Errorf("patching PodGroup %s/%s status: %w", pg.Namespace, pg.Name, err)
	}
	return nil
}

// after queues key again once wait has passed on the writer's clock (a
// test's fake one too), not the queue's.
func (w *conditions) after(key string, wait time.Duration) {
	// A fake clock runs timer callbacks holding its own lock.
	w.clock.AfterFunc(wait, func() { go w.queue.Add(key) })
}

// keep puts back a condition held back, unless a newer one came meanwhile.
func (w *conditions) keep(key string, want wanted) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, newer := w.want[key]; !newer {
		w.want[key] = want
	}
}

// forget drops what is kept of a deleted PodGroup.
func (w *conditions) forget(key string) {
	if w == nil {
		return
	}
	w.mu.Lock()
	delete(w.want, key)
	delete(w.wrote, key)
	delete(w.scheduled, key)
	delete(w.waiting, key)
	delete(w.waitSince, key)
	w.mu.Unlock()
}
