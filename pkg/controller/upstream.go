package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	schedulingv1beta1 "k8s.io/api/scheduling/v1beta1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	"github.com/lockstep-sched/lockstep/pkg/apidiscovery"
	"github.com/lockstep-sched/lockstep/pkg/podgroup"
)

// Kubernetes' own PodGroups (scheduling.k8s.io/v1beta1) get the same
// disruption handling as scheduler-plugins' ones: a gang that started and
// lost its quorum, or stayed partially bound past its timeout, is marked
// incomplete and, with disruptionMode All, has its remaining members
// evicted. They have no phase to write and their pods no label, so:
//   - "started" is the PodGroupInitiallyScheduled condition the scheduler
//     sets True when it places the quorum;
//   - the decision is kept in the same annotations, patched onto the
//     PodGroup, and shown as its DisruptionTarget condition;
//   - members are found by spec.schedulingGroup in a second cache of every
//     pod, stripped to what the controller reads, started only once the
//     cluster serves the API (discovered at run time, as the scheduler
//     does), so a cluster without it costs nothing.

// upstreamPodGroups is the API's resource.
var upstreamPodGroups = schema.GroupVersionResource{Group: "scheduling.k8s.io", Version: "v1beta1", Resource: "podgroups"}

// upstreamPollInterval is how often the controller asks whether the API is
// served, until it is.
const upstreamPollInterval = 10 * time.Second

// ReasonGangDisrupted is the reason of the DisruptionTarget condition the
// controller sets on a disrupted Kubernetes PodGroup, and ReasonGangWhole
// that of the condition set False when it is whole again.
const (
	ReasonGangDisrupted = "GangDisrupted"
	ReasonGangWhole     = "GangWhole"
)

// upstreamReconciler applies the disruption rules to one Kubernetes
// PodGroup.
type upstreamReconciler struct {
	*reconciler
	// pods is the cache of every pod.
	pods client.Reader
}

// Reconcile handles one Kubernetes PodGroup.
func (u *upstreamReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var up schedulingv1beta1.PodGroup
	if err := u.client.Get(ctx, req.NamespacedName, &up); err != nil {
		if apierrors.IsNotFound(err) {
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, fmt.Errorf("get PodGroup %s: %w", req.NamespacedName, err)
	}
	if up.DeletionTimestamp != nil {
		return reconcile.Result{}, nil
	}
	var all corev1.PodList
	if err := u.pods.List(ctx, &all, client.InNamespace(up.Namespace)); err != nil {
		return reconcile.Result{}, fmt.Errorf("list pods of PodGroup %s: %w", req.NamespacedName, err)
	}
	pg := podgroup.FromUpstream(&up)
	var pods []corev1.Pod
	for i := range all.Items {
		if podgroup.Belongs(&all.Items[i], pg) {
			pods = append(pods, all.Items[i])
		}
	}
	u.reportRejections(ctx, pg, pods)
	t := countMembers(pg, pods)
	phase := phaseOf(t, podgroup.MinMember(pg))
	// The phase a scheduler-plugins PodGroup would have kept: started once
	// the quorum was placed, until the loss is recorded.
	var oldPhase v1alpha1.PodGroupPhase
	if meta.IsStatusConditionTrue(up.Status.Conditions, schedulingv1beta1.PodGroupInitiallyScheduled) && pg.Annotations[podgroup.AnnotationIncomplete] == "" {
		oldPhase = v1alpha1.PodGroupRunning
	}
	wasDisrupted := pg.Annotations[podgroup.AnnotationIncomplete] != ""
	recheck, err := u.checkQuorum(ctx, pg, pods, t, oldPhase, phase)
	if err == nil {
		whole := wasDisrupted && pg.Annotations[podgroup.AnnotationIncomplete] == ""
		err = u.showDisruption(ctx, &up, pg, whole)
	}
	if err != nil {
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			log.FromContext(ctx).V(1).Info("PodGroup changed while reconciling, retrying on its update", "err", err)
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, err
	}
	res, err := u.continueEvictions(ctx, pg, pods)
	if recheck > 0 && (res.RequeueAfter == 0 || recheck < res.RequeueAfter) {
		res.RequeueAfter = recheck
	}
	return res, err
}

// showDisruption keeps the DisruptionTarget condition in line with the
// incomplete annotation: True with its message while the gang is
// disrupted, False once it is whole again (whole: the mark was just
// cleared). A True condition the scheduler set when it preempted the gang
// (PreemptionByScheduler) says more than ours, and stays until then.
func (u *upstreamReconciler) showDisruption(ctx context.Context, up *schedulingv1beta1.PodGroup, pg *v1alpha1.PodGroup, whole bool) error {
	why, disrupted := pg.Annotations[podgroup.AnnotationIncomplete]
	cond := metav1.Condition{Type: schedulingv1beta1.DisruptionTarget, Status: metav1.ConditionTrue, Reason: ReasonGangDisrupted, Message: why}
	current := meta.FindStatusCondition(up.Status.Conditions, schedulingv1beta1.DisruptionTarget)
	isTrue := current != nil && current.Status == metav1.ConditionTrue
	ours := isTrue && current.Reason == ReasonGangDisrupted
	switch {
	case disrupted && (!isTrue || ours && current.Message != why):
	case !disrupted && (ours || whole && isTrue):
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, ReasonGangWhole, "the gang has its quorum again"
	default:
		return nil
	}
	cond.LastTransitionTime = u.now()
	cond.ObservedGeneration = up.Generation
	// A strategic merge keeps the scheduler's conditions: they merge by
	// type.
	body, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []metav1.Condition{cond}}})
	if err != nil {
		return fmt.Errorf("encoding the DisruptionTarget condition: %w", err)
	}
	if err := u.client.Status().Patch(ctx, up, client.RawPatch(types.StrategicMergePatchType, body)); err != nil {
		return fmt.Errorf("setting DisruptionTarget on PodGroup %s/%s: %w", up.Namespace, up.Name, err)
	}
	// The evictions' bookkeeping that follows builds on this write.
	pg.ResourceVersion = up.ResourceVersion
	return nil
}

