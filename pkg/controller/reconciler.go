package controller

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	"github.com/lockstep-sched/lockstep/pkg/podgroup"
)

// eventAction is the action of the Events the controller records
// (events.k8s.io/v1 requires one).
const eventAction = "UpdateStatus"

// reconciler writes a PodGroup's status from its member pods.
type reconciler struct {
	client   client.Client
	recorder events.EventRecorder
	// now is the clock for scheduleStartTime; a field so tests can fix it.
	now func() metav1.Time
	// evict posts an eviction; through client when nil.
	evict func(context.Context, *corev1.Pod, *policyv1.Eviction) error
	// timeout is the scheduler's default gang timeout, and grace how long
	// past a gang's timeout it may stay partially bound (Options).
	timeout, grace time.Duration
	// rejected are the members whose rejection by kubelet was reported.
	rejected rejections
	// save writes a PodGroup's annotations; client.Update when nil. A
	// Kubernetes PodGroup is seen as a translated copy, written by patch.
	save func(context.Context, *v1alpha1.PodGroup) error
}

// Reconcile brings the status of one PodGroup in line with its members.
func (r *reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	logger := log.FromContext(ctx)

	var pg v1alpha1.PodGroup
	if err := r.client.Get(ctx, req.NamespacedName, &pg); err != nil {
		if apierrors.IsNotFound(err) {
			// Deleted, or a pod names a PodGroup that does not exist.
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, fmt.Errorf("get PodGroup %s: %w", req.NamespacedName, err)
	}
	if pg.DeletionTimestamp != nil {
		return reconcile.Result{}, nil
	}

	var pods corev1.PodList
	if err := r.client.List(ctx, &pods,
		client.InNamespace(pg.Namespace),
		client.MatchingLabels{podgroup.Label: pg.Name},
	); err != nil {
		return reconcile.Result{}, fmt.Errorf("list members of PodGroup %s: %w", req.NamespacedName, err)
	}

	r.reportRejections(ctx, &pg, pods.Items)
	status := computeStatus(&pg, pods.Items, r.now())
	t := countMembers(&pg, pods.Items)
	oldPhase := pg.Status.Phase
	recheck, err := r.checkQuorum(ctx, &pg, pods.Items, t, oldPhase, status.Phase)
	if err != nil {
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			logger.V(1).Info("PodGroup changed while reconciling, retrying on its update", "err", err)
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, err
	}

	if !apiequality.Semantic.DeepEqual(pg.Status, status) {
		pg.Status = status
		if err := r.client.Status().Update(ctx, &pg); err != nil {
			if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
				// The cache is behind: the newer object's watch event queues
				// this PodGroup again (or it is gone).
				logger.V(1).Info("PodGroup changed while reconciling, retrying on its update", "err", err)
				return reconcile.Result{}, nil
			}
			return reconcile.Result{}, fmt.Errorf("update status of PodGroup %s: %w", req.NamespacedName, err)
		}
		logger.V(2).Info("Updated PodGroup status", "phase", status.Phase,
			"running", status.Running, "succeeded", status.Succeeded, "failed", status.Failed)
		r.phaseEvent(ctx, &pg, t, oldPhase, status.Phase)
	}
	res, err := r.continueEvictions(ctx, &pg, pods.Items)
	if recheck > 0 && (res.RequeueAfter == 0 || recheck < res.RequeueAfter) {
		res.RequeueAfter = recheck
	}
	return res, err
}

// phaseEvent records a phase change; a new PodGroup going from no phase to
// Pending is not news.
func (r *reconciler) phaseEvent(ctx context.Context, pg *v1alpha1.PodGroup, t tally, oldPhase, phase v1alpha1.PodGroupPhase) {
	if phase == oldPhase || (oldPhase == "" && phase == v1alpha1.PodGroupPending) {
		return
	}
	msg := describe(phase, t, podgroup.MinMember(pg))
	eventType := corev1.EventTypeNormal
	// An interface, not a *Pod, so that "no related object" is a true nil.
	var related runtime.Object
	if phase == v1alpha1.PodGroupFailed {
		eventType = corev1.EventTypeWarning
		if t.firstFailed != nil {
			related = t.firstFailed
		}
	}
	r.recorder.Eventf(pg, related, eventType, string(phase), eventAction, "%s", msg)
	log.FromContext(ctx).Info("PodGroup phase changed", "from", oldPhase, "to", phase, "reason", msg)
}

