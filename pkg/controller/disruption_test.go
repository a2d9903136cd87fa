package controller

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	"github.com/lockstep-sched/lockstep/pkg/podgroup"
)

// disruptionSetup is a running gang of three (minMember 3) in the given
// disruption mode ("" for none set), reconciled to Running.
func disruptionSetup(t *testing.T, mode string) *harness {
	t.Helper()
	pods := gang("w", 3, "n1", corev1.PodRunning)
	for i := range pods {
		pods[i].UID = types.UID(pods[i].Name + "-uid")
	}
	pg := newGroup("g", 3)
	if mode != "" {
		pg.Annotations = map[string]string{podgroup.AnnotationDisruptionMode: mode}
	}
	h := newHarness(t, append(podObjects(pods), pg)...)
	h.reconcile(t, "g")
	if got := h.status(t, "g").Phase; got != v1alpha1.PodGroupRunning {
		t.Fatalf("phase %s, want Running", got)
	}
	h.events()
	return h
}

func (h *harness) group(t *testing.T) *v1alpha1.PodGroup {
	t.Helper()
	var pg v1alpha1.PodGroup
	if err := h.client.Get(context.Background(), types.NamespacedName{Namespace: testNS, Name: "g"}, &pg); err != nil {
		t.Fatal(err)
	}
	return &pg
}

func (h *harness) podNames(t *testing.T) []string {
	t.Helper()
	var list corev1.PodList
	if err := h.client.List(context.Background(), &list); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range list.Items {
		names = append(names, p.Name)
	}
	slices.Sort(names)
	return names
}

func (h *harness) setPhase(t *testing.T, name string, phase corev1.PodPhase) {
	t.Helper()
	var pod corev1.Pod
	if err := h.client.Get(context.Background(), types.NamespacedName{Namespace: testNS, Name: name}, &pod); err != nil {
		t.Fatal(err)
	}
	pod.Status.Phase = phase
	if err := h.client.Status().Update(context.Background(), &pod); err != nil {
		t.Fatal(err)
	}
}

func hasEvent(events []string, prefix string) bool {
	return slices.ContainsFunc(events, func(e string) bool { return strings.HasPrefix(e, prefix) })
}

// A started gang that loses a member below minMember is marked incomplete
// and reported in every mode; in mode All its other members are evicted so
// that the job restarts the gang whole, in mode Single (the default, and
// what an invalid value falls back to) they keep running.
func TestDisruptionModes(t *testing.T) {
	for _, tc := range []struct {
		mode        string
		evicted     bool
		invalidMode bool
	}{
		{mode: ""},
		{mode: "Single"},
		{mode: "All", evicted: true},
		{mode: "Everything", invalidMode: true},
	} {
		t.Run("mode="+tc.mode, func(t *testing.T) {
			h := disruptionSetup(t, tc.mode)
			h.setPhase(t, "w-1", corev1.PodFailed)
			h.reconcile(t, "g")
			ev := h.events()
			if !hasEvent(ev, "Warning GangDisrupted gang below minMember: 2 of 3 members left (member w-1 failed)") {
				t.Errorf("events %q: no GangDisrupted naming the failed member", ev)
			}
			if hasEvent(ev, "Warning InvalidDisruptionMode") != tc.invalidMode {
				t.Errorf("events %q: InvalidDisruptionMode want %t", ev, tc.invalidMode)
			}
			pg := h.group(t)
			if pg.Annotations[podgroup.AnnotationIncomplete] == "" {
				t.Errorf("no %s annotation: %v", podgroup.AnnotationIncomplete, pg.Annotations)
			}
			if _, ok := pg.Annotations[podgroup.AnnotationEvicting]; ok {
				t.Errorf("members left to evict after the evictions went through: %v", pg.Annotations)
			}
			want := []string{"w-0", "w-1", "w-2"}
			if tc.evicted {
				want = []string{"w-1"} // the failed member is the job's to replace
			}
			if got := h.podNames(t); !slices.Equal(got, want) {
				t.Errorf("pods left %v, want %v", got, want)
			}
			// Nothing new: nothing more happens.
			h.reconcile(t, "g")
			if ev := h.events(); len(ev) != 0 {
				t.Errorf("a second reconcile recorded %q", ev)
			}
		})
	}
}

