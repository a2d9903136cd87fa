package controller

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	"github.com/lockstep-sched/lockstep/pkg/podgroup"
)

const testNS = "team-a"

var (
	t0 = metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	t1 = metav1.NewTime(t0.Add(time.Hour))
)

func newGroup(name string, minMember int32) *v1alpha1.PodGroup {
	return &v1alpha1.PodGroup{
		ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: name},
		Spec:       v1alpha1.PodGroupSpec{MinMember: minMember},
	}
}

// member returns a pod of gang in testNS; node "" means unscheduled.
func member(gang, name, node string, phase corev1.PodPhase) corev1.Pod {
	return corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: testNS,
			Name:      name,
			Labels:    map[string]string{podgroup.Label: gang},
		},
		Spec:   corev1.PodSpec{NodeName: node},
		Status: corev1.PodStatus{Phase: phase},
	}
}

// gang returns n pods of "g" in the given state, named prefix-0..n-1.
func gang(prefix string, n int, node string, phase corev1.PodPhase) []corev1.Pod {
	pods := make([]corev1.Pod, 0, n)
	for i := range n {
		pods = append(pods, member("g", fmt.Sprintf("%s-%d", prefix, i), node, phase))
	}
	return pods
}

func concat(groups ...[]corev1.Pod) []corev1.Pod {
	var all []corev1.Pod
	for _, g := range groups {
		all = append(all, g...)
	}
	return all
}

