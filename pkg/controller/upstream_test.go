package controller

import (
	"context"
	"fmt"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	schedulingv1beta1 "k8s.io/api/scheduling/v1beta1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/lockstep-sched/lockstep/pkg/podgroup"
)

// upstreamGang is a Kubernetes PodGroup "g" of minCount 3 whose quorum the
// scheduler placed (PodGroupInitiallyScheduled True), in the given
// disruption mode ("" for none), with three running members, beside a
// scheduler-plugins gang of the same name whose pods must be left alone.
func upstreamGang(t *testing.T, mode string) (*harness, *upstreamReconciler) {
	t.Helper()
	pg := &schedulingv1beta1.PodGroup{
		ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: "g", UID: "g-uid"},
		Spec: schedulingv1beta1.PodGroupSpec{SchedulingPolicy: schedulingv1beta1.PodGroupSchedulingPolicy{
			Gang: &schedulingv1beta1.GangSchedulingPolicy{MinCount: 3}}},
		Status: schedulingv1beta1.PodGroupStatus{Conditions: []metav1.Condition{{
			Type: schedulingv1beta1.PodGroupInitiallyScheduled, Status: metav1.ConditionTrue, Reason: "Scheduled", LastTransitionTime: t0}}},
	}
	switch mode {
	case "All":
		pg.Spec.DisruptionMode = &schedulingv1beta1.DisruptionMode{All: &schedulingv1beta1.AllDisruptionMode{}}
	case "Single":
		pg.Spec.DisruptionMode = &schedulingv1beta1.DisruptionMode{Single: &schedulingv1beta1.SingleDisruptionMode{}}
	}
	objs := podObjects(concat(upstreamMembers("u", 3, corev1.PodRunning), gang("legacy", 3, "n1", corev1.PodRunning)))
	h := newHarness(t, append(objs, pg)...)
	u := &upstreamReconciler{reconciler: h.r, pods: h.client}
	h.r.save = (&upstreamClient{client: h.client}).patchUpstreamAnnotations
	return h, u
}

// upstreamMembers are n pods of the Kubernetes PodGroup "g" on n1.
func upstreamMembers(prefix string, n int, phase corev1.PodPhase) []corev1.Pod {
	var pods []corev1.Pod
	for i := range n {
		name := fmt.Sprintf("%s-%d", prefix, i)
		pods = append(pods, corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: name, UID: types.UID(name + "-uid")},
			Spec:       corev1.PodSpec{NodeName: "n1", SchedulingGroup: &corev1.PodSchedulingGroup{PodGroupName: ptr.To("g")}},
			Status:     corev1.PodStatus{Phase: phase},
		})
	}
	return pods
}

func reconcileUpstream(t *testing.T, u *upstreamReconciler) {
	t.Helper()
	if _, err := u.Reconcile(context.Background(), reconcile.Request{NamespacedName: types.NamespacedName{Namespace: testNS, Name: "g"}}); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
}

func (h *harness) upstreamGroup(t *testing.T) *schedulingv1beta1.PodGroup {
	t.Helper()
	var pg schedulingv1beta1.PodGroup
	if err := h.client.Get(context.Background(), types.NamespacedName{Namespace: testNS, Name: "g"}, &pg); err != nil {
		t.Fatal(err)
	}
	return &pg
}

// A Kubernetes PodGroup gets the disruption rules of scheduler-plugins'
// ones: below its quorum after it started, it is marked (annotation,
// DisruptionTarget condition, Event) and in mode All its other members
// are evicted; whole again, the mark goes.
func TestUpstreamDisruption(t *testing.T) {
	for _, tc := range []struct {
		mode     string
		wantPods []string
	}{
		{"All", []string{"legacy-0", "legacy-1", "legacy-2", "u-0"}},
		{"Single", []string{"legacy-0", "legacy-1", "legacy-2", "u-0", "u-1", "u-2"}},
		{"", []string{"legacy-0", "legacy-1", "legacy-2", "u-0", "u-1", "u-2"}},
	} {
		t.Run("mode "+tc.mode, func(t *testing.T) {
			h, u := upstreamGang(t, tc.mode)
			reconcileUpstream(t, u)
			if pg := h.upstreamGroup(t); pg.Annotations[podgroup.AnnotationIncomplete] != "" || meta.FindStatusCondition(pg.Status.Conditions, schedulingv1beta1.DisruptionTarget) != nil {
				t.Fatalf("a whole gang was marked: %v %v", pg.Annotations, pg.Status.Conditions)
			}
			h.setPhase(t, "u-0", corev1.PodFailed)
			reconcileUpstream(t, u)
			pg := h.upstreamGroup(t)
			if pg.Annotations[podgroup.AnnotationIncomplete] == "" {
				t.Fatalf("below its quorum, the gang is not marked incomplete: %v", pg.Annotations)
			}
			c := meta.FindStatusCondition(pg.Status.Conditions, schedulingv1beta1.DisruptionTarget)
			if c == nil || c.Status != metav1.ConditionTrue || c.Reason != ReasonGangDisrupted {
				t.Fatalf("DisruptionTarget = %+v, want True/%s", c, ReasonGangDisrupted)
			}
			if !meta.IsStatusConditionTrue(pg.Status.Conditions, schedulingv1beta1.PodGroupInitiallyScheduled) {
				t.Fatalf("the scheduler's condition was lost: %v", pg.Status.Conditions)
			}
			if !hasEvent(h.events(), "Warning GangDisrupted") {
				t.Fatal("no GangDisrupted Event")
			}
			if got := h.podNames(t); !slices.Equal(got, tc.wantPods) {
				t.Fatalf("pods left %v, want %v", got, tc.wantPods)
			}
			// Marked once: reconciling again changes nothing.
			rv := pg.ResourceVersion
			reconcileUpstream(t, u)
			if pg := h.upstreamGroup(t); pg.ResourceVersion != rv {
				t.Fatalf("a second reconcile wrote the PodGroup again")
			}

			// The job's controller replaces the members; the gang runs whole.
			for _, p := range upstreamMembers("r", 3, corev1.PodRunning) {
				if err := h.client.Create(context.Background(), &p); err != nil {
					t.Fatal(err)
				}
			}
			reconcileUpstream(t, u)
			pg = h.upstreamGroup(t)
			if _, ok := pg.Annotations[podgroup.AnnotationIncomplete]; ok {
				t.Fatalf("whole again, the gang is still marked: %v", pg.Annotations)
			}
			if c := meta.FindStatusCondition(pg.Status.Conditions, schedulingv1beta1.DisruptionTarget); c == nil || c.Status != metav1.ConditionFalse || c.Reason != ReasonGangWhole {
				t.Fatalf("DisruptionTarget = %+v, want False/%s", c, ReasonGangWhole)
			}
		})
	}
}