// In mode Single the mark goes when the gang is whole again.
func TestDisruptionClearedWhenWhole(t *testing.T) {
	h := disruptionSetup(t, "Single")
	h.setPhase(t, "w-1", corev1.PodFailed)
	h.reconcile(t, "g")
	h.events()
	replacement := member("g", "w-3", "n2", corev1.PodRunning)
	if err := h.client.Create(context.Background(), &replacement); err != nil {
		t.Fatal(err)
	}
	h.reconcile(t, "g")
	if _, ok := h.group(t).Annotations[podgroup.AnnotationIncomplete]; ok {
		t.Error("still marked incomplete with its quorum back")
	}
	if ev := h.events(); !hasEvent(ev, "Normal GangWhole") {
		t.Errorf("events %q: no GangWhole", ev)
	}
}

// Evictions a PodDisruptionBudget refuses are retried, on the members
// listed when the gang was disrupted, until they go through.
func TestDisruptionEvictionRetried(t *testing.T) {
	h := disruptionSetup(t, "All")
	h.failEviction = apierrors.NewTooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.", 10)
	h.setPhase(t, "w-1", corev1.PodFailed)
	req := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: testNS, Name: "g"}}
	res, err := h.r.Reconcile(context.Background(), req)
	if err != nil || res.RequeueAfter != evictionRetry {
		t.Fatalf("Reconcile = %+v, %v; want a retry after %s", res, err, evictionRetry)
	}
	if ev := h.events(); !hasEvent(ev, "Warning EvictionBlocked 2 members of the disrupted gang are not evicted yet") {
		t.Errorf("events %q: no EvictionBlocked", ev)
	}
	if got := h.group(t).Annotations[podgroup.AnnotationEvicting]; got != "w-0-uid,w-2-uid" {
		t.Errorf("members left to evict %q", got)
	}
	// A replacement created meanwhile is not one of them.
	replacement := member("g", "w-9", "", corev1.PodPending)
	replacement.UID = "w-9-uid"
	if err := h.client.Create(context.Background(), &replacement); err != nil {
		t.Fatal(err)
	}
	h.failEviction = nil
	h.reconcile(t, "g")
	if got := h.podNames(t); !slices.Equal(got, []string{"w-1", "w-9"}) {
		t.Errorf("pods left %v, want the failed member and the replacement", got)
	}
	if _, ok := h.group(t).Annotations[podgroup.AnnotationEvicting]; ok {
		t.Error("evictions done, annotation left")
	}
}

// A gang partially bound for longer than its timeout and the grace (a
// member's binding keeps failing, or the rest cannot be placed after a
// restart) is reported and handled by its disruption mode; before that, the
// controller comes back when the time runs out.
func TestPartiallyBoundPastTimeout(t *testing.T) {
	for _, tc := range []struct {
		name      string
		boundAgo  time.Duration
		timeout   *int32
		disrupted bool
		recheck   time.Duration
	}{
		{name: "within the default timeout and grace", boundAgo: 10 * time.Second, recheck: 80 * time.Second},
		{name: "past the default timeout and grace", boundAgo: 2 * time.Minute, disrupted: true},
		{name: "within its own longer timeout", boundAgo: 2 * time.Minute, timeout: ptr.To[int32](300), recheck: 210 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pods := concat(gang("w", 2, "n1", corev1.PodRunning), gang("p", 1, "", corev1.PodPending))
			for i := range pods {
				pods[i].UID = types.UID(pods[i].Name + "-uid")
				if pods[i].Spec.NodeName != "" {
					pods[i].Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue,
						LastTransitionTime: metav1.NewTime(t0.Add(-tc.boundAgo))}}
				}
			}
			pg := newGroup("g", 3)
			pg.Spec.ScheduleTimeoutSeconds = tc.timeout
			pg.Annotations = map[string]string{podgroup.AnnotationDisruptionMode: "All"}
			h := newHarness(t, append(podObjects(pods), pg)...)
			res, err := h.r.Reconcile(context.Background(), reconcile.Request{NamespacedName: types.NamespacedName{Namespace: testNS, Name: "g"}})
			if err != nil {
				t.Fatal(err)
			}
			ev := h.events()
			if got := hasEvent(ev, "Warning GangDisrupted gang below minMember: 2 of 3 members bound since"); got != tc.disrupted {
				t.Fatalf("disrupted = %t, want %t; events %q", got, tc.disrupted, ev)
			}
			if res.RequeueAfter != tc.recheck {
				t.Errorf("requeue after %s, want %s", res.RequeueAfter, tc.recheck)
			}
			if tc.disrupted {
				if got := h.podNames(t); len(got) != 0 {
					t.Errorf("mode All: pods left %v", got)
				}
				// Reported once.
				h.reconcile(t, "g")
				if ev := h.events(); hasEvent(ev, "Warning GangDisrupted") {
					t.Errorf("reported again: %q", ev)
				}
			}
		})
	}
}
