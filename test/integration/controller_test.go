package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	"github.com/lockstep-sched/lockstep/pkg/podgroup"
)

func phaseIs(p v1alpha1.PodGroupPhase) func(v1alpha1.PodGroupStatus) bool {
	return func(s v1alpha1.PodGroupStatus) bool { return s.Phase == p }
}

// The controller keeps phase, counts and scheduleStartTime true through a
// gang's life, with the kubelet's part played by the test.
func TestControllerTracksGangLifecycle(t *testing.T) {
	e := newEnv(t)
	e.startController()
	e.addNodes("n", 2, nodeSpec{cpu: "8", mem: "32Gi"})
	e.createPodGroup("job", 3)
	for i := range 2 {
		e.createPod(fmt.Sprintf("job-%d", i), "job", podSpec{cpu: "2"})
	}
	st := e.waitPodGroupStatus("job", "Pending", phaseIs(v1alpha1.PodGroupPending))
	if !st.ScheduleStartTime.IsZero() {
		t.Fatalf("scheduleStartTime set before anything was scheduled: %v", st.ScheduleStartTime)
	}
	e.createPod("job-2", "job", podSpec{cpu: "2"})
	e.waitGangBound("job", 3, bindBy)
	st = e.waitPodGroupStatus("job", "Scheduled", phaseIs(podgroup.PhaseScheduled))
	start := st.ScheduleStartTime
	if start.IsZero() {
		t.Fatal("scheduleStartTime not set once the gang was scheduled")
	}

	for i := range 3 {
		e.setPodPhase(fmt.Sprintf("job-%d", i), v1.PodRunning)
	}
	st = e.waitPodGroupStatus("job", "Running with 3 running", func(s v1alpha1.PodGroupStatus) bool {
		return s.Phase == v1alpha1.PodGroupRunning && s.Running == 3
	})
	for i := range 3 {
		e.setPodPhase(fmt.Sprintf("job-%d", i), v1.PodSucceeded)
	}
	st = e.waitPodGroupStatus("job", "Finished with 3 succeeded", func(s v1alpha1.PodGroupStatus) bool {
		return s.Phase == v1alpha1.PodGroupFinished && s.Succeeded == 3 && s.Running == 0
	})
	if !st.ScheduleStartTime.Equal(&start) {
		t.Errorf("scheduleStartTime moved from %v to %v", start, st.ScheduleStartTime)
	}
	e.waitEvent("PodGroup", "job", "Finished", 30*time.Second)

	// A member failing below the quorum fails the gang.
	e.createGang("flaky", 2, 2, podSpec{cpu: "1"})
	e.waitGangBound("flaky", 2, bindBy)
	e.setPodPhase("flaky-0", v1.PodRunning)
	e.setPodPhase("flaky-1", v1.PodFailed)
	e.waitPodGroupStatus("flaky", "Failed", func(s v1alpha1.PodGroupStatus) bool {
		return s.Phase == v1alpha1.PodGroupFailed && s.Failed == 1 && s.Running == 1
	})
}

// Disruption on the real apiserver: two running gangs each lose a member.
// The gang in mode All has its other members evicted through the Eviction
// API, once the PodDisruptionBudget that blocks it is gone; the gang in
// mode Single keeps its members. Both are reported and marked incomplete.
func TestDisruptedGangs(t *testing.T) {
	e := newEnv(t)
	e.startController()
	e.addNodes("n", 2, nodeSpec{cpu: "8", mem: "32Gi"})
	mode := func(m string) func(*v1alpha1.PodGroup) {
		return func(pg *v1alpha1.PodGroup) {
			pg.Annotations = map[string]string{podgroup.AnnotationDisruptionMode: m}
		}
	}
	for _, g := range []string{"all", "single"} {
		e.createPodGroup(g, 3, mode(map[string]string{"all": "All", "single": "Single"}[g]))
		for i := range 3 {
			e.createPod(fmt.Sprintf("%s-%d", g, i), g, podSpec{cpu: "1"})
		}
		e.waitGangBound(g, 3, bindBy)
		for i := range 3 {
			e.setPodPhase(fmt.Sprintf("%s-%d", g, i), v1.PodRunning)
		}
		e.waitPodGroupStatus(g, "Running", phaseIs(v1alpha1.PodGroupRunning))
	}
	// No disruption controller runs here, so any budget over the gang's
	// pods refuses every eviction until it is deleted.
	pdb := &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "all", Namespace: e.ns},
		Spec: policyv1.PodDisruptionBudgetSpec{
			MinAvailable: ptr.To(intstr.FromInt32(3)),
			Selector:     &metav1.LabelSelector{MatchLabels: map[string]string{podgroup.Label: "all"}},
		},
	}
	if _, err := e.client.PolicyV1().PodDisruptionBudgets(e.ns).Create(e.ctx, pdb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	e.setPodPhase("all-1", v1.PodFailed)
	e.setPodPhase("single-1", v1.PodFailed)
	e.waitEvent("PodGroup", "all", "disruption mode All: evicting the 2 remaining members", 30*time.Second)
	e.waitEvent("PodGroup", "single", "disruption mode Single: the remaining members keep running", 30*time.Second)
	e.waitEvent("PodGroup", "all", "not evicted yet", 30*time.Second)
	for _, g := range []string{"all", "single"} {
		pg, err := e.pgs.SchedulingV1alpha1().PodGroups(e.ns).Get(e.ctx, g, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(pg.Annotations[podgroup.AnnotationIncomplete], "2 of 3 members left (member "+g+"-1 failed)") {
			t.Errorf("%s: annotation %s = %q", g, podgroup.AnnotationIncomplete, pg.Annotations[podgroup.AnnotationIncomplete])
		}
	}
	if n := len(e.evicted("all")); n != 0 {
		t.Fatalf("%d members evicted through a PodDisruptionBudget that forbids it", n)
	}

	if err := e.client.PolicyV1().PodDisruptionBudgets(e.ns).Delete(e.ctx, "all", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitFor("the All gang's remaining members evicted", 30*time.Second, func() bool {
		got := e.evicted("all")
		return len(got) == 2 && got["all-0"] && got["all-2"]
	})
	if got := e.evicted("single"); len(got) != 0 {
		t.Errorf("members of the Single gang evicted: %v", got)
	}
}

// evicted names the members of gang that are gone or going.
func (e *env) evicted(gang string) map[string]bool {
	e.t.Helper()
	out := map[string]bool{}
	for i := range 3 {
		name := fmt.Sprintf("%s-%d", gang, i)
		p, err := e.client.CoreV1().Pods(e.ns).Get(e.ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) || (err == nil && p.DeletionTimestamp != nil) {
			out[name] = true
		}
	}
	return out
}