// A gang the scheduler never placed (no PodGroupInitiallyScheduled) did not
// start, so losing members disrupts nothing.
func TestUpstreamNotStartedIsNotDisrupted(t *testing.T) {
	h, u := upstreamGang(t, "All")
	pg := h.upstreamGroup(t)
	pg.Status.Conditions = nil
	if err := h.client.Status().Update(context.Background(), pg); err != nil {
		t.Fatal(err)
	}
	h.setPhase(t, "u-0", corev1.PodFailed)
	reconcileUpstream(t, u)
	if pg := h.upstreamGroup(t); pg.Annotations[podgroup.AnnotationIncomplete] != "" {
		t.Fatalf("a gang that never started was marked: %v", pg.Annotations)
	}
	if got := h.podNames(t); len(got) != 6 {
		t.Fatalf("pods evicted from a gang that never started: %v", got)
	}
}

// The cache of every pod keeps of a member what the controller reads, and
// of any other pod only its identity.
func TestStripPod(t *testing.T) {
	m := upstreamMembers("u", 1, corev1.PodFailed)[0]
	m.Spec.Containers = []corev1.Container{{Name: "c", Image: "i"}}
	m.Status.Reason = "TopologyAffinityError"
	m.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}}
	other := member("legacy", "l", "n2", corev1.PodRunning)
	other.Spec.Containers = m.Spec.Containers

	got, err := stripPod(&m)
	if err != nil {
		t.Fatal(err)
	}
	p := got.(*corev1.Pod)
	if podgroup.UpstreamNameOf(p) != "g" || p.Spec.NodeName != "n1" || p.Status.Phase != corev1.PodFailed ||
		p.Status.Reason != m.Status.Reason || len(p.Status.Conditions) != 1 || p.UID != m.UID || len(p.Spec.Containers) != 0 {
		t.Fatalf("member stripped to %+v", p)
	}
	got, _ = stripPod(&other)
	p = got.(*corev1.Pod)
	if p.Name != "l" || p.Spec.NodeName != "" || p.Status.Phase != "" || len(p.Spec.Containers) != 0 {
		t.Fatalf("another pod kept more than its identity: %+v", p)
	}
}

// The scheduler marks a gang it preempts (DisruptionTarget True,
// PreemptionByScheduler) before evicting it: the controller keeps that
// more specific reason while the gang is disrupted, and sets the
// condition False once the gang is whole again.
func TestUpstreamPreemptedKeepsItsReason(t *testing.T) {
	h, u := upstreamGang(t, "")
	pg := h.upstreamGroup(t)
	meta.SetStatusCondition(&pg.Status.Conditions, metav1.Condition{Type: schedulingv1beta1.DisruptionTarget, Status: metav1.ConditionTrue,
		Reason: schedulingv1beta1.PodGroupReasonPreemptionByScheduler, Message: "preempted by gang ns/high"})
	if err := h.client.Status().Update(context.Background(), pg); err != nil {
		t.Fatal(err)
	}
	preempted := func() bool {
		c := meta.FindStatusCondition(h.upstreamGroup(t).Status.Conditions, schedulingv1beta1.DisruptionTarget)
		return c != nil && c.Status == metav1.ConditionTrue && c.Reason == schedulingv1beta1.PodGroupReasonPreemptionByScheduler
	}
	// Not yet evicted: nothing changes.
	reconcileUpstream(t, u)
	if !preempted() {
		t.Fatal("the scheduler's mark was cleared before the gang went")
	}
	for _, n := range []string{"u-0", "u-1", "u-2"} {
		h.setPhase(t, n, corev1.PodFailed)
	}
	reconcileUpstream(t, u)
	if h.upstreamGroup(t).Annotations[podgroup.AnnotationIncomplete] == "" || !preempted() {
		t.Fatalf("the evicted gang should be marked, keeping the scheduler's reason: %v %v", h.upstreamGroup(t).Annotations, h.upstreamGroup(t).Status.Conditions)
	}
	for _, p := range upstreamMembers("r", 3, corev1.PodRunning) {
		if err := h.client.Create(context.Background(), &p); err != nil {
			t.Fatal(err)
		}
	}
	reconcileUpstream(t, u)
	if c := meta.FindStatusCondition(h.upstreamGroup(t).Status.Conditions, schedulingv1beta1.DisruptionTarget); c == nil || c.Status != metav1.ConditionFalse || c.Reason != ReasonGangWhole {
		t.Fatalf("whole again: DisruptionTarget = %+v, want False/%s", c, ReasonGangWhole)
	}
}
