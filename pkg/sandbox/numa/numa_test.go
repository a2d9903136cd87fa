package numa

import (
	"slices"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func pod(uid, cpu string) *v1.Pod {
	p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: uid, UID: types.UID(uid)}}
	c := v1.Container{Name: "c"}
	if cpu != "" {
		c.Resources.Requests = v1.ResourceList{v1.ResourceCPU: resource.MustParse(cpu)}
	}
	p.Spec.Containers = []v1.Container{c}
	return p
}

func TestAdmitFirstZoneThatHoldsThePod(t *testing.T) {
	a := NewAccountant()
	a.AddNode("n", []Zone{{"node-0", 16}, {"node-1", 16}})
	steps := []struct {
		pod  *v1.Pod
		want []string
		free []int
	}{
		{pod("a", "10"), []string{"node-0"}, []int{6, 16}},
		// 8 does not fit in node-0's 6: the next zone that holds it whole.
		{pod("b", "8"), []string{"node-1"}, []int{6, 8}},
		// 4 fits in node-0 again: first fit, in order.
		{pod("c", "4"), []string{"node-0"}, []int{2, 8}},
		// 9 fits in no single zone: it spills, in order.
		{pod("d", "9"), []string{"node-0", "node-1"}, []int{0, 1}},
		// Fractions round up to whole CPUs.
		{pod("e", "500m"), []string{"node-1"}, []int{0, 0}},
	}
	for _, s := range steps {
		if got := a.Admit("n", s.pod); !slices.Equal(got, s.want) {
			t.Errorf("Admit(%s) = %v, want %v", s.pod.Name, got, s.want)
		}
		if got := a.Free("n"); !slices.Equal(got, s.free) {
			t.Errorf("after %s free = %v, want %v", s.pod.Name, got, s.free)
		}
	}
	// Admitting again changes nothing.
	if got := a.Admit("n", pod("a", "10")); !slices.Equal(got, []string{"node-0"}) || !slices.Equal(a.Free("n"), []int{0, 0}) {
		t.Errorf("second Admit(a) = %v, free %v", got, a.Free("n"))
	}
	a.Release("d")
	a.Release("d")
	if got := a.Free("n"); !slices.Equal(got, []int{2, 7}) {
		t.Errorf("after releasing d twice free = %v, want [2 7]", got)
	}
	// What a pod got is remembered after it ends, for the report.
	if got := a.Zones(pod("d", "9")); !slices.Equal(got, []string{"node-0", "node-1"}) {
		t.Errorf("Zones(d) after release = %v", got)
	}
}

func TestAdmitOvercommitAndUnknown(t *testing.T) {
	a := NewAccountant()
	a.AddNode("n", []Zone{{"node-0", 2}, {"node-1", 2}})
	a.Admit("n", pod("full", "4"))
	if got := a.Admit("n", pod("over", "1")); !slices.Equal(got, []string{"node-0"}) {
		t.Errorf("overcommitted pod zones = %v, want the first zone", got)
	}
	if got := a.Admit("other", pod("x", "1")); got != nil {
		t.Errorf("unknown node: %v", got)
	}
	if got := a.Admit("n", pod("none", "")); got != nil {
		t.Errorf("pod without CPU request: %v", got)
	}
}

func TestCPUs(t *testing.T) {
	for cpu, want := range map[string]int{"": 0, "100m": 1, "1": 1, "1001m": 2, "4": 4} {
		if got := CPUs(pod("p", cpu)); got != want {
			t.Errorf("CPUs(%q) = %d, want %d", cpu, got, want)
		}
	}
}