func TestComputeStatus(t *testing.T) {
	const (
		pending   = corev1.PodPending
		running   = corev1.PodRunning
		succeeded = corev1.PodSucceeded
		failed    = corev1.PodFailed
	)
	otherNS := member("g", "elsewhere", "n1", running)
	otherNS.Namespace = "team-b"

	tests := []struct {
		name      string
		minMember int32
		// prior is the status the PodGroup already has.
		prior v1alpha1.PodGroupStatus
		pods  []corev1.Pod
		want  v1alpha1.PodGroupStatus
	}{
		{
			name:      "no pods",
			minMember: 4,
			want:      v1alpha1.PodGroupStatus{Phase: v1alpha1.PodGroupPending},
		},
		{
			name:      "created but none bound",
			minMember: 2,
			pods:      gang("p", 3, "", pending),
			want:      v1alpha1.PodGroupStatus{Phase: v1alpha1.PodGroupPending},
		},
		{
			name:      "part of the gang bound",
			minMember: 4,
			pods:      concat(gang("a", 3, "n1", pending), gang("b", 1, "", pending)),
			want:      v1alpha1.PodGroupStatus{Phase: v1alpha1.PodGroupScheduling, ScheduleStartTime: t0},
		},
		{
			name:      "quorum bound, not running yet",
			minMember: 4,
			pods:      gang("a", 4, "n1", pending),
			want:      v1alpha1.PodGroupStatus{Phase: podgroup.PhaseScheduled, ScheduleStartTime: t0},
		},
		{
			name:      "quorum bound, some running",
			minMember: 4,
			pods:      concat(gang("a", 3, "n1", running), gang("b", 1, "n2", pending)),
			want:      v1alpha1.PodGroupStatus{Phase: podgroup.PhaseScheduled, Running: 3, ScheduleStartTime: t0},
		},
		{
			name:      "all running",
			minMember: 4,
			pods:      gang("a", 4, "n1", running),
			want:      v1alpha1.PodGroupStatus{Phase: v1alpha1.PodGroupRunning, Running: 4, ScheduleStartTime: t0},
		},
		{
			name:      "more members than the quorum, quorum running",
			minMember: 2,
			pods:      concat(gang("a", 2, "n1", running), gang("b", 2, "", pending)),
			want:      v1alpha1.PodGroupStatus{Phase: v1alpha1.PodGroupRunning, Running: 2, ScheduleStartTime: t0},
		},
		{
			name:      "terminal pods count: some succeeded, rest running",
			minMember: 4,
			pods:      concat(gang("a", 1, "n1", running), gang("b", 3, "n1", succeeded)),
			want: v1alpha1.PodGroupStatus{
				Phase: v1alpha1.PodGroupRunning, Running: 1, Succeeded: 3, ScheduleStartTime: t0,
			},
		},
		{
			name:      "terminal pods count as scheduled",
			minMember: 4,
			pods:      concat(gang("a", 2, "n1", succeeded), gang("b", 1, "n1", pending), gang("c", 1, "", pending)),
			want: v1alpha1.PodGroupStatus{
				Phase: v1alpha1.PodGroupScheduling, Succeeded: 2, ScheduleStartTime: t0,
			},
		},
		{
			name:      "all succeeded",
			minMember: 4,
			pods:      gang("a", 4, "n1", succeeded),
			want:      v1alpha1.PodGroupStatus{Phase: v1alpha1.PodGroupFinished, Succeeded: 4, ScheduleStartTime: t0},
		},
		{
			name:      "quorum succeeded, extra member failed",
			minMember: 3,
			pods:      concat(gang("a", 3, "n1", succeeded), gang("b", 1, "n1", failed)),
			want: v1alpha1.PodGroupStatus{
				Phase: v1alpha1.PodGroupFinished, Succeeded: 3, Failed: 1, ScheduleStartTime: t0,
			},
		},
		{
			name:      "quorum running, extra member failed",
			minMember: 3,
			pods:      concat(gang("a", 3, "n1", running), gang("b", 1, "n1", failed)),
			want: v1alpha1.PodGroupStatus{
				Phase: v1alpha1.PodGroupRunning, Running: 3, Failed: 1, ScheduleStartTime: t0,
			},
		},
		{
			name:      "member failed, quorum unreachable",
			minMember: 4,
			pods:      concat(gang("a", 2, "n1", running), gang("b", 1, "n1", failed), gang("c", 1, "n1", pending)),
			want: v1alpha1.PodGroupStatus{
				Phase: v1alpha1.PodGroupFailed, Running: 2, Failed: 1, ScheduleStartTime: t0,
			},
		},
		{
			name:      "all failed",
			minMember: 2,
			pods:      gang("a", 2, "n1", failed),
			want:      v1alpha1.PodGroupStatus{Phase: v1alpha1.PodGroupFailed, Failed: 2, ScheduleStartTime: t0},
		},
		{
			name:      "failed before binding is still failed",
			minMember: 2,
			pods:      concat(gang("a", 1, "", failed), gang("b", 1, "", pending)),
			want:      v1alpha1.PodGroupStatus{Phase: v1alpha1.PodGroupFailed, Failed: 1, ScheduleStartTime: t0},
		},
		{
			name:      "member failed but a replacement keeps the quorum reachable",
			minMember: 2,
			pods:      concat(gang("a", 1, "n1", running), gang("b", 1, "n1", failed), gang("c", 1, "", pending)),
			// The failed member is no longer a place held: 1 of 2 scheduled.
			want: v1alpha1.PodGroupStatus{
				Phase: v1alpha1.PodGroupScheduling, Running: 1, Failed: 1, ScheduleStartTime: t0,
			},
		},
		{
			name:      "replacement bound again",
			minMember: 2,
			pods:      concat(gang("a", 1, "n1", running), gang("b", 1, "n1", failed), gang("c", 1, "n2", pending)),
			want: v1alpha1.PodGroupStatus{
				Phase: podgroup.PhaseScheduled, Running: 1, Failed: 1, ScheduleStartTime: t0,
			},
		},
		{
			name:      "minMember 0 treated as 1",
			minMember: 0,
			pods:      gang("a", 1, "n1", running),
			want:      v1alpha1.PodGroupStatus{Phase: v1alpha1.PodGroupRunning, Running: 1, ScheduleStartTime: t0},
		},
		{
			name:      "minMember 0 with nothing bound stays Pending",
			minMember: 0,
			pods:      gang("a", 1, "", pending),
			want:      v1alpha1.PodGroupStatus{Phase: v1alpha1.PodGroupPending},
		},
		{
			name:      "pods of other gangs and namespaces ignored",
			minMember: 2,
			pods: concat(
				gang("a", 1, "n1", running),
				[]corev1.Pod{
					member("other", "x", "n1", running),
					member("", "unlabelled", "n1", running),
					otherNS,
				},
			),
			want: v1alpha1.PodGroupStatus{Phase: v1alpha1.PodGroupScheduling, Running: 1, ScheduleStartTime: t0},
		},
		{
			name:      "scheduleStartTime kept",
			minMember: 2,
			prior:     v1alpha1.PodGroupStatus{Phase: v1alpha1.PodGroupScheduling, ScheduleStartTime: t1},
			pods:      gang("a", 2, "n1", running),
			want:      v1alpha1.PodGroupStatus{Phase: v1alpha1.PodGroupRunning, Running: 2, ScheduleStartTime: t1},
		},
		{
			name:      "scheduleStartTime kept when back to Pending",
			minMember: 2,
			prior:     v1alpha1.PodGroupStatus{Phase: v1alpha1.PodGroupScheduling, ScheduleStartTime: t1},
			want:      v1alpha1.PodGroupStatus{Phase: v1alpha1.PodGroupPending, ScheduleStartTime: t1},
		},
		{
			name:      "occupiedBy kept, stale counters replaced",
			minMember: 1,
			prior: v1alpha1.PodGroupStatus{
				Phase: v1alpha1.PodGroupRunning, OccupiedBy: "uid-1", Running: 7, Failed: 2, ScheduleStartTime: t1,
			},
			pods: gang("a", 1, "n1", succeeded),
			want: v1alpha1.PodGroupStatus{
				Phase: v1alpha1.PodGroupFinished, OccupiedBy: "uid-1", Succeeded: 1, ScheduleStartTime: t1,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pg := newGroup("g", tc.minMember)
			pg.Status = tc.prior
			before := pg.DeepCopy()
			// Sub-second precision must not reach the status: the API drops it.
			now := metav1.NewTime(t0.Add(300 * time.Millisecond))

			got := computeStatus(pg, tc.pods, now)

			if got.Phase != tc.want.Phase {
				t.Errorf("phase = %q, want %q", got.Phase, tc.want.Phase)
			}
			if got.Running != tc.want.Running || got.Succeeded != tc.want.Succeeded || got.Failed != tc.want.Failed {
				t.Errorf("running/succeeded/failed = %d/%d/%d, want %d/%d/%d",
					got.Running, got.Succeeded, got.Failed, tc.want.Running, tc.want.Succeeded, tc.want.Failed)
			}
			if !got.ScheduleStartTime.Equal(&tc.want.ScheduleStartTime) {
				t.Errorf("scheduleStartTime = %v, want %v", got.ScheduleStartTime, tc.want.ScheduleStartTime)
			}
			if got.OccupiedBy != tc.want.OccupiedBy {
				t.Errorf("occupiedBy = %q, want %q", got.OccupiedBy, tc.want.OccupiedBy)
			}
			if pg.Status != before.Status {
				t.Errorf("computeStatus modified its input: %+v", pg.Status)
			}
		})
	}
}

func TestDescribe(t *testing.T) {
	tests := []struct {
		name  string
		phase v1alpha1.PodGroupPhase
		pods  []corev1.Pod
		want  string
	}{
		{
			name:  "scheduling",
			phase: v1alpha1.PodGroupScheduling,
			pods:  concat(gang("a", 3, "n1", corev1.PodPending), gang("b", 1, "", corev1.PodPending)),
			want:  "3/4 members scheduled",
		},
		{
			name:  "running",
			phase: v1alpha1.PodGroupRunning,
			pods:  gang("a", 4, "n1", corev1.PodRunning),
			want:  "all 4 members running",
		},
		{
			name:  "failed names the first failed member",
			phase: v1alpha1.PodGroupFailed,
			pods: concat(gang("b", 2, "n1", corev1.PodRunning),
				[]corev1.Pod{member("g", "w-2", "n1", corev1.PodFailed), member("g", "w-1", "n1", corev1.PodFailed)}),
			want: "member w-1 failed: 2 failed, 2 running, 0 succeeded of minMember 4",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pg := newGroup("g", 4)
			if got := describe(tc.phase, countMembers(pg, tc.pods), 4); got != tc.want {
				t.Errorf("describe = %q, want %q", got, tc.want)
			}
		})
	}
}
