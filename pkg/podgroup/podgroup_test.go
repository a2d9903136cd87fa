package podgroup

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
)

var levels = []string{"topology.kubernetes.io/zone", "topology.kubernetes.io/rack", "kubernetes.io/hostname"}

func withAnnotations(a map[string]string) *v1alpha1.PodGroup {
	return &v1alpha1.PodGroup{ObjectMeta: metav1.ObjectMeta{Name: "pg", Annotations: a}}
}

func TestTopologyConstraints(t *testing.T) {
	req, pref, err := TopologyConstraints(withAnnotations(map[string]string{
		AnnotationRequiredTopology:  "topology.kubernetes.io/zone",
		AnnotationPreferredTopology: "kubernetes.io/hostname",
	}), levels)
	if err != nil || req != "topology.kubernetes.io/zone" || pref != "kubernetes.io/hostname" {
		t.Fatalf("got %q %q %v", req, pref, err)
	}
	if req, pref, err := TopologyConstraints(withAnnotations(nil), levels); err != nil || req != "" || pref != "" {
		t.Fatalf("no annotations, no constraints: %q %q %v", req, pref, err)
	}
	for _, tc := range []struct {
		ann  map[string]string
		want string
	}{
		{map[string]string{AnnotationRequiredTopology: "row"}, `"row" is not a topology level`},
		{map[string]string{AnnotationPreferredTopology: ""}, `"" is not a topology level`},
		{map[string]string{AnnotationRequiredTopology: "topology.kubernetes.io/rack", AnnotationPreferredTopology: "topology.kubernetes.io/zone"}, "wider than the required level"},
	} {
		if _, _, err := TopologyConstraints(withAnnotations(tc.ann), levels); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: want error %q, got %v", tc.ann, tc.want, err)
		}
	}
}

func TestDefaults(t *testing.T) {
	pg := &v1alpha1.PodGroup{}
	if MinMember(pg) != 1 {
		t.Error("minMember 0 counts as 1")
	}
	if Timeout(pg, time.Minute) != time.Minute {
		t.Error("unset scheduleTimeoutSeconds takes the default")
	}
	pg.Spec.ScheduleTimeoutSeconds = ptr.To[int32](0)
	if Timeout(pg, time.Minute) != time.Minute {
		t.Error("0 takes the default, as in scheduler-plugins")
	}
	pg.Spec.ScheduleTimeoutSeconds = ptr.To[int32](5)
	if Timeout(pg, time.Minute) != 5*time.Second {
		t.Error("a positive value wins")
	}
}
