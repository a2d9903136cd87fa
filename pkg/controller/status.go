package controller

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	"github.com/lockstep-sched/lockstep/pkg/podgroup"
)

// tally counts a gang's members by what they can still contribute.
type tally struct {
	// members is every member pod, whatever its phase.
	members int
	// scheduled counts members bound to a node that have not failed: those
	// still holding, or having held to success, a place in the gang.
	scheduled int
	running   int
	succeeded int
	failed    int
	// firstFailed is a failed member (the first by name), named in the
	// Failed event; nil when none failed.
	firstFailed *corev1.Pod
}

// countMembers tallies the pods that belong to pg: same namespace and a
// PodGroup label naming it. Other pods in the slice are ignored, so callers
// may pass a broader list.
func countMembers(pg *v1alpha1.PodGroup, pods []corev1.Pod) tally {
	var t tally
	for i := range pods {
		pod := &pods[i]
		if !podgroup.Belongs(pod, pg) {
			continue
		}
		t.members++
		switch pod.Status.Phase {
		case corev1.PodRunning:
			t.running++
		case corev1.PodSucceeded:
			t.succeeded++
		case corev1.PodFailed:
			t.failed++
			if t.firstFailed == nil || pod.Name < t.firstFailed.Name {
				t.firstFailed = pod
			}
		}
		// A failed member holds no place any more: only a replacement can
		// fill it, so it must not make the gang look placed.
		if podgroup.IsBound(pod) && pod.Status.Phase != corev1.PodFailed {
			t.scheduled++
		}
	}
	return t
}

// phaseOf maps a tally to a PodGroup phase. The rules, checked in order,
// with M = minMember:
//
//  1. running+succeeded >= M: the quorum is healthy. Finished when nothing
//     runs any more (so succeeded >= M), else Running. Failures of members
//     beyond the quorum do not matter.
//  2. failed > 0 and members-failed < M: even if every member that has not
//     failed ends up running, the gang cannot reach M, so it is Failed. A
//     workload controller that creates replacements raises members-failed
//     back to M, and the gang goes back to Pending/Scheduling/Scheduled.
//  3. scheduled == 0: Pending.
//  4. scheduled < M: Scheduling (part of the gang is placed).
//  5. otherwise Scheduled: the quorum is placed but not yet running.
func phaseOf(t tally, minMember int) v1alpha1.PodGroupPhase {
	healthy := t.running + t.succeeded
	switch {
	case healthy >= minMember && t.running == 0:
		return v1alpha1.PodGroupFinished
	case healthy >= minMember:
		return v1alpha1.PodGroupRunning
	case t.failed > 0 && t.members-t.failed < minMember:
		return v1alpha1.PodGroupFailed
	case t.scheduled == 0:
		return v1alpha1.PodGroupPending
	case t.scheduled < minMember:
		return v1alpha1.PodGroupScheduling
	default:
		return podgroup.PhaseScheduled
	}
}

// computeStatus returns the status pg should have given the pods (only its
// members are counted) at time now. Fields the controller does not own
// (occupiedBy) are kept, and so is scheduleStartTime once set.
func computeStatus(pg *v1alpha1.PodGroup, pods []corev1.Pod, now metav1.Time) v1alpha1.PodGroupStatus {
	t := countMembers(pg, pods)
	status := *pg.Status.DeepCopy()
	status.Phase = phaseOf(t, podgroup.MinMember(pg))
	status.Running = int32(t.running)
	status.Succeeded = int32(t.succeeded)
	status.Failed = int32(t.failed)
	if status.ScheduleStartTime.IsZero() && status.Phase != v1alpha1.PodGroupPending {
		// The API stores seconds; keep what we compare equal to what we read
		// back.
		status.ScheduleStartTime = now.Rfc3339Copy()
	}
	return status
}

// Phase is the phase the controller gives a gang with these pods, of
// either API: for a scheduler-plugins PodGroup it is written to its
// status; an upstream PodGroup has no phase, and the sandbox's report
// derives one with this.
func Phase(pg *v1alpha1.PodGroup, pods []corev1.Pod) v1alpha1.PodGroupPhase {
	return phaseOf(countMembers(pg, pods), podgroup.MinMember(pg))
}

// describe is the message of the Event recorded when a gang enters phase.
func describe(phase v1alpha1.PodGroupPhase, t tally, minMember int) string {
	switch phase {
	case v1alpha1.PodGroupPending:
		return fmt.Sprintf("no member scheduled, %d members, minMember %d", t.members, minMember)
	case v1alpha1.PodGroupScheduling, podgroup.PhaseScheduled:
		return fmt.Sprintf("%d/%d members scheduled", t.scheduled, minMember)
	case v1alpha1.PodGroupRunning:
		if t.running == t.members {
			return fmt.Sprintf("all %d members running", t.running)
		}
		return fmt.Sprintf("%d running, %d succeeded of minMember %d", t.running, t.succeeded, minMember)
	case v1alpha1.PodGroupFinished:
		return fmt.Sprintf("%d members succeeded of minMember %d", t.succeeded, minMember)
	case v1alpha1.PodGroupFailed:
		name := ""
		if t.firstFailed != nil {
			name = t.firstFailed.Name
		}
		return fmt.Sprintf("member %s failed: %d failed, %d running, %d succeeded of minMember %d",
			name, t.failed, t.running, t.succeeded, minMember)
	default:
		return fmt.Sprintf("%d running, %d succeeded, %d failed of minMember %d",
			t.running, t.succeeded, t.failed, minMember)
	}
}
