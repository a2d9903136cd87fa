package integration

import (
	"fmt"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
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
