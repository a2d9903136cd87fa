package gang

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	"github.com/lockstep-sched/lockstep/pkg/podgroup"
)

// Why is my gang pending, at a glance: a scheduler-plugins PodGroup has no
// conditions, so what keeps a gang from starting goes into its
// lockstep.io/waiting annotation ("WaitingForRoom: gang does not fit
// yet: ..."), which the shipped CRD shows as the Waiting column of
// kubectl get podgroups. It is written from the same queue as the upstream
// PodGroups' condition, never from the scheduling cycle:
//   - only for a gang still waiting waitingDelay after it began to: a gang
//     whose members arrive together and fit costs no write at all;
//   - a changed message at most every conditionRepeat;
//   - removed when the gang is placed.

// waitingDelay is how long a gang waits before it says why.
const waitingDelay = progressDelay

// waitingMax bounds the annotation: it is a column of kubectl get.
const waitingMax = 160

// waitingReasons are the reasons of the gang core's Events that say why a
// gang waits.
var waitingReasons = map[string]bool{
	"WaitingForMembers": true, "WaitingForRoom": true, "Unschedulable": true, "WaitingForNodeAgent": true,
	"PlanExpired": true, "ReservationTimedOut": true, "InvalidTopology": true, "Reserving": true,
	"Preempting": true, "PreemptionBlocked": true,
}

type wantedWaiting struct {
	namespace, name string
	uid             types.UID
	// value is the annotation wanted, "" for none.
	value string
}

// waitingKeyPrefix keeps the annotation's keys apart from the
// conditions' in the one queue.
const waitingKeyPrefix = "waiting:"

func (w *conditions) isWaitingKey(key string) bool { return strings.HasPrefix(key, waitingKeyPrefix) }

// noteWaiting records what the gang core said of a scheduler-plugins
// PodGroup, when it says why the gang waits or that it was placed.
func (w *conditions) noteWaiting(pg *v1alpha1.PodGroup, reason, msg string) {
	if w.pgClient == nil {
		return
	}
	value := ""
	switch {
	case waitingReasons[reason]:
		value = waitingValue(reason, msg)
	case reason != "Placed":
		return
	}
	key := waitingKeyPrefix + podgroup.KeyOfGroup(pg)
	w.mu.Lock()
	if value == "" {
		delete(w.waitSince, key)
	} else if _, ok := w.waitSince[key]; !ok {
		w.waitSince[key] = w.clock.Now()
	}
	w.waiting[key] = wantedWaiting{namespace: pg.Namespace, name: pg.Name, uid: pg.UID, value: value}
	w.mu.Unlock()
	w.queue.Add(key)
}

// waitingValue is the annotation for an Event: its reason and message,
// cut to waitingMax.
func waitingValue(reason, msg string) string {
	v := reason + ": " + msg
	if len(v) > waitingMax {
		v = v[:waitingMax-3] + "..."
	}
	return v
}

// writeWaiting patches one PodGroup's annotation when it differs from
// what the object shows.
func (w *conditions) writeWaiting(ctx context.Context, key string) error {
	w.mu.Lock()
	want, ok := w.waiting[key]
	delete(w.waiting, key)
	last, since := w.wrote[key], w.waitSince[key]
	w.mu.Unlock()
	if !ok || w.standby.Load() {
		return nil
	}
	pg, err := w.groups.legacy.PodGroups(want.namespace).Get(want.name)
	if err != nil || pg.UID != want.uid {
		return nil // gone, or replaced by a PodGroup of the same name
	}
	cur := pg.Annotations[podgroup.AnnotationWaiting]
	if cur == want.value {
		return nil
	}
	now := w.clock.Now()
	var wait time.Duration
	switch {
	case want.value != "" && cur == "":
		wait = waitingDelay - now.Sub(since)
	case want.value != "":
		wait = conditionRepeat - now.Sub(last)
	}
	if wait > 0 {
		w.keepWaiting(key, want)
		w.after(key, wait)
		return nil
	}
	var value any // null removes the annotation
	if want.value != "" {
		value = want.value
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"uid":         want.uid,
		"annotations": map[string]any{podgroup.AnnotationWaiting: value},
	}})
	if err != nil {
		return fmt.Errorf("encoding the annotation: %w", err)
	}
	_, err = w.pgClient.SchedulingV1alpha1().PodGroups(want.namespace).Patch(ctx, want.name, types.MergePatchType, patch, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) || apierrors.IsInvalid(err) {
		return nil
	}
	if err != nil {
		w.keepWaiting(key, want)
		return fmt.Errorf("patching PodGroup %s/%s: %w", want.namespace, want.name, err)
	}
	w.mu.Lock()
	w.wrote[key] = now
	w.mu.Unlock()
	return nil
}

// keepWaiting puts back an annotation held back, unless a newer one came
// meanwhile.
func (w *conditions) keepWaiting(key string, want wantedWaiting) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, newer := w.waiting[key]; !newer {
		w.waiting[key] = want
	}
}