// patchUpstreamAnnotations writes the controller's annotations onto a
// Kubernetes PodGroup seen as its translated copy pg, at the resource
// version that copy was read at. The annotations the translation adds
// are not the object's, so only the controller's own are written.
func (c *upstreamClient) patchUpstreamAnnotations(ctx context.Context, pg *v1alpha1.PodGroup) error {
	ann := map[string]any{}
	for _, k := range []string{podgroup.AnnotationIncomplete, podgroup.AnnotationEvicting} {
		if v, ok := pg.Annotations[k]; ok {
			ann[k] = v
		} else {
			ann[k] = nil
		}
	}
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": ann, "resourceVersion": pg.ResourceVersion}})
	if err != nil {
		return fmt.Errorf("encoding annotations: %w", err)
	}
	up := &schedulingv1beta1.PodGroup{ObjectMeta: metav1.ObjectMeta{Namespace: pg.Namespace, Name: pg.Name}}
	if err := c.client.Patch(ctx, up, client.RawPatch(types.MergePatchType, body)); err != nil {
		return err
	}
	// Later writes in the same reconcile build on this one.
	pg.ResourceVersion = up.ResourceVersion
	return nil
}

// upstreamClient writes to Kubernetes PodGroups.
type upstreamClient struct {
	client client.Client
}

// setupUpstream starts handling Kubernetes PodGroups once the cluster
// serves them: asked at start, then every upstreamPollInterval.
func setupUpstream(mgr ctrl.Manager, base *reconciler, disc discovery.DiscoveryInterface) error {
	return mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		logger := log.FromContext(ctx).WithName("upstream")
		failed := make(chan error, 1)
		apidiscovery.WhenServed(ctx, disc, upstreamPodGroups, upstreamPollInterval,
			func() {
				logger.Info("Kubernetes' PodGroup API is not served; handling it once it is", "groupVersion", upstreamPodGroups.GroupVersion())
			},
			func() {
				logger.Info("Kubernetes' PodGroup API found; handling its PodGroups", "groupVersion", upstreamPodGroups.GroupVersion())
				if err := startUpstream(mgr, base); err != nil {
					failed <- err
				}
			})
		select {
		case err := <-failed:
			return err
		case <-ctx.Done():
			return nil
		}
	}))
}

