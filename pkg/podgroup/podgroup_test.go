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
	for _, tc := range []struct {
		name       string
		seconds    *int32
		want       time.Duration
		wantCapped bool
	}{
		{"unset takes the default", nil, time.Minute, false},
		{"0 takes the default, as in scheduler-plugins", ptr.To[int32](0), time.Minute, false},
		{"a positive value wins", ptr.To[int32](5), 5 * time.Second, false},
		{"the largest value is capped", ptr.To[int32](2147483647), MaxTimeout, true},
		{"just past the cap is capped", ptr.To(int32(MaxTimeout/time.Second) + 1), MaxTimeout, true},
		{"the cap itself is kept", ptr.To(int32(MaxTimeout / time.Second)), MaxTimeout, false},
	} {
		pg.Spec.ScheduleTimeoutSeconds = tc.seconds
		if got, capped := Timeout(pg, time.Minute); got != tc.want || capped != tc.wantCapped {
			t.Errorf("%s: got %s capped=%v, want %s capped=%v", tc.name, got, capped, tc.want, tc.wantCapped)
		}
	}
}

func TestPlacementAnnotationsChanged(t *testing.T) {
	pg := func(annotations map[string]string) *v1alpha1.PodGroup {
		return &v1alpha1.PodGroup{ObjectMeta: metav1.ObjectMeta{Annotations: annotations}}
	}
	for _, c := range []struct {
		name     string
		old, cur map[string]string
		want     bool
	}{
		{"nothing", nil, nil, false},
		{"the scheduler's report", nil, map[string]string{AnnotationWaiting: "WaitingForRoom: ..."}, false},
		{"the controller's marks", nil, map[string]string{AnnotationIncomplete: "x", AnnotationEvicting: "uid"}, false},
		{"someone else's", map[string]string{"example.com/a": "1"}, map[string]string{"example.com/a": "2"}, false},
		{"disruption mode: the controller's", nil, map[string]string{AnnotationDisruptionMode: "All"}, false},
		{"required topology set", nil, map[string]string{AnnotationRequiredTopology: "topology.kubernetes.io/rack"}, true},
		{"preferred topology removed", map[string]string{AnnotationPreferredTopology: "topology.kubernetes.io/rack"}, nil, true},
		{"priority changed", map[string]string{annotationPriority: "10"}, map[string]string{annotationPriority: "20"}, true},
		{"set to empty", nil, map[string]string{annotationNeverPreempts: ""}, true},
	} {
		if got := PlacementAnnotationsChanged(pg(c.old), pg(c.cur)); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