// checkQuorum handles a gang that lost its quorum after it had started, or
// that has stayed partially bound past its timeout (a member's binding
// keeps failing, or the rest could not be placed after a restart): it marks
// it incomplete, says so, and in disruption mode All lists its members to
// evict. A gang whole again loses the mark. recheck is when a partially
// bound gang's time runs out.
func (r *reconciler) checkQuorum(ctx context.Context, pg *v1alpha1.PodGroup, pods []corev1.Pod, t tally, oldPhase, phase v1alpha1.PodGroupPhase) (recheck time.Duration, err error) {
	cause := ""
	switch {
	case quorumLost(oldPhase, phase):
		cause = fmt.Sprintf("%d of %d members left", t.scheduled, podgroup.MinMember(pg))
		if t.firstFailed != nil {
			cause += fmt.Sprintf(" (member %s failed)", t.firstFailed.Name)
		}
	case phase == v1alpha1.PodGroupScheduling && pg.Annotations[podgroup.AnnotationIncomplete] == "":
		since, ok := partialSince(pg, pods)
		if !ok {
			return 0, nil
		}
		timeout, _ := podgroup.Timeout(pg, r.timeout)
		left := since.Add(timeout + r.grace).Sub(r.now().Time)
		if left > 0 {
			return left, nil
		}
		cause = fmt.Sprintf("%d of %d members bound since %s, past the gang's timeout of %s",
			t.scheduled, podgroup.MinMember(pg), since.UTC().Format(time.RFC3339), timeout)
	case started(phase) || phase == v1alpha1.PodGroupFinished:
		cleared, err := r.clearIncomplete(ctx, pg)
		if err != nil {
			return 0, err
		}
		if cleared {
			r.recorder.Eventf(pg, nil, corev1.EventTypeNormal, "GangWhole", eventAction, "%d/%d members scheduled: the gang has its quorum again", t.scheduled, podgroup.MinMember(pg))
		}
		return 0, nil
	default:
		return 0, nil
	}
	mode, modeErr := podgroup.DisruptionModeOf(pg)
	if modeErr != nil {
		r.recorder.Eventf(pg, nil, corev1.EventTypeWarning, "InvalidDisruptionMode", eventAction, "%s", modeErr.Error())
	}
	d := disrupt(pg, pods, cause, mode)
	if err := r.markDisrupted(ctx, pg, d); err != nil {
		return 0, err
	}
	r.recorder.Eventf(pg, nil, corev1.EventTypeWarning, "GangDisrupted", eventAction, "%s", d.why)
	log.FromContext(ctx).Info("Gang incomplete", "mode", mode, "evicting", len(d.evict), "why", d.why)
	return 0, nil
}

// continueEvictions evicts the members a disruption listed, and comes back
// for those a PodDisruptionBudget or the apiserver refused.
func (r *reconciler) continueEvictions(ctx context.Context, pg *v1alpha1.PodGroup, pods []corev1.Pod) (reconcile.Result, error) {
	left, err := r.evictPending(ctx, pg, pods)
	if left == 0 && err == nil {
		return reconcile.Result{}, nil
	}
	if apierrors.IsConflict(err) {
		return reconcile.Result{}, nil
	}
	msg := fmt.Sprintf("%d members of the disrupted gang are not evicted yet; retrying in %s", left, evictionRetry)
	if err != nil {
		msg += ": " + err.Error()
	}
	r.recorder.Eventf(pg, nil, corev1.EventTypeWarning, "EvictionBlocked", eventAction, "%s", msg)
	return reconcile.Result{RequeueAfter: evictionRetry}, nil
}

// setupWithManager registers the reconciler: PodGroups themselves, and pods
// that name a PodGroup, mapped to that PodGroup.
func (r *reconciler) setupWithManager(mgr ctrl.Manager) error {
	err := ctrl.NewControllerManagedBy(mgr).
		Named("podgroup-status").
		// One gang's slow API calls (evictions) must not hold up the others;
		// a PodGroup is never reconciled twice at once.
		WithOptions(controller.Options{MaxConcurrentReconciles: 4}).
		For(&v1alpha1.PodGroup{}).
		Watches(&corev1.Pod{},
			handler.EnqueueRequestsFromMapFunc(podToGroup),
			builder.WithPredicates(memberChanged())).
		Complete(r)
	if err != nil {
		return fmt.Errorf("set up PodGroup status controller: %w", err)
	}
	return nil
}

// podToGroup maps a pod to the PodGroup it names, if any.
func podToGroup(_ context.Context, obj client.Object) []reconcile.Request {
	name := obj.GetLabels()[podgroup.Label]
	if name == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: obj.GetNamespace(), Name: name}}}
}

// memberChanged passes pod events that can change a gang's status: members
// appearing or going, and updates to what computeStatus reads (gang label,
// node, phase). Pods update their status often for other reasons
// (conditions, container states); those are dropped here.
func memberChanged() predicate.Predicate {
	named := func(obj client.Object) bool { return obj.GetLabels()[podgroup.Label] != "" }
	return predicate.Funcs{
		CreateFunc:  func(e event.CreateEvent) bool { return named(e.Object) },
		DeleteFunc:  func(e event.DeleteEvent) bool { return named(e.Object) },
		GenericFunc: func(e event.GenericEvent) bool { return named(e.Object) },
		UpdateFunc: func(e event.UpdateEvent) bool {
			if !named(e.ObjectOld) && !named(e.ObjectNew) {
				return false
			}
			oldPod, ok1 := e.ObjectOld.(*corev1.Pod)
			newPod, ok2 := e.ObjectNew.(*corev1.Pod)
			if !ok1 || !ok2 {
				return true
			}
			return podgroup.NameOf(oldPod) != podgroup.NameOf(newPod) ||
				oldPod.Spec.NodeName != newPod.Spec.NodeName ||
				oldPod.Status.Phase != newPod.Status.Phase
		},
	}
}
