package podgroup

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
)

// FuzzPodGroup: whatever a PodGroup's minMember, timeout and annotations
// hold, reading them never panics and gives usable values: a quorum of at
// least 1, a timeout within (0, MaxTimeout], topology levels that are the
// scheduler's, and a disruption mode that is Single or All.
func FuzzPodGroup(f *testing.F) {
	f.Add(int32(4), int32(60), "topology.kubernetes.io/rack", "kubernetes.io/hostname", "All")
	f.Add(int32(0), int32(0), "", "", "")
	f.Add(int32(-3), int32(-1), "rack", "kubernetes.io/hostname", "Single")
	f.Add(int32(1), int32(1<<30), "kubernetes.io/hostname", "topology.kubernetes.io/zone", "all")
	levels := []string{"topology.kubernetes.io/zone", "topology.kubernetes.io/rack", "kubernetes.io/hostname"}
	f.Fuzz(func(t *testing.T, minMember, timeout int32, required, preferred, mode string) {
		pg := &v1alpha1.PodGroup{
			ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{
				AnnotationRequiredTopology:  required,
				AnnotationPreferredTopology: preferred,
				AnnotationDisruptionMode:    mode,
			}},
			Spec: v1alpha1.PodGroupSpec{MinMember: minMember, ScheduleTimeoutSeconds: &timeout},
		}
		if m := MinMember(pg); m < 1 {
			t.Fatalf("MinMember = %d", m)
		}
		if d, _ := Timeout(pg, time.Minute); d <= 0 || d > MaxTimeout {
			t.Fatalf("Timeout = %s", d)
		}
		req, pref, err := TopologyConstraints(pg, levels)
		if err == nil {
			for _, l := range []string{req, pref} {
				if l != "" && l != levels[0] && l != levels[1] && l != levels[2] {
					t.Fatalf("accepted level %q is not the scheduler's", l)
				}
			}
		}
		if m, _ := DisruptionModeOf(pg); m != DisruptionSingle && m != DisruptionAll {
			t.Fatalf("disruption mode %q", m)
		}
	})
}