// startUpstream adds the cache of every pod and the reconciler of
// Kubernetes PodGroups to a running manager.
func startUpstream(mgr ctrl.Manager, base *reconciler) error {
	pods, err := cache.New(mgr.GetConfig(), cache.Options{
		Scheme: mgr.GetScheme(),
		Mapper: mgr.GetRESTMapper(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}: {Transform: stripPod},
		},
	})
	if err != nil {
		return fmt.Errorf("creating the cache of pods: %w", err)
	}
	if err := mgr.Add(pods); err != nil {
		return fmt.Errorf("adding the cache of pods: %w", err)
	}
	writer := &upstreamClient{client: mgr.GetClient()}
	r := &reconciler{
		client: base.client, recorder: base.recorder, now: base.now, evict: base.evict,
		timeout: base.timeout, grace: base.grace, save: writer.patchUpstreamAnnotations,
	}
	u := &upstreamReconciler{reconciler: r, pods: pods}
	err = ctrl.NewControllerManagedBy(mgr).
		Named("upstream-podgroup-disruption").
		WithOptions(controller.Options{MaxConcurrentReconciles: 4}).
		For(&schedulingv1beta1.PodGroup{}).
		WatchesRawSource(source.Kind(pods, &corev1.Pod{},
			handler.TypedEnqueueRequestsFromMapFunc(upstreamPodToGroup),
			upstreamMemberChanged())).
		Complete(u)
	if err != nil {
		return fmt.Errorf("set up the Kubernetes PodGroup controller: %w", err)
	}
	return nil
}

// stripPod keeps of a pod what the controller reads: which gang it
// belongs to, where it is bound, its phase, its conditions and why it
// failed. Pods of no Kubernetes PodGroup keep only their identity: every
// pod of the cluster is in this cache.
func stripPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	out := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID, ResourceVersion: pod.ResourceVersion,
		Labels: pod.Labels, CreationTimestamp: pod.CreationTimestamp, DeletionTimestamp: pod.DeletionTimestamp,
	}}
	if podgroup.UpstreamNameOf(pod) == "" {
		return out, nil
	}
	out.Spec.SchedulingGroup = pod.Spec.SchedulingGroup
	out.Spec.NodeName = pod.Spec.NodeName
	out.Spec.SchedulerName = pod.Spec.SchedulerName
	out.Status.Phase = pod.Status.Phase
	out.Status.Reason = pod.Status.Reason
	out.Status.Message = pod.Status.Message
	out.Status.Conditions = pod.Status.Conditions
	return out, nil
}

// upstreamPodToGroup maps a pod to the Kubernetes PodGroup it names.
func upstreamPodToGroup(_ context.Context, pod *corev1.Pod) []reconcile.Request {
	name := podgroup.UpstreamNameOf(pod)
	if name == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: pod.Namespace, Name: name}}}
}

// upstreamMemberChanged passes the pod events that can change a gang's
// standing: members appearing or going, bound, or changing phase.
func upstreamMemberChanged() predicate.TypedPredicate[*corev1.Pod] {
	member := func(p *corev1.Pod) bool { return podgroup.UpstreamNameOf(p) != "" }
	return predicate.TypedFuncs[*corev1.Pod]{
		CreateFunc:  func(e event.TypedCreateEvent[*corev1.Pod]) bool { return member(e.Object) },
		DeleteFunc:  func(e event.TypedDeleteEvent[*corev1.Pod]) bool { return member(e.Object) },
		GenericFunc: func(e event.TypedGenericEvent[*corev1.Pod]) bool { return member(e.Object) },
		UpdateFunc: func(e event.TypedUpdateEvent[*corev1.Pod]) bool {
			o, n := e.ObjectOld, e.ObjectNew
			if !member(o) && !member(n) {
				return false
			}
			return podgroup.UpstreamNameOf(o) != podgroup.UpstreamNameOf(n) ||
				o.Spec.NodeName != n.Spec.NodeName || o.Status.Phase != n.Status.Phase
		},
	}
}
