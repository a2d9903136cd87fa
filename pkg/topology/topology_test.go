package topology

import (
	"testing"

	nrtv1alpha2 "github.com/k8stopologyawareschedwg/noderesourcetopology-api/pkg/apis/topology/v1alpha2"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/lockstep-sched/lockstep/pkg/placement"
)

func pod(cpu, mem string, guaranteed bool) *v1.Pod {
	req := v1.ResourceList{v1.ResourceCPU: resource.MustParse(cpu), v1.ResourceMemory: resource.MustParse(mem)}
	c := v1.Container{Name: "c", Resources: v1.ResourceRequirements{Requests: req}}
	if guaranteed {
		c.Resources.Limits = req.DeepCopy()
	}
	return &v1.Pod{Spec: v1.PodSpec{Containers: []v1.Container{c}}}
}

// Kubelet's static CPU manager pins CPUs only for Guaranteed pods' integer
// CPU requests; only those are bound to a NUMA zone.
func TestNUMANeed(t *testing.T) {
	for _, tc := range []struct {
		name     string
		pod      *v1.Pod
		wantCPU  int64
		wantNone bool
	}{
		{"guaranteed integer CPU", pod("4", "8Gi", true), 4000, false},
		{"guaranteed fractional CPU runs in the shared pool", pod("1500m", "1Gi", true), 0, true},
		{"burstable", pod("4", "8Gi", false), 0, true},
	} {
		got := NUMANeed(tc.pod)
		if tc.wantNone != (got == nil) || (got != nil && got.MilliCPU != tc.wantCPU) {
			t.Errorf("%s: got %+v", tc.name, got)
		}
	}
	// The apiserver's QoS class wins over what the spec suggests.
	p := pod("4", "8Gi", false)
	p.Status.QOSClass = v1.PodQOSGuaranteed
	if NUMANeed(p) == nil {
		t.Error("a pod the apiserver classed Guaranteed has a NUMA need")
	}
}

func nrt(policy string, zones ...string) *nrtv1alpha2.NodeResourceTopology {
	obj := &nrtv1alpha2.NodeResourceTopology{ObjectMeta: metav1.ObjectMeta{Name: "n"}}
	if policy != "" {
		obj.Attributes = nrtv1alpha2.AttributeList{{Name: "topologyManagerPolicy", Value: policy}}
	}
	for i, avail := range zones {
		alloc := resource.MustParse("8")
		obj.Zones = append(obj.Zones, nrtv1alpha2.Zone{
			Name: []string{"node-0", "node-1"}[i], Type: "Node",
			Resources: nrtv1alpha2.ResourceInfoList{{Name: "cpu", Capacity: alloc, Allocatable: alloc, Available: resource.MustParse(avail)}},
		})
	}
	obj.Zones = append(obj.Zones, nrtv1alpha2.Zone{Name: "socket-0", Type: "Socket"})
	return obj
}

func TestParse(t *testing.T) {
	zones, single := parse(nrt("single-numa-node", "6", "8"), false)
	if !single || len(zones) != 2 {
		t.Fatalf("want 2 NUMA zones (sockets ignored) under single-numa-node, got %v %v", zones, single)
	}
	if zones[0].Free.MilliCPU != 6000 || zones[1].Free.MilliCPU != 8000 {
		t.Errorf("room is what the agent reports available: %+v", zones)
	}
	if zones[0].Free.Memory != Unlimited {
		t.Errorf("a zone that reports no memory does not limit it: %d", zones[0].Free.Memory)
	}
	if zones, _ := parse(nrt("", "6", "8"), true); zones[0].Free.MilliCPU != 8000 {
		t.Errorf("capacity ignores what is in use: %+v", zones)
	}
	legacy := nrt("", "8", "8")
	legacy.TopologyPolicies = []string{string(nrtv1alpha2.SingleNUMANodePodLevel)}
	if _, single := parse(legacy, false); !single {
		t.Error("the legacy topologyPolicies field is understood too")
	}
	if _, single := parse(nrt("best-effort", "8", "8"), false); single {
		t.Error("best-effort does not require one zone")
	}
}

func TestChoose(t *testing.T) {
	zones := []placement.Zone{
		{Name: "node-0", Free: placement.Resources{MilliCPU: 6000, Memory: Unlimited}},
		{Name: "node-1", Free: placement.Resources{MilliCPU: 4000, Memory: Unlimited}},
	}
	got, ok := Choose(zones, true, &placement.Resources{MilliCPU: 4000})
	if !ok || len(got) != 1 || got["node-1"].MilliCPU != 4000 {
		t.Fatalf("want the tightest zone that holds it, got %v %v", got, ok)
	}
	if _, ok := Choose(zones, true, &placement.Resources{MilliCPU: 8000}); ok {
		t.Fatal("single-numa-node: 8 CPU fit no zone, kubelet would reject")
	}
	got, ok = Choose(zones, false, &placement.Resources{MilliCPU: 8000})
	if !ok || len(got) != 2 || got["node-0"].MilliCPU != 6000 || got["node-1"].MilliCPU != 2000 {
		t.Fatalf("without the policy the pod spans zones, roomiest first: %v", got)
	}
}

func TestTrackerAccountsAssignments(t *testing.T) {
	tr := NewTracker()
	tr.Assign("n", "a", map[string]placement.Resources{"node-0": {MilliCPU: 2000}})
	tr.Assign("n", "a", map[string]placement.Resources{"node-1": {MilliCPU: 3000}}) // reassigned
	if len(tr.assigned["n"]) != 1 || tr.assigned["n"]["a"]["node-1"].MilliCPU != 3000 {
		t.Fatalf("a pod holds one assignment: %+v", tr.assigned)
	}
	tr.Forget("a")
	if len(tr.assigned) != 0 || len(tr.podNode) != 0 {
		t.Fatalf("forgotten pods hold nothing: %+v", tr.assigned)
	}
	if zones, _ := tr.ZonesOf("n"); zones != nil {
		t.Fatal("without the NRT API no node has zones")
	}
}

// Only an update that gives a zone more room, adds one, or lifts
// single-numa-node may let a waiting pod fit.
func TestRoomGrew(t *testing.T) {
	for _, tc := range []struct {
		name     string
		old, nrt *nrtv1alpha2.NodeResourceTopology
		want     bool
	}{
		{"a pod admitted: a zone shrinks", nrt("single-numa-node", "8", "6"), nrt("single-numa-node", "8", "2"), false},
		{"nothing changed", nrt("single-numa-node", "8", "6"), nrt("single-numa-node", "8", "6"), false},
		{"a pod gone: a zone grows", nrt("single-numa-node", "8", "2"), nrt("single-numa-node", "8", "6"), true},
		{"a zone appears", nrt("single-numa-node", "8"), nrt("single-numa-node", "8", "8"), true},
		{"single-numa-node lifted", nrt("single-numa-node", "4", "4"), nrt("best-effort", "4", "4"), true},
		{"single-numa-node imposed", nrt("best-effort", "4", "4"), nrt("single-numa-node", "4", "4"), false},
	} {
		if got := roomGrew(tc.old, tc.nrt); got != tc.want {
			t.Errorf("%s: roomGrew = %t, want %t", tc.name, got, tc.want)
		}
	}
}
